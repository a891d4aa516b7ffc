/* Linked -z execstack: dlopen must make every thread's stack executable,
 * which glibc does by changing __stack_prot in ld.so's RELRO. */
int execstack_value(void) { return 1; }
