/*
 * t_ordinary: transparency (SPEC 9). Ordinary sockets and pipes behave under
 * the library exactly as without it. The same scenario runs twice: here,
 * under LD_PRELOAD, and in a copy of this program started without
 * LD_PRELOAD; each writes a transcript of results and errnos, and the two
 * transcripts must be identical. The scenario also checks the values it
 * knows (ENOENT, ECONNREFUSED, EAGAIN...), so it cannot agree on nonsense.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static FILE *tr; /* the transcript */

static long rec(const char *what, long r)
{
    int e = errno;
    if (r < 0)
        fprintf(tr, "%s -> %ld %s\n", what, r, tu_errname(e));
    else
        fprintf(tr, "%s -> %ld\n", what, r);
    errno = e;
    return r;
}

/* Record expr's result; it must be `want` (>= 0). */
#define OK(expr, want)                                                           \
    do {                                                                         \
        long r_ = rec(#expr, (long)(expr));                                      \
        CHECK(r_ == (long)(want), "%s returned %ld, expected %ld", #expr, r_, (long)(want)); \
    } while (0)

/* Record expr's result; it must fail with errno e. */
#define ERR(expr, e)                                                             \
    do {                                                                         \
        CHECK_ERRNO(rec(#expr, (long)(expr)), e);                                \
    } while (0)

#define NOTE(...) fprintf(tr, __VA_ARGS__)

static void unix_dgram(void)
{
    int sv[2];
    char buf[512];
    OK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    OK(send(sv[0], "abc", 3, 0), 3);
    OK(recv(sv[1], buf, sizeof buf, 0), 3);
    ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    OK(send(sv[0], "", 0, 0), 0);
    OK(recv(sv[1], buf, sizeof buf, 0), 0);
    OK(send(sv[0], "twenty bytes long!!!", 20, 0), 20);
    OK(recv(sv[1], buf, 4, MSG_PEEK), 4);
    OK(recv(sv[1], buf, 4, MSG_TRUNC), 20);
    OK(write(sv[1], "back", 4), 4);
    OK(read(sv[0], buf, sizeof buf), 4);
    struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
    OK(writev(sv[0], iov, 2), 4);
    OK(readv(sv[1], iov, 0), 0); /* zero iovecs: returns 0 and leaves the datagram */
    OK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), 4);
    ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* the queue of an ordinary datagram socket fills up: EAGAIN after the same count */
    int sent = 0;
    while (send(sv[0], "x", 1, MSG_DONTWAIT) == 1 && sent < 100000)
        sent++;
    NOTE("non-blocking sends until full: %d, then %s\n", sent, tu_errname(errno));
    CHECK(errno == EAGAIN, "socketpair never filled");
    for (int i = 0; i < sent; i++)
        CHECK(recv(sv[1], buf, sizeof buf, 0) == 1, "drain");

    static char big[300000];
    ERR(send(sv[0], big, sizeof big, 0), EMSGSIZE);
    int v = 4096;
    OK(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &v, sizeof v), 0);
    NOTE("SO_RCVBUF after setting 4096: %d\n", tu_getint(sv[1], SOL_SOCKET, SO_RCVBUF));
    NOTE("SO_TYPE: %d\n", tu_getint(sv[0], SOL_SOCKET, SO_TYPE));

    /* timeouts */
    tu_set_rcvtimeo(sv[1], 100);
    ERR(recv(sv[1], buf, sizeof buf, 0), EAGAIN);

    /* readiness */
    struct pollfd p[2] = {{sv[0], POLLIN | POLLOUT, 0}, {sv[1], POLLIN | POLLOUT, 0}};
    OK(poll(p, 2, 0), 2);
    NOTE("poll revents: %#x %#x\n", p[0].revents, p[1].revents);
    OK(send(sv[0], "x", 1, 0), 1);
    OK(poll(p, 2, 0), 2);
    NOTE("poll revents after a send: %#x %#x\n", p[0].revents, p[1].revents);
    CHECK(p[1].revents & POLLIN, "POLLIN");

    /* sendmmsg / recvmmsg */
    struct mmsghdr mm[3];
    struct iovec io[3];
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) {
        io[i].iov_base = buf + i * 16;
        io[i].iov_len = 5;
        mm[i].msg_hdr.msg_iov = &io[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    OK(sendmmsg(sv[0], mm, 3, 0), 3);
    OK(recvmmsg(sv[1], mm, 3, MSG_DONTWAIT, NULL), 3); /* "x" and two of the three */
    OK(recvmmsg(sv[1], mm, 3, MSG_DONTWAIT, NULL), 1);
    ERR(recvmmsg(sv[1], mm, 3, MSG_DONTWAIT, NULL), EAGAIN);

    int d = dup(sv[0]);
    OK(d >= 0, 1);
    OK(close(d), 0);
    ERR(close(d), EBADF);
    OK(close(sv[0]), 0);
    ERR(send(sv[1], "x", 1, 0), ECONNREFUSED);
    OK(close(sv[1]), 0);
}

static void unix_addresses(void)
{
    char buf[64];
    struct sockaddr_un a, b, from, missing_abs, missing_path, stale;
    socklen_t alen = tu_abstract_addr(&a, "ord-a");
    socklen_t blen = tu_path_addr(&b, "ord-b");
    socklen_t malen = tu_abstract_addr(&missing_abs, "nobody");
    socklen_t mplen = tu_path_addr(&missing_path, "nothing");
    socklen_t slen = tu_path_addr(&stale, "stale");
    int sa = tu_dgram(), sb = tu_dgram(), sc = tu_dgram(), st = tu_dgram();
    OK(bind(sa, (struct sockaddr *)&a, alen), 0);
    OK(bind(sb, (struct sockaddr *)&b, blen), 0);
    ERR(bind(sc, (struct sockaddr *)&a, alen), EADDRINUSE);
    OK(bind(st, (struct sockaddr *)&stale, slen), 0);
    OK(close(st), 0); /* leaves a socket file nobody listens on */

    OK(sendto(sa, "to b", 4, 0, (struct sockaddr *)&b, blen), 4);
    socklen_t flen = sizeof from;
    OK(recvfrom(sb, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 4);
    NOTE("recvfrom: address length %s, address %s\n", flen == alen ? "= sender's" : "differs",
         memcmp(&from, &a, alen) == 0 ? "= sender's" : "differs");
    CHECK(flen == alen && memcmp(&from, &a, alen) == 0, "recvfrom address");
    OK(sendto(sc, "unbound", 7, 0, (struct sockaddr *)&b, blen), 7);
    flen = sizeof from;
    OK(recvfrom(sb, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 7);
    NOTE("recvfrom an unbound sender: address length %u\n", flen);

    ERR(sendto(sa, "x", 1, 0, (struct sockaddr *)&missing_path, mplen), ENOENT);
    ERR(sendto(sa, "x", 1, 0, (struct sockaddr *)&missing_abs, malen), ECONNREFUSED);
    ERR(sendto(sa, "x", 1, 0, (struct sockaddr *)&stale, slen), ECONNREFUSED);
    ERR(connect(sc, (struct sockaddr *)&missing_path, mplen), ENOENT);
    ERR(connect(sc, (struct sockaddr *)&missing_abs, malen), ECONNREFUSED);
    struct sockaddr_un wrong = a;
    wrong.sun_family = AF_INET;
    ERR(sendto(sa, "x", 1, 0, (struct sockaddr *)&wrong, alen), EINVAL);
    ERR(send(sc, "x", 1, 0), ENOTCONN);

    /* a connected datagram socket accepts only its peer */
    OK(connect(sb, (struct sockaddr *)&a, alen), 0);
    OK(send(sb, "to a", 4, 0), 4);
    OK(recv(sa, buf, sizeof buf, 0), 4);
    ERR(sendto(sc, "x", 1, 0, (struct sockaddr *)&b, blen), EPERM);

    /* a stream listener is no datagram peer: the kernel finds no socket of that type */
    struct sockaddr_un l;
    socklen_t llen = tu_abstract_addr(&l, "listener");
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    OK(bind(ls, (struct sockaddr *)&l, llen), 0);
    OK(listen(ls, 4), 0);
    ERR(sendto(sc, "x", 1, 0, (struct sockaddr *)&l, llen), ECONNREFUSED);

    flen = sizeof from;
    OK(getsockname(sc, (struct sockaddr *)&from, &flen), 0);
    NOTE("getsockname of an unbound socket: length %u\n", flen);
    flen = sizeof from;
    OK(getpeername(sb, (struct sockaddr *)&from, &flen), 0);
    NOTE("getpeername: length %s\n", flen == alen ? "= peer's" : "differs");
    ERR(getpeername(sa, (struct sockaddr *)&from, &flen), ENOTCONN);
    close(sa);
    close(sb);
    close(sc);
    close(ls);
}

static void unix_stream_seqpacket(void)
{
    int sv[2];
    char buf[64];
    OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    OK(send(sv[0], "stre", 4, 0), 4);
    OK(send(sv[0], "am", 2, 0), 2);
    OK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), 6);
    OK(shutdown(sv[0], SHUT_WR), 0);
    OK(recv(sv[1], buf, sizeof buf, 0), 0);
    close(sv[0]);
    close(sv[1]);

    OK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    OK(send(sv[0], "packet one", 10, 0), 10);
    OK(send(sv[0], "two", 3, 0), 3);
    OK(recv(sv[1], buf, 6, 0), 6);
    OK(recv(sv[1], buf, sizeof buf, 0), 3);
    ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    close(sv[0]);
    OK(recv(sv[1], buf, sizeof buf, 0), 0);
    close(sv[1]);
}

static void pipes(void)
{
    int p[2];
    char buf[64];
    OK(pipe2(p, O_NONBLOCK), 0);
    ERR(read(p[0], buf, sizeof buf), EAGAIN);
    OK(write(p[1], "pipe data", 9), 9);
    OK(read(p[0], buf, 4), 4);
    OK(read(p[0], buf, sizeof buf), 5);
    OK(close(p[1]), 0);
    OK(read(p[0], buf, sizeof buf), 0);
    close(p[0]);
}

static void inet(void)
{
    char buf[2048];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    OK(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    OK(getsockname(ls, (struct sockaddr *)&a, &alen), 0);
    OK(listen(ls, 4), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    OK(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int s = accept(ls, NULL, NULL);
    OK(s >= 0, 1);
    memset(buf, 'q', sizeof buf);
    OK(send(c, buf, 1000, 0), 1000);
    OK(recv(s, buf, 1000, MSG_WAITALL), 1000);
    ERR(recv(s, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    OK(close(c), 0);
    OK(recv(s, buf, sizeof buf, 0), 0);
    close(s);
    close(ls);

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t blen = sizeof b;
    OK(bind(u2, (struct sockaddr *)&b, sizeof b), 0);
    OK(getsockname(u2, (struct sockaddr *)&b, &blen), 0);
    OK(sendto(u1, "udp", 3, 0, (struct sockaddr *)&b, sizeof b), 3);
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    OK(recvfrom(u2, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen), 3);
    NOTE("udp recvfrom address length %u\n", flen);
    ERR(recv(u2, buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    close(u1);
    close(u2);
}

static void scenario(void)
{
    unix_dgram();
    unix_addresses();
    unix_stream_seqpacket();
    pipes();
    inet();
    fflush(tr);
}

/* Run this program again without LD_PRELOAD; return its transcript. */
static char *kernel_transcript(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        unsetenv("LD_PRELOAD");
        extern char **environ;
        char *argv[] = {"t_ordinary", "--kernel", NULL};
        execve("/proc/self/exe", argv, environ);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t n;
    while ((n = read(p[0], out + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        CHECK(len < cap - 1, "transcript too long");
    }
    out[len] = 0;
    close(p[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the scenario failed without the library too (status 0x%x): the test is wrong", status);
    return out;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--kernel") == 0) {
        tu_role = "kernel run";
        tu_watchdog_start();
        tr = stdout;
        scenario();
        return 0;
    }
    tu_start("t_ordinary");
    char *theirs = kernel_transcript();
    char *mine = NULL;
    size_t mine_len = 0;
    tr = open_memstream(&mine, &mine_len);
    CHECK(tr != NULL, "open_memstream");
    scenario();
    fclose(tr);

    /* compare line by line, report the first difference */
    int line = 1;
    const char *a = mine, *b = theirs;
    while (*a || *b) {
        const char *ea = strchrnul(a, '\n'), *eb = strchrnul(b, '\n');
        CHECK(ea - a == eb - b && memcmp(a, b, (size_t)(ea - a)) == 0,
              "transcripts differ at line %d:\n    with the library:    %.*s\n    without the library: %.*s",
              line, (int)(ea - a), a, (int)(eb - b), b);
        a = *ea ? ea + 1 : ea;
        b = *eb ? eb + 1 : eb;
        line++;
    }
    CHECK(line > 50, "transcript suspiciously short (%d lines)", line);
    tu_ok("%d results and errnos identical with and without the library: unix dgram/stream/"
          "seqpacket, bound addresses, ENOENT/ECONNREFUSED/EPERM/EPROTOTYPE, pipes, TCP and UDP "
          "loopback, poll, timeouts",
          line - 1);
    free(mine);
    free(theirs);
    return tu_done();
}
