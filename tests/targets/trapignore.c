/* Ignores SIGTRAP (as some sandboxes and debuggers-averse programs do), then sleeps. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    signal(SIGTRAP, SIG_IGN);
    printf("ready\n"); fflush(stdout);
    sleep(30);
    return 0;
}
