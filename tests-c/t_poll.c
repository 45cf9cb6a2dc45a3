/*
 * t_poll: SPEC 5.6-5.7 through every poll-style entry point: poll, ppoll,
 * __poll_chk, __ppoll_chk, select and pselect.
 *
 * For each entry point, on a group of its own:
 *   - POLLIN on a member: clear while nothing waits (timeout 0, and a real
 *     timeout that must expire), set when a group message waits, and a
 *     sleeping poller wakes when another process sends; after POLLIN a
 *     non-blocking receive gets the message (no spurious readiness).
 *   - POLLOUT on a socket connect()ed to the group: set while every member
 *     without DROP_WHEN_FULL has room; clear (and the poll times out) while a
 *     member that never reads is full; a sleeping poller wakes when another
 *     process reads from that member; after POLLOUT a small non-blocking send
 *     succeeds; a full DROP_WHEN_FULL member does not clear it.
 * And once: POLLIN for an ordinary datagram waiting on a member, no POLLIN
 * on the group socket G itself.
 *
 * Fortified entry points: __poll_chk and __ppoll_chk are called explicitly
 * (declared here, exported by glibc), so every build exercises them, and
 * "poll (compiler's choice)" calls poll() on an array of known size with an
 * nfds the compiler cannot see: the fortify build turns that call into
 * __poll_chk / __ppoll_chk (check: nm -D build/fortify/t_poll), and the
 * fortify build also checks at run time that an nfds beyond the array
 * aborts, which only a fortified call does. Plain "poll" and "ppoll" go
 * through function pointers, which always name the unfortified symbols.
 */
#include "testutil.h"

#include <sys/select.h>

/* glibc exports these in every build; the headers declare them only when fortifying. */
extern int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
extern int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
                       const sigset_t *ss, size_t fdslen);

#define PAYLOAD 200
#define EARLY_SLACK_MS 20 /* a timeout may end at most this much early ...  */
#define LATE_SLACK_MS 300 /* ... or this much late (a loaded, shared machine) */

static int (*volatile poll_ptr)(struct pollfd *, nfds_t, int) = poll;
static int (*volatile ppoll_ptr)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *) = ppoll;

static struct timespec ms_ts(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    return ts;
}

/* ---- the entry points, all as "wait for ev on fd; return revents" ---- */

static int w_poll(struct pollfd *p, int ms) { return poll_ptr(p, 1, ms); }

static int w_ppoll(struct pollfd *p, int ms)
{
    struct timespec ts = ms_ts(ms);
    return ppoll_ptr(p, 1, ms < 0 ? NULL : &ts, NULL);
}

/* A direct call on an array of known size (fortify build: __poll_chk). */
static int w_poll_direct(struct pollfd *p, int ms)
{
    struct pollfd a[4];
    memset(a, 0, sizeof a);
    a[0] = *p;
    int r = poll(a, tu_opaque_size(1), ms);
    int e = errno;
    *p = a[0];
    errno = e;
    return r;
}

static int w_ppoll_direct(struct pollfd *p, int ms)
{
    struct pollfd a[4];
    memset(a, 0, sizeof a);
    a[0] = *p;
    struct timespec ts = ms_ts(ms);
    sigset_t none;
    sigemptyset(&none);
    int r = ppoll(a, tu_opaque_size(1), ms < 0 ? NULL : &ts, &none);
    int e = errno;
    *p = a[0];
    errno = e;
    return r;
}

static int w_poll_chk(struct pollfd *p, int ms) { return __poll_chk(p, 1, ms, sizeof *p); }

static int w_ppoll_chk(struct pollfd *p, int ms)
{
    struct timespec ts = ms_ts(ms);
    return __ppoll_chk(p, 1, ms < 0 ? NULL : &ts, NULL, sizeof *p);
}

static short from_sets(int fd, fd_set *rd, fd_set *wr)
{
    short r = 0;
    if (FD_ISSET(fd, rd))
        r |= POLLIN;
    if (FD_ISSET(fd, wr))
        r |= POLLOUT;
    return r;
}

static int w_select(struct pollfd *p, int ms)
{
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    if (p->events & POLLIN)
        FD_SET(p->fd, &rd);
    if (p->events & POLLOUT)
        FD_SET(p->fd, &wr);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int r = select(p->fd + 1, &rd, &wr, NULL, ms < 0 ? NULL : &tv);
    if (r >= 0)
        p->revents = from_sets(p->fd, &rd, &wr);
    return r;
}

static int w_pselect(struct pollfd *p, int ms)
{
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    if (p->events & POLLIN)
        FD_SET(p->fd, &rd);
    if (p->events & POLLOUT)
        FD_SET(p->fd, &wr);
    struct timespec ts = ms_ts(ms);
    sigset_t none;
    sigemptyset(&none);
    int r = pselect(p->fd + 1, &rd, &wr, NULL, ms < 0 ? NULL : &ts, &none);
    if (r >= 0)
        p->revents = from_sets(p->fd, &rd, &wr);
    return r;
}

struct api {
    const char *name;
    int (*wait)(struct pollfd *p, int ms);
};

static const struct api apis[] = {
    {"poll", w_poll},
    {"ppoll", w_ppoll},
    {"poll (compiler's choice: __poll_chk when fortified)", w_poll_direct},
    {"ppoll (compiler's choice: __ppoll_chk when fortified)", w_ppoll_direct},
    {"__poll_chk", w_poll_chk},
    {"__ppoll_chk", w_ppoll_chk},
    {"select", w_select},
    {"pselect", w_pselect},
};
#define NAPIS (int)(sizeof apis / sizeof apis[0])

/* Wait for ev on fd; returns revents (0: timed out). *secs: how long it took. */
static short wait_for(const struct api *a, int fd, short ev, int ms, double *secs)
{
    struct pollfd p = {.fd = fd, .events = ev, .revents = 0};
    double t0 = tu_now();
    int r = a->wait(&p, ms);
    if (secs)
        *secs = tu_now() - t0;
    CHECK(r >= 0, "%s(fd %d, events 0x%x, %d ms) failed", a->name, fd, ev, ms);
    /* poll counts descriptors, select counts bits */
    int want = a->wait == w_select || a->wait == w_pselect
                   ? !!(p.revents & POLLIN) + !!(p.revents & POLLOUT)
                   : p.revents != 0;
    CHECK(r == want, "%s returned %d, but the result says 0x%x", a->name, r, p.revents);
    return p.revents;
}

/* Nothing becomes ready: the call must return 0 after about ms. */
static double expect_timeout(const struct api *a, int fd, short ev, int ms, const char *what)
{
    double secs;
    short rev = wait_for(a, fd, ev, ms, &secs);
    CHECK(rev == 0, "%s: %s: expected a timeout, got revents 0x%x", a->name, what, rev);
    CHECK(secs * 1000 >= ms - EARLY_SLACK_MS, "%s: %s: a %d ms timeout ended after %.1f ms", a->name,
          what, ms, secs * 1000);
    CHECK(secs * 1000 <= ms + LATE_SLACK_MS, "%s: %s: a %d ms timeout ended only after %.1f ms",
          a->name, what, ms, secs * 1000);
    return secs;
}

/* ---- groups and helpers ---- */

struct group {
    struct unix_mreq m;
    int g;
};

static void group_new(struct group *gr, const char *tag)
{
    tu_abstract_group(&gr->m, tag);
    gr->g = tu_create_group(&gr->m);
}

static int join_rcvbuf(const struct group *gr, unsigned flags, int rcvbuf)
{
    int fd = tu_dgram();
    if (rcvbuf > 0)
        tu_setint(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf); /* before JOIN: the queue's capacity */
    tu_join_fd(fd, &gr->m, flags);
    return fd;
}

static int connected_to(const struct group *gr)
{
    int s = tu_dgram();
    CHECK(connect(s, (const struct sockaddr *)&gr->m.address, unix_mreq_addrlen(&gr->m)) == 0,
          "connect to the group");
    return s;
}

static struct unix_group_stats stats_of(int fd, const struct group *gr)
{
    union {
        struct unix_mreq m;
        struct unix_group_stats s;
    } u;
    memset(&u, 0, sizeof u);
    u.m = gr->m;
    socklen_t len = sizeof u;
    CHECK(getsockopt(fd, SOL_UNIX, UNIX_GROUP_STATS, &u, &len) == 0, "UNIX_GROUP_STATS");
    return u.s;
}

/*
 * Fill the members with MSG_DONTWAIT sends on s: PAYLOAD-byte messages until
 * EAGAIN, then 1-byte messages until EAGAIN (so that not even the 1-byte
 * message POLLOUT speaks of fits). Returns how many big messages went.
 */
static int fill(int s, uint32_t sender)
{
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    int big = -1;
    for (int i = 0;; i++) {
        CHECK(i < 100000, "no EAGAIN after %d non-blocking sends: the full member holds nobody back", i);
        size_t len = big < 0 ? tu_make_msg(buf, sizeof buf, sender, (uint32_t)i, PAYLOAD) : 1;
        ssize_t r = send(s, buf, len, MSG_DONTWAIT);
        if (r == -1 && errno == EAGAIN) {
            if (big >= 0)
                return big;
            big = i;
            continue;
        }
        CHECK(r == (ssize_t)len, "non-blocking send %d (%zu bytes) returned %zd", i, len, r);
    }
}

/* ---- children ---- */

struct delayed {
    int fd;                     /* the member to read from (inherited), or -1 */
    const struct unix_mreq *to; /* the group to send to, or NULL */
    int delay_ms;
    const char *text;
};

static int delayed_child(void *arg)
{
    struct delayed *d = arg;
    tu_sleep_ms(d->delay_ms);
    if (d->to) {
        int s = tu_dgram();
        size_t len = strlen(d->text);
        CHECK(tu_sendto_group(s, d->text, len, 0, d->to) == (ssize_t)len, "delayed send");
    }
    if (d->fd >= 0) {
        char buf[PAYLOAD + 64];
        ssize_t n = recv(d->fd, buf, sizeof buf, MSG_DONTWAIT);
        CHECK(n > 0, "delayed read from the full member");
    }
    return 0;
}

/* ---- POLLIN ---- */

static void check_pollin(const struct api *a)
{
    struct group gr;
    group_new(&gr, "in");
    int m = join_rcvbuf(&gr, 0, 0);
    int tx = tu_dgram();

    CHECK(wait_for(a, m, POLLIN, 0, NULL) == 0, "%s: POLLIN on an empty member", a->name);
    double secs = expect_timeout(a, m, POLLIN, 100, "empty member");

    CHECK(tu_sendto_group(tx, "ping", 4, 0, &gr.m) == 4, "send");
    short rev = wait_for(a, m, POLLIN, 0, NULL);
    CHECK(rev & POLLIN, "%s: no POLLIN with a group message waiting (revents 0x%x)", a->name, rev);
    rev = wait_for(a, m, POLLIN | POLLOUT, 1000, NULL);
    CHECK(rev & POLLIN, "%s: POLLIN|POLLOUT asked: no POLLIN (revents 0x%x)", a->name, rev);
    char buf[64];
    ssize_t n = recv(m, buf, sizeof buf, MSG_DONTWAIT);
    CHECK(n == 4 && memcmp(buf, "ping", 4) == 0, "%s: after POLLIN, a non-blocking recv gave %zd",
          a->name, n);
    CHECK(wait_for(a, m, POLLIN, 0, NULL) == 0, "%s: POLLIN after the only message was read", a->name);
    CHECK(wait_for(a, gr.g, POLLIN, 0, NULL) == 0, "%s: POLLIN on the group socket G", a->name);

    /* a sleeping poller wakes when another process sends */
    struct delayed d = {.fd = -1, .to = &gr.m, .delay_ms = 100, .text = "wake up"};
    pid_t c = tu_spawn("delayed sender", delayed_child, &d);
    rev = wait_for(a, m, POLLIN, 10000, &secs);
    CHECK(rev & POLLIN, "%s: the sleeping poller woke without POLLIN (0x%x)", a->name, rev);
    CHECK(secs > 0.05, "%s: woke after %.1f ms, before the message was sent", a->name, secs * 1e3);
    tu_wait_child(c);
    n = recv(m, buf, sizeof buf, MSG_DONTWAIT);
    CHECK(n == 7 && memcmp(buf, "wake up", 7) == 0, "%s: recv after waking gave %zd", a->name, n);

    /* an infinite wait wakes too */
    d.delay_ms = 50;
    c = tu_spawn("delayed sender", delayed_child, &d);
    rev = wait_for(a, m, POLLIN, -1, &secs);
    CHECK(rev & POLLIN, "%s: infinite wait woke without POLLIN (0x%x)", a->name, rev);
    tu_wait_child(c);
    tu_expect_str(m, "wake up", "after an infinite wait");
    tu_ok("%s: POLLIN clear on an empty member (timeout honoured), set when a group message waits, "
          "a sleeping poller (timeout and infinite) wakes on a send from another process; then "
          "MSG_DONTWAIT recv gets it; G never POLLIN",
          a->name);
    close(m);
    close(tx);
    close(gr.g);
}

/* ---- POLLOUT ---- */

static void check_pollout(const struct api *a)
{
    struct group gr;
    group_new(&gr, "out");
    int full = join_rcvbuf(&gr, 0, 4096);                            /* never reads */
    int drop = join_rcvbuf(&gr, UNIX_MREQ_DROP_WHEN_FULL, 2048);     /* never reads either */
    int s = connected_to(&gr);

    short rev = wait_for(a, s, POLLOUT, 0, NULL);
    CHECK(rev & POLLOUT, "%s: no POLLOUT on a connected socket with empty queues (0x%x)", a->name, rev);
    CHECK(send(s, "x", 1, MSG_DONTWAIT) == 1, "%s: after POLLOUT, a 1-byte send failed", a->name);
    tu_expect_str(full, "x", "the full member");
    tu_expect_str(drop, "x", "the drop-when-full member");
    int k = fill(s, 1);
    CHECK(k >= 2, "the full member took only %d message(s)", k);
    rev = wait_for(a, s, POLLOUT, 0, NULL);
    CHECK(!(rev & POLLOUT), "%s: POLLOUT although a member without DROP_WHEN_FULL is full (0x%x)",
          a->name, rev);
    expect_timeout(a, s, POLLOUT, 150, "full member");

    /* the full member reads one (big) message in another process: the poller wakes */
    struct delayed d = {.fd = full, .to = NULL, .delay_ms = 100};
    pid_t c = tu_spawn("delayed reader", delayed_child, &d);
    double secs;
    rev = wait_for(a, s, POLLOUT, 10000, &secs);
    CHECK(rev & POLLOUT, "%s: the sleeping poller woke without POLLOUT (0x%x)", a->name, rev);
    CHECK(secs > 0.05, "%s: POLLOUT after %.1f ms, before the member read", a->name, secs * 1e3);
    tu_wait_child(c);
    CHECK(send(s, "y", 1, MSG_DONTWAIT) == 1, "%s: after POLLOUT, a 1-byte non-blocking send failed",
          a->name);
    tu_ok("%s: POLLOUT set with room; clear while a member that never reads is full (a %d ms "
          "timeout honoured); a sleeping poller woke %.0f ms later when that member read one "
          "message in another process; then a 1-byte MSG_DONTWAIT send succeeded",
          a->name, 150, secs * 1e3);

    /* the drop-when-full member is full; drain the other one completely */
    char buf[PAYLOAD + 64];
    while (recv(full, buf, sizeof buf, MSG_DONTWAIT) >= 0) {
    }
    CHECK(errno == EAGAIN, "draining the full member");
    struct unix_group_stats before = stats_of(drop, &gr);
    CHECK(before.queued_messages > 0, "the drop-when-full member holds nothing");
    rev = wait_for(a, s, POLLOUT, 0, NULL);
    CHECK(rev & POLLOUT, "%s: no POLLOUT: a full DROP_WHEN_FULL member (%llu messages, %llu bytes "
          "queued, capacity %llu) clears it (revents 0x%x)",
          a->name, before.queued_messages, before.queued_bytes, before.capacity, rev);
    unsigned char msg[sizeof(struct tu_msg_hdr) + PAYLOAD];
    size_t len = tu_make_msg(msg, sizeof msg, 2, 0, PAYLOAD);
    CHECK(send(s, msg, len, MSG_DONTWAIT) == (ssize_t)len, "%s: send after POLLOUT failed", a->name);
    struct unix_group_stats after = stats_of(drop, &gr);
    CHECK(after.dropped > before.dropped, "the drop-when-full member was not full after all "
          "(dropped %llu -> %llu)", before.dropped, after.dropped);
    tu_ok("%s: a full DROP_WHEN_FULL member (%llu queued) leaves POLLOUT set; the send after it "
          "succeeded and that member dropped it",
          a->name, before.queued_messages);
    close(full);
    close(drop);
    close(s);
    close(gr.g);
}

/* ---- once ---- */

static void check_ordinary_datagram(void)
{
    struct group gr;
    group_new(&gr, "ord");
    int m = join_rcvbuf(&gr, 0, 0);
    struct sockaddr_un a;
    socklen_t alen = tu_abstract_addr(&a, "ordmember");
    CHECK(bind(m, (struct sockaddr *)&a, alen) == 0, "bind the member");
    int tx = tu_dgram();
    for (int i = 0; i < NAPIS; i++)
        CHECK(wait_for(&apis[i], m, POLLIN, 0, NULL) == 0, "%s: POLLIN on an empty member", apis[i].name);
    CHECK(sendto(tx, "plain", 5, 0, (struct sockaddr *)&a, alen) == 5, "ordinary sendto the member");
    for (int i = 0; i < NAPIS; i++) {
        short rev = wait_for(&apis[i], m, POLLIN, 1000, NULL);
        CHECK(rev & POLLIN, "%s: no POLLIN with an ordinary datagram waiting on a member (0x%x)",
              apis[i].name, rev);
    }
    tu_expect_str(m, "plain", "ordinary datagram");
    tu_ok("an ordinary datagram waiting on a member gives POLLIN through every entry point");
    close(m);
    close(tx);
    close(gr.g);
}

#if defined(__OPTIMIZE__) && defined(_FORTIFY_SOURCE) && _FORTIFY_SOURCE > 0
static int overflow_poll(void *arg)
{
    int which = (int)(intptr_t)arg;
    struct pollfd a[2];
    memset(a, 0, sizeof a);
    a[0].fd = a[1].fd = -1;
    struct timespec zero = {0, 0};
    close(2); /* glibc's "buffer overflow detected" message is expected */
    if (which == 0)
        poll(a, tu_opaque_size(3), 0);
    else
        ppoll(a, tu_opaque_size(3), &zero, NULL);
    return 0; /* not fortified: the call just returned */
}

static void check_fortified(void)
{
    for (int which = 0; which < 2; which++) {
        pid_t c = tu_spawn(which ? "ppoll overflow" : "poll overflow", overflow_poll,
                           (void *)(intptr_t)which);
        int status;
        pid_t r;
        while ((r = waitpid(c, &status, 0)) == -1 && errno == EINTR) {
        }
        CHECK(r == c, "waitpid");
        tu_forget_child(tu_child_index(c));
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "%s with nfds 3 on a 2-entry array did not abort (status 0x%x): the call is not "
              "fortified, so this build does not test __%s_chk",
              which ? "ppoll" : "poll", status, which ? "ppoll" : "poll");
    }
    tu_ok("fortify build: poll/ppoll on a known-size array are fortified (nfds beyond it aborts)");
}
#endif

int main(void)
{
    tu_start("t_poll");
#if defined(__OPTIMIZE__) && defined(_FORTIFY_SOURCE) && _FORTIFY_SOURCE > 0
    check_fortified();
#endif
    for (int i = 0; i < NAPIS; i++) {
        check_pollin(&apis[i]);
        check_pollout(&apis[i]);
    }
    check_ordinary_datagram();
    return tu_done();
}
