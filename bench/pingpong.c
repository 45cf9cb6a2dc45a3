/*
 * pingpong.c - round trips between two processes over an ordinary socket,
 * to measure what LD_PRELOAD=libumcast.so costs sockets that take no part in
 * a group (SPEC section 9: "no measurable cost"). scripts/bench.sh runs it
 * with and without the library and compares.
 *
 *   pingpong --transport unix|tcp [--duration SEC] [--size BYTES] [--timeout SEC] [--cpu N]
 *
 * --cpu N pins both processes to CPU N. A ping-pong between two processes
 * that the scheduler is free to place swings by a factor of several from run
 * to run (same CPU or not, wake-up migrations, idle states of a VM); on one
 * CPU it measures the system calls and the context switch, steadily enough
 * to see a few percent of added cost.
 *
 * unix: AF_UNIX SOCK_DGRAM sockets bound to paths, sendto() + recv(): the
 *       calls the library must look at (is this address a group?) and let
 *       through.
 * tcp:  a TCP connection on 127.0.0.1 with TCP_NODELAY, write() + read().
 *
 * Output: "RESULT transport=T preload=0|1 size=S round_trips=K secs=X rtt_per_s=R".
 */
#include "benchutil.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define WARMUP_ROUNDS 2000
#define STOP_BYTE 'Q' /* first byte of the message that ends the echo child */

static size_t msg_size = 64;

/* Reads exactly len bytes from a stream (TCP may split a message). */
static int read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            if (n < 0 && errno == EINTR && !deadline_hit)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const char *buf, size_t len)
{
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, buf + put, len - put);
        if (n < 0) {
            if (errno == EINTR && !deadline_hit)
                continue;
            return -1;
        }
        put += (size_t)n;
    }
    return 0;
}

/* ---- unix datagram ---- */

struct unix_pair {
    int fd;
    struct sockaddr_un peer;
};

static int unix_bound(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0)
        die("socket:");
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind %s:", path);
    return fd;
}

static int unix_round(struct unix_pair *p, char *buf)
{
    if (sendto(p->fd, buf, msg_size, 0, (struct sockaddr *)&p->peer, sizeof p->peer) < 0)
        return -1;
    return recv(p->fd, buf, msg_size, 0) < 0 ? -1 : 0;
}

/* ---- driver ---- */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "transport", required_argument, NULL, 't' }, { "duration", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 's' },      { "timeout", required_argument, NULL, 'T' },
        { "cpu", required_argument, NULL, 'c' },       { NULL, 0, NULL, 0 },
    };
    const char *transport = NULL, *preload = getenv("LD_PRELOAD");
    double duration = 1.0;
    unsigned timeout_s = 30;
    int opt, is_unix, st, cpu = -1;
    char dir[] = "/tmp/umbench-pp.XXXXXX", path_a[64], path_b[64];
    char *buf;
    pid_t child;
    uint64_t rounds = 0, t0, t1 = 0, t_end;
    int fd = -1;
    struct unix_pair up;

    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': transport = optarg; break;
        case 'd': duration = parse_double(optarg, "duration"); break;
        case 's': msg_size = (size_t)parse_long(optarg, "size"); break;
        case 'T': timeout_s = (unsigned)parse_long(optarg, "timeout"); break;
        case 'c': cpu = (int)parse_long(optarg, "cpu"); break;
        default: goto usage;
        }
    }
    if (!transport || optind != argc || msg_size < 1 || msg_size > 65536 || duration <= 0)
        goto usage;
    if (strcmp(transport, "unix") == 0)
        is_unix = 1;
    else if (strcmp(transport, "tcp") == 0)
        is_unix = 0;
    else
        goto usage;

    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) /* the child inherits it */
            die("sched_setaffinity(CPU %d):", cpu);
    }
    buf = calloc(1, msg_size);
    if (!buf)
        die("calloc:");
    arm_deadline(timeout_s);

    if (is_unix) {
        int child_fd;
        if (!mkdtemp(dir))
            die("mkdtemp:");
        snprintf(path_a, sizeof path_a, "%s/a", dir);
        snprintf(path_b, sizeof path_b, "%s/b", dir);
        /* Both bound before the fork, so neither side can send too early. */
        fd = unix_bound(path_a);
        child_fd = unix_bound(path_b);
        child = fork();
        if (child < 0)
            die("fork:");
        if (child == 0) {
            struct sockaddr_un back = { .sun_family = AF_UNIX };
            signal(SIGALRM, SIG_DFL);
            alarm(timeout_s + 2 * DEADLINE_GRACE);
            close(fd);
            snprintf(back.sun_path, sizeof back.sun_path, "%s", path_a);
            for (;;) {
                ssize_t n = recv(child_fd, buf, msg_size, 0);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0 || buf[0] == STOP_BYTE)
                    _exit(n < 0);
                if (sendto(child_fd, buf, (size_t)n, 0, (struct sockaddr *)&back, sizeof back) < 0)
                    _exit(1);
            }
        }
        close(child_fd);
        up.fd = fd;
        memset(&up.peer, 0, sizeof up.peer);
        up.peer.sun_family = AF_UNIX;
        snprintf(up.peer.sun_path, sizeof up.peer.sun_path, "%s", path_b);
    } else {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;
        int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0 ||
            getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
            die("tcp listen on 127.0.0.1:");
        child = fork();
        if (child < 0)
            die("fork:");
        if (child == 0) {
            int c;
            signal(SIGALRM, SIG_DFL);
            alarm(timeout_s + 2 * DEADLINE_GRACE);
            c = accept(lfd, NULL, NULL);
            if (c < 0)
                _exit(1);
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            for (;;) {
                if (read_full(c, buf, msg_size) < 0)
                    _exit(1);
                if (buf[0] == STOP_BYTE)
                    _exit(0);
                if (write_full(c, buf, msg_size) < 0)
                    _exit(1);
            }
        }
        close(lfd);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
            die("tcp connect:");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    deadline_children = &child;
    deadline_nchildren = 1;

    /* Warm up (page faults, caches, the library's lazy fd classification),
     * then count round trips for the duration. */
    for (uint64_t i = 0; i < WARMUP_ROUNDS; i++) {
        int rc = is_unix ? unix_round(&up, buf)
                         : (write_full(fd, buf, msg_size) < 0 || read_full(fd, buf, msg_size) < 0 ? -1 : 0);
        if (rc < 0) {
            kill(child, SIGKILL);
            die("warm-up round trip %llu:", (unsigned long long)i);
        }
    }
    t0 = now_ns();
    t_end = t0 + (uint64_t)(duration * 1e9);
    for (;;) {
        int rc = is_unix ? unix_round(&up, buf)
                         : (write_full(fd, buf, msg_size) < 0 || read_full(fd, buf, msg_size) < 0 ? -1 : 0);
        if (rc < 0) {
            kill(child, SIGKILL);
            die("round trip %llu%s:", (unsigned long long)rounds, deadline_hit ? " (deadline)" : "");
        }
        rounds++;
        /* Checking the clock every 64 rounds keeps it out of the loop cost. */
        if ((rounds & 63) == 0 && (t1 = now_ns()) >= t_end)
            break;
    }
    buf[0] = STOP_BYTE;
    if (is_unix)
        sendto(fd, buf, msg_size, 0, (struct sockaddr *)&up.peer, sizeof up.peer);
    else
        write_full(fd, buf, msg_size);
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
        if (deadline_hit)
            kill(child, SIGKILL);
    }
    close(fd);
    if (is_unix) {
        unlink(path_a);
        unlink(path_b);
        rmdir(dir);
    }
    printf("RESULT transport=%s preload=%d size=%zu cpu=%d round_trips=%llu secs=%.6f rtt_per_s=%.1f\n", transport,
           preload && strstr(preload, "umcast") ? 1 : 0, msg_size, cpu, (unsigned long long)rounds,
           (double)(t1 - t0) / 1e9, (double)rounds / ((double)(t1 - t0) / 1e9));
    return 0;

usage:
    fprintf(stderr, "usage: pingpong --transport unix|tcp [--duration SEC] [--size BYTES] [--timeout SEC] [--cpu N]\n");
    return 2;
}
