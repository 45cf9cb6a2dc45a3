/*
 * t_lifecycle_end: SPEC 7 "[Membership] ends on LEAVE_GROUP,
 * shutdown(SHUT_RD) or SHUT_RDWR, and when the socket is finally closed
 * (last descriptor, close, close_range, exit, kill)", and 5.8 "A dead member
 * never holds the group back: ... within one second".
 *
 * For each way of ending, a member M with a small SO_RCVBUF lets its queue
 * fill until a blocking sender (another process) is held back by it. Then M
 * ends, and "ended" is observed three ways:
 *   - the blocked sender resumes and sends the rest (promptly; within 2 s
 *     for a process that exits or is SIGKILLed);
 *   - `umcast list` no longer shows M's socket;
 *   - a witness member W gets every message in order.
 * Ways: LEAVE_GROUP, shutdown(SHUT_RD), shutdown(SHUT_RDWR) (in this
 * process: what was queued stays readable, then receives behave as on an
 * ordinary datagram socket that was shut down, compared with the kernel's
 * answers, and nothing sent later arrives), and, in a member process that
 * stays alive afterwards: close, close_range, closefrom, dup2 over the last
 * descriptor; and the member process's exit and SIGKILL. A process that
 * closed one member (even with closefrom, which also closes what the library
 * keeps above the caller's descriptors) keeps receiving on its other member.
 */
#include "testutil.h"

#include <gnu/libc-version.h>

#define N_MSGS 64
#define PAYLOAD 1000
#define SMALL_RCVBUF 4096
#define MSG_CAP (sizeof(struct tu_msg_hdr) + PAYLOAD + 64)

enum form { F_LEAVE, F_SHUT_RD, F_SHUT_RDWR, F_CLOSE, F_CLOSE_RANGE, F_CLOSEFROM, F_DUP2_OVER, F_EXIT, F_SIGKILL };
static const char *form_names[] = {"LEAVE_GROUP", "shutdown(SHUT_RD)", "shutdown(SHUT_RDWR)",
                                   "close", "close_range", "closefrom", "dup2 over the last descriptor",
                                   "process exit", "SIGKILL"};

struct shared {
    uint32_t sent; /* messages the sender has sent */
    unsigned long member_ino;
};

static struct shared *sh;

static struct unix_mreq group;
static struct tu_gate joined, act, done, leave;

static int sender(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    unsigned char buf[MSG_CAP];
    for (uint32_t i = 0; i < N_MSGS; i++) {
        size_t len = tu_make_msg(buf, sizeof buf, 1, i, PAYLOAD);
        CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "send %u", i);
        __atomic_store_n(&sh->sent, i + 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

/* Receive the sender's messages from..to-1 on fd, in order, intact. */
static void expect_stream(int fd, uint32_t from, uint32_t to, const char *what)
{
    unsigned char buf[MSG_CAP];
    for (uint32_t i = from; i < to; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        CHECK(n >= 0, "%s: recv of message %u", what, i);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "%s: message %u corrupt (%zd bytes)", what, i, n);
        CHECK(h.sender == 1 && h.seq == i, "%s: got (%u,%u), expected (1,%u)", what, h.sender, h.seq, i);
    }
}

static int small_member(void)
{
    int m = tu_dgram();
    tu_setint(m, SOL_SOCKET, SO_RCVBUF, SMALL_RCVBUF);
    tu_join_fd(m, &group, 0);
    return m;
}

/* The member process of the close/exit/kill forms. */
static int member_child(void *arg)
{
    enum form f = (enum form)(intptr_t)arg;
    int m = small_member();
    sh->member_ino = tu_socket_ino(m);
    int other = -1;
    if (f != F_EXIT && f != F_SIGKILL) {
        other = tu_join(&group, 0);
        tu_set_rcvtimeo(other, 5000);
    }
    tu_gate_arrive(&joined);
    if (other >= 0) /* sleeps in the library until the warm-up message comes */
        tu_expect_str(other, "warm-up", "the member process's other member");
    tu_gate_pass(&act);
    switch (f) {
    case F_CLOSE:
        CHECK(close(m) == 0, "close");
        break;
    case F_CLOSE_RANGE:
        CHECK(close_range((unsigned)m, (unsigned)m, 0) == 0, "close_range(%d, %d, 0)", m, m);
        break;
    case F_CLOSEFROM: {
        /* move it above everything else this process uses, then closefrom */
        int high = fcntl(m, F_DUPFD, 300);
        CHECK(high >= 300, "F_DUPFD");
        CHECK(close(m) == 0, "close");
#if __GLIBC_PREREQ(2, 34)
        closefrom(high);
#else
        CHECK(close_range((unsigned)high, ~0u, 0) == 0, "close_range(%d, ~0)", high);
#endif
        CHECK(fcntl(high, F_GETFD) == -1 && errno == EBADF, "closefrom left %d open", high);
        break;
    }
    case F_DUP2_OVER: {
        int o = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(o >= 0, "open /dev/null");
        CHECK(dup2(o, m) == m, "dup2(/dev/null, member)");
        close(o);
        break;
    }
    case F_EXIT:
        exit(0);
    case F_SIGKILL:
        for (;;)
            pause();
    default:
        CHECK(0, "form %d", f);
    }
    tu_gate_arrive(&done);
    /* the other member still works */
    expect_stream(other, 0, N_MSGS, "the other member of the process that closed one");
    /* and wakes up (the library's wake-up descriptors survived the close) */
    tu_gate_arrive(&done);
    tu_expect_str(other, "post-close", "the other member, asleep when it was sent");
    tu_expect_empty(other, "the other member at the end");
    /* sending from this process still wakes a sleeping receiver elsewhere */
    tu_gate_pass(&leave);
    tu_sleep_ms(100);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "from-child", 10, 0, &group) == 10, "send from the member process");
    return 0;
}

/* Kernel reference: an ordinary unbound datagram socket shut down the same way. */
struct answers {
    ssize_t nb_r;
    int nb_errno;
    ssize_t b_r;
    int b_errno;
    short revents;
};

static void shutdown_answers(int fd, struct answers *a)
{
    char c[8];
    errno = 0;
    a->nb_r = recv(fd, c, sizeof c, MSG_DONTWAIT);
    a->nb_errno = a->nb_r < 0 ? errno : 0;
    tu_set_rcvtimeo(fd, 1000);
    errno = 0;
    a->b_r = recv(fd, c, sizeof c, 0);
    a->b_errno = a->b_r < 0 ? errno : 0;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    CHECK(poll(&p, 1, 0) >= 0, "poll");
    a->revents = p.revents;
}

/* Wait until the sender is held back: its count stands still below N_MSGS. */
static uint32_t wait_stall(void)
{
    double t0 = tu_now(), still_since = tu_now();
    uint32_t last = __atomic_load_n(&sh->sent, __ATOMIC_SEQ_CST);
    for (;;) {
        tu_check_children();
        tu_sleep_ms(20);
        uint32_t now = __atomic_load_n(&sh->sent, __ATOMIC_SEQ_CST);
        CHECK(now < N_MSGS, "the sender sent all %d messages: the small member never held it back",
              N_MSGS);
        if (now != last) {
            last = now;
            still_since = tu_now();
        } else if (now > 0 && tu_now() - still_since > 0.3) {
            return now;
        }
        CHECK(tu_now() - t0 < 10, "the sender never stalled (%u sent)", now);
    }
}

static double wait_resumed(double t0, double limit, const char *what)
{
    for (;;) {
        if (__atomic_load_n(&sh->sent, __ATOMIC_SEQ_CST) == N_MSGS)
            return tu_now() - t0;
        tu_check_children();
        CHECK(tu_now() - t0 < limit,
              "after %s the blocked sender did not resume within %.1f s (%u of %d sent)", what,
              limit, sh->sent, N_MSGS);
        tu_sleep_ms(5);
    }
}

static void run_form(enum form f)
{
    const char *name = form_names[f];
    int in_child = f >= F_CLOSE;
    int child_lives = f >= F_CLOSE && f <= F_DUP2_OVER;
    memset(sh, 0, sizeof *sh);
    tu_abstract_group(&group, "end");
    int g = tu_create_group(&group);
    int w = tu_join(&group, 0); /* witness, room for everything */
    tu_set_rcvtimeo(w, 5000);
    int s = tu_dgram();
    int m = -1;
    pid_t child = -1;
    tu_gate_init(&joined);
    tu_gate_init(&act);
    tu_gate_init(&done);
    tu_gate_init(&leave);
    if (!in_child) {
        m = small_member();
        sh->member_ino = tu_socket_ino(m);
    } else {
        child = tu_spawn("member process", member_child, (void *)(intptr_t)f);
        tu_gate_wait(&joined, 1, 5000);
        if (child_lives) {
            tu_sleep_ms(50); /* let it fall asleep */
            CHECK(tu_sendto_group(s, "warm-up", 7, 0, &group) == 7, "send warm-up");
            tu_expect_str(w, "warm-up", "witness");
        }
    }
    unsigned long ino = sh->member_ino;

    pid_t snd = tu_spawn("sender", sender, NULL);
    uint32_t stalled = wait_stall();
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, ino), "%s: `umcast list` does not show the member %lu before it ends:\n%s",
          name, ino, list);
    free(list);

    double t0 = tu_now(), limit = 1.0;
    switch (f) {
    case F_LEAVE:
        CHECK(tu_setopt(m, UNIX_LEAVE_GROUP, &group, 0) == 0, "LEAVE_GROUP");
        break;
    case F_SHUT_RD:
        CHECK(shutdown(m, SHUT_RD) == 0, "shutdown(SHUT_RD)");
        break;
    case F_SHUT_RDWR:
        CHECK(shutdown(m, SHUT_RDWR) == 0, "shutdown(SHUT_RDWR)");
        break;
    case F_EXIT:
        limit = 2.0;
        tu_gate_open(&act, 1);
        tu_wait_child(child);
        break;
    case F_SIGKILL:
        limit = 2.0;
        CHECK(kill(child, SIGKILL) == 0, "kill");
        tu_wait_killed(child, SIGKILL);
        break;
    default:
        tu_gate_open(&act, 1);
        tu_gate_wait(&done, 1, 5000);
        break;
    }
    double took = wait_resumed(t0, limit, name);
    tu_wait_child(snd);
    list = tu_umcast("list");
    CHECK(!tu_listed_socket(list, ino), "%s: `umcast list` still shows the member %lu after it ended:\n%s",
          name, ino, list);
    int closed = 0;
    int members = tu_listed_group(list, &group, &closed);
    int want = child_lives ? 2 : 1;
    CHECK(members == want && !closed, "%s: `umcast list` shows %d members (expected %d, open):\n%s", name,
          members, want, list);
    free(list);

    expect_stream(w, 0, N_MSGS, "witness");
    tu_expect_empty(w, "witness at the end");

    if (!in_child) {
        /* what was queued stays readable: exactly the messages sent before the end */
        struct pollfd p = {.fd = m, .events = POLLIN};
        CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN), "%s: queued messages but no POLLIN (0x%x)",
              name, p.revents);
        unsigned char buf[MSG_CAP];
        for (uint32_t i = 0; i < stalled; i++) {
            ssize_t n = recv(m, buf, sizeof buf, MSG_DONTWAIT);
            CHECK(n >= 0, "%s: queued message %u of %u not readable", name, i, stalled);
            struct tu_msg_hdr h;
            CHECK(tu_check_msg(buf, n, &h) == 0 && h.seq == i, "%s: queued message %u wrong", name, i);
        }
        if (f == F_LEAVE) {
            tu_expect_empty(m, "after LEAVE, once the queued messages are read");
        } else {
            int ref = tu_dgram();
            CHECK(shutdown(ref, f == F_SHUT_RD ? SHUT_RD : SHUT_RDWR) == 0, "shutdown the reference");
            struct answers a, k;
            shutdown_answers(m, &a);
            shutdown_answers(ref, &k);
            close(ref);
            SOFT_CHECK(a.nb_r == k.nb_r && a.nb_errno == k.nb_errno,
                  "%s, queue drained: non-blocking recv gave %zd (%s), the kernel gives %zd (%s)", name,
                  a.nb_r, a.nb_errno ? tu_errname(a.nb_errno) : "-", k.nb_r,
                  k.nb_errno ? tu_errname(k.nb_errno) : "-");
            SOFT_CHECK(a.b_r == k.b_r && a.b_errno == k.b_errno,
                  "%s, queue drained: blocking recv gave %zd (%s), the kernel gives %zd (%s)", name, a.b_r,
                  a.b_errno ? tu_errname(a.b_errno) : "-", k.b_r, k.b_errno ? tu_errname(k.b_errno) : "-");
            SOFT_CHECK(a.revents == k.revents, "%s, queue drained: poll gave 0x%x, the kernel gives 0x%x", name,
                  a.revents, k.revents);
            int same = a.nb_r == k.nb_r && a.nb_errno == k.nb_errno && a.b_r == k.b_r &&
                       a.b_errno == k.b_errno && a.revents == k.revents;
            printf("  %s: %s: then recv gives %zd%s%s (non-blocking) and %zd%s%s (blocking), poll 0x%x%s\n",
                   same ? "ok" : "not ok", name, a.nb_r, a.nb_errno ? " " : "",
                   a.nb_errno ? tu_errname(a.nb_errno) : "", a.b_r, a.b_errno ? " " : "",
                   a.b_errno ? tu_errname(a.b_errno) : "", a.revents,
                   same ? ", as the kernel's shut-down socket" : " (NOT as the kernel, see FAIL above)");
        }
        close(m);
    } else if (child_lives) {
        tu_gate_wait(&done, 1, 5000); /* it read the stream and goes to sleep */
        tu_sleep_ms(100);
        CHECK(tu_sendto_group(s, "post-close", 10, 0, &group) == 10, "send post-close");
        tu_expect_str(w, "post-close", "witness");
        tu_gate_open(&leave, 1);
        double t1 = tu_now();
        tu_expect_str(w, "from-child", "witness, asleep while the member process sends");
        double waited = tu_now() - t1;
        CHECK(waited < 1.0, "%s: a message sent by the member process afterwards woke a sleeping "
              "receiver only after %.2f s (sent 0.1 s after it fell asleep)", name, waited);
        tu_wait_child(child);
    }
    tu_ok("%s ends the membership: the held-back sender resumed %.0f ms later%s, `umcast list` no "
          "longer shows the member, the witness got all %d messages%s",
          name, took * 1e3, in_child ? "" : " and the queued messages stayed readable", N_MSGS,
          child_lives ? "; the member process's other member kept receiving and waking up, "
                        "its sends wake sleepers elsewhere" : "");
    for (int i = 0; i < 2; i++) {
        close(joined.ready[i]);
        close(joined.go[i]);
        close(act.ready[i]);
        close(act.go[i]);
        close(done.ready[i]);
        close(done.go[i]);
        close(leave.ready[i]);
        close(leave.go[i]);
    }
    close(s);
    close(w);
    close(g);
}

int main(void)
{
    tu_start("t_lifecycle_end");
    printf("  glibc %s\n", gnu_get_libc_version());
    sh = tu_shared_alloc(sizeof *sh);
    for (int f = F_LEAVE; f <= F_SIGKILL; f++)
        run_form((enum form)f);
    if (soft_failures) {
        fprintf(stderr, "FAIL: %d difference(s) from the kernel's behaviour (see above)\n", soft_failures);
        return 1;
    }
    return tu_done();
}
