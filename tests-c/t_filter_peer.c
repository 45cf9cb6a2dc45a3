/*
 * t_filter_peer: peer filters in SOCK_SEQPACKET groups (SPEC 6). The server
 * (this process) owns the listening socket L and the accepted sockets Ai;
 * the clients Ci are filter agents (this binary re-executed, one socket
 * each). Every program here is a table "first byte c -> return k, else 0"
 * (a zero-length message is refused: its first byte cannot be loaded), and
 * what each client must receive is computed from the tables in force:
 * both its own program and its peer's must pass a message, and the smaller
 * return value (truncation) wins.
 *
 *   Peer filters: P1 attached to A1 before ACCEPT_GROUP, P2 to A2 after;
 *   C1 and C2 receive only what they pass (C3, unfiltered, everything;
 *   UNIX_GROUP_STATS's `filtered` counts the refusals); C1 adds its own
 *   program (shorter truncations win, either refusal drops), then removes it:
 *   Ci's SO_GET_FILTER never shows the peer's program, Ci's
 *   SO_DETACH_FILTER removes only its own (a second one is ENOENT, as for a
 *   socket without a filter of its own) and the peer filter stays.
 *   What C1 sends is not filtered by P1 (the other members get it); what
 *   the server sends on A1 reaches C1 whole. The server replaces P2, locks
 *   A2 (its attach and detach: EPERM, P2 stays; C2's own filter still works)
 *   and detaches P1 (C1 gets everything again).
 *   SEND_TO_PEER: C5's peer A5 has program P5: C5 receives only what P5
 *   passes, the other members get everything C5 sends, and A5's copy of
 *   what C5 sends passes A5's own program, as the kernel does for any
 *   datagram reaching A5 (checked on an ordinary SEQPACKET pair first).
 *   A client's own program attached before the server's ACCEPT_GROUP (C6)
 *   applies to its group messages once it is a member, as a program
 *   attached before JOIN_GROUP does for a datagram member.
 */
#include "testutil.h"

#include <dirent.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <sys/syscall.h>
#include "filter_agent.h"

/* ------------------------------------------------------------------------ */
/* Table programs: "first byte c -> ret k", anything else (and an empty      */
/* message) -> 0                                                             */

struct entry {
    unsigned char c;
    unsigned k;
};

struct table {
    const char *name;
    const struct entry *e;
    size_t n;
    struct sock_filter prog[64];
    size_t len;
};

#define TABLE(nm, ...)                                                           \
    static const struct entry nm##_e[] = {__VA_ARGS__};                          \
    static struct table nm = {#nm, nm##_e, NELEM(nm##_e), {{0, 0, 0, 0}}, 0}

TABLE(P1, {'a', 6}, {'b', 6}, {'e', 6}, {'f', 8}, {'t', 100});
TABLE(O1, {'a', 3}, {'c', 3}, {'e', 10}, {'f', 2}, {'t', 100});
TABLE(P2, {'b', 100}, {'d', 3}, {'g', 100});
TABLE(O2, {'b', 100}, {'d', 100});
TABLE(P2R, {'c', 100});
TABLE(P5, {'k', 100});
TABLE(O6, {'a', 100}, {'g', 2});

static void build(struct table *t)
{
    size_t n = 0;
    t->prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0);
    for (size_t i = 0; i < t->n; i++) {
        t->prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, t->e[i].c, 0, 1);
        t->prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, t->e[i].k);
    }
    t->prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    t->len = n;
}

/* What the program returns for message s (0: refused). */
static unsigned model(const struct table *t, const char *s)
{
    if (!t)
        return 0xffffffffu;
    if (!s[0])
        return 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].c == (unsigned char)s[0])
            return t->e[i].k;
    return 0;
}

/* ------------------------------------------------------------------------ */

#define NC 6
static struct unix_mreq group;
static struct ta_agent C[NC + 1];
static int L, A[NC + 1];
static const struct table *own[NC + 1], *peer[NC + 1]; /* what is in force, for the model */
static unsigned long long filtered[NC + 1];           /* the model's count of refusals */
static int member[NC + 1];                            /* Ci is a member */

static const char *const round_msgs[] = {"apple-pie", "banana-split", "cherry-tart", "damson", "eclair-cake",
                                         "fudge-brownie", "grape",     "trifle",      "kiwi",   ""};

static void attach_ok(int fd, const struct table *t, const char *what)
{
    CHECK(fa_attach_raw(fd, t->prog, t->len) == 0, "%s: SO_ATTACH_FILTER %s", what, t->name);
}

static void server_expect_filter(int fd, const struct table *t, const char *what)
{
    socklen_t n = 0;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) == 0, "%s: SO_GET_FILTER", what);
    CHECK(n == (t ? t->len : 0), "%s: SO_GET_FILTER says %u instructions, expected %zu", what, n,
          t ? t->len : 0);
    if (t) {
        struct sock_filter got[64];
        socklen_t m = n;
        CHECK(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, got, &m) == 0 && memcmp(got, t->prog, n * 8) == 0,
              "%s: SO_GET_FILTER gave another program", what);
    }
}

static void client_send(int i, const char *s)
{
    struct fa_res r = fa_call(&C[i], FA_SEND, 0, 0, 0, s, strlen(s));
    CHECK(r.ret == (long)strlen(s), "C%d: send of \"%s\" gave %ld (%s)", i, s, r.ret,
          r.ret < 0 ? tu_errname(r.err) : "-");
}

/* Client i got exactly what the programs in force pass of msgs (in order). */
static void expect_passed(int i, const char *const *msgs, size_t n, const char *what)
{
    char w[160];
    for (size_t j = 0; j < n; j++) {
        unsigned a = model(own[i], msgs[j]), b = model(peer[i], msgs[j]);
        unsigned k = a < b ? a : b;
        if (k == 0) {
            filtered[i]++;
            continue;
        }
        size_t len = strlen(msgs[j]);
        snprintf(w, sizeof w, "%s: C%d (own %s, peer %s), message \"%s\"", what, i, own[i] ? own[i]->name : "-",
                 peer[i] ? peer[i]->name : "-", msgs[j]);
        fa_expect(&C[i], msgs[j], k < len ? k : len, w);
    }
    snprintf(w, sizeof w, "%s: C%d (own %s, peer %s)", what, i, own[i] ? own[i]->name : "-",
             peer[i] ? peer[i]->name : "-");
    fa_expect_empty(&C[i], w);
    struct unix_group_stats st = fa_stats(&C[i], &group);
    CHECK(st.filtered == filtered[i] && st.queued_messages == 0,
          "%s: UNIX_GROUP_STATS of C%d: filtered %llu (expected %llu), queued %llu", w, i, st.filtered,
          filtered[i], st.queued_messages);
}

/* C4 sends the round's messages; every member client checks what it got. */
static void do_round(const char *what)
{
    for (size_t j = 0; j < NELEM(round_msgs); j++)
        client_send(4, round_msgs[j]);
    for (int i = 1; i <= NC; i++)
        if (i != 4 && member[i])
            expect_passed(i, round_msgs, NELEM(round_msgs), what);
    for (int i = 1; i <= NC; i++)
        if (A[i] >= 0)
            tu_expect_empty(A[i], "server sockets get no group messages without SEND_TO_PEER");
}

static void client_detach(int i, int expect_err, const char *what)
{
    struct fa_res r = fa_call(&C[i], FA_SETOPT, 0, SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int));
    if (expect_err)
        CHECK(r.ret == -1 && r.err == expect_err, "%s: C%d's SO_DETACH_FILTER gave %ld (%s), expected %s", what,
              i, r.ret, tu_errname(r.err), tu_errname(expect_err));
    else
        CHECK(r.ret == 0, "%s: C%d's SO_DETACH_FILTER failed with %s", what, i, tu_errname(r.err));
}

static void kernel_reference(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    attach_ok(sv[1], &P5, "kernel");
    CHECK(send(sv[0], "lemon", 5, 0) == 5 && send(sv[0], "kiwi", 4, 0) == 4, "kernel: send");
    char buf[16];
    ssize_t r = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
    CHECK(r == 4 && memcmp(buf, "kiwi", 4) == 0, "kernel: a filtered SOCK_SEQPACKET socket got %zd bytes", r);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) == -1 && errno == EAGAIN, "kernel: more");
    /* The program on one end does not filter what that end sends. */
    CHECK(send(sv[1], "lemon", 5, 0) == 5 && recv(sv[0], buf, sizeof buf, MSG_DONTWAIT) == 5, "kernel: reverse");
    close(sv[0]);
    close(sv[1]);
    tu_ok("kernel, ordinary SOCK_SEQPACKET pair: a program on one end filters what reaches it, not what it sends");
}

int main(int argc, char **argv)
{
    FA_AGENT_DISPATCH(argc, argv);
    tu_start("t_filter_peer");
    static const char *names[NC + 1] = {"", "C1", "C2", "C3", "C4", "C5", "C6"};
    for (int i = 1; i <= NC; i++)
        fa_spawn(&C[i], names[i]);
    struct table *all[] = {&P1, &O1, &P2, &O2, &P2R, &P5, &O6};
    for (size_t i = 0; i < NELEM(all); i++)
        build(all[i]);
    kernel_reference();

    tu_abstract_group(&group, "filter-peer");
    L = tu_seq_create_group(&group);
    for (int i = 1; i <= NC; i++) {
        A[i] = -1;
        fa_socket(&C[i], SOCK_SEQPACKET, 0);
        struct fa_res r = fa_call(&C[i], FA_CONNECT, 0, 0, 0, &group.address, unix_mreq_addrlen(&group));
        CHECK(r.ret == 0, "C%d: connect failed with %s", i, tu_errname(r.err));
        A[i] = tu_seq_accept(L, &C[i]);
    }

    /* P1 before ACCEPT_GROUP, P2 and P5 after. */
    attach_ok(A[1], &P1, "A1 before ACCEPT_GROUP");
    peer[1] = &P1;
    CHECK(tu_seq_accept_group(A[1], NULL, 0) == 0, "ACCEPT_GROUP(A1)");
    CHECK(tu_seq_accept_group(A[2], &group, 0) == 0, "ACCEPT_GROUP(A2)");
    attach_ok(A[2], &P2, "A2 after ACCEPT_GROUP");
    peer[2] = &P2;
    CHECK(tu_seq_accept_group(A[3], NULL, 0) == 0, "ACCEPT_GROUP(A3)");
    CHECK(tu_seq_accept_group(A[4], NULL, 0) == 0, "ACCEPT_GROUP(A4)");
    CHECK(tu_seq_accept_group(A[5], NULL, UNIX_MREQ_SEND_TO_PEER) == 0, "ACCEPT_GROUP(A5, SEND_TO_PEER)");
    attach_ok(A[5], &P5, "A5 after ACCEPT_GROUP");
    peer[5] = &P5;
    for (int i = 1; i <= 5; i++)
        member[i] = 1; /* C6 becomes a member at the end */

    do_round("peer filters only");
    tu_ok("C1 (P1 attached to A1 before ACCEPT_GROUP), C2 (P2 attached to A2 after) and C5 (P5, SEND_TO_PEER) "
          "got only what their peer's program passes, truncated by it; C3 everything; stats count the refusals");

    fa_expect_filter(&C[1], NULL, 0, "C1 (peer filter only)");
    fa_expect_filter(&C[2], NULL, 0, "C2 (peer filter only)");
    fa_expect_filter(&C[5], NULL, 0, "C5 (peer filter only)");
    server_expect_filter(A[1], &P1, "A1");
    server_expect_filter(A[2], &P2, "A2");
    client_detach(2, ENOENT, "C2 without a program of its own");
    do_round("after C2's SO_DETACH_FILTER");
    tu_ok("the clients' SO_GET_FILTER does not show their peer's program (the server's does); C2's "
          "SO_DETACH_FILTER is ENOENT and P2 still applies");

    fa_attach_ok(&C[1], O1.prog, O1.len, "C1's own program");
    own[1] = &O1;
    fa_attach_ok(&C[2], O2.prog, O2.len, "C2's own program");
    own[2] = &O2;
    fa_expect_filter(&C[1], O1.prog, O1.len, "C1 with its own program");
    fa_expect_filter(&C[2], O2.prog, O2.len, "C2 with its own program");
    do_round("own and peer programs");
    tu_ok("with programs of their own too, C1 and C2 get what both pass, cut to the smaller return value; "
          "SO_GET_FILTER shows only their own");

    client_detach(1, 0, "C1");
    own[1] = NULL;
    client_detach(1, ENOENT, "C1 after detaching its own");
    client_detach(2, 0, "C2");
    own[2] = NULL;
    fa_expect_filter(&C[1], NULL, 0, "C1 after SO_DETACH_FILTER");
    do_round("after the clients detached their own");
    tu_ok("the clients' SO_DETACH_FILTER removed only their own programs (a second one: ENOENT); "
          "the peer filters stay");

    /* What C1 sends is not filtered by P1. */
    const char *const c1msgs[] = {"zebra", "cherry-c1", "banana-c1", ""};
    for (size_t j = 0; j < NELEM(c1msgs); j++)
        client_send(1, c1msgs[j]);
    for (int i = 2; i <= 5; i++)
        expect_passed(i, c1msgs, NELEM(c1msgs), "C1's messages");
    fa_expect_empty(&C[1], "C1 (no LOOPBACK)");
    tu_expect_empty(A[1], "A1 (no SEND_TO_PEER)");
    tu_ok("what C1 sends is not filtered by P1: C3 and C4 got all 4 messages (C2 and C5 what their peers pass)");

    /* The server's own messages on A1 are ordinary: no peer filtering. */
    CHECK(send(A[1], "zulu-direct", 11, 0) == 11, "send on A1");
    fa_expect_str(&C[1], "zulu-direct", "C1: the server's own message on A1");
    fa_expect_empty(&C[1], "C1");
    tu_ok("what the server sends on A1 reaches C1 whole (P1 refuses 'z' group messages)");

    attach_ok(A[2], &P2R, "A2 replaces P2");
    peer[2] = &P2R;
    server_expect_filter(A[2], &P2R, "A2 after replacing");
    do_round("after A2 replaced its program");
    tu_setint(A[2], SOL_SOCKET, SO_LOCK_FILTER, 1);
    CHECK_ERRNO(fa_attach_raw(A[2], P2.prog, P2.len), EPERM);
    CHECK_ERRNO(setsockopt(A[2], SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int)), EPERM);
    fa_attach_ok(&C[2], O2.prog, O2.len, "C2's own program, A2 locked");
    own[2] = &O2;
    do_round("A2 locked, C2 with its own program");
    client_detach(2, 0, "C2, A2 locked");
    own[2] = NULL;
    do_round("A2 locked");
    tu_ok("the server replaced P2 (C2 follows the new program); A2 locked: its attach and detach fail with "
          "EPERM and the program stays; C2 still attaches and detaches its own");

    CHECK(setsockopt(A[1], SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int)) == 0, "A1: SO_DETACH_FILTER");
    peer[1] = NULL;
    server_expect_filter(A[1], NULL, "A1 after SO_DETACH_FILTER");
    do_round("after A1 detached P1");
    tu_ok("the server's SO_DETACH_FILTER on A1 removed the peer filter: C1 gets everything");

    /* SEND_TO_PEER: A5's copy of C5's messages passes A5's own program. */
    server_expect_filter(A[5], &P5, "A5");
    const char *const c5msgs[] = {"kiwi-from-c5", "lemon-from-c5"};
    for (size_t j = 0; j < NELEM(c5msgs); j++)
        client_send(5, c5msgs[j]);
    for (int i = 1; i <= 4; i++)
        expect_passed(i, c5msgs, NELEM(c5msgs), "C5's messages");
    fa_expect_empty(&C[5], "C5 (no LOOPBACK)");
    tu_expect_str(A[5], "kiwi-from-c5", "A5: SEND_TO_PEER copy that P5 passes");
    char got[64];
    errno = 0;
    ssize_t n = recv(A[5], got, sizeof got, MSG_DONTWAIT);
    CHECK(n == -1 && errno == EAGAIN,
          "A5 (program P5, first byte 'k' only) got C5's SEND_TO_PEER copy \"%.*s\" (%zd bytes), which P5 "
          "refuses: the kernel would have dropped it (see the kernel reference above)",
          (int)(n > 0 ? n : 0), got, n);
    tu_ok("C5's messages reach every other member unfiltered by P5; A5's SEND_TO_PEER copies pass A5's own "
          "program (only \"kiwi-from-c5\"), as any datagram reaching A5 does in the kernel");

    /* A client's own program attached before it became a member. */
    fa_attach_ok(&C[6], O6.prog, O6.len, "C6 before ACCEPT_GROUP");
    CHECK(tu_seq_accept_group(A[6], NULL, 0) == 0, "ACCEPT_GROUP(A6)");
    fa_expect_filter(&C[6], O6.prog, O6.len, "C6 (its own program, in the kernel)");
    own[6] = &O6;
    member[6] = 1;
    do_round("C6's own program attached before ACCEPT_GROUP");
    tu_ok("C6's own program, attached before the server's ACCEPT_GROUP, filters its group messages");

    for (int i = 1; i <= NC; i++)
        fa_exit(&C[i]);
    tu_wait_all();
    for (int i = 1; i <= NC; i++)
        close(A[i]);
    close(L);
    return tu_done();
}
