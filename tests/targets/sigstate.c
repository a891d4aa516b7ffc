/* Signal state a tracer must leave exactly as it was.
 *
 * Every thread blocks SIGUSR1, SIGUSR2, SIGRTMIN and SIGRTMIN+1; SIGPIPE is
 * ignored; SIGUSR1 has a handler (no SA_RESTART) that counts its calls.
 * Before "ready" the process makes signals pending: SIGUSR2 and SIGRTMIN
 * twice (values 1 and 2) to the process, SIGRTMIN+1 to the main thread.
 * A worker thread waits in sigsuspend() with a mask that lets SIGUSR1 through
 * (the kernel restores the normal mask when sigsuspend returns: the
 * "restore sigmask" state a tracer could clear); when a SIGUSR1 ends it, it
 * prints how it returned and whether its normal mask came back.
 * The main thread reads stdin; on a line (after the worker has reported) it
 * takes every pending signal with sigtimedwait and prints each. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t usr1;
static void on_usr1(int sig) { (void)sig; usr1++; }
static sigset_t normal;
static void *worker(void *arg) {
    (void)arg;
    sigset_t wait_mask = normal;
    sigdelset(&wait_mask, SIGUSR1);
    int r = sigsuspend(&wait_mask);
    int e = errno;
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    int restored = sigismember(&now, SIGUSR1) && sigismember(&now, SIGUSR2)
                   && sigismember(&now, SIGRTMIN) && sigismember(&now, SIGRTMIN + 1);
    printf("suspend ret=%d errno=%d usr1=%d mask_restored=%d\n", r, e, (int)usr1, restored);
    fflush(stdout);
    return NULL;
}
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm(60);
    sigemptyset(&normal);
    sigaddset(&normal, SIGUSR1);
    sigaddset(&normal, SIGUSR2);
    sigaddset(&normal, SIGRTMIN);
    sigaddset(&normal, SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, &normal, NULL);
    kill(getpid(), SIGUSR2);
    union sigval one = { .sival_int = 1 }, two = { .sival_int = 2 };
    sigqueue(getpid(), SIGRTMIN, one);
    sigqueue(getpid(), SIGRTMIN, two);
    pthread_kill(pthread_self(), SIGRTMIN + 1);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    printf("ready\n"); fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 2;
    pthread_join(t, NULL);
    struct timespec zero = {0, 0};
    siginfo_t si;
    int sig;
    while ((sig = sigtimedwait(&normal, &si, &zero)) > 0)
        printf("pending sig=%d code=%d value=%d\n", sig - (sig >= SIGRTMIN ? SIGRTMIN : 0) +
               (sig >= SIGRTMIN ? 100 : 0), si.si_code,
               si.si_code == SI_QUEUE ? si.si_value.sival_int : 0);
    printf("done\n");
    return 0;
}
