/*
 * t_seq_flow: flow control in a SOCK_SEQPACKET group (SPEC 5.4-5.6). The
 * server is this process; the members are agents (the test binary
 * re-executed):
 *   B  a sender, R  a reader that keeps up,
 *   F  SO_RCVBUF 4096 set before connect(), never reads unless told,
 *   D  the same with DROP_WHEN_FULL.
 *
 * With F full (no room for even a 1-byte message): B's MSG_DONTWAIT send and its send with O_NONBLOCK fail with
 * EAGAIN, a send with SO_SNDTIMEO fails with EAGAIN after the timeout, and
 * nobody (R, F) ever gets those messages; a blocking send is still asleep
 * after 300 ms and nobody has its message; F reads one message: the send
 * completes. POLLOUT is clear on B and R while F has no room for a 1-byte
 * message; a poll(POLLOUT) and an epoll_wait(EPOLLOUT) sleep until F reads
 * one. R and F get every message exactly once, in order.
 * With only D full: B's blocking sends go through at once, POLLOUT stays
 * set, D gets a prefix and misses the rest (`umcast list` counts them as
 * dropped), R gets everything; once D reads, it gets new messages again.
 */
#include "testutil.h"

enum { B, R, F, D, NA };
static const char *names[NA] = {"B", "R", "F", "D"};
static struct ta_agent C[NA];
static int A[NA];
static int L;
static struct unix_mreq group;

#define PAYLOAD 1000
#define SMALL_RCVBUF 4096
#define B_ID 7

static void member(int x, int rcvbuf, unsigned flags)
{
    ta_connect(&C[x], &group, rcvbuf);
    A[x] = tu_seq_accept(L, &C[x]);
    CHECK(tu_seq_accept_group(A[x], NULL, flags) == 0, "ACCEPT_GROUP(A for %s, flags 0x%x)", names[x], flags);
}

/* B sends count messages seq, seq+1, ... of len bytes (PAYLOAD if 0) with these flags. */
static struct ta_res b_send_len(uint32_t seq, int count, int flags, int len)
{
    uint32_t id[2] = {B_ID, seq};
    return ta_call(&C[B], TA_BURST_SEND, flags, count, -len, id, sizeof id);
}

static struct ta_res b_send(uint32_t seq, int count, int flags) { return b_send_len(seq, count, flags, PAYLOAD); }

/* What the group got, in order, since F last emptied its queue: (sender, seq) pairs. */
static uint32_t sent[1024][2];
static int nsent;

static void log_sent(uint32_t sender, uint32_t seq)
{
    CHECK(nsent < 1024, "log full");
    sent[nsent][0] = sender;
    sent[nsent][1] = seq;
    nsent++;
}

/* x receives exactly n pairs, then nothing. */
static void expect_pairs(int x, uint32_t (*want)[2], int n, const char *what)
{
    struct ta_res r = ta_call(&C[x], TA_BURST_RECV, 0, n, 0, NULL, 0);
    CHECK(r.ret == n, "%s: %s received %ld of %d messages (%s)", what, names[x], r.ret, n, tu_errname(r.err));
    for (int i = 0; i < n; i++) {
        uint32_t s, q;
        memcpy(&s, r.data + 8 * i, 4);
        memcpy(&q, r.data + 8 * i + 4, 4);
        CHECK(s == want[i][0] && q == want[i][1], "%s: %s's message %d is %x#%u, expected %x#%u", what, names[x],
              i, s, q, want[i][0], want[i][1]);
    }
    ta_expect_empty(&C[x], what);
}

/* x receives exactly B's seqs from..from+n-1, then nothing. */
static void expect_range(int x, uint32_t from, int n, const char *what)
{
    uint32_t(*v)[2] = malloc(sizeof *v * (size_t)(n + 1));
    CHECK(v != NULL, "malloc");
    for (int i = 0; i < n; i++) {
        v[i][0] = B_ID;
        v[i][1] = from + (uint32_t)i;
    }
    expect_pairs(x, v, n, what);
    free(v);
}

/* poll(x, POLLOUT, 0): is POLLOUT set? */
static int pollout_now(int x)
{
    struct ta_res r = ta_call(&C[x], TA_POLL, POLLOUT, 0, 0, NULL, 0);
    CHECK(r.ret >= 0, "%s: poll: %s", names[x], tu_errname(r.err));
    return (r.revents & POLLOUT) != 0;
}

/*
 * B fills F with MSG_DONTWAIT sends until not even a 1-byte message fits:
 * messages of PAYLOAD bytes from seq on, then of 16, then 1-byte ones.
 * Returns how many PAYLOAD-byte ones fitted; R drains everything.
 */
static int fill_f(uint32_t seq)
{
    int first = nsent;
    struct ta_res r = b_send(seq, 100, MSG_DONTWAIT);
    CHECK(r.ret >= 1 && r.ret < 100 && r.err == EAGAIN,
          "B: MSG_DONTWAIT sends to a group with F (SO_RCVBUF %d, not reading): %ld sent, then %s", SMALL_RCVBUF,
          r.ret, r.ret == 100 ? "no EAGAIN" : tu_errname(r.err));
    int k = (int)r.ret;
    for (int i = 0; i < k; i++)
        log_sent(B_ID, seq + (uint32_t)i);
    r = b_send_len(seq + 100, 100, MSG_DONTWAIT, 0); /* 16-byte test messages */
    CHECK(r.ret < 100 && r.err == EAGAIN, "B: small MSG_DONTWAIT sends: %ld, then %s", r.ret, tu_errname(r.err));
    for (int i = 0; i < r.ret; i++)
        log_sent(B_ID, seq + 100 + (uint32_t)i);
    for (int i = 0;; i++) {
        CHECK(i < 100, "B: 100 1-byte messages fitted in F");
        unsigned char b = (unsigned char)('a' + i);
        r = ta_call(&C[B], TA_SEND, MSG_DONTWAIT, 0, 0, &b, 1);
        if (r.ret == -1 && r.err == EAGAIN)
            break;
        CHECK(r.ret == 1, "B: 1-byte MSG_DONTWAIT send: %ld (%s)", r.ret, tu_errname(r.err));
        log_sent(TA_BYTE_SENDER, b);
    }
    expect_pairs(R, sent + first, nsent - first, "R while F fills");
    return k;
}

static void held_back(void)
{
    CHECK(pollout_now(B) && pollout_now(R), "POLLOUT not set on B and R in a group with room");

    int k = fill_f(0);
    tu_ok("F (SO_RCVBUF %d set before connect) full (%d messages of %d bytes, then %d smaller): the next "
          "MSG_DONTWAIT send fails with EAGAIN, and R never got it",
          SMALL_RCVBUF, k, PAYLOAD, nsent - k);
    CHECK(!pollout_now(B), "POLLOUT set on B while F has no room for a 1-byte message");
    CHECK(!pollout_now(R), "POLLOUT set on R while F has no room for a 1-byte message");
    tu_ok("POLLOUT clear on the members B and R while F has no room for a 1-byte message");

    /* O_NONBLOCK */
    struct ta_res r = ta_call(&C[B], TA_NONBLOCK, 0, 1, 0, NULL, 0);
    CHECK(r.ret == 0, "B: O_NONBLOCK");
    r = b_send(1000, 1, 0);
    CHECK(r.ret == 0 && r.err == EAGAIN, "B with O_NONBLOCK while F is full: %ld sent (%s)", r.ret,
          tu_errname(r.err));
    r = ta_call(&C[B], TA_NONBLOCK, 0, 0, 0, NULL, 0);
    CHECK(r.ret == 0, "B: clear O_NONBLOCK");
    ta_expect_empty(&C[R], "R after B's O_NONBLOCK send failed");

    /* SO_SNDTIMEO */
    struct timeval tv = {0, 300000};
    r = ta_call(&C[B], TA_SETOPT, 0, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    CHECK(r.ret == 0, "B: SO_SNDTIMEO");
    double t0 = tu_now();
    r = b_send(1001, 1, 0);
    double took = tu_now() - t0;
    CHECK(r.ret == 0 && r.err == EAGAIN, "B with SO_SNDTIMEO 300 ms while F is full: %ld sent (%s)", r.ret,
          tu_errname(r.err));
    CHECK(took >= 0.28 && took < 2.0, "B's send with SO_SNDTIMEO 300 ms returned after %.3f s", took);
    memset(&tv, 0, sizeof tv);
    r = ta_call(&C[B], TA_SETOPT, 0, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    CHECK(r.ret == 0, "B: SO_SNDTIMEO 0");
    ta_expect_empty(&C[R], "R after B's timed-out send");
    tu_ok("while F is full: O_NONBLOCK send -> EAGAIN, send with SO_SNDTIMEO 300 ms -> EAGAIN after %.2f s; "
          "R got neither",
          took);

    /* A blocking send, a poller and an epoll_wait for room sleep. */
    uint32_t id[2] = {B_ID, 2000};
    ta_begin(&C[B], TA_BURST_SEND, 0, 1, -PAYLOAD, id, sizeof id);
    ta_still_blocked(&C[B], 200, "B's blocking send while F is full");
    ta_expect_empty(&C[R], "R while B is held back");
    ta_still_blocked(&C[B], 100, "B's blocking send while F is full");
    tu_ok("a blocking send by B is still asleep after 300 ms, nobody has its message");

    /* F reads one message (one of PAYLOAD bytes): room for one more of those. */
    r = ta_call(&C[F], TA_BURST_RECV, 0, 1, 0, NULL, 0);
    CHECK(r.ret == 1, "F: recv");
    t0 = tu_now();
    r = ta_end_within(&C[B], 2000);
    CHECK(r.ret == 1, "B's held-back send: %ld (%s)", r.ret, tu_errname(r.err));
    double send_woke = tu_now() - t0;
    tu_ok("F read one message: B's held-back send completed (%.0f ms later)", send_woke * 1e3);

    log_sent(B_ID, 2000);
    expect_pairs(R, sent + nsent - 1, 1, "R after B's held-back send");
    /* F: the rest of what it had, then 2000; never 1000, 1001 or a failed one. */
    expect_pairs(F, sent + 1, nsent - 1, "F after it read");
    nsent = 0;
    tu_ok("R and F got every message exactly once and in order; none of the failed ones");
    CHECK(pollout_now(B) && pollout_now(R), "POLLOUT not set again on B and R once F is empty");

    /* Again, with epoll_wait(EPOLLOUT) on B and poll(POLLOUT) on R. */
    fill_f(3000);
    ta_begin(&C[B], TA_EPOLL, EPOLLOUT, 5000, 0, NULL, 0);
    ta_begin(&C[R], TA_POLL, POLLOUT, 5000, 0, NULL, 0);
    ta_still_blocked(&C[B], 200, "B's epoll_wait(EPOLLOUT) while F is full");
    ta_still_blocked(&C[R], 0, "R's poll(POLLOUT) while F is full");
    r = ta_call(&C[F], TA_BURST_RECV, 0, 1, 0, NULL, 0);
    CHECK(r.ret == 1, "F: recv");
    r = ta_end_within(&C[B], 2000);
    CHECK(r.ret == 1 && (r.revents & EPOLLOUT), "B's epoll_wait(EPOLLOUT) after F read: %ld, events 0x%x", r.ret,
          r.revents);
    r = ta_end_within(&C[R], 2000);
    CHECK(r.ret == 1 && (r.revents & POLLOUT), "R's poll(POLLOUT) after F read: %ld, revents 0x%x", r.ret,
          r.revents);
    expect_pairs(F, sent + 1, nsent - 1, "F draining");
    nsent = 0;
    CHECK(pollout_now(B), "POLLOUT not set on B once F is empty");
    tu_ok("F full again: B asleep in epoll_wait(EPOLLOUT) and R in poll(POLLOUT) both wake when F reads one");
}

/* "dropped N" on the `umcast list` line of socket ino (-1: not listed). */
static long listed_dropped(const char *list, unsigned long ino)
{
    char key[64];
    snprintf(key, sizeof key, "socket %9lu ", ino);
    const char *p = strstr(list, key);
    if (!p)
        return -1;
    const char *eol = strchr(p, '\n');
    const char *d = strstr(p, "dropped ");
    if (!d || (eol && d > eol))
        return -1;
    return strtol(d + 8, NULL, 10);
}

static void drop_when_full(void)
{
    /* F leaves (closes); D joins with DROP_WHEN_FULL. */
    struct ta_res r = ta_call(&C[F], TA_CLOSE, 0, 0, 0, NULL, 0);
    CHECK(r.ret == 0, "F: close");
    member(D, SMALL_RCVBUF, UNIX_MREQ_DROP_WHEN_FULL);
    unsigned long d_ino = (unsigned long)ta_ino(&C[D]);

    enum { N = 60 };
    double t0 = tu_now();
    r = b_send(0, N, 0);
    double took = tu_now() - t0;
    CHECK(r.ret == N, "B: %d blocking sends with D (DROP_WHEN_FULL, SO_RCVBUF %d) not reading: %ld sent (%s)", N,
          SMALL_RCVBUF, r.ret, tu_errname(r.err));
    CHECK(took < 2.0, "B's %d sends took %.2f s", N, took);
    CHECK(pollout_now(B), "POLLOUT clear on B while only a DROP_WHEN_FULL member is full");
    r = b_send(N, 1, MSG_DONTWAIT);
    CHECK(r.ret == 1, "B: MSG_DONTWAIT send while only D is full: %s", tu_errname(r.err));
    expect_range(R, 0, N + 1, "R (D full)");
    /* D: a prefix, then nothing. */
    r = ta_call(&C[D], TA_BURST_RECV, MSG_DONTWAIT, N + 1, 0, NULL, 0);
    CHECK(r.err == EAGAIN, "D: reading what it has: %s", tu_errname(r.err));
    int j = (int)r.ret;
    CHECK(j >= 1 && j < N + 1, "D (SO_RCVBUF %d) got %d of %d messages", SMALL_RCVBUF, j, N + 1);
    for (int i = 0; i < j; i++) {
        uint32_t q;
        memcpy(&q, r.data + 8 * i + 4, 4);
        CHECK(q == (uint32_t)i, "D's message %d is B#%u, expected B#%d (a prefix)", i, q, i);
    }
    char *list = tu_umcast("list");
    long dropped = listed_dropped(list, d_ino);
    CHECK(dropped == N + 1 - j, "`umcast list` shows D (socket %lu) with dropped %ld, expected %d:\n%s", d_ino,
          dropped, N + 1 - j, list);
    free(list);
    tu_ok("D (DROP_WHEN_FULL, not reading) never held B back (%d blocking sends in %.0f ms, MSG_DONTWAIT too, "
          "POLLOUT set); R got all %d, D the first %d and %ld dropped",
          N, took * 1e3, N + 1, j, dropped);

    /* D has room again: it gets new messages. */
    r = b_send(N + 1, 1, 0);
    CHECK(r.ret == 1, "B: send");
    expect_range(D, N + 1, 1, "D after reading");
    expect_range(R, N + 1, 1, "R");
    tu_ok("once D read its queue it gets new messages again");
}

int main(int argc, char **argv)
{
    TA_AGENT_DISPATCH(argc, argv);
    tu_start("t_seq_flow");
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < NA; i++) {
        ta_spawn(&C[i], names[i]);
        A[i] = -1;
    }
    tu_abstract_group(&group, "seq-flow");
    L = tu_seq_create_group(&group);
    member(B, 0, 0);
    member(R, 0, 0);
    member(F, SMALL_RCVBUF, 0);
    struct ta_res r = ta_call(&C[F], TA_GETINT, 0, SOL_SOCKET, SO_RCVBUF, NULL, 0);
    tu_ok("members B, R and F (SO_RCVBUF %ld)", r.ret);

    held_back();
    drop_when_full();

    for (int i = 0; i < NA; i++)
        ta_exit(&C[i]);
    tu_wait_all();
    for (int i = 0; i < NA; i++)
        if (A[i] >= 0)
            close(A[i]);
    close(L);
    return tu_done();
}
