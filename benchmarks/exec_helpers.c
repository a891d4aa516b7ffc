/* Helpers for bench_exec.py, built at run time.
 *
 *   exec_helpers spawn COUNT PROGRAM [ARGS...]
 *       posix_spawn PROGRAM COUNT times, one after another (with this
 *       process's environment), wait for each; print each run's wall time and
 *       the child's CPU time (user + system, from wait4), in nanoseconds,
 *       one run per line.
 *   exec_helpers http PORT SECONDS
 *       one keep-alive connection to 127.0.0.1:PORT at a time, "GET /" after
 *       "GET /" (each response read whole, Content-Length) for SECONDS,
 *       reconnecting when the server closes it (nginx: keepalive_requests);
 *       print the number of complete 200 responses.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int
spawn(int count, char **argv)
{
    for (int i = 0; i < count; i++) {
        pid_t pid;
        long long t0 = now_ns();
        if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
            return 1;
        int st;
        struct rusage ru;
        wait4(pid, &st, 0, &ru);
        long long t1 = now_ns();
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
        long long cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                        (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
        printf("%lld %lld\n", t1 - t0, cpu);
    }
    return 0;
}

static int
connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int
http(int port, double seconds)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    char buf[65536];
    long ok = 0, reconnects = 0;
    int fd = connect_to(port);
    if (fd < 0)
        return 1;
    long long end = now_ns() + (long long)(seconds * 1e9);
    while (now_ns() < end) {
        size_t have = 0;
        long need = -1;
        if (write(fd, req, sizeof req - 1) != (ssize_t)sizeof req - 1)
            goto again;
        for (;;) {
            ssize_t r = read(fd, buf + have, sizeof buf - have - 1);
            if (r <= 0)
                goto again;
            have += (size_t)r;
            buf[have] = 0;
            char *hdr_end = strstr(buf, "\r\n\r\n");
            if (hdr_end && need < 0) {
                char *cl = strcasestr(buf, "Content-Length:");
                need = (hdr_end - buf) + 4 + (cl ? atol(cl + 15) : 0);
            }
            if (need >= 0 && (long)have >= need)
                break;
        }
        ok += strncmp(buf, "HTTP/1.1 200", 12) == 0;
        continue;
    again:
        close(fd);
        if (++reconnects > 100000 || (fd = connect_to(port)) < 0)
            return 1;
    }
    printf("%ld\n", ok);
    close(fd);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "spawn") == 0)
        return spawn(atoi(argv[2]), argv + 3);
    if (argc == 4 && strcmp(argv[1], "http") == 0)
        return http(atoi(argv[2]), atof(argv[3]));
    fprintf(stderr, "usage: exec_helpers spawn COUNT PROGRAM [ARGS] | http PORT SECONDS\n");
    return 2;
}
