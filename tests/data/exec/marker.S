/* A GNU_PROPERTY_MEMORY_SEAL marker (type 3, pr_datasz 0) in
 * .note.gnu.property, as `ld -z memory-seal` (binutils 2.45+) emits it;
 * older ld warns about the unknown type but keeps the note and its
 * PT_GNU_PROPERTY segment when it is the only property input. */
	.section .note.gnu.property,"a"
	.p2align 3
	.long 4
	.long 8
	.long 5
	.asciz "GNU"
	.long 3
	.long 0
	.section .note.GNU-stack,"",@progbits
