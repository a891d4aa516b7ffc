/* A library whose constructor makes its own RELRO writable again (as some
 * programs do to patch their GOT), writing "mprotect=ok" or "mprotect=EPERM"
 * to $RELROW_OUT. Run after relocation: on glibc < 2.41 sealkit exec has not
 * sealed a dlopened object's RELRO yet, so the change succeeds and the RELRO
 * must then be skipped (its mapping no longer matches the segment), with the
 * reason in the report. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int
find_relro(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "librelrow"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO)
            *(unsigned long *)data = (info->dlpi_addr + info->dlpi_phdr[i].p_vaddr) & ~4095ul;
    return 1;
}

__attribute__((constructor)) static void
unprotect(void)
{
    const char *path = getenv("RELROW_OUT");
    unsigned long relro = 0;
    if (!path)
        return;
    dl_iterate_phdr(find_relro, &relro);
    int r = relro ? mprotect((void *)relro, 4096, PROT_READ | PROT_WRITE) : -1;
    const char *what = !relro ? "mprotect=no-relro\n" : r == 0 ? "mprotect=ok\n" : errno == EPERM ? "mprotect=EPERM\n" : "mprotect=other-error\n";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, what, strlen(what)) < 0)
            what = NULL;
        close(fd);
    }
}
