/* Blocks in one system call for about 4 s and reports how it returned:
 *   blocker MODE   prints "ready", then "MODE ret=R errno=E early=0|1 late=0|1"
 * early: returned well before the 4 s (EINTR at a stop, say); late: took far
 * longer (restarted with a fresh full timeout, when stopped after 0.6 s). Calls without a timeout end
 * by SIGALRM after 4 s (a handler without SA_RESTART: EINTR).
 * MODE: nanosleep poll select epoll futex sigtimedwait pause read wait4 accept */
#include <errno.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static void on_alrm(int sig) { (void)sig; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *m = argv[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alrm;
    sigaction(SIGALRM, &sa, NULL);
    int p[2];
    if (pipe(p)) return 2;
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    int lsock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bind(lsock, (struct sockaddr *)&addr, sizeof addr);
    listen(lsock, 1);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    pid_t child = 0;
    if (!strcmp(m, "wait4") && (child = fork()) == 0) { sleep(4); _exit(0); }
    int no_timeout = !strcmp(m, "pause") || !strcmp(m, "read") || !strcmp(m, "accept");
    if (no_timeout) alarm(4);
    printf("ready\n"); fflush(stdout);
    double t0 = now();
    long r = -2;
    if (!strcmp(m, "nanosleep")) { struct timespec ts = {4, 0}; r = nanosleep(&ts, NULL); }
    else if (!strcmp(m, "poll")) { struct pollfd f = { p[0], POLLIN, 0 }; r = poll(&f, 1, 4000); }
    else if (!strcmp(m, "select")) {
        fd_set s; FD_ZERO(&s); FD_SET(p[0], &s); struct timeval tv = {4, 0};
        r = select(p[0] + 1, &s, NULL, NULL, &tv);
    }
    else if (!strcmp(m, "epoll")) { struct epoll_event out; r = epoll_wait(ep, &out, 1, 4000); }
    else if (!strcmp(m, "futex")) {
        static int word = 0; struct timespec ts = {4, 0};
        r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    }
    else if (!strcmp(m, "sigtimedwait")) { struct timespec ts = {4, 0}; r = sigtimedwait(&usr2, NULL, &ts); }
    else if (!strcmp(m, "pause")) r = pause();
    else if (!strcmp(m, "read")) { char c; r = read(p[0], &c, 1); }
    else if (!strcmp(m, "wait4")) { int st; r = wait4(child, &st, 0, NULL); if (r == child) r = 1; }
    else if (!strcmp(m, "accept")) r = accept(lsock, NULL, NULL);
    int e = r < 0 ? errno : 0;
    double dt = now() - t0;
    printf("%s ret=%ld errno=%d early=%d late=%d\n", m, r, e, dt < 3.9, dt > 4.6);
    fflush(stdout);
    sleep(1); /* alive a while longer: a process that exits at once cannot be verified */
    return 0;
}
