/*
 * t_seq_end: how a SOCK_SEQPACKET membership ends (SPEC 2 LEAVE_GROUP, 4, 7),
 * with a path group. Clients are agents (the test binary re-executed); the
 * server is this process. O (observer) and S (sender) are members
 * throughout and must not be disturbed by the others' endings.
 *
 *   LEAVE_GROUP from the client end (Ci)
 *   LEAVE_GROUP from the server end (Ai, with the group's address)
 *   shutdown(SHUT_RD) on Ci
 *   the server closes Ai
 *   the client closes Ci
 *   the client process is SIGKILLed (and, full, while it holds a sender back)
 *
 * After an ending the former member gets no group message sent later, what
 * was queued before stays readable, and what it sends reaches its peer only
 * (once: the SEND_TO_PEER copy ends too). After SHUT_RD and after the
 * server's close, receives and sends answer as the kernel's do on an
 * ordinary SEQPACKET connection (compared with a socketpair here): queued
 * data, then 0; a send to a closed peer fails with EPIPE.
 *
 * Each ending is tried twice: first with a client that has used Ci (a recv)
 * since the server's ACCEPT_GROUP, then - at the end - with a client that
 * made no call on Ci since it (the membership exists from ACCEPT_GROUP on,
 * whatever the client did since; the library's client side learns of it
 * lazily, which these variants exercise).
 */
#include "testutil.h"

enum { O, S, CL, SL, SH, SC, CC, K, K2, CL2, SL2, SH2, SC2, CC2, NA };
static const char *names[NA] = {"O", "S", "CL", "SL", "SH", "SC", "CC", "K", "K2",
                                "CL2", "SL2", "SH2", "SC2", "CC2"};
static struct ta_agent C[NA];
static int A[NA];
static int L;
static struct unix_mreq group;

#define PAYLOAD 1000
#define SMALL_RCVBUF 4096

/* Connect x, accept it, ACCEPT_GROUP; unless fresh, x then makes a call on Ci. */
static void member(int x, int rcvbuf, unsigned flags, int fresh)
{
    ta_connect(&C[x], &group, rcvbuf);
    A[x] = tu_seq_accept(L, &C[x]);
    CHECK(tu_seq_accept_group(A[x], NULL, flags) == 0, "ACCEPT_GROUP(A for %s, flags 0x%x)", names[x], flags);
    if (!fresh)
        ta_expect_empty(&C[x], "new member");
}

/* The lines of `umcast list` about our group (malloc'd). */
static char *our_group(const char *list)
{
    char key[300];
    snprintf(key, sizeof key, "group %s (", group.address.sun_path);
    const char *p = strstr(list, key);
    if (!p)
        return strdup("(group not listed)");
    const char *end = strstr(p + 1, "\ngroup ");
    return strndup(p, end ? (size_t)(end - p) : strlen(p));
}

static const char *variant(int fresh)
{
    return fresh ? "client made no call on Ci since ACCEPT_GROUP" : "client used Ci since ACCEPT_GROUP";
}

/* S sends s; O gets it (and so does every other current member). */
static void s_sends(const char *s)
{
    ta_send_str(&C[S], s);
    ta_expect_str(&C[O], s);
}

static int server_leave(int fd, const struct unix_mreq *m)
{
    struct unix_mreq req = *m;
    req.flags = 0;
    return setsockopt(fd, SOL_UNIX, UNIX_LEAVE_GROUP, &req, sizeof req);
}

static struct ta_res client_leave(struct ta_agent *a, const struct unix_mreq *m)
{
    struct unix_mreq req = *m;
    req.flags = 0;
    return ta_call(a, TA_SETOPT, 0, SOL_UNIX, UNIX_LEAVE_GROUP, &req, sizeof req);
}

/* The kernel's answers on an ordinary SEQPACKET connection. */
struct kernel_answers {
    /* shutdown(SHUT_RD) on b, with "x" queued */
    long shut_recv1, shut_recv2, shut_peer_send, shut_own_send;
    int shut_recv2_err, shut_peer_send_err, shut_own_send_err;
    /* the peer a closed, with "x" queued for b */
    long closed_recv1, closed_recv2, closed_send;
    int closed_recv2_err, closed_send_err;
};
static struct kernel_answers kern;

static void kernel_baseline(int quiet)
{
    int p[2];
    char buf[16];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) == 0, "socketpair");
    CHECK(send(p[0], "x", 1, 0) == 1, "send");
    CHECK(shutdown(p[1], SHUT_RD) == 0, "shutdown");
    kern.shut_recv1 = recv(p[1], buf, sizeof buf, MSG_DONTWAIT);
    errno = 0;
    kern.shut_recv2 = recv(p[1], buf, sizeof buf, MSG_DONTWAIT);
    kern.shut_recv2_err = errno;
    errno = 0;
    kern.shut_peer_send = send(p[0], "y", 1, MSG_NOSIGNAL);
    kern.shut_peer_send_err = errno;
    errno = 0;
    kern.shut_own_send = send(p[1], "z", 1, MSG_NOSIGNAL);
    kern.shut_own_send_err = errno;
    close(p[0]);
    close(p[1]);

    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) == 0, "socketpair");
    CHECK(send(p[0], "x", 1, 0) == 1, "send");
    close(p[0]);
    kern.closed_recv1 = recv(p[1], buf, sizeof buf, MSG_DONTWAIT);
    errno = 0;
    kern.closed_recv2 = recv(p[1], buf, sizeof buf, MSG_DONTWAIT);
    kern.closed_recv2_err = errno;
    errno = 0;
    kern.closed_send = send(p[1], "z", 1, MSG_NOSIGNAL);
    kern.closed_send_err = errno;
    close(p[1]);
    CHECK(kern.shut_recv1 == 1 && kern.closed_recv1 == 1, "kernel: queued data readable");
    CHECK(kern.closed_send == -1 && kern.closed_send_err == EPIPE, "kernel: send to a closed peer: EPIPE");
    if (quiet)
        return;
    tu_ok("kernel: SHUT_RD: recv %ld, then %ld; peer's send %ld (%s); own send %ld. Closed peer: recv %ld, "
          "then %ld; send %ld (%s)",
          kern.shut_recv1, kern.shut_recv2, kern.shut_peer_send, tu_errname(kern.shut_peer_send_err),
          kern.shut_own_send, kern.closed_recv1, kern.closed_recv2, kern.closed_send,
          tu_errname(kern.closed_send_err));
}

enum after { OPEN, SHUT_READ, PEER_CLOSED };

/* Nothing more for x: EAGAIN, or the kernel's answer after SHUT_RD / the peer's close. */
static void former_expect_nothing(int x, enum after how, const char *what)
{
    if (how == OPEN) {
        ta_expect_empty(&C[x], what);
        return;
    }
    long want = how == SHUT_READ ? kern.shut_recv2 : kern.closed_recv2;
    int want_err = how == SHUT_READ ? kern.shut_recv2_err : kern.closed_recv2_err;
    struct ta_res r = ta_call(&C[x], TA_RECV, MSG_DONTWAIT, 64, 0, NULL, 0);
    CHECK(r.ret == want && (r.ret != -1 || r.err == want_err),
          "%s: %s: recv gave %ld (%s)%s%.*s; the kernel gives %ld (%s) with nothing queued after %s", what,
          names[x], r.ret, r.ret < 0 ? tu_errname(r.err) : "-", r.ret > 0 ? ", data: " : "", (int)r.len,
          (const char *)r.data, want, want < 0 ? tu_errname(want_err) : "-",
          how == SHUT_READ ? "SHUT_RD" : "the peer's close");
}

/* x's send now reaches its peer A[x] only (exactly once). */
static void reaches_peer_only(int x, const char *msg, enum after how)
{
    ta_send_str(&C[x], msg);
    tu_expect_str(A[x], msg, "the peer of a former member");
    tu_expect_empty(A[x], "the peer of a former member: exactly one copy");
    ta_expect_empty(&C[O], "O after a former member's send");
    ta_expect_empty(&C[S], "S after a former member's send");
    former_expect_nothing(x, how, "a former member after its own send");
}

static void client_leave_case(int x, int fresh)
{
    member(x, 0, UNIX_MREQ_SEND_TO_PEER, fresh);
    s_sends("q1");
    struct ta_res r;
    if (!fresh) {
        struct unix_mreq other;
        tu_abstract_group(&other, "not-this-group");
        r = client_leave(&C[x], &other);
        CHECK(r.ret == -1 && r.err == EADDRNOTAVAIL,
              "client LEAVE of another address: %ld (%s), expected EADDRNOTAVAIL", r.ret, tu_errname(r.err));
    }
    r = client_leave(&C[x], &group);
    CHECK(r.ret == 0, "%s: client LEAVE_GROUP on Ci (%s) failed: %s", names[x], variant(fresh), tu_errname(r.err));
    s_sends("q2");
    ta_expect_str(&C[x], "q1");
    former_expect_nothing(x, OPEN, "q2 was sent after the client's LEAVE");
    reaches_peer_only(x, "after the client's leave", OPEN);
    r = client_leave(&C[x], &group);
    CHECK(r.ret == -1 && r.err == EADDRNOTAVAIL, "second client LEAVE: %ld (%s), expected EADDRNOTAVAIL", r.ret,
          tu_errname(r.err));
    CHECK_ERRNO(server_leave(A[x], &group), EADDRNOTAVAIL);
    tu_ok("LEAVE from the client (%s): q1 (queued) still readable, q2 not received, its sends reach its peer "
          "once (no SEND_TO_PEER copy); LEAVE again (either end) -> EADDRNOTAVAIL",
          variant(fresh));
}

static void server_leave_case(int x, int fresh)
{
    member(x, 0, UNIX_MREQ_SEND_TO_PEER | UNIX_MREQ_LOOPBACK, fresh);
    if (!fresh) {
        struct unix_mreq other;
        tu_abstract_group(&other, "not-this-group");
        CHECK_ERRNO(server_leave(A[x], &other), EADDRNOTAVAIL);
        ta_send_str(&C[x], "still member");
        ta_expect_str(&C[O], "still member");
        ta_expect_str(&C[S], "still member");
        ta_expect_str(&C[x], "still member");
        tu_expect_str(A[x], "still member", "A: SEND_TO_PEER copy");
    }
    s_sends("r1");
    CHECK(server_leave(A[x], &group) == 0, "server LEAVE_GROUP on Ai");
    s_sends("r2");
    ta_expect_str(&C[x], "r1");
    former_expect_nothing(x, OPEN, "r2 was sent after the server's LEAVE");
    reaches_peer_only(x, "after the server's leave", OPEN);
    CHECK_ERRNO(server_leave(A[x], &group), EADDRNOTAVAIL);
    struct ta_res r = client_leave(&C[x], &group);
    CHECK(r.ret == -1 && r.err == EADDRNOTAVAIL, "client LEAVE after the server's: %ld (%s)", r.ret,
          tu_errname(r.err));
    CHECK(send(A[x], "server to client", 16, 0) == 16, "server send on A");
    ta_expect_str(&C[x], "server to client");
    tu_ok("LEAVE from the server end, Ai with the group's address (%s): r1 still readable, r2 not received, "
          "its sends reach its peer once (no loopback); LEAVE again (either end) -> EADDRNOTAVAIL",
          variant(fresh));
}

static void shutdown_case(int x, int fresh)
{
    member(x, 0, 0, fresh);
    s_sends("s1");
    struct ta_res r = ta_call(&C[x], TA_SHUTDOWN, 0, SHUT_RD, 0, NULL, 0);
    CHECK(r.ret == 0, "shutdown(SHUT_RD) on Ci: %s", tu_errname(r.err));
    s_sends("s2");
    ta_expect_str(&C[x], "s1");
    former_expect_nothing(x, SHUT_READ, "s2 was sent after SHUT_RD");
    r = ta_call(&C[x], TA_RECV, 0, 64, 0, NULL, 0); /* blocking: must not wait */
    CHECK(r.ret == kern.shut_recv2, "%s: blocking recv after SHUT_RD gave %ld (%s); the kernel gives %ld", names[x],
          r.ret, r.ret < 0 ? tu_errname(r.err) : "-", kern.shut_recv2);
    errno = 0;
    long k = send(A[x], "y", 1, MSG_NOSIGNAL);
    int e = errno;
    CHECK(k == kern.shut_peer_send && (k != -1 || e == kern.shut_peer_send_err),
          "server send to a client that shut down reading: %ld (%s); the kernel gives %ld (%s)", k,
          k < 0 ? tu_errname(e) : "-", kern.shut_peer_send, tu_errname(kern.shut_peer_send_err));
    reaches_peer_only(x, "after SHUT_RD", SHUT_READ);
    tu_ok("shutdown(SHUT_RD) on Ci (%s): s1 (queued) readable, then %ld as the kernel; s2 not received; the "
          "server's send %s as the kernel; its own sends reach its peer only",
          variant(fresh), kern.shut_recv2, kern.shut_peer_send < 0 ? tu_errname(kern.shut_peer_send_err) : "succeeds");
}

static void server_close_case(int x, int fresh)
{
    member(x, 0, UNIX_MREQ_SEND_TO_PEER, fresh);
    s_sends("c1");
    CHECK(close(A[x]) == 0, "close A");
    A[x] = -1;
    s_sends("c2");
    ta_expect_str(&C[x], "c1");
    former_expect_nothing(x, PEER_CLOSED, "c2 was sent after the server closed Ai");
    struct ta_res r = ta_call(&C[x], TA_SEND, MSG_NOSIGNAL, 0, 0, "after close", 11);
    CHECK(r.ret == -1 && r.err == kern.closed_send_err,
          "%s: send after the server closed Ai gave %ld (%s); the kernel gives -1 (%s)", names[x], r.ret,
          r.ret < 0 ? tu_errname(r.err) : "sent", tu_errname(kern.closed_send_err));
    r = ta_call(&C[x], TA_WRITE, 0, 0, 0, "after close", 11); /* SIGPIPE ignored by the agent */
    CHECK(r.ret == -1 && r.err == EPIPE, "%s: write after the server closed Ai gave %ld (%s)", names[x], r.ret,
          r.ret < 0 ? tu_errname(r.err) : "written");
    ta_expect_empty(&C[O], "O after the failed sends");
    ta_expect_empty(&C[S], "S after the failed sends");
    s_sends("c3");
    former_expect_nothing(x, PEER_CLOSED, "after c3");
    tu_ok("the server closes Ai (%s): c1 (queued) readable, then %ld as the kernel; c2, c3 not received; send "
          "and write fail with EPIPE and reach nobody",
          variant(fresh), kern.closed_recv2);
}

static void client_close_case(int x, int fresh)
{
    member(x, 0, UNIX_MREQ_SEND_TO_PEER | UNIX_MREQ_LOOPBACK, fresh);
    if (!fresh) {
        ta_send_str(&C[x], "cc1");
        ta_expect_str(&C[O], "cc1");
        ta_expect_str(&C[S], "cc1");
        ta_expect_str(&C[x], "cc1");
        tu_expect_str(A[x], "cc1", "A: SEND_TO_PEER copy");
    }
    unsigned long ino = (unsigned long)ta_ino(&C[x]), a_ino = tu_socket_ino(A[x]);
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, ino) && tu_listed_socket(list, a_ino),
          "`umcast list` should show %s's socket %lu and the SEND_TO_PEER copy of its peer %lu:\n%s", names[x], ino,
          a_ino, our_group(list));
    s_sends("cc2"); /* queued for x, never read */
    struct ta_res r = ta_call(&C[x], TA_CLOSE, 0, 0, 0, NULL, 0);
    CHECK(r.ret == 0, "%s: close", names[x]);
    /* At once; a client that never learnt of its membership: within a second, as a dead member. */
    double t0 = tu_now(), limit = fresh ? 1.5 : 0;
    for (;;) {
        free(list);
        list = tu_umcast("list");
        if (!tu_listed_socket(list, ino) && !tu_listed_socket(list, a_ino))
            break;
        CHECK(tu_now() - t0 < limit, "`umcast list` still shows %s's closed socket %lu (%s) or its peer's copy %lu (%s) %s:\n%s",
              names[x], ino, tu_listed_socket(list, ino) ? "yes" : "no", a_ino, tu_listed_socket(list, a_ino) ? "yes" : "no",
              fresh ? "after 1.5 s" : "right after the close", our_group(list));
        s_sends("tick");
        tu_sleep_ms(50);
    }
    free(list);
    double gone = tu_now() - t0;
    char buf[16];
    long n = recv(A[x], buf, sizeof buf, MSG_DONTWAIT);
    CHECK(n == 0, "A after the client closed: recv gave %ld (%s), expected 0 (end of file)", n,
          n < 0 ? tu_errname(errno) : "data");
    s_sends("cc3");
    ta_send_str(&C[O], "O speaks");
    ta_expect_str(&C[S], "O speaks");
    ta_expect_empty(&C[O], "O without loopback");
    tu_ok("the client closes Ci (%s): it and its peer's SEND_TO_PEER copy leave the group (after %.2f s); the "
          "peer reads end of file; O and S keep exchanging",
          variant(fresh), gone);
}

static void kill_agent(int i)
{
    CHECK(kill(C[i].pid, SIGKILL) == 0, "kill %s", names[i]);
    tu_wait_killed(C[i].pid, SIGKILL);
    close(C[i].cmd);
    close(C[i].rep);
    C[i].pid = 0;
}

static void killed_cases(void)
{
    member(K, 0, UNIX_MREQ_SEND_TO_PEER, 0);
    unsigned long k_ino = (unsigned long)ta_ino(&C[K]), ak_ino = tu_socket_ino(A[K]);
    s_sends("k1"); /* queued for K, never read */
    kill_agent(K);
    double t0 = tu_now();
    s_sends("k2");
    ta_send_str(&C[O], "k3");
    ta_expect_str(&C[S], "k3");
    CHECK(tu_now() - t0 < 1.0, "sending after K was killed took %.2f s", tu_now() - t0);
    char buf[16];
    long n = recv(A[K], buf, sizeof buf, MSG_DONTWAIT);
    CHECK(n == 0, "A(K) after its client was killed: recv gave %ld (%s), expected 0 (end of file)", n,
          n < 0 ? tu_errname(errno) : "data");
    tu_ok("client process K SIGKILLed: O and S keep exchanging at once; A(K) reads end of file");

    /* K2's full queue holds S back until K2 is killed. */
    member(K2, SMALL_RCVBUF, 0, 0);
    uint32_t id[2] = {1, 0};
    struct ta_res r = ta_call(&C[S], TA_BURST_SEND, MSG_DONTWAIT, 1000, PAYLOAD, id, sizeof id);
    CHECK(r.ret >= 1 && r.ret < 1000 && r.err == EAGAIN,
          "S: non-blocking sends until K2 (SO_RCVBUF %d) is full: %ld sent, then %s", SMALL_RCVBUF, r.ret,
          tu_errname(r.err));
    int filled = (int)r.ret;
    r = ta_call(&C[O], TA_BURST_RECV, 0, filled, 0, NULL, 0);
    CHECK(r.ret == filled, "O received %ld of %d messages", r.ret, filled);
    ta_expect_empty(&C[O], "O: the message that failed with EAGAIN reached nobody");
    id[1] = (uint32_t)filled;
    ta_begin(&C[S], TA_BURST_SEND, 0, 1, PAYLOAD, id, sizeof id);
    ta_still_blocked(&C[S], 200, "S's blocking send to a group whose member K2 is full");
    ta_expect_empty(&C[O], "O while S is held back");
    double killed_at = tu_now();
    kill_agent(K2);
    r = ta_end_within(&C[S], 3000);
    double held = tu_now() - killed_at;
    CHECK(r.ret == 1, "S's held-back send after K2 was killed: %ld (%s)", r.ret, tu_errname(r.err));
    CHECK(held <= 1.5, "S's send resumed only %.2f s after K2 was SIGKILLed (SPEC 5.8: within one second)", held);
    r = ta_call(&C[O], TA_BURST_RECV, 0, 1, 0, NULL, 0);
    CHECK(r.ret == 1 && memcmp(r.data + 4, &id[1], 4) == 0, "O did not get S's held-back message");
    tu_ok("K2 (full, %d messages) held S's blocking send back; SIGKILL of K2 released it after %.2f s; O got it",
          filled, held);

    /* Neither K nor A(K)'s SEND_TO_PEER copy stays listed (while S keeps sending). */
    char *list = NULL;
    double deadline = tu_now() + 3;
    for (;;) {
        free(list);
        list = tu_umcast("list");
        if (!tu_listed_socket(list, k_ino) && !tu_listed_socket(list, ak_ino))
            break;
        CHECK(tu_now() < deadline, "`umcast list` still shows %s after 3 s of sending:\n%s",
              tu_listed_socket(list, k_ino) ? (tu_listed_socket(list, ak_ino) ? "killed K's socket and A(K)'s copy" : "killed K's socket") : "A(K)'s SEND_TO_PEER copy",
              our_group(list));
        s_sends("tick"); /* dead members are found by senders */
        tu_sleep_ms(100);
    }
    free(list);
    s_sends("after the kills");
    ta_expect_empty(&C[S], "S without loopback");
    tu_ok("the killed member and A(K)'s SEND_TO_PEER copy are gone from `umcast list`; O and S unaffected");
}

/* Start the observer O and the sender S, members of a new path group. */
static void setup(const char *tag, const int *agents, int quiet)
{
    for (int i = 0; i < NA; i++)
        A[i] = -1;
    for (; *agents >= 0; agents++)
        ta_spawn(&C[*agents], names[*agents]);
    kernel_baseline(quiet);
    tu_path_group(&group, tag);
    L = tu_seq_create_group(&group);
    member(O, 0, 0, 0);
    member(S, 0, 0, 0);
    s_sends("hello");
    ta_expect_empty(&C[S], "S without loopback");
}

static void teardown(void)
{
    for (int i = 0; i < NA; i++)
        if (C[i].pid)
            ta_exit(&C[i]);
    tu_wait_all();
    for (int i = 0; i < NA; i++)
        if (A[i] >= 0)
            close(A[i]);
    close(L);
}

/*
 * The endings by a client that made no call on Ci since ACCEPT_GROUP, each
 * in its own run of this program (its own group, O, S and client), so that
 * every one of them is tried and reported even if another fails.
 */
static const struct {
    const char *name;
    int agent;
    void (*run)(int x, int fresh);
} fresh_cases[] = {
    {"client-close", CC2, client_close_case}, {"server-leave", SL2, server_leave_case},
    {"server-close", SC2, server_close_case}, {"client-leave", CL2, client_leave_case},
    {"shutdown", SH2, shutdown_case},
};
#define N_FRESH (int)(sizeof fresh_cases / sizeof fresh_cases[0])

static int fresh_main(const char *which)
{
    for (int k = 0; k < N_FRESH; k++) {
        if (strcmp(which, fresh_cases[k].name) != 0)
            continue;
        static char title[64];
        snprintf(title, sizeof title, "t_seq_end --fresh %s", which);
        tu_start(title);
        signal(SIGPIPE, SIG_IGN);
        int agents[] = {O, S, fresh_cases[k].agent, -1};
        setup("seq-end-fresh", agents, 1);
        fresh_cases[k].run(fresh_cases[k].agent, 1);
        teardown();
        return tu_done();
    }
    fprintf(stderr, "FAIL: unknown case %s\n", which);
    return 2;
}

static int exec_fresh(void *arg)
{
    char *argv[] = {"t_seq_end", "--fresh", arg, NULL};
    extern char **environ;
    execve("/proc/self/exe", argv, environ);
    CHECK(0, "execve /proc/self/exe");
    return 1;
}

/* Run one fresh case in its own process; returns 0 if it passed. */
static int run_fresh(int k)
{
    pid_t pid = tu_spawn(fresh_cases[k].name, exec_fresh, (void *)fresh_cases[k].name);
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR) {
    }
    CHECK(r == pid, "waitpid");
    tu_forget_child(tu_child_index(pid));
    return tu_report_status(fresh_cases[k].name, pid, status);
}

int main(int argc, char **argv)
{
    TA_AGENT_DISPATCH(argc, argv);
    if (argc > 2 && strcmp(argv[1], "--fresh") == 0)
        return fresh_main(argv[2]);
    tu_start("t_seq_end");
    signal(SIGPIPE, SIG_IGN);
    int agents[] = {O, S, CL, SL, SH, SC, CC, K, K2, -1};
    setup("seq-end", agents, 0);

    client_leave_case(CL, 0);
    server_leave_case(SL, 0);
    shutdown_case(SH, 0);
    server_close_case(SC, 0);
    client_close_case(CC, 0);
    killed_cases();
    teardown();

    int failed = 0;
    for (int k = 0; k < N_FRESH; k++)
        failed += run_fresh(k) != 0;
    CHECK(failed == 0, "%d of the %d endings by a client that made no call on Ci since ACCEPT_GROUP failed "
          "(see above)", failed, N_FRESH);
    return tu_done();
}
