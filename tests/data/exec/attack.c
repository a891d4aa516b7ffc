/* The attacks of issue 11, from inside the process: mprotect(PROT_WRITE) on
 * libc's text, munmap of the executable, mmap(MAP_FIXED) over libc's RELRO.
 * The constructor runs them when $ATTACK_OUT is set, appending one line per
 * attack to that file as it goes ("mprotect-libc-text=EPERM", ..., "ok" when
 * the attack went through). In a sealed program every attack must fail with
 * EPERM and the program go on; in an unsealed one they succeed (and the
 * process may die after the last one: tests run that case in a child). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct find { const char *part; unsigned long text, relro, first; };

static int
cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct find *f = data;
    (void)size;
    int main_prog = info->dlpi_name == NULL || info->dlpi_name[0] == 0;
    if (f->part[0] == 0 ? !main_prog : (main_prog || !strstr(info->dlpi_name, f->part)))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        unsigned long a = (info->dlpi_addr + p->p_vaddr) & ~4095ul;
        if (p->p_type == PT_LOAD && (p->p_flags & PF_X) && !f->text)
            f->text = a;
        if (p->p_type == PT_LOAD && !f->first)
            f->first = a;
        if (p->p_type == PT_GNU_RELRO)
            f->relro = a;
    }
    return 1;
}

static void
say(int fd, const char *what, int failed, int err)
{
    const char *res = !failed ? "ok" : err == EPERM ? "EPERM" : "other-error";
    /* raw write(2): after the last attack libc's RELRO may be gone */
    syscall(SYS_write, fd, what, strlen(what));
    syscall(SYS_write, fd, "=", 1);
    syscall(SYS_write, fd, res, strlen(res));
    syscall(SYS_write, fd, "\n", 1);
}

__attribute__((constructor)) static void
attack_at_load(void)
{
    const char *path = getenv("ATTACK_OUT");
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    struct find libc = {"libc.so", 0, 0, 0}, exe = {"", 0, 0, 0};
    dl_iterate_phdr(cb, &libc);
    dl_iterate_phdr(cb, &exe);
    int r = mprotect((void *)libc.text, 4096, PROT_READ | PROT_WRITE);
    say(fd, "mprotect-libc-text", r != 0, errno);
    if (r == 0)
        mprotect((void *)libc.text, 4096, PROT_READ | PROT_EXEC);
    r = munmap((void *)exe.first, 4096);
    say(fd, "munmap-exe", r != 0, errno);
    void *m = mmap((void *)libc.relro, 4096, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    say(fd, "mmap-fixed-relro", m == MAP_FAILED, errno);
    close(fd);
}
