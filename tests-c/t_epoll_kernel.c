/*
 * t_epoll_kernel: epoll corner cases where a group member must behave as
 * the kernel behaves for an ordinary unix datagram socket. Every scenario
 * runs twice, on identical steps: once on ordinary sockets (the kernel's
 * answer) and once with a group member (or a socket connected to a group)
 * in their place; the two traces of what epoll reported must agree.
 *
 *   - EPOLLET added while a message already waits: one event.
 *   - EPOLL_CTL_MOD of an edge-triggered (and of an EPOLLET|EPOLLONESHOT)
 *     registration while a message waits: one event (MOD re-checks).
 *   - EPOLLOUT|EPOLLET on a connected sender: one event, then none while
 *     nothing changes (an edge-triggered loop must not spin), one again
 *     after the receiver drained a full queue.
 *   - maxevents smaller than what is ready: nothing is lost, nobody starves
 *     (an edge-triggered pipe beside a ready member; level-triggered pipes;
 *     more ready members than maxevents).
 */
#include "testutil.h"

#include <sys/epoll.h>

#define MAXEV 8

/* One side of the comparison: the kernel's sockets, or a group's. */
struct side {
    const char *name;
    int group; /* 1: group member / group sender */
    struct unix_mreq m;
    int g;
    struct sockaddr_un addr; /* kernel side: the receivers' addresses */
    socklen_t alen;
    int tx;
};

static int nrx;

static void side_init(struct side *s, int group)
{
    memset(s, 0, sizeof *s);
    s->group = group;
    s->name = group ? "group member" : "kernel (ordinary socket)";
    s->tx = tu_dgram();
    if (group) {
        tu_abstract_group(&s->m, "ek");
        s->g = tu_create_group(&s->m);
    } else {
        s->g = -1;
    }
}

static void side_close(struct side *s)
{
    close(s->tx);
    if (s->g >= 0)
        close(s->g);
}

/*
 * A non-blocking receiver. Group side: a member (all members of the side
 * get every push). Kernel side: a bound socket; push_to() targets it.
 */
static int rx_new(struct side *s, struct sockaddr_un *a, socklen_t *alen, int rcvbuf)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket");
    if (rcvbuf > 0)
        tu_setint(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf);
    if (s->group) {
        tu_join_fd(fd, &s->m, 0);
    } else {
        char tag[32];
        snprintf(tag, sizeof tag, "ekrx%d", nrx++);
        *alen = tu_abstract_addr(a, tag);
        CHECK(bind(fd, (struct sockaddr *)a, *alen) == 0, "bind");
    }
    return fd;
}

/* Send one datagram: to the group, or to the kernel side's receiver at a. */
static void push_to(struct side *s, const struct sockaddr_un *a, socklen_t alen)
{
    ssize_t r = s->group ? tu_sendto_group(s->tx, "m", 1, 0, &s->m)
                         : sendto(s->tx, "m", 1, 0, (const struct sockaddr *)a, alen);
    CHECK(r == 1, "%s: push", s->name);
}

static void read_one(int fd, const char *who)
{
    char c;
    CHECK(recv(fd, &c, 1, MSG_DONTWAIT) == 1, "%s: read one", who);
}

static int drain(int fd)
{
    char buf[512];
    int n = 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        n++;
    CHECK(errno == EAGAIN, "drain");
    return n;
}

static void reg(int ep, int op, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event e = {.events = events, .data.u64 = data};
    CHECK(epoll_ctl(ep, op, fd, &e) == 0, "epoll_ctl(op %d, fd %d, events 0x%x)", op, fd, events);
}

/* Labels: data values are 'A'.. (one letter each); a trace is "[A][][AB]...". */
static void wait_into(char *trace, size_t cap, int ep, int max, int ms)
{
    struct epoll_event ev[MAXEV];
    int n = epoll_wait(ep, ev, max, ms);
    CHECK(n >= 0 && n <= max, "epoll_wait(max %d) returned %d", max, n);
    char call[MAXEV + 3];
    size_t k = 0;
    call[k++] = '[';
    /* sorted, so that the order within one call does not matter */
    for (char c = 'A'; c <= 'Z'; c++)
        for (int i = 0; i < n; i++)
            if (ev[i].data.u64 == (uint64_t)c)
                call[k++] = c;
    for (int i = 0; i < n; i++)
        CHECK(ev[i].data.u64 >= 'A' && ev[i].data.u64 <= 'Z', "unknown epoll data 0x%llx",
              (unsigned long long)ev[i].data.u64);
    call[k++] = ']';
    call[k] = 0;
    CHECK(strlen(trace) + k < cap, "trace too long");
    strcat(trace, call);
}

/* Count how often label c appears in a trace. */
static int count(const char *trace, char c)
{
    int n = 0;
    for (; *trace; trace++)
        n += *trace == c;
    return n;
}

typedef void (*scenario)(struct side *s, char *trace, size_t cap);

static int failures;

static void compare(const char *what, scenario sc, int exact)
{
    char tk[512] = "", tg[512] = "";
    struct side k, g;
    side_init(&k, 0);
    sc(&k, tk, sizeof tk);
    side_close(&k);
    side_init(&g, 1);
    sc(&g, tg, sizeof tg);
    side_close(&g);
    int same = strcmp(tk, tg) == 0;
    if (!exact && !same) {
        same = 1; /* same number of reports per label, order aside */
        for (char c = 'A'; c <= 'Z'; c++)
            if (count(tk, c) != count(tg, c))
                same = 0;
    }
    if (same) {
        tu_ok("%s: %s (as the kernel)", what, tg);
    } else {
        fflush(stdout);
        fprintf(stderr, "FAIL %s:\n    kernel (ordinary sockets): %s\n    group member:              %s\n", what,
                tk, tg);
        failures++;
    }
}

/* ---- scenarios ---- */

/* EPOLLET added while a message waits. */
static void sc_et_add_pending(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 0);
    int ep = epoll_create1(0);
    push_to(s, &a, al);
    reg(ep, EPOLL_CTL_ADD, r, EPOLLIN | EPOLLET, 'A');
    wait_into(t, cap, ep, MAXEV, 0); /* kernel: the message that waits is reported once */
    wait_into(t, cap, ep, MAXEV, 0);
    push_to(s, &a, al);
    wait_into(t, cap, ep, MAXEV, 0);
    drain(r);
    close(ep);
    close(r);
}

/* EPOLL_CTL_MOD of an edge-triggered registration while a message waits. */
static void sc_et_mod_pending(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 0);
    int ep = epoll_create1(0);
    reg(ep, EPOLL_CTL_ADD, r, EPOLLIN | EPOLLET, 'A');
    push_to(s, &a, al);
    push_to(s, &a, al);
    wait_into(t, cap, ep, MAXEV, 0);
    wait_into(t, cap, ep, MAXEV, 0);
    read_one(r, s->name);
    reg(ep, EPOLL_CTL_MOD, r, EPOLLIN | EPOLLET, 'B'); /* one message still waits */
    wait_into(t, cap, ep, MAXEV, 0);
    wait_into(t, cap, ep, MAXEV, 0);
    drain(r);
    close(ep);
    close(r);
}

/* The EPOLLET|EPOLLONESHOT pattern: re-armed with MOD after a partial read. */
static void sc_et_oneshot_rearm(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 0);
    int ep = epoll_create1(0);
    reg(ep, EPOLL_CTL_ADD, r, EPOLLIN | EPOLLET | EPOLLONESHOT, 'A');
    push_to(s, &a, al);
    push_to(s, &a, al);
    push_to(s, &a, al);
    wait_into(t, cap, ep, MAXEV, 0);
    read_one(r, s->name);
    reg(ep, EPOLL_CTL_MOD, r, EPOLLIN | EPOLLET | EPOLLONESHOT, 'A'); /* two still wait */
    wait_into(t, cap, ep, MAXEV, 0);
    read_one(r, s->name);
    wait_into(t, cap, ep, MAXEV, 0);
    reg(ep, EPOLL_CTL_MOD, r, EPOLLIN | EPOLLET | EPOLLONESHOT, 'A'); /* one still waits */
    wait_into(t, cap, ep, MAXEV, 0);
    read_one(r, s->name);
    reg(ep, EPOLL_CTL_MOD, r, EPOLLIN | EPOLLET | EPOLLONESHOT, 'A'); /* empty */
    wait_into(t, cap, ep, MAXEV, 0);
    close(ep);
    close(r);
}

/* A connected sender registered EPOLLOUT|EPOLLET. */
static void sc_out_et(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 4096);
    int w = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(w >= 0, "socket");
    if (s->group)
        CHECK(connect(w, (struct sockaddr *)&s->m.address, unix_mreq_addrlen(&s->m)) == 0, "connect");
    else
        CHECK(connect(w, (struct sockaddr *)&a, al) == 0, "connect");
    int ep = epoll_create1(0);
    reg(ep, EPOLL_CTL_ADD, w, EPOLLOUT | EPOLLET, 'W');
    wait_into(t, cap, ep, MAXEV, 0);  /* writable: one event */
    wait_into(t, cap, ep, MAXEV, 50); /* nothing changed */
    wait_into(t, cap, ep, MAXEV, 50);
    /* fill the receiver until EAGAIN, then it drains everything */
    char buf[256];
    memset(buf, 'o', sizeof buf);
    size_t len = sizeof buf;
    for (int i = 0;; i++) {
        CHECK(i < 100000, "%s: no EAGAIN", s->name);
        ssize_t n = send(w, buf, len, MSG_DONTWAIT);
        if (n == -1 && errno == EAGAIN) {
            if (len == 1)
                break;
            len = 1;
            continue;
        }
        CHECK(n == (ssize_t)len, "%s: send", s->name);
    }
    wait_into(t, cap, ep, MAXEV, 50); /* full: nothing */
    drain(r);
    wait_into(t, cap, ep, MAXEV, 1000); /* room again: one event */
    wait_into(t, cap, ep, MAXEV, 50);   /* and no more */
    close(ep);
    close(w);
    close(r);
}

/* maxevents 1: a ready member (level-triggered) beside an edge-triggered pipe. */
static void sc_max1_et_pipe(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 0);
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe");
    int ep = epoll_create1(0);
    reg(ep, EPOLL_CTL_ADD, r, EPOLLIN, 'M');
    reg(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLET, 'P');
    push_to(s, &a, al);
    CHECK(write(p[1], "p", 1) == 1, "write pipe");
    for (int i = 0; i < 4; i++)
        wait_into(t, cap, ep, 1, 0);
    wait_into(t, cap, ep, MAXEV, 0); /* room for everything: was the pipe's event lost? */
    close(ep);
    close(p[0]);
    close(p[1]);
    close(r);
}

/* maxevents 1: a ready member beside a one-shot pipe. */
static void sc_max1_oneshot_pipe(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 0);
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe");
    int ep = epoll_create1(0);
    reg(ep, EPOLL_CTL_ADD, r, EPOLLIN, 'M');
    reg(ep, EPOLL_CTL_ADD, p[0], EPOLLIN | EPOLLONESHOT, 'P');
    push_to(s, &a, al);
    CHECK(write(p[1], "p", 1) == 1, "write pipe");
    for (int i = 0; i < 4; i++)
        wait_into(t, cap, ep, 1, 0);
    wait_into(t, cap, ep, MAXEV, 0); /* room for everything: was the pipe's event lost? */
    close(ep);
    close(p[0]);
    close(p[1]);
    close(r);
}

/* maxevents 1: a ready member beside a level-triggered pipe: both get turns. */
static void sc_max1_lt_pipe(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a;
    socklen_t al = 0;
    int r = rx_new(s, &a, &al, 0);
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe");
    int ep = epoll_create1(0);
    reg(ep, EPOLL_CTL_ADD, r, EPOLLIN, 'M');
    reg(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 'P');
    push_to(s, &a, al);
    CHECK(write(p[1], "p", 1) == 1, "write pipe");
    for (int i = 0; i < 4; i++)
        wait_into(t, cap, ep, 1, 0);
    close(ep);
    close(p[0]);
    close(p[1]);
    close(r);
}

/* Three ready members, maxevents 2: all three are reported in turn. */
static void sc_max2_three_members(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a[3];
    socklen_t al[3] = {0, 0, 0};
    int r[3];
    int ep = epoll_create1(0);
    for (int i = 0; i < 3; i++) {
        r[i] = rx_new(s, &a[i], &al[i], 0);
        reg(ep, EPOLL_CTL_ADD, r[i], EPOLLIN, (uint64_t)('A' + i));
    }
    if (s->group)
        push_to(s, NULL, 0);
    else
        for (int i = 0; i < 3; i++)
            push_to(s, &a[i], al[i]);
    for (int i = 0; i < 3; i++)
        wait_into(t, cap, ep, 2, 0);
    for (int i = 0; i < 3; i++) {
        drain(r[i]);
        close(r[i]);
    }
    close(ep);
}

/* The same, edge-triggered: each reported exactly once over the calls. */
static void sc_max2_three_members_et(struct side *s, char *t, size_t cap)
{
    struct sockaddr_un a[3];
    socklen_t al[3] = {0, 0, 0};
    int r[3];
    int ep = epoll_create1(0);
    for (int i = 0; i < 3; i++) {
        r[i] = rx_new(s, &a[i], &al[i], 0);
        reg(ep, EPOLL_CTL_ADD, r[i], EPOLLIN | EPOLLET, (uint64_t)('A' + i));
    }
    if (s->group)
        push_to(s, NULL, 0);
    else
        for (int i = 0; i < 3; i++)
            push_to(s, &a[i], al[i]);
    for (int i = 0; i < 3; i++)
        wait_into(t, cap, ep, 2, 0);
    for (int i = 0; i < 3; i++) {
        drain(r[i]);
        close(r[i]);
    }
    close(ep);
}

int main(void)
{
    tu_start("t_epoll_kernel");
    compare("EPOLLET added while a message waits; 2nd call; after a new message", sc_et_add_pending, 1);
    compare("EPOLLET, 2 messages; 2nd call; read 1; EPOLL_CTL_MOD (data B) with 1 waiting; 2nd call",
            sc_et_mod_pending, 1);
    compare("EPOLLET|EPOLLONESHOT, 3 messages; read 1, MOD; read 1; MOD; read 1, MOD (empty)",
            sc_et_oneshot_rearm, 1);
    compare("EPOLLOUT|EPOLLET on a connected sender; 2 more calls (50 ms); filled (50 ms); "
            "receiver drained; once more (50 ms)",
            sc_out_et, 1);
    compare("maxevents 1, a ready member (LT) and an edge-triggered pipe: 4 calls, then maxevents 8", sc_max1_et_pipe, 0);
    compare("maxevents 1, a ready member (LT) and a one-shot pipe: 4 calls, then maxevents 8", sc_max1_oneshot_pipe, 0);
    compare("maxevents 1, a ready member and a ready pipe, both LT: 4 calls", sc_max1_lt_pipe, 0);
    compare("maxevents 2, three ready members (LT): 3 calls", sc_max2_three_members, 0);
    compare("maxevents 2, three ready members (ET): 3 calls", sc_max2_three_members_et, 0);
    if (failures) {
        fprintf(stderr, "FAIL: %d scenario(s) differ from the kernel's behaviour (see above)\n", failures);
        return 1;
    }
    return tu_done();
}
