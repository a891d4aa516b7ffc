/* Linked against libctorcheck.so (a DT_NEEDED dependency): its constructor
 * runs at start-up, before main. */
#include <stdio.h>
int ctorcheck_get(void);
int main(void) { printf("value=%d\n", ctorcheck_get()); return 0; }
