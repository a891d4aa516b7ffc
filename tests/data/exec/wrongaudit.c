/* A deliberately WRONG auditor (a test fixture, never the product): it
 * mseals every object's PT_GNU_RELRO pages at the first moment it hears of
 * a batch, WRONG_AUDIT_WHEN=objopen (at la_objopen: before relocation) or
 * =consistent (at la_activity(LA_ACT_CONSISTENT): after relocation at
 * start-up, but before it for dlopen on glibc < 2.41). The loader's own
 * mprotect(PROT_READ) of RELRO then fails: this is why the product seals
 * RELRO only once it is read-only. */
#define _GNU_SOURCE
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct link_map *pending[256];
static int npending;

static void
seal_relro(struct link_map *l)
{
    /* l_addr + PT_GNU_RELRO from the object's own program headers */
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)l->l_addr;
    if (l->l_addr == 0 || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(l->l_addr + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_GNU_RELRO) {
            unsigned long s = (l->l_addr + ph[i].p_vaddr) & ~4095ul;
            unsigned long e = (l->l_addr + ph[i].p_vaddr + ph[i].p_memsz) & ~4095ul;
            if (e > s)
                syscall(462, s, e - s, 0);
        }
}

unsigned int la_version(unsigned int v) { return 1; }

unsigned int
la_objopen(struct link_map *l, Lmid_t lmid, uintptr_t *cookie)
{
    const char *when = getenv("WRONG_AUDIT_WHEN");
    const char *only = getenv("WRONG_AUDIT_ONLY");
    if (only && !strstr(l->l_name, only))
        return 0;
    if (when && strcmp(when, "objopen") == 0)
        seal_relro(l);
    else if (npending < 256)
        pending[npending++] = l;
    return 0;
}

void
la_activity(uintptr_t *cookie, unsigned int flag)
{
    if (flag != LA_ACT_CONSISTENT)
        return;
    for (int i = 0; i < npending; i++)
        seal_relro(pending[i]);
    npending = 0;
}
