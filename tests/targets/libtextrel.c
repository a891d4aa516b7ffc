/* A shared object with a text relocation: an absolute address stored in its
 * .text, which the dynamic loader must patch (DT_TEXTREL), making the text
 * writable while it does. Built with -z notext (no link-time complaint). */
int textrel_value = 42;
__asm__(".text\n"
        ".globl textrel_slot\n"
        ".type textrel_slot,@object\n"
        "textrel_slot: .quad textrel_value\n"
        ".size textrel_slot,8\n");
extern const long textrel_slot;
int textrel_get(void) { return *(const int *)textrel_slot; }
