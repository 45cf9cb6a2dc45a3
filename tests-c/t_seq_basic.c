/*
 * t_seq_basic: SOCK_SEQPACKET groups (SPEC 4 and the patch's "SOCK_SEQPACKET
 * semantics"). The server (this process) creates the group on its listening
 * socket L and accept()s; six clients are agents (the test binary
 * re-executed, forked before anything exists, making only plain socket
 * calls on one connected socket Ci).
 *
 *   C1 LOOPBACK, C2 SEND_TO_PEER: connect before any ACCEPT_GROUP; made
 *      members with an empty address and with the group's own address.
 *   C3 (flags 0), C4 (LOOPBACK|SEND_TO_PEER), C5 (DROP_WHEN_FULL): connect
 *      after C1 and C2 are members, and are asleep in recv, poll and
 *      epoll_wait respectively when the server makes them members; the next
 *      group message wakes each of them. A message sent before their
 *      ACCEPT_GROUP never reaches them.
 *   C6: connected and accepted, never a member.
 *
 * Routing: a member's message reaches every other member, itself only with
 * LOOPBACK, its peer Ai only with SEND_TO_PEER; a non-member's message
 * reaches its peer only; what the server sends on Ai reaches Ci alone.
 * Then message boundaries through send, write, sendmsg and MSG_EOR
 * (0 to 100000 bytes), truncation (recvmsg MSG_TRUNC flag, recv MSG_TRUNC
 * returning the real length, the rest discarded) compared with the kernel's
 * answers on an ordinary SEQPACKET socketpair, and one total order: three
 * members send 150 messages each at once and every pair of receivers sees
 * the messages they both get in the same order (and each sender's in FIFO
 * order), the SEND_TO_PEER copies included.
 */
#include "testutil.h"

#define NA 6
#define BURST 150
#define BURST_MAX 200

static struct unix_mreq group;
static struct ta_agent C[NA + 1]; /* C[1]..C[6] */
static int L;                     /* the group's listening socket */
static int A[NA + 1];             /* the server's accepted sockets */

/* The server's socket fd gets exactly (s). */
static void srv_expect(int fd, const char *s, const char *what) { tu_expect_str(fd, s, what); }

/* Nothing reaches any of the server's accepted sockets. */
static void srv_expect_all_empty(const char *what)
{
    char w[128];
    for (int i = 1; i <= NA; i++) {
        if (A[i] < 0)
            continue;
        snprintf(w, sizeof w, "%s: server socket A%d", what, i);
        tu_expect_empty(A[i], w);
    }
}

static void clients_expect_empty(const int *which, const char *what)
{
    for (; *which; which++)
        ta_expect_empty(&C[*which], what);
}

static void routing_first_members(void)
{
    /* C1 and C2 connect before any ACCEPT_GROUP. */
    ta_connect(&C[1], &group, 0);
    A[1] = tu_seq_accept(L, &C[1]);
    ta_connect(&C[2], &group, 0);
    A[2] = tu_seq_accept(L, &C[2]);

    /* Not members yet: ordinary connections. */
    ta_send_str(&C[1], "C1 before membership");
    srv_expect(A[1], "C1 before membership", "A1 (ordinary connection)");
    ta_expect_empty(&C[2], "C2 before any membership");
    CHECK(send(A[2], "server to C2", 12, 0) == 12, "send on A2");
    ta_expect_str(&C[2], "server to C2");
    ta_expect_empty(&C[1], "C1 (the server wrote to C2)");
    tu_ok("before ACCEPT_GROUP, C1 and C2 are ordinary connected SEQPACKET sockets");

    CHECK(tu_seq_accept_group(A[1], NULL, UNIX_MREQ_LOOPBACK) == 0, "ACCEPT_GROUP(A1, empty address, LOOPBACK)");
    CHECK(tu_seq_accept_group(A[2], &group, UNIX_MREQ_SEND_TO_PEER) == 0,
          "ACCEPT_GROUP(A2, the group's address, SEND_TO_PEER)");

    ta_send_str(&C[1], "m1 from C1");
    ta_expect_str(&C[1], "m1 from C1"); /* LOOPBACK */
    ta_expect_str(&C[2], "m1 from C1");
    tu_expect_empty(A[1], "A1: C1 has no SEND_TO_PEER");
    tu_expect_empty(A[2], "A2: not C1's peer");
    ta_send_str(&C[2], "m2 from C2");
    ta_expect_str(&C[1], "m2 from C2");
    ta_expect_empty(&C[2], "C2 without LOOPBACK after its own send");
    srv_expect(A[2], "m2 from C2", "A2 (SEND_TO_PEER copy)");
    tu_expect_empty(A[1], "A1: not C2's peer");
    tu_expect_empty(A[2], "A2: exactly one copy");
    tu_ok("C1 (LOOPBACK, empty address) and C2 (SEND_TO_PEER, group address): each reaches the other; "
          "C1 itself; A2 only C2's message, A1 nothing");
}

static void blocked_new_members(void)
{
    /* C3..C6 connect after C1 and C2 became members. */
    for (int i = 3; i <= NA; i++) {
        ta_connect(&C[i], &group, 0);
        A[i] = tu_seq_accept(L, &C[i]);
    }
    /* Sent to the group while C3..C5 are not members: never theirs. */
    ta_send_str(&C[1], "before C3-C5 joined");
    ta_expect_str(&C[1], "before C3-C5 joined");
    ta_expect_str(&C[2], "before C3-C5 joined");

    /* C3 sleeps in recv, C4 in poll, C5 in epoll_wait. */
    ta_begin(&C[3], TA_RECV, 0, 256, 0, NULL, 0);
    ta_begin(&C[4], TA_POLL, POLLIN, 10000, 0, NULL, 0);
    ta_begin(&C[5], TA_EPOLL, EPOLLIN, 10000, 0, NULL, 0);
    for (int i = 3; i <= 5; i++)
        ta_still_blocked(&C[i], i == 3 ? 300 : 0, "client waiting before ACCEPT_GROUP");
    tu_ok("C3 asleep in recv, C4 in poll, C5 in epoll_wait (connected, not members)");

    CHECK(tu_seq_accept_group(A[3], NULL, 0) == 0, "ACCEPT_GROUP(A3)");
    CHECK(tu_seq_accept_group(A[4], NULL, UNIX_MREQ_LOOPBACK | UNIX_MREQ_SEND_TO_PEER) == 0, "ACCEPT_GROUP(A4)");
    CHECK(tu_seq_accept_group(A[5], &group, UNIX_MREQ_DROP_WHEN_FULL) == 0, "ACCEPT_GROUP(A5)");
    for (int i = 3; i <= 5; i++)
        ta_still_blocked(&C[i], i == 3 ? 200 : 0, "new member with nothing to read yet");
    tu_ok("after ACCEPT_GROUP with nothing sent, C3-C5 stay asleep");

    ta_send_str(&C[2], "welcome");
    struct ta_res r = ta_end_within(&C[3], 3000);
    CHECK(r.ret == 7 && memcmp(r.data, "welcome", 7) == 0, "C3's blocked recv gave %ld (%s) \"%.*s\"", r.ret,
          r.ret < 0 ? tu_errname(r.err) : "-", (int)r.len, (const char *)r.data);
    r = ta_end_within(&C[4], 3000);
    CHECK(r.ret == 1 && (r.revents & POLLIN), "C4's poll gave %ld, revents 0x%x (%s)", r.ret, r.revents,
          r.ret < 0 ? tu_errname(r.err) : "-");
    r = ta_end_within(&C[5], 3000);
    CHECK(r.ret == 1 && (r.revents & EPOLLIN), "C5's epoll_wait gave %ld, events 0x%x (%s)", r.ret, r.revents,
          r.ret < 0 ? tu_errname(r.err) : "-");
    ta_expect_str(&C[4], "welcome");
    ta_expect_str(&C[5], "welcome");
    ta_expect_str(&C[1], "welcome");
    ta_expect_empty(&C[2], "C2 (no LOOPBACK)");
    srv_expect(A[2], "welcome", "A2 (SEND_TO_PEER copy)");
    static const int new_members[] = {3, 4, 5, 6, 0};
    clients_expect_empty(new_members, "no message sent before the ACCEPT_GROUP, and C6 is no member");
    srv_expect_all_empty("after welcome");
    tu_ok("a group message wakes the recv, poll and epoll_wait that slept since before ACCEPT_GROUP; "
          "the message sent before it reached none of them");
}

static void routing_all_rows(void)
{
    /* C4: LOOPBACK|SEND_TO_PEER */
    ta_send_str(&C[4], "from C4");
    for (int i = 1; i <= 5; i++)
        ta_expect_str(&C[i], "from C4");
    srv_expect(A[4], "from C4", "A4 (SEND_TO_PEER copy)");
    /* C3: flags 0 */
    ta_send_str(&C[3], "from C3");
    for (int i = 1; i <= 5; i++)
        if (i != 3)
            ta_expect_str(&C[i], "from C3");
    /* C5: DROP_WHEN_FULL (with room: as flags 0) */
    ta_send_str(&C[5], "from C5");
    for (int i = 1; i <= 4; i++)
        ta_expect_str(&C[i], "from C5");
    static const int all[] = {1, 2, 3, 4, 5, 6, 0};
    clients_expect_empty(all, "after the members' messages");
    srv_expect_all_empty("after the members' messages");
    tu_ok("C3 (flags 0), C4 (LOOPBACK|SEND_TO_PEER), C5 (DROP_WHEN_FULL) reach every other member, C4 "
          "itself and A4; C6 nothing");

    /* A non-member's message reaches its peer only. */
    ta_send_str(&C[6], "from non-member C6");
    srv_expect(A[6], "from non-member C6", "A6");
    clients_expect_empty(all, "after C6's message");
    srv_expect_all_empty("after C6's message");
    tu_ok("non-member C6's message reaches A6 alone");

    /* The server's message on Ai reaches Ci alone, members or not. */
    for (int i = 1; i <= NA; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "server to C%d only", i);
        CHECK(send(A[i], msg, (size_t)n, MSG_EOR) == n, "send on A%d", i);
        ta_expect_str(&C[i], msg);
        clients_expect_empty(all, "after the server's message");
    }
    srv_expect_all_empty("after the server's messages");
    tu_ok("the server's message on Ai reaches Ci alone (every member, LOOPBACK or not, and C6)");

    /* The members' replies: to the group, never to their peer (unless SEND_TO_PEER). */
    ta_send_str(&C[1], "C1 again");
    for (int i = 1; i <= 5; i++)
        ta_expect_str(&C[i], "C1 again");
    tu_expect_empty(A[1], "A1 after C1's group message");
    clients_expect_empty(all, "after C1's message");
}

/* One kernel SEQPACKET socketpair's answers, for comparison. */
struct trunc_answer {
    long ret1;
    int flags1;
    char head[16];
    long ret2;
};

static struct trunc_answer kernel_trunc(int recv_flags)
{
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0, "socketpair");
    CHECK(send(sp[0], "0123456789abcdefghij", 20, 0) == 20, "send");
    CHECK(send(sp[0], "next", 4, 0) == 4, "send");
    struct trunc_answer a;
    memset(&a, 0, sizeof a);
    char buf[64];
    struct iovec iov = {buf, 8};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    a.ret1 = recvmsg(sp[1], &mh, recv_flags);
    a.flags1 = mh.msg_flags;
    memcpy(a.head, buf, 8);
    a.ret2 = recv(sp[1], buf, sizeof buf, 0);
    CHECK(a.ret2 == 4 && memcmp(buf, "next", 4) == 0, "kernel: the message after the truncated one");
    close(sp[0]);
    close(sp[1]);
    return a;
}

static void boundaries(void)
{
    static const size_t sizes[] = {1, 7, 0, 1000, 65536, 0, 100000, 3};
    static const int ops[] = {TA_SEND, TA_WRITE, TA_SEND, TA_SENDMSG, TA_SEND, TA_SENDMSG, TA_WRITE, TA_SEND};
    static const int flags[] = {MSG_EOR, 0, 0, MSG_EOR, MSG_EOR, 0, 0, MSG_NOSIGNAL | MSG_EOR};
    static const char *opnames[] = {"?", "?", "send", "write", "sendmsg"};
    size_t n = sizeof sizes / sizeof sizes[0];
    unsigned char *msg = malloc(100000);
    CHECK(msg != NULL, "malloc");
    /* C2 sends everything; C3 polls before each receive (a 0-byte message is readable too). */
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            msg[i] = (unsigned char)(i * 7 + k);
        struct ta_res r = ta_call(&C[2], ops[k], flags[k], 0, 0, msg, sizes[k]);
        CHECK(r.ret == (long)sizes[k], "C2: %s of %zu bytes (flags 0x%x) gave %ld (%s)", opnames[ops[k]], sizes[k],
              flags[k], r.ret, r.ret < 0 ? tu_errname(r.err) : "-");
    }
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            msg[i] = (unsigned char)(i * 7 + k);
        char what[96];
        snprintf(what, sizeof what, "message %zu (%zu bytes, %s)", k, sizes[k], opnames[ops[k]]);
        struct ta_res r = ta_call(&C[3], TA_POLL, POLLIN, 0, 0, NULL, 0);
        CHECK(r.ret == 1 && (r.revents & POLLIN), "%s: C3 not readable (poll %ld, revents 0x%x)", what, r.ret,
              r.revents);
        ta_expect(&C[1], msg, sizes[k], what);
        ta_expect(&C[3], msg, sizes[k], what);
        r = ta_call(&C[4], TA_READ, 0, 200000, 0, NULL, 0);
        CHECK(r.ret == (long)sizes[k] && memcmp(r.data, msg, sizes[k]) == 0, "%s: C4 read() gave %ld bytes", what,
              r.ret);
        r = ta_call(&C[5], TA_RECVMSG, 0, 200000, 0, NULL, 0);
        CHECK(r.ret == (long)sizes[k] && memcmp(r.data, msg, sizes[k]) == 0 && r.mflags == 0,
              "%s: C5 recvmsg gave %ld bytes, flags 0x%x", what, r.ret, r.mflags);
        tu_expect_msg(A[2], msg, sizes[k], "A2 (C2's SEND_TO_PEER copy)");
    }
    static const int members[] = {1, 2, 3, 4, 5, 6, 0};
    clients_expect_empty(members, "after the boundary messages");
    free(msg);
    tu_ok("send/write/sendmsg (3 iovecs), with and without MSG_EOR, of 0, 1, 3, 7, 1000, 65536 and 100000 "
          "bytes arrive as sent, one message per receive (recv, read, recvmsg), 0-byte ones readable by poll");

    /* Truncation, compared with the kernel's SEQPACKET answers. */
    struct trunc_answer k0 = kernel_trunc(0), kt = kernel_trunc(MSG_TRUNC);
    CHECK(k0.ret1 == 8 && (k0.flags1 & MSG_TRUNC), "kernel: recvmsg of 20 bytes into 8");
    ta_send_str(&C[2], "0123456789abcdefghij");
    ta_send_str(&C[2], "next");
    struct ta_res r = ta_call(&C[3], TA_RECVMSG, 0, 8, 0, NULL, 0);
    CHECK(r.ret == k0.ret1 && r.mflags == k0.flags1 && memcmp(r.data, k0.head, 8) == 0,
          "C3: recvmsg of a 20-byte message into 8 bytes gave %ld, msg_flags 0x%x; the kernel gives %ld, 0x%x",
          r.ret, r.mflags, k0.ret1, k0.flags1);
    ta_expect_str(&C[3], "next");
    r = ta_call(&C[4], TA_RECVMSG, MSG_TRUNC, 8, 0, NULL, 0);
    CHECK(r.ret == kt.ret1 && r.mflags == kt.flags1 && r.len == 8 && memcmp(r.data, kt.head, 8) == 0,
          "C4: recvmsg(MSG_TRUNC) of a 20-byte message into 8 bytes gave %ld, msg_flags 0x%x; the kernel "
          "gives %ld, 0x%x",
          r.ret, r.mflags, kt.ret1, kt.flags1);
    ta_expect_str(&C[4], "next");
    r = ta_call(&C[5], TA_RECV, 0, 20, 0, NULL, 0);
    CHECK(r.ret == 20 && memcmp(r.data, "0123456789abcdefghij", 20) == 0, "C5: recv with an exact buffer");
    r = ta_call(&C[5], TA_RECVMSG, 0, 4, 0, NULL, 0);
    CHECK(r.ret == 4 && r.mflags == 0, "C5: recvmsg with an exact buffer gave %ld, msg_flags 0x%x", r.ret,
          r.mflags);
    r = ta_call(&C[1], TA_RECV, 0, 3, 0, NULL, 0);
    CHECK(r.ret == 3 && memcmp(r.data, "012", 3) == 0, "C1: recv into 3 bytes gave %ld", r.ret);
    ta_expect_str(&C[1], "next");
    /* The server's SEND_TO_PEER copy on A2 too. */
    char buf[64];
    struct iovec iov = {buf, 8};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    long got = recvmsg(A[2], &mh, 0);
    CHECK(got == k0.ret1 && mh.msg_flags == k0.flags1 && memcmp(buf, k0.head, 8) == 0,
          "A2: recvmsg of the 20-byte copy into 8 bytes gave %ld, msg_flags 0x%x; the kernel gives %ld, 0x%x", got,
          mh.msg_flags, k0.ret1, k0.flags1);
    tu_expect_str(A[2], "next", "A2 after the truncated copy");
    clients_expect_empty(members, "after the truncated messages");
    srv_expect_all_empty("after the truncated messages");
    tu_ok("a smaller buffer: recvmsg gives the head and MSG_TRUNC (%ld, 0x%x as the kernel), with the "
          "MSG_TRUNC flag the real length (%ld), and the rest is discarded",
          k0.ret1, k0.flags1, kt.ret1);
}

/* Received (sender, seq) pairs. */
struct seqlist {
    uint32_t n;
    uint32_t (*v)[2];
};

static struct seqlist take_pairs(const struct ta_res *r)
{
    struct seqlist l = {(uint32_t)(r->len / 8), malloc(r->len + 8)};
    CHECK(l.v != NULL, "malloc");
    memcpy(l.v, r->data, r->len);
    return l;
}

static int in_set(uint32_t s, const uint32_t *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == s)
            return 1;
    return 0;
}

/* Each sender's messages 0..BURST-1 in order, only from the expected senders. */
static void check_fifo(const struct seqlist *l, const uint32_t *senders, int ns, const char *who)
{
    CHECK(l->n == (uint32_t)(ns * BURST), "%s received %u messages, expected %d", who, l->n, ns * BURST);
    uint32_t next[NA + 1] = {0};
    for (uint32_t i = 0; i < l->n; i++) {
        uint32_t s = l->v[i][0], q = l->v[i][1];
        CHECK(in_set(s, senders, ns), "%s got a message of C%u", who, s);
        CHECK(q == next[s], "%s: from C%u got seq %u, expected %u (per-sender FIFO)", who, s, q, next[s]);
        next[s]++;
    }
}

/* The messages a and b both received come in the same order. */
static void check_same_order(const struct seqlist *a, const uint32_t *sa, int na, const char *an,
                             const struct seqlist *b, const uint32_t *sb, int nb, const char *bn)
{
    uint32_t i = 0, j = 0, common = 0;
    for (;;) {
        while (i < a->n && !in_set(a->v[i][0], sb, nb))
            i++;
        while (j < b->n && !in_set(b->v[j][0], sa, na))
            j++;
        if (i == a->n || j == b->n)
            break;
        CHECK(a->v[i][0] == b->v[j][0] && a->v[i][1] == b->v[j][1],
              "total order: common message %u is C%u#%u at %s but C%u#%u at %s", common, a->v[i][0], a->v[i][1],
              an, b->v[j][0], b->v[j][1], bn);
        i++, j++, common++;
    }
    CHECK(i == a->n && j == b->n, "total order: %s and %s do not have the same common messages", an, bn);
}

static void total_order(void)
{
    /* C1, C2 and C4 send at once; C1 and C4 have LOOPBACK, A2 and A4 get copies. */
    static const int senders[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        uint32_t id[2] = {(uint32_t)senders[k], 0};
        ta_begin(&C[senders[k]], TA_BURST_SEND, 0, BURST, BURST_MAX, id, sizeof id);
    }
    for (int k = 0; k < 3; k++) {
        struct ta_res r = ta_end(&C[senders[k]]);
        CHECK(r.ret == BURST, "C%d sent %ld of %d messages (%s)", senders[k], r.ret, BURST, tu_errname(r.err));
    }
    /* What each receiver must get. */
    static const uint32_t all3[] = {1, 2, 4}, not2[] = {1, 4}, only2[] = {2}, only4[] = {4};
    struct {
        int who; /* client index, or -2 / -4 for A2 / A4 */
        const uint32_t *from;
        int nfrom;
    } rx[] = {{1, all3, 3}, {2, not2, 2}, {3, all3, 3}, {4, all3, 3}, {5, all3, 3}, {-2, only2, 1}, {-4, only4, 1}};
    int nrx = (int)(sizeof rx / sizeof rx[0]);
    struct seqlist lists[8];
    char names[8][16];
    for (int k = 0; k < nrx; k++) {
        int expect = rx[k].nfrom * BURST;
        if (rx[k].who > 0) {
            snprintf(names[k], sizeof names[k], "C%d", rx[k].who);
            struct ta_res r = ta_call(&C[rx[k].who], TA_BURST_RECV, 0, expect, 0, NULL, 0);
            CHECK(r.ret == expect, "C%d received %ld of %d messages (%s)", rx[k].who, r.ret, expect,
                  tu_errname(r.err));
            lists[k] = take_pairs(&r);
        } else {
            int fd = A[-rx[k].who];
            snprintf(names[k], sizeof names[k], "A%d", -rx[k].who);
            lists[k].n = 0;
            lists[k].v = malloc(sizeof *lists[k].v * (size_t)expect);
            CHECK(lists[k].v != NULL, "malloc");
            static unsigned char buf[65536];
            for (int m = 0; m < expect; m++) {
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                struct tu_msg_hdr h;
                CHECK(n >= 0 && tu_check_msg(buf, n, &h) == 0, "%s: message %d of %d bad or missing (%zd)",
                      names[k], m, expect, n);
                lists[k].v[m][0] = h.sender;
                lists[k].v[m][1] = h.seq;
                lists[k].n++;
            }
        }
        check_fifo(&lists[k], rx[k].from, rx[k].nfrom, names[k]);
    }
    for (int a = 0; a < nrx; a++)
        for (int b = a + 1; b < nrx; b++)
            check_same_order(&lists[a], rx[a].from, rx[a].nfrom, names[a], &lists[b], rx[b].from, rx[b].nfrom,
                             names[b]);
    static const int all[] = {1, 2, 3, 4, 5, 6, 0};
    clients_expect_empty(all, "after the bursts");
    srv_expect_all_empty("after the bursts");
    for (int k = 0; k < nrx; k++)
        free(lists[k].v);
    tu_ok("3 members x %d concurrent messages: every receiver (5 members, 2 SEND_TO_PEER copies) got "
          "exactly its messages, each sender's in order, and every pair in one common order",
          BURST);
}

int main(int argc, char **argv)
{
    TA_AGENT_DISPATCH(argc, argv);
    tu_start("t_seq_basic");
    signal(SIGPIPE, SIG_IGN);
    static const char *names[NA + 1] = {"", "C1", "C2", "C3", "C4", "C5", "C6"};
    for (int i = 1; i <= NA; i++)
        ta_spawn(&C[i], names[i]);
    tu_ok("%d client processes started (re-executed, nothing created yet)", NA);

    tu_abstract_group(&group, "seq-basic");
    L = tu_seq_create_group(&group);
    for (int i = 0; i <= NA; i++)
        A[i] = -1;

    routing_first_members();
    blocked_new_members();
    routing_all_rows();
    boundaries();
    total_order();

    for (int i = 1; i <= NA; i++)
        ta_exit(&C[i]);
    tu_wait_all();
    for (int i = 1; i <= NA; i++)
        close(A[i]);
    close(L);
    return tu_done();
}
