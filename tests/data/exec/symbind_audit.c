/* A logging auditor (a test fixture, never the product): it asks the loader
 * for every symbol binding (la_objopen returns LA_FLG_BINDTO|LA_FLG_BINDFROM,
 * and la_symbind64 is defined) and, for the object whose path contains
 * SYMBIND_AUDIT_ONLY, writes one line per binding it makes to
 * SYMBIND_AUDIT_OUT:
 *     bind SYMBOL reloc|lazy|dlsym relro=writable|readonly
 * then, once that object's RELRO is read-only, one line per binding made by
 * any object:
 *     later FROM SYMBOL reloc|lazy|dlsym
 * It asks whether la_symbind64 could be the moment to seal the RELRO of an
 * object that libc loads by itself (NSS, libgcc_s), which glibc before 2.41
 * relocates after the batch's la_activity(LA_ACT_CONSISTENT). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct link_map *watched;
static int out = -1;

static void
say(const char *line)
{
    if (out < 0) {
        const char *path = getenv("SYMBIND_AUDIT_OUT");
        if (!path)
            return;
        out = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    if (out >= 0 && write(out, line, strlen(line)) < 0)
        return;
}

/* the first page of the object's PT_GNU_RELRO, or 0 */
static unsigned long
relro_page(struct link_map *l)
{
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)l->l_addr;
    if (l->l_addr == 0 || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return 0;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(l->l_addr + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_GNU_RELRO)
            return (l->l_addr + ph[i].p_vaddr) & ~4095ul;
    return 0;
}

/* 1 if the mapping holding ADDR is writable, 0 if not, -1 if unknown */
static int
writable(unsigned long addr)
{
    static char maps[1 << 20];
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t have = 0;
    ssize_t got;
    while (have < sizeof maps - 1 && (got = read(fd, maps + have, sizeof maps - 1 - have)) > 0)
        have += (size_t)got;
    close(fd);
    maps[have] = '\0';
    for (char *line = maps; *line;) {
        unsigned long start, end;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3 && start <= addr && addr < end)
            return perms[1] == 'w';
        char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return -1;
}

unsigned int
la_version(unsigned int version)
{
    return version < LAV_CURRENT ? version : LAV_CURRENT;
}

unsigned int
la_objopen(struct link_map *map, Lmid_t lmid, uintptr_t *cookie)
{
    const char *only = getenv("SYMBIND_AUDIT_ONLY");
    (void)lmid;
    *cookie = (uintptr_t)map;
    if (only && strstr(map->l_name, only))
        watched = map;
    return LA_FLG_BINDTO | LA_FLG_BINDFROM;
}

uintptr_t
la_symbind64(Elf64_Sym *sym, unsigned int ndx, uintptr_t *refcook, uintptr_t *defcook,
             unsigned int *flags, const char *symname)
{
    struct link_map *from = (struct link_map *)*refcook;
    (void)ndx;
    (void)defcook;
    const char *how = (*flags & LA_SYMB_DLSYM)         ? "dlsym"
                      : (*flags & LA_SYMB_NOPLTENTER) ? "reloc"
                                                       : "lazy";
    char line[512];
    static int relro_done;
    if (watched && !relro_done) {
        int w = writable(relro_page(watched));
        if (w == 0)
            relro_done = 1;
        if (from == watched) {
            snprintf(line, sizeof line, "bind %s %s relro=%s\n", symname, how,
                     w == 1 ? "writable" : w == 0 ? "readonly" : "unknown");
            say(line);
            return sym->st_value;
        }
    }
    if (relro_done) {
        const char *name = from->l_name[0] ? from->l_name : "(executable)";
        const char *slash = strrchr(name, '/');
        snprintf(line, sizeof line, "later %s %s %s\n", slash ? slash + 1 : name, symname, how);
        say(line);
    }
    return sym->st_value;
}
