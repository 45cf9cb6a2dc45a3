/*
 * t_epoll: SPEC 5.6-5.7 through epoll.
 *
 * Part 1, for epoll_wait, epoll_pwait and epoll_pwait2, on sets made by
 * epoll_create and epoll_create1(EPOLL_CLOEXEC): EPOLLIN on a member (clear
 * while nothing waits, with the timeout honoured; set when a group message
 * waits; a sleeping waiter wakes when another process sends; then a
 * non-blocking recv gets the message) and EPOLLOUT on a socket connected to
 * the group (clear while a member without DROP_WHEN_FULL is full, a sleeping
 * waiter wakes when that member reads in another process, then a small
 * non-blocking send succeeds; a full DROP_WHEN_FULL member does not clear it).
 *
 * Part 2, epoll semantics with group members: level-triggered, EPOLLET,
 * EPOLLONESHOT re-armed with EPOLL_CTL_MOD, EPOLL_CTL_DEL, a registered
 * member closed or dup'ed, several members of one and of two groups in one
 * set, a set inherited across fork, a set closed while members are
 * registered. epoll_data always comes back exactly as registered.
 */
#include "testutil.h"

#include <sys/epoll.h>

#define PAYLOAD 200
#define EARLY_SLACK_MS 20
#define LATE_SLACK_MS 300
#define MAXEV 16

/* Distinctive epoll_data values: all 64 bits matter. */
#define D_MEMBER UINT64_C(0xfeedfacecafebeef)
#define D_SENDER UINT64_C(0x8000000000000001)
#define D_OTHER UINT64_C(0x0123456789abcdef)

/* ---- the wait entry points ---- */

static int w_wait(int ep, struct epoll_event *ev, int max, int ms) { return epoll_wait(ep, ev, max, ms); }

static int w_pwait(int ep, struct epoll_event *ev, int max, int ms)
{
    sigset_t none;
    sigemptyset(&none);
    return epoll_pwait(ep, ev, max, ms, &none);
}

static int w_pwait2(int ep, struct epoll_event *ev, int max, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    return epoll_pwait2(ep, ev, max, ms < 0 ? NULL : &ts, NULL);
}

struct wapi {
    const char *name;
    int (*wait)(int ep, struct epoll_event *ev, int max, int ms);
};

static const struct wapi waits[] = {{"epoll_wait", w_wait}, {"epoll_pwait", w_pwait}, {"epoll_pwait2", w_pwait2}};

static int c_create(void) { return epoll_create(16); }
static int c_create1(void) { return epoll_create1(EPOLL_CLOEXEC); }

struct capi {
    const char *name;
    int (*create)(void);
    int cloexec;
};

static const struct capi creates[] = {{"epoll_create", c_create, 0}, {"epoll_create1(EPOLL_CLOEXEC)", c_create1, 1}};

static const struct wapi *cur_wait = &waits[0];

static int new_set(const struct capi *c)
{
    int ep = c->create();
    CHECK(ep >= 0, "%s", c->name);
    int fl = fcntl(ep, F_GETFD);
    CHECK(fl >= 0 && !!(fl & FD_CLOEXEC) == c->cloexec, "%s: FD_CLOEXEC is %d", c->name, fl);
    return ep;
}

/* Collect events (the caller's array of MAXEV). */
static int collect(int ep, struct epoll_event *ev, int ms, double *secs)
{
    for (int i = 0; i < MAXEV; i++) {
        ev[i].events = 0xdeadbeef;
        ev[i].data.u64 = 0x5a5a5a5a5a5a5a5aull;
    }
    double t0 = tu_now();
    int n = cur_wait->wait(ep, ev, MAXEV, ms);
    if (secs)
        *secs = tu_now() - t0;
    CHECK(n >= 0 && n <= MAXEV, "%s(%d ms) returned %d", cur_wait->name, ms, n);
    return n;
}

/* The events reported for data d (0 if none); fails on a duplicate report or unknown data. */
static uint32_t events_for(struct epoll_event *ev, int n, uint64_t d)
{
    uint32_t r = 0;
    int seen = 0;
    for (int i = 0; i < n; i++)
        if (ev[i].data.u64 == d) {
            CHECK(!seen, "%s reported data 0x%llx twice in one call", cur_wait->name, (unsigned long long)d);
            seen = 1;
            r = ev[i].events;
            CHECK(r != 0, "an event with no bits for data 0x%llx", (unsigned long long)d);
        }
    return r;
}

/* Exactly these (data, events) pairs are reported now (timeout ms). */
static void expect_events(int ep, int ms, const char *what, int npairs, ...)
{
    struct epoll_event ev[MAXEV];
    int n = collect(ep, ev, ms, NULL);
    va_list ap;
    va_start(ap, npairs);
    for (int i = 0; i < npairs; i++) {
        uint64_t d = va_arg(ap, uint64_t);
        uint32_t want = va_arg(ap, uint32_t);
        uint32_t got = events_for(ev, n, d);
        CHECK(got == want, "%s: %s: data 0x%llx: events 0x%x, expected 0x%x (%d events reported)",
              cur_wait->name, what, (unsigned long long)d, got, want, n);
    }
    va_end(ap);
    if (n != npairs) {
        for (int i = 0; i < n; i++)
            fprintf(stderr, "    reported: data 0x%llx events 0x%x\n", (unsigned long long)ev[i].data.u64,
                    ev[i].events);
        CHECK(n == npairs, "%s: %s: %d events reported, expected %d", cur_wait->name, what, n, npairs);
    }
}

/* Nothing is reported, and the call waits about ms. */
static void expect_nothing(int ep, int ms, const char *what)
{
    struct epoll_event ev[MAXEV];
    double secs;
    int n = collect(ep, ev, ms, &secs);
    if (n != 0)
        CHECK(n == 0, "%s: %s: expected no event, got %d (first: data 0x%llx events 0x%x)", cur_wait->name,
              what, n, (unsigned long long)ev[0].data.u64, ev[0].events);
    CHECK(secs * 1000 >= ms - EARLY_SLACK_MS && secs * 1000 <= ms + LATE_SLACK_MS,
          "%s: %s: a %d ms timeout ended after %.1f ms", cur_wait->name, what, ms, secs * 1000);
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event e = {.events = events, .data.u64 = data};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0, "EPOLL_CTL_ADD fd %d events 0x%x", fd, events);
}

static void mod(int ep, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event e = {.events = events, .data.u64 = data};
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) == 0, "EPOLL_CTL_MOD fd %d events 0x%x", fd, events);
}

/* ---- groups ---- */

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
        tu_setint(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf);
    tu_join_fd(fd, &gr->m, flags);
    return fd;
}

static int tx_fd = -1; /* a plain sender socket of the main process */

static void send_text(const struct group *gr, const char *text)
{
    size_t len = strlen(text);
    CHECK(tu_sendto_group(tx_fd, text, len, 0, &gr->m) == (ssize_t)len, "send \"%s\"", text);
}

static void drain(int fd, int expect)
{
    char buf[PAYLOAD + 64];
    int n = 0;
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        n++;
    CHECK(errno == EAGAIN, "drain: recv");
    if (expect >= 0)
        CHECK(n == expect, "drained %d messages, expected %d", n, expect);
}

/* Fill with MSG_DONTWAIT until EAGAIN: PAYLOAD-byte messages, then 1-byte ones. */
static void fill(int s)
{
    unsigned char buf[PAYLOAD];
    memset(buf, 'f', sizeof buf);
    size_t len = PAYLOAD;
    for (int i = 0;; i++) {
        CHECK(i < 100000, "no EAGAIN after %d sends", i);
        ssize_t r = send(s, buf, len, MSG_DONTWAIT);
        if (r == -1 && errno == EAGAIN) {
            if (len == 1)
                return;
            len = 1;
            continue;
        }
        CHECK(r == (ssize_t)len, "fill: send returned %zd", r);
    }
}

struct delayed {
    int fd;                     /* read one message from it (inherited), or -1 */
    const struct unix_mreq *to; /* send text to this group, or NULL */
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
        CHECK(recv(d->fd, buf, sizeof buf, MSG_DONTWAIT) > 0, "delayed read");
    }
    return 0;
}

/* ==== part 1 ==== */

static void check_in_out(const struct capi *c)
{
    const char *w = cur_wait->name;
    struct group gr;
    group_new(&gr, "eio");
    int ep = new_set(c);
    int m = join_rcvbuf(&gr, 0, 0);
    add(ep, m, EPOLLIN, D_MEMBER);

    expect_nothing(ep, 0, "empty member, timeout 0");
    expect_nothing(ep, 100, "empty member, 100 ms");
    send_text(&gr, "one");
    expect_events(ep, 0, "a group message waits", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(m, "one", "after EPOLLIN");
    expect_nothing(ep, 0, "member read empty");

    struct delayed d = {.fd = -1, .to = &gr.m, .delay_ms = 100, .text = "wake"};
    pid_t ch = tu_spawn("delayed sender", delayed_child, &d);
    struct epoll_event ev[MAXEV];
    double secs;
    int n = collect(ep, ev, 10000, &secs);
    CHECK(n == 1 && ev[0].data.u64 == D_MEMBER && ev[0].events == EPOLLIN,
          "%s: sleeping waiter woke with %d events (data 0x%llx events 0x%x)", w, n,
          (unsigned long long)ev[0].data.u64, ev[0].events);
    CHECK(secs > 0.05, "%s: woke after %.1f ms, before the send", w, secs * 1e3);
    tu_wait_child(ch);
    char buf[64];
    CHECK(recv(m, buf, sizeof buf, MSG_DONTWAIT) == 4, "%s: after the wake-up, non-blocking recv", w);
    d.delay_ms = 30;
    ch = tu_spawn("delayed sender", delayed_child, &d);
    n = collect(ep, ev, -1, NULL);
    CHECK(n == 1 && ev[0].data.u64 == D_MEMBER, "%s: infinite wait woke with %d events", w, n);
    tu_wait_child(ch);
    tu_expect_str(m, "wake", "after an infinite wait");
    tu_ok("%s on %s: EPOLLIN clear when empty (100 ms timeout honoured), set when a group message "
          "waits, a sleeping waiter (timeout and infinite) woke %.0f ms later on a send from another "
          "process; data intact",
          w, c->name, secs * 1e3);

    /* EPOLLOUT */
    int full = join_rcvbuf(&gr, 0, 4096);
    int drop = join_rcvbuf(&gr, UNIX_MREQ_DROP_WHEN_FULL, 2048);
    int s = tu_dgram();
    CHECK(connect(s, (struct sockaddr *)&gr.m.address, unix_mreq_addrlen(&gr.m)) == 0, "connect");
    add(ep, s, EPOLLOUT, D_SENDER);
    expect_events(ep, 0, "connected, room everywhere", 1, D_SENDER, (uint32_t)EPOLLOUT);
    fill(s);
    drain(m, -1);
    expect_nothing(ep, 150, "a member without DROP_WHEN_FULL is full");
    struct delayed r = {.fd = full, .to = NULL, .delay_ms = 100};
    ch = tu_spawn("delayed reader", delayed_child, &r);
    n = collect(ep, ev, 10000, &secs);
    CHECK(n >= 1 && events_for(ev, n, D_SENDER) == EPOLLOUT,
          "%s: sleeping waiter woke without EPOLLOUT for the sender (%d events)", w, n);
    CHECK(secs > 0.05, "%s: EPOLLOUT after %.1f ms, before the member read", w, secs * 1e3);
    tu_wait_child(ch);
    CHECK(send(s, "s", 1, MSG_DONTWAIT) == 1, "%s: after EPOLLOUT, a 1-byte send failed", w);
    drain(full, -1);
    drain(m, -1);
    expect_events(ep, 0, "only the DROP_WHEN_FULL member is full", 1, D_SENDER, (uint32_t)EPOLLOUT);
    CHECK(send(s, "t", 1, MSG_DONTWAIT) == 1, "%s: after EPOLLOUT, a 1-byte send failed", w);
    tu_ok("%s on %s: EPOLLOUT clear while a member is full (150 ms timeout honoured), a sleeping "
          "waiter woke %.0f ms later when it read in another process; a full DROP_WHEN_FULL member "
          "leaves EPOLLOUT set; small sends after EPOLLOUT succeed",
          w, c->name, secs * 1e3);
    close(s);
    close(full);
    close(drop);
    close(m);
    close(ep);
    close(gr.g);
}

/* ==== part 2 ==== */

static void check_level(void)
{
    struct group gr;
    group_new(&gr, "lt");
    int ep = epoll_create1(0);
    int m = join_rcvbuf(&gr, 0, 0);
    add(ep, m, EPOLLIN, D_MEMBER);
    send_text(&gr, "a");
    send_text(&gr, "b");
    for (int i = 0; i < 3; i++)
        expect_events(ep, 0, "level-triggered, two messages wait", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(m, "a", "first");
    expect_events(ep, 0, "level-triggered, one message waits", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(m, "b", "second");
    expect_nothing(ep, 50, "level-triggered, drained");
    tu_ok("level-triggered: reported on every call while a message waits, not after draining");
    close(m);
    close(ep);
    close(gr.g);
}

static void check_edge(void)
{
    struct group gr;
    group_new(&gr, "et");
    int ep = epoll_create1(0);
    int m = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(m >= 0, "socket");
    tu_join_fd(m, &gr.m, 0);
    add(ep, m, EPOLLIN | EPOLLET, D_MEMBER);
    expect_nothing(ep, 0, "edge-triggered, empty");

    send_text(&gr, "1");
    send_text(&gr, "2");
    send_text(&gr, "3");
    expect_events(ep, 0, "edge-triggered, a batch of 3 arrived", 1, D_MEMBER, (uint32_t)EPOLLIN);
    expect_nothing(ep, 50, "edge-triggered, nothing new since the report (3 still queued)");
    tu_expect_str(m, "1", "first of the batch");
    expect_nothing(ep, 0, "edge-triggered, after reading one");
    send_text(&gr, "4");
    expect_events(ep, 0, "edge-triggered, one more arrived before draining", 1, D_MEMBER, (uint32_t)EPOLLIN);
    drain(m, 3);
    expect_nothing(ep, 50, "edge-triggered, drained to EAGAIN");
    send_text(&gr, "5");
    expect_events(ep, 0, "edge-triggered, new message after draining", 1, D_MEMBER, (uint32_t)EPOLLIN);
    expect_nothing(ep, 0, "edge-triggered, reported once");

    /* and a sleeping waiter is woken by the edge */
    drain(m, 1);
    struct delayed d = {.fd = -1, .to = &gr.m, .delay_ms = 50, .text = "late"};
    pid_t ch = tu_spawn("delayed sender", delayed_child, &d);
    expect_events(ep, 5000, "edge-triggered, sleeping", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_wait_child(ch);
    drain(m, 1);
    tu_ok("EPOLLET: one event per arrival batch, none while nothing new arrived (even with messages "
          "queued), a new one for each later arrival, none after draining to EAGAIN until a new "
          "message; a sleeping waiter wakes on the edge");
    close(m);
    close(ep);
    close(gr.g);
}

static void check_oneshot(void)
{
    struct group gr;
    group_new(&gr, "os");
    int ep = epoll_create1(0);
    int m = join_rcvbuf(&gr, 0, 0);
    add(ep, m, EPOLLIN | EPOLLONESHOT, D_MEMBER);
    send_text(&gr, "x");
    expect_events(ep, 0, "one-shot, first report", 1, D_MEMBER, (uint32_t)EPOLLIN);
    expect_nothing(ep, 50, "one-shot, fired already (message still queued)");
    send_text(&gr, "y");
    expect_nothing(ep, 50, "one-shot, fired already (another message arrived)");
    mod(ep, m, EPOLLIN | EPOLLONESHOT, D_OTHER);
    expect_events(ep, 0, "one-shot re-armed with EPOLL_CTL_MOD (new data)", 1, D_OTHER, (uint32_t)EPOLLIN);
    expect_nothing(ep, 0, "one-shot, fired again");
    drain(m, 2);
    mod(ep, m, EPOLLIN | EPOLLONESHOT, D_MEMBER);
    expect_nothing(ep, 50, "one-shot re-armed, empty");
    struct delayed d = {.fd = -1, .to = &gr.m, .delay_ms = 50, .text = "z"};
    pid_t ch = tu_spawn("delayed sender", delayed_child, &d);
    expect_events(ep, 5000, "one-shot re-armed, sleeping", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_wait_child(ch);
    send_text(&gr, "w");
    expect_nothing(ep, 50, "one-shot, fired after the wake-up");
    mod(ep, m, EPOLLIN, D_MEMBER); /* back to level-triggered */
    expect_events(ep, 0, "MOD to level-triggered", 1, D_MEMBER, (uint32_t)EPOLLIN);
    expect_events(ep, 0, "MOD to level-triggered, again", 1, D_MEMBER, (uint32_t)EPOLLIN);
    drain(m, 2);
    tu_ok("EPOLLONESHOT: one report, none after it (whatever arrives) until EPOLL_CTL_MOD re-arms "
          "it, with the new data; MOD back to level-triggered works");
    close(m);
    close(ep);
    close(gr.g);
}

static void check_del(void)
{
    struct group gr;
    group_new(&gr, "del");
    int ep = epoll_create1(0);
    int m = join_rcvbuf(&gr, 0, 0);
    add(ep, m, EPOLLIN, D_MEMBER);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
    CHECK_ERRNO(epoll_ctl(ep, EPOLL_CTL_ADD, m, &e), EEXIST);
    send_text(&gr, "d");
    expect_events(ep, 0, "before DEL", 1, D_MEMBER, (uint32_t)EPOLLIN);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, m, NULL) == 0, "EPOLL_CTL_DEL");
    expect_nothing(ep, 50, "after DEL, a message waits");
    send_text(&gr, "e");
    expect_nothing(ep, 50, "after DEL, another message arrived");
    CHECK_ERRNO(epoll_ctl(ep, EPOLL_CTL_DEL, m, NULL), ENOENT);
    CHECK_ERRNO(epoll_ctl(ep, EPOLL_CTL_MOD, m, &e), ENOENT);
    add(ep, m, EPOLLIN, D_OTHER);
    expect_events(ep, 0, "added again", 1, D_OTHER, (uint32_t)EPOLLIN);
    drain(m, 2);
    tu_ok("EPOLL_CTL_DEL: no more events; DEL/MOD of an unregistered member ENOENT, a second ADD "
          "EEXIST; ADD after DEL works with the new data");
    close(m);
    close(ep);
    close(gr.g);
}

static void check_closed_member(void)
{
    struct group gr;
    group_new(&gr, "cl");
    int ep = epoll_create1(0);
    int m = join_rcvbuf(&gr, 0, 0);
    int other = join_rcvbuf(&gr, 0, 0);
    add(ep, m, EPOLLIN, D_MEMBER);
    add(ep, other, EPOLLIN, D_OTHER);
    send_text(&gr, "before close");
    expect_events(ep, 0, "two members", 2, D_MEMBER, (uint32_t)EPOLLIN, D_OTHER, (uint32_t)EPOLLIN);
    CHECK(close(m) == 0, "close the registered member");
    expect_events(ep, 0, "the first member closed", 1, D_OTHER, (uint32_t)EPOLLIN);
    drain(other, 1);
    expect_nothing(ep, 50, "the first member closed, the other drained");
    send_text(&gr, "after close");
    expect_events(ep, 0, "a message after the close", 1, D_OTHER, (uint32_t)EPOLLIN);
    drain(other, 1);
    /* a new socket may reuse the closed descriptor number: it must not inherit anything */
    int reuse = join_rcvbuf(&gr, 0, 0);
    send_text(&gr, "to the new socket");
    expect_events(ep, 0, "a new member on the same descriptor number, not registered", 1, D_OTHER,
                  (uint32_t)EPOLLIN);
    drain(other, 1);
    drain(reuse, 1);
    tu_ok("a registered member closed: no more events for it (also for a new socket at descriptor "
          "%d), the other registration unaffected",
          reuse);
    close(reuse);
    close(other);
    close(ep);
    close(gr.g);
}

/*
 * dup: the registration belongs to (descriptor, open file). The kernel keeps
 * reporting it after the registered descriptor is closed while a duplicate
 * keeps the socket open. An ordinary datagram socket is the reference.
 */
static void check_dup(void)
{
    struct group gr;
    group_new(&gr, "dup");
    int ep = epoll_create1(0);
    int m = join_rcvbuf(&gr, 0, 0);
    add(ep, m, EPOLLIN, D_MEMBER);
    int d = dup(m);
    CHECK(d >= 0, "dup");
    send_text(&gr, "d1");
    expect_events(ep, 0, "registered descriptor dup'ed", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(d, "d1", "read through the duplicate");
    expect_nothing(ep, 0, "read through the duplicate");
    add(ep, d, EPOLLIN, D_OTHER);
    send_text(&gr, "d2");
    expect_events(ep, 0, "both descriptors registered", 2, D_MEMBER, (uint32_t)EPOLLIN, D_OTHER,
                  (uint32_t)EPOLLIN);
    tu_expect_str(m, "d2", "read through the original");
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL) == 0, "DEL the duplicate");
    send_text(&gr, "d3");
    expect_events(ep, 0, "the duplicate's registration deleted", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(m, "d3", "original");

    /* the kernel's answer for an ordinary socket: close the registered descriptor, keep a dup */
    int kep = epoll_create1(0);
    struct sockaddr_un ka;
    socklen_t kal = tu_abstract_addr(&ka, "dupref");
    int k = tu_dgram();
    CHECK(bind(k, (struct sockaddr *)&ka, kal) == 0, "bind");
    add(kep, k, EPOLLIN, D_MEMBER);
    int kd = dup(k);
    close(k);
    CHECK(sendto(tx_fd, "k", 1, 0, (struct sockaddr *)&ka, kal) == 1, "sendto");
    struct epoll_event ev[MAXEV];
    int kn = epoll_wait(kep, ev, MAXEV, 100);
    CHECK(kn >= 0, "epoll_wait");
    int kernel_reports = kn == 1 && ev[0].data.u64 == D_MEMBER;

    close(m); /* d keeps the member socket open */
    send_text(&gr, "d4");
    int n = collect(ep, ev, 100, NULL);
    int we_report = n == 1 && ev[0].data.u64 == D_MEMBER && ev[0].events == EPOLLIN;
    CHECK(n <= 1 && (n == 0 || ev[0].data.u64 == D_MEMBER), "unexpected events after closing the original");
    CHECK(we_report == kernel_reports,
          "registered descriptor closed while a dup keeps the socket open: the kernel %s an "
          "ordinary socket's registration, the member's registration %s",
          kernel_reports ? "still reports" : "no longer reports", we_report ? "still reports" : "does not");
    tu_expect_str(d, "d4", "through the duplicate");
    close(d);
    send_text(&gr, "nobody");
    expect_nothing(ep, 50, "every descriptor of the member closed");
    tu_ok("dup: the original's registration keeps working, reading through either descriptor "
          "clears it, both can be registered with their own data; with the registered descriptor "
          "closed and a dup open, events %s, as the kernel does for an ordinary socket",
          kernel_reports ? "still come" : "stop");
    close(kd);
    close(kep);
    close(ep);
    close(gr.g);
}

static struct pointee {
    int tag;
} pa = {1}, pb = {2}, pc = {3}, pd = {4};

static void check_many(void)
{
    struct group a, b;
    group_new(&a, "manyA");
    group_new(&b, "manyB");
    int ep = epoll_create1(0);
    int a1 = join_rcvbuf(&a, 0, 0), a2 = join_rcvbuf(&a, 0, 0), b1 = join_rcvbuf(&b, 0, 0);
    int ab = join_rcvbuf(&a, 0, 0);
    tu_join_fd(ab, &b.m, 0); /* a member of both groups */
    struct epoll_event e = {.events = EPOLLIN};
    e.data.ptr = &pa;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a1, &e) == 0, "ADD a1");
    e.data.ptr = &pb;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a2, &e) == 0, "ADD a2");
    e.data.ptr = &pc;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b1, &e) == 0, "ADD b1");
    e.data.ptr = &pd;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ab, &e) == 0, "ADD ab");
    uint64_t A1 = (uintptr_t)&pa, A2 = (uintptr_t)&pb, B1 = (uintptr_t)&pc, AB = (uintptr_t)&pd;
    uint32_t IN = EPOLLIN;

    expect_nothing(ep, 20, "four members, nothing sent");
    send_text(&a, "to A");
    expect_events(ep, 0, "sent to group A", 3, A1, IN, A2, IN, AB, IN);
    send_text(&b, "to B");
    expect_events(ep, 0, "sent to A and B", 4, A1, IN, A2, IN, AB, IN, B1, IN);
    drain(a1, 1);
    drain(ab, 2);
    expect_events(ep, 0, "a1 and ab drained", 2, A2, IN, B1, IN);
    drain(a2, 1);
    drain(b1, 1);
    expect_nothing(ep, 20, "all drained");
    send_text(&b, "B only");
    expect_events(ep, 0, "sent to B", 2, B1, IN, AB, IN);
    struct epoll_event ev[MAXEV];
    int n = collect(ep, ev, 0, NULL);
    for (int i = 0; i < n; i++) {
        struct pointee *p = ev[i].data.ptr;
        CHECK(p == &pc || p == &pd, "data.ptr %p is not one of ours", (void *)p);
        CHECK(p->tag == (p == &pc ? 3 : 4), "data.ptr points to the wrong object");
    }
    drain(b1, 1);
    drain(ab, 1);
    tu_ok("one set with members of two groups (and one member of both): each reported exactly when "
          "its own messages wait; data.ptr values come back as registered");
    close(a1);
    close(a2);
    close(b1);
    close(ab);
    close(ep);
    close(a.g);
    close(b.g);
}

static struct unix_mreq fork_group;
static struct tu_gate fork_gate;
static int fork_ep, fork_m;

static int fork_waiter(void *arg)
{
    (void)arg;
    cur_wait = &waits[1];
    expect_nothing(fork_ep, 0, "child: inherited set, nothing sent yet");
    tu_gate_arrive(&fork_gate);
    expect_events(fork_ep, 10000, "child: inherited set", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(fork_m, "for the child", "child");
    expect_nothing(fork_ep, 0, "child: after reading");
    tu_gate_arrive(&fork_gate);
    return 0;
}

static void check_fork(void)
{
    struct group gr;
    group_new(&gr, "fork");
    fork_group = gr.m;
    fork_ep = epoll_create1(EPOLL_CLOEXEC);
    fork_m = join_rcvbuf(&gr, 0, 0);
    add(fork_ep, fork_m, EPOLLIN, D_MEMBER);
    tu_gate_init(&fork_gate);
    pid_t c = tu_spawn("epoll child", fork_waiter, NULL);
    tu_gate_wait(&fork_gate, 1, 10000);
    tu_sleep_ms(50); /* let the child go to sleep */
    send_text(&gr, "for the child");
    tu_gate_wait(&fork_gate, 1, 10000);
    tu_wait_child(c);
    expect_nothing(fork_ep, 50, "parent, after the child read the message");
    send_text(&gr, "parent");
    expect_events(fork_ep, 0, "parent, after the child exited", 1, D_MEMBER, (uint32_t)EPOLLIN);
    tu_expect_str(fork_m, "parent", "parent");
    tu_ok("an epoll set inherited across fork: the sleeping child got the event with the data, read "
          "the message; the parent's registration keeps working after the child exited");
    close(fork_m);
    close(fork_ep);
    close(gr.g);
    close(fork_gate.ready[0]);
    close(fork_gate.ready[1]);
    close(fork_gate.go[0]);
    close(fork_gate.go[1]);
}

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

static int plain_poll_in(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    CHECK(r >= 0, "poll");
    return r == 1 && (p.revents & POLLIN);
}

static void check_closed_set(void)
{
    struct group gr;
    group_new(&gr, "cset");
    int m1 = join_rcvbuf(&gr, 0, 0), m2 = join_rcvbuf(&gr, 0, 0);
    int s = tu_dgram();
    CHECK(connect(s, (struct sockaddr *)&gr.m.address, unix_mreq_addrlen(&gr.m)) == 0, "connect");
    /* One set first: the library may open per-group descriptors (the
     * group's wake FIFO, a room doorbell) on first use; those live as long
     * as the group, not the set. What must not grow is anything per set. */
    int warm = epoll_create1(0);
    CHECK(warm >= 0, "epoll_create1");
    add(warm, m1, EPOLLIN, D_MEMBER);
    add(warm, s, EPOLLOUT, D_SENDER);
    close(warm);
    int before = count_fds();
    for (int round = 0; round < 200; round++) {
        int ep = epoll_create1(round & 1 ? EPOLL_CLOEXEC : 0);
        CHECK(ep >= 0, "epoll_create1");
        add(ep, m1, EPOLLIN | (round % 3 == 0 ? EPOLLET : 0), D_MEMBER);
        add(ep, m2, EPOLLIN | EPOLLONESHOT, D_OTHER);
        add(ep, s, EPOLLOUT, D_SENDER);
        if (round % 50 == 0) {
            send_text(&gr, "r");
            expect_events(ep, 0, "set about to be closed", 3, D_MEMBER, (uint32_t)EPOLLIN, D_OTHER,
                          (uint32_t)EPOLLIN, D_SENDER, (uint32_t)EPOLLOUT);
            drain(m1, 1);
            drain(m2, 1);
        }
        CHECK(close(ep) == 0, "close the epoll set");
    }
    int after = count_fds();
    CHECK(after == before, "%d descriptors open before 200 epoll sets were made and closed, %d after",
          before, after);
    CHECK(!plain_poll_in(m1, 0), "poll: POLLIN on an empty member");
    send_text(&gr, "poll me");
    CHECK(plain_poll_in(m1, 1000) && plain_poll_in(m2, 1000), "members no longer POLLIN after their "
          "epoll sets were closed");
    tu_expect_str(m1, "poll me", "m1");
    tu_expect_str(m2, "poll me", "m2");
    struct delayed d = {.fd = -1, .to = &gr.m, .delay_ms = 50, .text = "late"};
    pid_t c = tu_spawn("delayed sender", delayed_child, &d);
    CHECK(plain_poll_in(m1, 5000), "a sleeping poll did not wake");
    tu_wait_child(c);
    tu_expect_str(m1, "late", "m1");
    drain(m2, 1);

    /* a new set, probably at the closed set's descriptor number, holds none of the old registrations */
    int ep = epoll_create1(0);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    add(ep, p[0], EPOLLIN, D_OTHER);
    send_text(&gr, "stale?");
    expect_nothing(ep, 50, "a new set with only a pipe registered");
    add(ep, m2, EPOLLIN, D_MEMBER);
    expect_events(ep, 0, "the new set, m2 added", 1, D_MEMBER, (uint32_t)EPOLLIN);
    close(ep);
    drain(m1, 1);
    drain(m2, 1);

    /* the same with close_range */
    ep = epoll_create1(0);
    add(ep, m1, EPOLLIN, D_MEMBER);
    CHECK(close_range((unsigned)ep, (unsigned)ep, 0) == 0, "close_range");
    int ep2 = epoll_create1(0);
    add(ep2, p[0], EPOLLIN, D_OTHER);
    send_text(&gr, "stale after close_range?");
    expect_nothing(ep2, 50, ep2 == ep ? "a new set at the number of a set closed by close_range"
                                      : "a new set after close_range");
    drain(m1, 1);
    drain(m2, 1);
    tu_ok("200 epoll sets with members registered (LT, ET, one-shot, EPOLLOUT) closed: no descriptor "
          "leaked (%d open), the members keep working with poll, a new set (descriptor %d, also after "
          "close_range) inherits no old registration",
          after, ep2);
    close(ep2);
    close(p[0]);
    close(p[1]);
    close(m1);
    close(m2);
    close(s);
    close(gr.g);
}

int main(void)
{
    tu_start("t_epoll");
    tx_fd = tu_dgram();
    for (size_t w = 0; w < sizeof waits / sizeof waits[0]; w++)
        for (size_t c = 0; c < sizeof creates / sizeof creates[0]; c++) {
            cur_wait = &waits[w];
            check_in_out(&creates[c]);
        }
    for (size_t w = 0; w < sizeof waits / sizeof waits[0]; w++) {
        cur_wait = &waits[w];
        printf("  -- semantics through %s\n", cur_wait->name);
        check_level();
        check_edge();
        check_oneshot();
        check_del();
        check_closed_member();
        check_dup();
        check_many();
    }
    cur_wait = &waits[0];
    check_fork();
    check_closed_set();
    return tu_done();
}
