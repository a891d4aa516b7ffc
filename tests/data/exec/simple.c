/* A minimal program for the refusal tests (static, musl-style, setuid...). */
#include <stdio.h>
int main(int argc, char **argv) { printf("simple %d\n", argc); return 0; }
