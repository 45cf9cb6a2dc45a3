/*
 * t_flow_control: SPEC 5.1, 5.4, 5.5. A slow member S (small SO_RCVBUF, set
 * before JOIN) that does not read holds senders back:
 *   1-3. a non-blocking sender (O_NONBLOCK via fcntl; MSG_DONTWAIT; a
 *        SOCK_NONBLOCK socket) gets EAGAIN, and the members that do read got
 *        exactly the successful sends (atomic under EAGAIN);
 *   4.   a blocking sender blocks (still blocked after 200 ms; nobody has the
 *        blocked message) and resumes when S reads;
 *   5.   SO_SNDTIMEO: EAGAIN after about the timeout, nobody got the message;
 *   6.   a signal without SA_RESTART interrupts the blocked send with EINTR,
 *        nobody got the message.
 * Two fast members in child processes read everything and record it; at the
 * end their sequences must equal the list of successful sends, exactly.
 */
#include "testutil.h"

#define PAYLOAD 1000
#define NFAST 2
#define MAX_RECORD 131072
#define MAX_TRIES 20000 /* a phase that never gets EAGAIN fails, it does not loop forever */
#define END_PHASE 99

struct shared {
    uint32_t got[NFAST][MAX_RECORD]; /* phase << 20 | seq, in arrival order */
    volatile uint32_t count[NFAST];
    volatile uint32_t blocking_sent; /* phase 4: sends completed by the blocking sender */
    volatile uint32_t about_to_send; /* phase 6: the sender is entering its send */
    volatile uint32_t handler_ran;
};

static struct unix_mreq group;
static struct shared *sh;
static struct tu_gate joined;
static int slow; /* S: small queue, read only when the test says so */
static uint32_t slow_capacity; /* how many of our messages S's empty queue takes (phase 1) */

static uint32_t expected[MAX_RECORD]; /* every successful send, in order */
static uint32_t nexpected;

static uint32_t key(uint32_t phase, uint32_t seq) { return phase << 20 | seq; }

static void expect_delivered(uint32_t phase, uint32_t seq)
{
    CHECK(nexpected < MAX_RECORD, "too many messages");
    expected[nexpected++] = key(phase, seq);
}

/* A fast member: reads everything until the END message, recording it. */
static int fast_member(void *arg)
{
    int id = (int)(intptr_t)arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 30000);
    tu_gate_arrive(&joined);
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    for (;;) {
        ssize_t n = recv(m, buf, sizeof buf, 0);
        CHECK(n >= 0, "fast member %d: recv after %u messages", id, sh->count[id]);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "fast member %d: corrupt message", id);
        if (h.sender == END_PHASE)
            return 0;
        CHECK(sh->count[id] < MAX_RECORD, "too many messages");
        sh->got[id][sh->count[id]] = key(h.sender, h.seq);
        __atomic_store_n(&sh->count[id], sh->count[id] + 1, __ATOMIC_RELEASE);
    }
}

static size_t make(void *buf, size_t cap, uint32_t phase, uint32_t seq)
{
    return tu_make_msg(buf, cap, phase, seq, PAYLOAD);
}

/*
 * Send (phase, first, first+1, ...) until EAGAIN holds three times in a row
 * (so a fast member that lagged for a moment cannot be the cause). Returns
 * the number of successful sends, all recorded as expected.
 */
static uint32_t send_until_eagain(int fd, int flags, int connected, uint32_t phase, uint32_t first)
{
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    uint32_t seq = first;
    int eagain_in_a_row = 0;
    for (int tries = 0; eagain_in_a_row < 3; tries++) {
        CHECK(tries < MAX_TRIES, "phase %u: no EAGAIN after %d sends: the slow member holds nobody back",
              phase, tries);
        size_t len = make(buf, sizeof buf, phase, seq);
        ssize_t r = connected ? send(fd, buf, len, flags) : tu_sendto_group(fd, buf, len, flags, &group);
        if (r == (ssize_t)len) {
            expect_delivered(phase, seq++);
            eagain_in_a_row = 0;
            continue;
        }
        CHECK(r == -1 && errno == EAGAIN, "phase %u: non-blocking send returned %zd", phase, r);
        eagain_in_a_row++;
        tu_sleep_ms(20);
    }
    CHECK(seq > first, "phase %u: an empty queue must take one message", phase);
    return seq - first;
}

/* S holds exactly (phase, first .. first+count-1), nothing else. */
static void drain_slow(uint32_t phase, uint32_t first, uint32_t count)
{
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    for (uint32_t i = 0; i < count; i++) {
        ssize_t n = recv(slow, buf, sizeof buf, MSG_DONTWAIT);
        CHECK(n >= 0, "phase %u: slow member holds %u messages, expected %u", phase, i, count);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "phase %u: corrupt message", phase);
        CHECK(h.sender == phase && h.seq == first + i, "phase %u: slow member got (%u,%u), expected (%u,%u)",
              phase, h.sender, h.seq, phase, first + i);
    }
    tu_expect_empty(slow, "slow member after draining (an extra message would be a failed send)");
}

/* Did any fast member receive (phase, seq)? */
static int fast_received(uint32_t phase, uint32_t seq)
{
    for (int f = 0; f < NFAST; f++) {
        uint32_t n = __atomic_load_n(&sh->count[f], __ATOMIC_ACQUIRE);
        for (uint32_t i = 0; i < n; i++)
            if (sh->got[f][i] == key(phase, seq))
                return 1;
    }
    return 0;
}

static void check_nonblocking(void)
{
    /* 1: O_NONBLOCK set with fcntl (fcntl64 in the large-file build) */
    int s1 = tu_dgram();
    int fl = fcntl(s1, F_GETFL);
    CHECK(fl >= 0 && fcntl(s1, F_SETFL, fl | O_NONBLOCK) == 0, "fcntl O_NONBLOCK");
    uint32_t k1 = send_until_eagain(s1, 0, 0, 1, 0);
    slow_capacity = k1;
    drain_slow(1, 0, k1);
    tu_ok("O_NONBLOCK sender: %u sends succeeded, then EAGAIN; the slow member holds exactly those", k1);

    /* 2: MSG_DONTWAIT on a blocking socket */
    int s2 = tu_dgram();
    CHECK(!(fcntl(s2, F_GETFL) & O_NONBLOCK), "socket should be blocking");
    uint32_t k2 = send_until_eagain(s2, MSG_DONTWAIT, 0, 2, 0);
    drain_slow(2, 0, k2);
    tu_ok("MSG_DONTWAIT sender: %u sends, then EAGAIN; exactly those delivered to the slow member", k2);

    /* 3: a SOCK_NONBLOCK socket connected to the group */
    int s3 = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(s3 >= 0, "socket(SOCK_NONBLOCK)");
    CHECK(connect(s3, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0, "connect");
    uint32_t k3 = send_until_eagain(s3, 0, 1, 3, 0);
    drain_slow(3, 0, k3);
    tu_ok("SOCK_NONBLOCK connected sender: %u sends, then EAGAIN", k3);
    close(s1);
    close(s2);
    close(s3);
}

/* Phase 4: a blocking sender in a child process. */
static uint32_t blocking_total;

static int blocking_sender(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    for (uint32_t seq = 0; seq < blocking_total; seq++) {
        size_t len = make(buf, sizeof buf, 4, seq);
        CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "blocking send %u", seq);
        __atomic_store_n(&sh->blocking_sent, seq + 1, __ATOMIC_RELEASE);
    }
    return 0;
}

/* Wait until the counter has not moved for quiet_ms; returns its value. */
static uint32_t wait_until_stable(volatile uint32_t *counter, int quiet_ms)
{
    uint32_t last = *counter;
    double since = tu_now(), deadline = tu_now() + 15;
    while (tu_now() - since < quiet_ms / 1000.0) {
        CHECK(tu_now() < deadline, "the blocking sender never stopped");
        tu_check_children();
        tu_sleep_ms(10);
        uint32_t now = *counter;
        if (now != last) {
            last = now;
            since = tu_now();
        }
    }
    return last;
}

static void check_blocking(void)
{
    blocking_total = 64; /* far more than the slow member's queue holds */
    pid_t b = tu_spawn("blocking sender", blocking_sender, NULL);
    /* S starts empty, so the sender must get exactly as far as in phase 1, then block */
    double t0 = tu_now();
    while (sh->blocking_sent < slow_capacity) {
        CHECK(tu_now() - t0 < 10, "the blocking sender made only %u sends in 10 s (S takes %u)",
              sh->blocking_sent, slow_capacity);
        tu_check_children();
        tu_sleep_ms(5);
    }
    uint32_t c = wait_until_stable(&sh->blocking_sent, 300);
    CHECK(c < blocking_total, "the blocking sender sent all %u messages without blocking", c);
    CHECK(c == slow_capacity, "the blocking sender stopped after %u sends, but S's empty queue takes %u",
          c, slow_capacity);
    CHECK(tu_child_running(b), "the blocking sender exited instead of blocking");
    CHECK(!fast_received(4, c), "a fast member got message %u while its send was still blocked", c);
    tu_sleep_ms(200);
    CHECK(sh->blocking_sent == c && tu_child_running(b), "the sender moved on without room");
    CHECK(!fast_received(4, c), "a fast member got message %u while its send was still blocked", c);
    tu_ok("blocking sender blocked after %u sends, still blocked 200 ms later; nobody has message %u",
          c, c);

    /* S reads one: the sender must resume */
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    struct tu_msg_hdr h;
    ssize_t n = recv(slow, buf, sizeof buf, 0);
    CHECK(tu_check_msg(buf, n, &h) == 0 && h.sender == 4 && h.seq == 0, "slow member's first message");
    t0 = tu_now();
    while (sh->blocking_sent == c) {
        CHECK(tu_now() - t0 < 2.0, "the blocked sender did not resume within 2 s after a read");
        tu_check_children();
        tu_sleep_ms(1);
    }
    tu_ok("the blocked sender resumed %.1f ms after the slow member read one message",
          (tu_now() - t0) * 1e3);

    /* read the rest, blocking, as the sender keeps going */
    tu_set_rcvtimeo(slow, 10000);
    for (uint32_t seq = 1; seq < blocking_total; seq++) {
        n = recv(slow, buf, sizeof buf, 0);
        CHECK(tu_check_msg(buf, n, &h) == 0 && h.sender == 4 && h.seq == seq,
              "slow member: expected (4,%u), got (%u,%u) (%zd bytes)", seq, h.sender, h.seq, n);
    }
    tu_wait_child(b);
    tu_expect_empty(slow, "slow member");
    for (uint32_t seq = 0; seq < blocking_total; seq++)
        expect_delivered(4, seq);
    tu_ok("all %u messages of the blocking sender arrived in order", blocking_total);
}

static void check_sndtimeo(void)
{
    int fill = tu_dgram();
    uint32_t k = send_until_eagain(fill, MSG_DONTWAIT, 0, 5, 0);
    int t = tu_dgram();
    tu_set_timeout(t, SO_SNDTIMEO, 300);
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    size_t len = make(buf, sizeof buf, 5, k);
    double t0 = tu_now();
    CHECK_ERRNO(tu_sendto_group(t, buf, len, 0, &group), EAGAIN); /* EWOULDBLOCK == EAGAIN */
    double waited = tu_now() - t0;
    CHECK(waited >= 0.25 && waited < 2.0, "SO_SNDTIMEO 300 ms: send gave up after %.3f s", waited);
    drain_slow(5, 0, k);
    tu_sleep_ms(50);
    CHECK(!fast_received(5, k), "a fast member got the message whose send timed out");
    tu_ok("SO_SNDTIMEO 300 ms: blocked send -> EAGAIN after %.3f s; nobody got that message", waited);
    close(fill);
    close(t);
}

static void on_usr1(int sig)
{
    (void)sig;
    sh->handler_ran = 1;
}

static uint32_t eintr_seq;

static int interrupted_sender(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    int s = tu_dgram();
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    size_t len = make(buf, sizeof buf, 6, eintr_seq);
    sh->about_to_send = 1;
    CHECK_ERRNO(tu_sendto_group(s, buf, len, 0, &group), EINTR);
    CHECK(sh->handler_ran, "send returned EINTR but the handler did not run");
    return 0;
}

static void check_eintr(void)
{
    int fill = tu_dgram();
    uint32_t k = send_until_eagain(fill, MSG_DONTWAIT, 0, 6, 0);
    eintr_seq = k;
    pid_t c = tu_spawn("interrupted sender", interrupted_sender, NULL);
    double t0 = tu_now();
    while (!sh->about_to_send) {
        CHECK(tu_now() - t0 < 10, "the sender never started");
        tu_check_children();
        tu_sleep_ms(5);
    }
    tu_sleep_ms(200);
    CHECK(tu_child_running(c), "the send did not block");
    CHECK(kill(c, SIGUSR1) == 0, "kill");
    tu_wait_child(c);
    drain_slow(6, 0, k);
    tu_sleep_ms(50);
    CHECK(!fast_received(6, k), "a fast member got the message whose send was interrupted");
    tu_ok("SIGUSR1 (no SA_RESTART) interrupts a blocked send with EINTR; nobody got that message");
    close(fill);
}

int main(void)
{
    tu_start("t_flow_control");
    sh = tu_shared_alloc(sizeof *sh);
    tu_abstract_group(&group, "flow");
    tu_gate_init(&joined);
    int g = tu_create_group(&group);

    slow = tu_dgram();
    tu_setint(slow, SOL_SOCKET, SO_RCVBUF, 4096); /* before JOIN: sets the queue's capacity */
    tu_join_fd(slow, &group, 0);
    printf("  slow member: SO_RCVBUF %d; messages of %zu bytes\n",
           tu_getint(slow, SOL_SOCKET, SO_RCVBUF), sizeof(struct tu_msg_hdr) + PAYLOAD);

    static const char *names[NFAST] = {"fast member 0", "fast member 1"};
    for (int i = 0; i < NFAST; i++)
        tu_spawn(names[i], fast_member, (void *)(intptr_t)i);
    tu_gate_wait(&joined, NFAST, 10000);

    check_nonblocking();
    check_blocking();
    check_sndtimeo();
    check_eintr();

    /* The end marker: S is empty, so this blocking send goes through. */
    static unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    int s = tu_dgram();
    size_t len = make(buf, sizeof buf, END_PHASE, 0);
    CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "END send");
    tu_wait_all();
    CHECK(recv(slow, buf, sizeof buf, MSG_DONTWAIT) == (ssize_t)len, "slow member: END");

    for (int f = 0; f < NFAST; f++) {
        CHECK(sh->count[f] == nexpected, "fast member %d got %u messages, %u sends succeeded", f,
              sh->count[f], nexpected);
        for (uint32_t i = 0; i < nexpected; i++)
            CHECK(sh->got[f][i] == expected[i], "fast member %d, message %u: got (%u,%u), expected (%u,%u)",
                  f, i, sh->got[f][i] >> 20, sh->got[f][i] & 0xfffff, expected[i] >> 20,
                  expected[i] & 0xfffff);
    }
    tu_ok("both fast members got exactly the %u successful sends, in order: no failed send leaked",
          nexpected);
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
