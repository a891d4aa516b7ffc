/* Depends on libmarked.so (marked) and libctorcheck.so (not marked). */
#include <stdio.h>
int marked_value(void);
int ctorcheck_get(void);
int main(void) { printf("%d %d\n", marked_value(), ctorcheck_get()); fflush(stdout); getchar(); return 0; }
