/* A library with one page that must stay mutable: `mutable_page` sits alone
 * in a page-aligned, page-sized ".gnu.mutable" section (what binutils'
 * azanella/pt_gnu_mutable branch lays out); the test rewrites the program
 * header of its PT_NOTE into PT_GNU_MUTABLE (0x6474f555) over that page,
 * since no released linker emits the segment yet. */
#include <string.h>
#include <sys/mman.h>

__attribute__((section(".gnu.mutable"), aligned(4096))) unsigned char mutable_page[4096] = {1};
unsigned char other_data[64] = {2};

/* 0 when the page could be re-protected read-only and back */
int
mutable_reprotect(void)
{
    if (mprotect(mutable_page, 4096, PROT_READ) != 0)
        return 1;
    return mprotect(mutable_page, 4096, PROT_READ | PROT_WRITE) != 0;
}

unsigned char *mutable_addr(void) { return mutable_page; }
