/*
 * t_poll_mixed: group sockets beside everything else in one call, through
 * poll, ppoll, select, pselect, epoll_wait, epoll_pwait and epoll_pwait2.
 *
 *   - Mixed sets: a member (POLLIN) and a socket connected to another group
 *     (POLLOUT) beside a pipe, a TCP loopback connection, a timerfd and an
 *     ordinary unix datagram socket. Each source in turn becomes ready ~40 ms
 *     into a sleeping call (another process acts, or the timer expires):
 *     the call wakes and reports exactly that one. Then all at once: one
 *     call reports all six.
 *   - Timeouts with nothing ready: 0 after the timeout, neither early nor
 *     late by more than EARLY/LATE_SLACK_MS; select() writes the time left
 *     into its timeval, as Linux does.
 *   - Signals: a handler interrupts a sleeping call with EINTR, with and
 *     without SA_RESTART (these calls are never restarted); the call's
 *     signal mask (ppoll, pselect, epoll_pwait, epoll_pwait2): a signal
 *     blocked in the process but not by the mask interrupts it (also one
 *     already pending when the call starts), one blocked by the mask does not
 *     (the call times out, then the handler runs).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/timerfd.h>

#define EARLY_SLACK_MS 20
#define LATE_SLACK_MS 300
#define MAXFDS 8

enum kind { K_POLL, K_PPOLL, K_SELECT, K_PSELECT, K_EPOLL_WAIT, K_EPOLL_PWAIT, K_EPOLL_PWAIT2, NKINDS };
static const char *kind_names[NKINDS] = {"poll", "ppoll", "select", "pselect", "epoll_wait", "epoll_pwait",
                                         "epoll_pwait2"};
static int has_mask(enum kind k) { return k == K_PPOLL || k == K_PSELECT || k == K_EPOLL_PWAIT || k == K_EPOLL_PWAIT2; }

/* The same descriptors, as a pollfd array and as an epoll set (data = index). */
struct waitset {
    struct pollfd p[MAXFDS];
    const char *name[MAXFDS];
    int n;
    int ep;
};

static void ws_init(struct waitset *w)
{
    memset(w, 0, sizeof *w);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(w->ep >= 0, "epoll_create1");
}

static void ws_add(struct waitset *w, int fd, short ev, const char *name)
{
    CHECK(w->n < MAXFDS, "waitset full");
    w->p[w->n] = (struct pollfd){.fd = fd, .events = ev};
    w->name[w->n] = name;
    struct epoll_event e = {.events = (ev & POLLIN ? EPOLLIN : 0) | (ev & POLLOUT ? EPOLLOUT : 0),
                            .data.u64 = 0xabcd000000000000ull | (uint64_t)w->n};
    CHECK(epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) == 0, "epoll_ctl ADD %s", name);
    w->n++;
}

static struct timespec ms_ts(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    return ts;
}

/*
 * Wait with kind k (ms < 0: forever; mask: the call's signal mask, only for
 * the kinds that take one). Fills revents; returns how many descriptors are
 * ready, or -1 with errno.
 */
static int ws_wait(struct waitset *w, enum kind k, int ms, const sigset_t *mask)
{
    struct timespec ts = ms_ts(ms);
    const struct timespec *tsp = ms < 0 ? NULL : &ts;
    for (int i = 0; i < w->n; i++)
        w->p[i].revents = 0;
    int r, ready = 0;
    switch (k) {
    case K_POLL:
    case K_PPOLL:
        r = k == K_POLL ? poll(w->p, (nfds_t)w->n, ms) : ppoll(w->p, (nfds_t)w->n, tsp, mask);
        if (r < 0)
            return -1;
        for (int i = 0; i < w->n; i++)
            ready += w->p[i].revents != 0;
        CHECK(r == ready, "%s returned %d, %d revents set", kind_names[k], r, ready);
        return r;
    case K_SELECT:
    case K_PSELECT: {
        fd_set rd, wr;
        FD_ZERO(&rd);
        FD_ZERO(&wr);
        int maxfd = -1;
        for (int i = 0; i < w->n; i++) {
            if (w->p[i].events & POLLIN)
                FD_SET(w->p[i].fd, &rd);
            if (w->p[i].events & POLLOUT)
                FD_SET(w->p[i].fd, &wr);
            if (w->p[i].fd > maxfd)
                maxfd = w->p[i].fd;
        }
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        r = k == K_SELECT ? select(maxfd + 1, &rd, &wr, NULL, ms < 0 ? NULL : &tv)
                          : pselect(maxfd + 1, &rd, &wr, NULL, tsp, mask);
        if (r < 0)
            return -1;
        int bits = 0;
        for (int i = 0; i < w->n; i++) {
            if (FD_ISSET(w->p[i].fd, &rd))
                w->p[i].revents |= POLLIN, bits++;
            if (FD_ISSET(w->p[i].fd, &wr))
                w->p[i].revents |= POLLOUT, bits++;
            ready += w->p[i].revents != 0;
        }
        CHECK(r == bits, "%s returned %d, %d bits set", kind_names[k], r, bits);
        return ready;
    }
    default: {
        struct epoll_event ev[MAXFDS + 2];
        if (k == K_EPOLL_WAIT)
            r = epoll_wait(w->ep, ev, MAXFDS + 2, ms);
        else if (k == K_EPOLL_PWAIT)
            r = epoll_pwait(w->ep, ev, MAXFDS + 2, ms, mask);
        else
            r = epoll_pwait2(w->ep, ev, MAXFDS + 2, tsp, mask);
        if (r < 0)
            return -1;
        for (int j = 0; j < r; j++) {
            uint64_t d = ev[j].data.u64;
            CHECK((d >> 48) == 0xabcd && (d & 0xffff) < (uint64_t)w->n, "%s: unknown data 0x%llx",
                  kind_names[k], (unsigned long long)d);
            struct pollfd *p = &w->p[d & 0xffff];
            CHECK(p->revents == 0, "%s reported %s twice", kind_names[k], w->name[d & 0xffff]);
            p->revents = (short)((ev[j].events & EPOLLIN ? POLLIN : 0) | (ev[j].events & EPOLLOUT ? POLLOUT : 0) |
                                 (ev[j].events & EPOLLERR ? POLLERR : 0) | (ev[j].events & EPOLLHUP ? POLLHUP : 0));
            CHECK(p->revents != 0, "%s: event 0x%x", kind_names[k], ev[j].events);
        }
        return r;
    }
    }
}

static void ws_close(struct waitset *w) { close(w->ep); }

/* ---- the sources ---- */

static struct unix_mreq ga, gb;   /* ga: the member's group; gb: the sender's */
static int ga_g, gb_g;
static int member;                /* member of ga */
static int sender;                /* connected to gb */
static int full;                  /* member of gb that only reads when told */
static int pipefd[2];
static int tcp_client, tcp_server;
static int tfd;                   /* timerfd */
static int udgram;                /* an ordinary bound unix datagram socket */
static struct sockaddr_un uaddr;
static socklen_t ualen;

enum src { S_PIPE, S_TCP, S_TIMER, S_UNIX, S_MEMBER, S_POLLOUT, NSRC };
static const char *src_names[NSRC] = {"pipe", "TCP socket", "timerfd", "ordinary unix socket", "group member",
                                      "sender connected to a group (POLLOUT)"};

static void tcp_pair(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(l >= 0, "socket(AF_INET)");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0, "bind/listen");
    CHECK(getsockname(l, (struct sockaddr *)&a, &al) == 0, "getsockname");
    tcp_client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(connect(tcp_client, (struct sockaddr *)&a, sizeof a) == 0, "connect TCP");
    tcp_server = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    CHECK(tcp_server >= 0, "accept");
    tu_setint(tcp_client, IPPROTO_TCP, TCP_NODELAY, 1);
    close(l);
}

/* Fill gb's members from the sender until EAGAIN (200-byte, then 1-byte messages). */
static void fill_sender(void)
{
    char buf[200];
    memset(buf, 'f', sizeof buf);
    size_t len = sizeof buf;
    for (int i = 0;; i++) {
        CHECK(i < 100000, "no EAGAIN while filling");
        ssize_t r = send(sender, buf, len, MSG_DONTWAIT);
        if (r == -1 && errno == EAGAIN) {
            if (len == 1)
                return;
            len = 1;
            continue;
        }
        CHECK(r == (ssize_t)len, "fill: send");
    }
}

static void setup(void)
{
    tu_abstract_group(&ga, "mixA");
    tu_abstract_group(&gb, "mixB");
    ga_g = tu_create_group(&ga);
    gb_g = tu_create_group(&gb);
    member = tu_join(&ga, 0);
    full = tu_dgram();
    tu_setint(full, SOL_SOCKET, SO_RCVBUF, 4096);
    tu_join_fd(full, &gb, 0);
    sender = tu_dgram();
    CHECK(connect(sender, (struct sockaddr *)&gb.address, unix_mreq_addrlen(&gb)) == 0, "connect to group");
    fill_sender();
    CHECK(pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
    tcp_pair();
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    CHECK(tfd >= 0, "timerfd_create");
    udgram = tu_dgram();
    ualen = tu_abstract_addr(&uaddr, "mixplain");
    CHECK(bind(udgram, (struct sockaddr *)&uaddr, ualen) == 0, "bind");
}

static void arm_timer(int ms)
{
    struct itimerspec it = {.it_value = ms_ts(ms)};
    if (ms == 0)
        it.it_value.tv_nsec = 1000; /* 1 us: 0 would disarm */
    CHECK(timerfd_settime(tfd, 0, &it, NULL) == 0, "timerfd_settime");
}

/* Make source s ready (from whichever process runs this). */
static void trigger(enum src s)
{
    int t = tu_dgram();
    char buf[512];
    switch (s) {
    case S_PIPE:
        CHECK(write(pipefd[1], "p", 1) == 1, "write pipe");
        break;
    case S_TCP:
        CHECK(send(tcp_client, "t", 1, 0) == 1, "send TCP");
        break;
    case S_TIMER:
        arm_timer(0);
        break;
    case S_UNIX:
        CHECK(sendto(t, "u", 1, 0, (struct sockaddr *)&uaddr, ualen) == 1, "sendto unix");
        break;
    case S_MEMBER:
        CHECK(tu_sendto_group(t, "g", 1, 0, &ga) == 1, "send to the group");
        break;
    case S_POLLOUT:
        /* drain it: the oldest messages may be 1-byte ones, too small to make room */
        CHECK(recv(full, buf, sizeof buf, MSG_DONTWAIT) > 0, "read from the full member");
        while (recv(full, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        break;
    default:
        break;
    }
    close(t);
}

/* Consume what source s made ready, so that it is not ready any more. */
static void consume(enum src s)
{
    char buf[64];
    uint64_t ticks;
    switch (s) {
    case S_PIPE:
        CHECK(read(pipefd[0], buf, sizeof buf) == 1, "read pipe");
        break;
    case S_TCP:
        CHECK(recv(tcp_server, buf, sizeof buf, 0) == 1, "recv TCP");
        break;
    case S_TIMER:
        CHECK(read(tfd, &ticks, sizeof ticks) == sizeof ticks && ticks == 1, "read timerfd");
        break;
    case S_UNIX:
        CHECK(recv(udgram, buf, sizeof buf, MSG_DONTWAIT) == 1, "recv unix");
        break;
    case S_MEMBER:
        CHECK(recv(member, buf, sizeof buf, MSG_DONTWAIT) == 1, "recv member");
        break;
    case S_POLLOUT:
        CHECK(send(sender, "s", 1, MSG_DONTWAIT) == 1, "after POLLOUT, a 1-byte send");
        fill_sender();
        break;
    default:
        break;
    }
}

struct delayed_trigger {
    enum src s;
    int delay_ms;
};

static int trigger_child(void *arg)
{
    struct delayed_trigger *d = arg;
    tu_sleep_ms(d->delay_ms);
    trigger(d->s);
    return 0;
}

static void build_mixed(struct waitset *w)
{
    ws_init(w);
    ws_add(w, pipefd[0], POLLIN, src_names[S_PIPE]);
    ws_add(w, tcp_server, POLLIN, src_names[S_TCP]);
    ws_add(w, tfd, POLLIN, src_names[S_TIMER]);
    ws_add(w, udgram, POLLIN, src_names[S_UNIX]);
    ws_add(w, member, POLLIN, src_names[S_MEMBER]);
    ws_add(w, sender, POLLOUT, src_names[S_POLLOUT]);
}

static void check_mixed(enum kind k)
{
    const char *kn = kind_names[k];
    struct waitset w;
    build_mixed(&w);
    CHECK(ws_wait(&w, k, 0, NULL) == 0, "%s: something is ready in the quiet mixed set", kn);
    double worst = 0;
    for (int s = 0; s < NSRC; s++) {
        pid_t c = -1;
        struct delayed_trigger d = {(enum src)s, 40};
        if (s == S_TIMER)
            arm_timer(40);
        else
            c = tu_spawn("trigger", trigger_child, &d);
        double t0 = tu_now();
        int r = ws_wait(&w, k, 10000, NULL);
        double secs = tu_now() - t0;
        CHECK(r == 1, "%s: waiting for the %s: %d ready (errno %d)", kn, src_names[s], r, r < 0 ? errno : 0);
        short want = s == S_POLLOUT ? POLLOUT : POLLIN;
        for (int i = 0; i < w.n; i++)
            CHECK(w.p[i].revents == (i == s ? want : 0), "%s: waiting for the %s: %s has revents 0x%x", kn,
                  src_names[s], w.name[i], w.p[i].revents);
        CHECK(secs >= 0.030, "%s: the %s was reported after %.1f ms, before it became ready", kn, src_names[s],
              secs * 1e3);
        if (secs > worst)
            worst = secs;
        if (c > 0)
            tu_wait_child(c);
        consume((enum src)s);
        CHECK(ws_wait(&w, k, 0, NULL) == 0, "%s: still ready after consuming the %s", kn, src_names[s]);
    }
    /* all at once */
    for (int s = 0; s < NSRC; s++)
        trigger((enum src)s);
    tu_sleep_ms(5);
    int r = ws_wait(&w, k, 1000, NULL);
    CHECK(r == NSRC, "%s: all six sources ready, %d reported", kn, r);
    for (int s = 0; s < NSRC; s++) {
        CHECK(w.p[s].revents == (s == S_POLLOUT ? POLLOUT : POLLIN), "%s: all ready: %s revents 0x%x", kn,
              src_names[s], w.p[s].revents);
        consume((enum src)s);
    }
    CHECK(ws_wait(&w, k, 0, NULL) == 0, "%s: ready after consuming everything", kn);
    ws_close(&w);
    tu_ok("%s: member, group sender (POLLOUT), pipe, TCP, timerfd, ordinary unix socket in one set: each "
          "woke a sleeping call alone, ~40 ms in (slowest %.1f ms); all six at once in one call",
          kn, worst * 1e3);
}

/* ---- timeouts ---- */

static void check_timeouts(enum kind k)
{
    const char *kn = kind_names[k];
    struct waitset w;
    build_mixed(&w);
    static const int ts[] = {0, 1, 20, 100, 250};
    char report[256] = "";
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        double t0 = tu_now();
        int r = ws_wait(&w, k, ts[i], NULL);
        double ms = (tu_now() - t0) * 1e3;
        CHECK(r == 0, "%s: timeout %d ms, nothing ready: returned %d", kn, ts[i], r);
        CHECK(ms >= ts[i] - EARLY_SLACK_MS, "%s: a %d ms timeout ended after %.2f ms (early)", kn, ts[i], ms);
        CHECK(ms <= ts[i] + LATE_SLACK_MS, "%s: a %d ms timeout ended after %.2f ms (late)", kn, ts[i], ms);
        snprintf(report + strlen(report), sizeof report - strlen(report), "%s%d->%.1f", i ? ", " : "", ts[i], ms);
    }
    ws_close(&w);
    tu_ok("%s: nothing ready: 0 after each timeout (ms asked->took: %s)", kn, report);
}

static int delayed_send_child(void *arg)
{
    (void)arg;
    tu_sleep_ms(100);
    trigger(S_MEMBER);
    return 0;
}

static void check_select_timeval(void)
{
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(member, &rd);
    struct timeval tv = {0, 500000};
    pid_t c = tu_spawn("delayed sender", delayed_send_child, NULL);
    int r = select(member + 1, &rd, NULL, NULL, &tv);
    tu_wait_child(c);
    CHECK(r == 1 && FD_ISSET(member, &rd), "select: %d", r);
    long left_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;
    CHECK(left_ms > 500 - 100 - LATE_SLACK_MS && left_ms <= 420,
          "select woke ~100 ms into a 500 ms timeout; the timeval says %ld ms are left", left_ms);
    consume(S_MEMBER);
    FD_ZERO(&rd);
    FD_SET(member, &rd);
    tv = (struct timeval){0, 30000};
    r = select(member + 1, &rd, NULL, NULL, &tv);
    CHECK(r == 0 && tv.tv_sec == 0 && tv.tv_usec == 0, "select timed out: %d, timeval %ld.%06ld left", r,
          (long)tv.tv_sec, (long)tv.tv_usec);
    tu_ok("select writes the time left into its timeval (%ld ms after waking ~100 ms into 500 ms; 0 after "
          "a timeout), as Linux does",
          left_ms);
}

/* ---- signals ---- */

static volatile sig_atomic_t handler_ran;
static double handler_time;

static void on_usr1(int sig)
{
    (void)sig;
    handler_ran = 1;
    handler_time = tu_now();
}

static void install(int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
}

static void block_usr1(int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    CHECK(sigprocmask(how, &s, NULL) == 0, "sigprocmask");
}

static pid_t parent_pid;

static int signal_child(void *arg)
{
    tu_sleep_ms((int)(intptr_t)arg);
    CHECK(kill(parent_pid, SIGUSR1) == 0, "kill");
    return 0;
}

static void check_signals(enum kind k)
{
    const char *kn = kind_names[k];
    struct waitset w;
    ws_init(&w);
    ws_add(&w, member, POLLIN, "member");
    ws_add(&w, pipefd[0], POLLIN, "pipe");
    ws_add(&w, sender, POLLOUT, "sender (full group)");
    sigset_t empty, usr1;
    sigemptyset(&empty);
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);

    for (int restart = 0; restart < 2; restart++) {
        install(restart);
        handler_ran = 0;
        pid_t c = tu_spawn("signaller", signal_child, (void *)(intptr_t)80);
        double t0 = tu_now();
        errno = 0;
        int r = ws_wait(&w, k, restart ? -1 : 10000, NULL);
        int e = errno;
        double ms = (tu_now() - t0) * 1e3;
        tu_wait_child(c);
        CHECK(r == -1 && e == EINTR, "%s, handler %s SA_RESTART: a signal ~80 ms into the call gave %d (errno %s)", kn,
              restart ? "with" : "without", r, tu_errname(e));
        CHECK(handler_ran, "%s: EINTR but the handler did not run", kn);
        CHECK(ms >= 60, "%s: EINTR after %.1f ms, before the signal was sent", kn, ms);
    }
    char extra[160] = "";
    if (has_mask(k)) {
        install(0);
        /* blocked in the process, unblocked by the call's mask: interrupts */
        block_usr1(SIG_BLOCK);
        handler_ran = 0;
        pid_t c = tu_spawn("signaller", signal_child, (void *)(intptr_t)80);
        int r = ws_wait(&w, k, 10000, &empty);
        int e = errno;
        tu_wait_child(c);
        CHECK(r == -1 && e == EINTR, "%s: SIGUSR1 blocked in the process, the call's mask empty: the signal gave %d "
              "(errno %s), expected EINTR", kn, r, tu_errname(e));
        CHECK(handler_ran, "%s: the handler did not run during the call", kn);
        /* already pending when the call starts */
        handler_ran = 0;
        CHECK(raise(SIGUSR1) == 0, "raise");
        CHECK(!handler_ran, "the handler ran although SIGUSR1 is blocked");
        double t0 = tu_now();
        r = ws_wait(&w, k, 5000, &empty);
        e = errno;
        double ms = (tu_now() - t0) * 1e3;
        CHECK(r == -1 && e == EINTR && handler_ran, "%s: SIGUSR1 pending, the call's mask unblocks it: gave %d (errno %s), "
              "handler %s", kn, r, tu_errname(e), handler_ran ? "ran" : "did not run");
        CHECK(ms < 1000, "%s: a pending signal took %.1f ms to interrupt", kn, ms);
        block_usr1(SIG_UNBLOCK);

        /* unblocked in the process, blocked by the call's mask: does not interrupt */
        handler_ran = 0;
        c = tu_spawn("signaller", signal_child, (void *)(intptr_t)80);
        t0 = tu_now();
        r = ws_wait(&w, k, 300, &usr1);
        e = errno;
        double end = tu_now();
        tu_wait_child(c);
        CHECK(r == 0, "%s: SIGUSR1 blocked by the call's mask interrupted it: %d (errno %s)", kn, r,
              r < 0 ? tu_errname(e) : "-");
        CHECK((end - t0) * 1e3 >= 300 - EARLY_SLACK_MS, "%s: returned after %.1f ms of a 300 ms timeout", kn,
              (end - t0) * 1e3);
        CHECK(handler_ran, "%s: the signal blocked during the call was not delivered after it", kn);
        CHECK(handler_time >= t0 + 0.3 - EARLY_SLACK_MS / 1e3, "%s: the handler ran %.1f ms into the call, while "
              "its mask blocked SIGUSR1", kn, (handler_time - t0) * 1e3);
        snprintf(extra, sizeof extra, "; its mask: a signal it unblocks interrupts (also one already pending), one "
                 "it blocks waits until the call timed out");
    }
    install(0);
    ws_close(&w);
    tu_ok("%s: a signal interrupts the sleeping call with EINTR, with and without SA_RESTART%s", kn, extra);
}

int main(void)
{
    tu_start("t_poll_mixed");
    parent_pid = getpid();
    setup();
    for (int k = 0; k < NKINDS; k++)
        check_mixed((enum kind)k);
    for (int k = 0; k < NKINDS; k++)
        check_timeouts((enum kind)k);
    check_select_timeval();
    for (int k = 0; k < NKINDS; k++)
        check_signals((enum kind)k);
    return tu_done();
}
