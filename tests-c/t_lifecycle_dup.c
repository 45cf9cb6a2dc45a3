/*
 * t_lifecycle_dup: SPEC 7 "Membership belongs to the socket, not to the
 * process or descriptor": it survives
 *   - dup, dup2 (also onto a descriptor number in use), dup3,
 *     fcntl(F_DUPFD), fcntl(F_DUPFD_CLOEXEC): after each, the original is
 *     closed and the group's messages arrive through the new descriptor;
 *   - fork: parent and child read the one socket concurrently, every message
 *     is read exactly once across the two (counted in shared memory), and
 *     each reader sees its share in order;
 *   - exec with LD_PRELOAD still set: the test re-execs itself with the
 *     inherited member descriptor's number; the new image receives what was
 *     queued before the exec and what is sent after, in order, on it, after
 *     the parent closed its own copy;
 *   - SCM_RIGHTS over a socketpair to a process forked before the socket
 *     joined, and to an exec'd image that never saw the group: each receives
 *     the group's messages on the descriptor it was given.
 * Senders are other processes; a witness member checks every message went
 * out.
 */
#include "testutil.h"

#include <sched.h>

static struct unix_mreq group;
static const char *self_exe = "/proc/self/exe";

/* ---- senders ------------------------------------------------------------ */

struct send_job {
    const char *prefix;
    int from, to; /* "prefix-i" for i in [from, to) */
};

static int sender(void *arg)
{
    struct send_job *j = arg;
    int s = tu_dgram();
    char buf[64];
    for (int i = j->from; i < j->to; i++) {
        int n = snprintf(buf, sizeof buf, "%s-%d", j->prefix, i);
        CHECK(tu_sendto_group(s, buf, (size_t)n, 0, &group) == n, "send %s", buf);
    }
    return 0;
}

/* Another process sends prefix-from .. prefix-(to-1); returns when all are sent. */
static void send_msgs(const char *prefix, int from, int to)
{
    struct send_job j = {prefix, from, to};
    tu_wait_child(tu_spawn("sender", sender, &j));
}

/* Receive prefix-from .. prefix-(to-1) on fd, in order. */
static void expect_seq(int fd, const char *prefix, int from, int to, const char *what)
{
    char want[64], what2[512];
    for (int i = from; i < to; i++) {
        snprintf(want, sizeof want, "%s-%d", prefix, i);
        snprintf(what2, sizeof what2, "%s (message %s)", what, want);
        tu_expect_str(fd, want, what2);
    }
}

/* ---- dup family --------------------------------------------------------- */

static void check_dups(int witness)
{
    int fd = tu_join(&group, 0);
    tu_set_rcvtimeo(fd, 5000);
    unsigned long ino = tu_socket_ino(fd);

    send_msgs("orig", 0, 2);
    expect_seq(fd, "orig", 0, 2, "original descriptor");
    expect_seq(witness, "orig", 0, 2, "witness");

    struct step {
        const char *name;
        int newfd;
    } steps[6];
    int n = 0;

    /* dup */
    int d = dup(fd);
    CHECK(d >= 0, "dup");
    steps[n++] = (struct step){"dup", d};
    /* dup2 onto a number in use by an ordinary file */
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(devnull >= 0, "open /dev/null");
    steps[n++] = (struct step){"dup2 (onto a descriptor in use)", devnull};
    /* dup3 onto a free number, close-on-exec */
    steps[n++] = (struct step){"dup3(O_CLOEXEC)", 77};
    steps[n++] = (struct step){"fcntl(F_DUPFD, 100)", 100};
    steps[n++] = (struct step){"fcntl(F_DUPFD_CLOEXEC, 120)", 120};
    steps[n++] = (struct step){"dup2 back to a low number", 60};

    int cur = fd;
    for (int i = 0; i < n; i++) {
        int nfd = -1;
        switch (i) {
        case 0:
            nfd = d;
            break;
        case 1:
            nfd = dup2(cur, devnull);
            CHECK(nfd == devnull, "dup2(%d, %d)", cur, devnull);
            break;
        case 2:
            nfd = dup3(cur, 77, O_CLOEXEC);
            CHECK(nfd == 77, "dup3(%d, 77, O_CLOEXEC)", cur);
            CHECK(fcntl(nfd, F_GETFD) == FD_CLOEXEC, "dup3 did not set FD_CLOEXEC");
            break;
        case 3:
            nfd = fcntl(cur, F_DUPFD, 100);
            CHECK(nfd >= 100, "fcntl(F_DUPFD, 100) gave %d", nfd);
            break;
        case 4:
            nfd = fcntl(cur, F_DUPFD_CLOEXEC, 120);
            CHECK(nfd >= 120, "fcntl(F_DUPFD_CLOEXEC, 120) gave %d", nfd);
            CHECK(fcntl(nfd, F_GETFD) == FD_CLOEXEC, "F_DUPFD_CLOEXEC did not set FD_CLOEXEC");
            break;
        case 5:
            nfd = dup2(cur, 60);
            CHECK(nfd == 60, "dup2(%d, 60)", cur);
            break;
        }
        CHECK(tu_socket_ino(nfd) == ino, "%s: not the same socket", steps[i].name);
        /* a message queued while both descriptors exist, then the old one closes */
        char pfx[32];
        snprintf(pfx, sizeof pfx, "step%d", i);
        send_msgs(pfx, 0, 1);
        CHECK(close(cur) == 0, "close the previous descriptor %d", cur);
        send_msgs(pfx, 1, 3);
        char what[128];
        snprintf(what, sizeof what, "after %s and closing the previous descriptor", steps[i].name);
        expect_seq(nfd, pfx, 0, 3, what);
        expect_seq(witness, pfx, 0, 3, "witness");
        tu_expect_empty(nfd, what);
        /* the old number is really closed (a recv there is the kernel's EBADF) */
        char c;
        CHECK_ERRNO(recv(cur, &c, 1, MSG_DONTWAIT), EBADF);
        cur = nfd;
    }
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, ino), "after the dup chain `umcast list` does not show socket %lu:\n%s",
          ino, list);
    free(list);
    CHECK(close(cur) == 0, "close");
    tu_ok("membership survives dup, dup2 (onto a used number), dup3, F_DUPFD, F_DUPFD_CLOEXEC, "
          "each time receiving through the new descriptor after the old one closed");
}

/* ---- fork --------------------------------------------------------------- */

#define FORK_MSGS 3000

struct fork_shared {
    uint32_t reads[FORK_MSGS];   /* how many times message i was read */
    uint32_t by_child, by_parent;
    uint32_t ends;               /* end markers read */
};

static struct fork_shared *fsh;
static int fork_fd;
static struct tu_gate fork_gate;

/* Read until an end marker; count every message; each reader's share in order. */
static void fork_read(int fd, uint32_t *mine, const char *who)
{
    char buf[64];
    int last = -1;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
        CHECK(r > 0, "%s: recv after %u messages", who, *mine);
        buf[r] = 0;
        if (strncmp(buf, "end-", 4) == 0) {
            __atomic_add_fetch(&fsh->ends, 1, __ATOMIC_SEQ_CST);
            return;
        }
        int i;
        CHECK(sscanf(buf, "fork-%d", &i) == 1 && i >= 0 && i < FORK_MSGS, "%s: unexpected \"%s\"",
              who, buf);
        CHECK(i > last, "%s: read fork-%d after fork-%d (out of order)", who, i, last);
        last = i;
        __atomic_add_fetch(&fsh->reads[i], 1, __ATOMIC_SEQ_CST);
        (*mine)++;
        if (*mine % 64 == 0)
            sched_yield();
    }
}

static int fork_child(void *arg)
{
    (void)arg;
    tu_gate_arrive(&fork_gate);
    tu_gate_pass(&fork_gate);
    fork_read(fork_fd, &fsh->by_child, "forked child");
    close(fork_fd);
    return 0;
}

static int fork_sender(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    char buf[64];
    for (int i = 0; i < FORK_MSGS; i++) {
        int n = snprintf(buf, sizeof buf, "fork-%d", i);
        CHECK(tu_sendto_group(s, buf, (size_t)n, 0, &group) == n, "send %s", buf);
    }
    for (int i = 0; i < 2; i++)
        CHECK(tu_sendto_group(s, "end-x", 5, 0, &group) == 5, "send end marker");
    return 0;
}

static void check_fork(int witness)
{
    fsh = tu_shared_alloc(sizeof *fsh);
    fork_fd = tu_join(&group, 0);
    tu_set_rcvtimeo(fork_fd, 10000);
    tu_gate_init(&fork_gate);
    pid_t child = tu_spawn("forked child", fork_child, NULL);
    tu_gate_wait(&fork_gate, 1, 5000);
    tu_gate_open(&fork_gate, 1);
    pid_t snd = tu_spawn("sender", fork_sender, NULL);
    fork_read(fork_fd, &fsh->by_parent, "parent");
    tu_wait_child(snd);
    tu_wait_child(child);
    CHECK(fsh->ends == 2, "%u end markers read, expected 2", fsh->ends);
    for (int i = 0; i < FORK_MSGS; i++)
        CHECK(fsh->reads[i] == 1, "fork-%d was read %u times across parent and child (expected once)",
              i, fsh->reads[i]);
    CHECK(fsh->by_parent + fsh->by_child == FORK_MSGS, "parent read %u, child %u: not %d",
          fsh->by_parent, fsh->by_child, FORK_MSGS);
    tu_expect_empty(fork_fd, "shared member after both readers stopped");
    /* the witness got everything, once */
    char buf[64];
    for (int i = 0; i < FORK_MSGS; i++) {
        snprintf(buf, sizeof buf, "fork-%d", i);
        tu_expect_str(witness, buf, "witness");
    }
    tu_expect_str(witness, "end-x", "witness");
    tu_expect_str(witness, "end-x", "witness");
    close(fork_fd);
    tu_ok("fork: parent and child share the member; each of %d messages was read exactly once "
          "(parent %u, child %u), each reader in order",
          FORK_MSGS, fsh->by_parent, fsh->by_child);
}

/* ---- exec ---------------------------------------------------------------- */

#define EXEC_BEFORE 20
#define EXEC_AFTER 300

/* The re-exec'd image: argv = self "exec-member" <fd> <ready-pipe-fd> */
static int exec_member_main(char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_test_name = "t_lifecycle_dup (exec'd)";
    tu_role = "exec'd member";
    tu_watchdog_start();
    const char *pre = getenv("LD_PRELOAD");
    CHECK(pre && strstr(pre, "libumcast"), "LD_PRELOAD lost across exec");
    int fd = atoi(argv[2]), ready = atoi(argv[3]);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode), "inherited descriptor %d is not a socket", fd);
    tu_set_rcvtimeo(fd, 5000);
    /* queued before the exec */
    expect_seq(fd, "pre-exec", 0, EXEC_BEFORE, "after exec, messages queued before it");
    CHECK(write(ready, "r", 1) == 1, "write ready");
    close(ready);
    expect_seq(fd, "post-exec", 0, EXEC_AFTER, "after exec, messages sent after it");
    tu_expect_empty(fd, "exec'd member at the end");
    return 0;
}

static int exec_child(void *arg)
{
    char **args = arg;
    execv(self_exe, args);
    CHECK(0, "execv %s", self_exe);
    return 1;
}

static void check_exec(int witness)
{
    int fd = tu_join(&group, 0);
    unsigned long ino = tu_socket_ino(fd);
    /* inheritable */
    CHECK(fcntl(fd, F_SETFD, 0) == 0, "clear FD_CLOEXEC");
    int ready[2];
    CHECK(pipe(ready) == 0, "pipe");
    send_msgs("pre-exec", 0, EXEC_BEFORE);
    char fdstr[16], readystr[16];
    snprintf(fdstr, sizeof fdstr, "%d", fd);
    snprintf(readystr, sizeof readystr, "%d", ready[1]);
    char *args[] = {"t_lifecycle_dup", "exec-member", fdstr, readystr, NULL};
    pid_t child = tu_spawn("exec'd member", exec_child, args);
    close(ready[1]);
    /* the parent's copy goes away: the exec'd image is the socket's only holder */
    CHECK(close(fd) == 0, "close the parent's member descriptor");
    char c;
    double t0 = tu_now();
    for (;;) {
        tu_check_children();
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        int r = poll(&p, 1, 100);
        if (r == 1)
            break;
        CHECK(tu_now() - t0 < 10, "the exec'd image did not report its first %d messages",
              EXEC_BEFORE);
    }
    CHECK(read(ready[0], &c, 1) == 1, "the exec'd member died before reading what was queued");
    close(ready[0]);
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, ino), "`umcast list` does not show the exec'd member's socket %lu:\n%s",
          ino, list);
    free(list);
    send_msgs("post-exec", 0, EXEC_AFTER);
    tu_wait_child(child);
    expect_seq(witness, "pre-exec", 0, EXEC_BEFORE, "witness");
    expect_seq(witness, "post-exec", 0, EXEC_AFTER, "witness");
    tu_ok("exec with LD_PRELOAD: the new image receives on the inherited member descriptor "
          "what was queued before (%d) and sent after (%d), in order, after the parent closed its copy",
          EXEC_BEFORE, EXEC_AFTER);
}

/* ---- SCM_RIGHTS ----------------------------------------------------------- */

#define SCM_MSGS 200

static int send_fd(int via, int fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {"fd", 2};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return (int)sendmsg(via, &mh, 0);
}

static int recv_fd(int via)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    char data[8];
    struct iovec iov = {data, sizeof data};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    ssize_t r = recvmsg(via, &mh, MSG_CMSG_CLOEXEC);
    CHECK(r == 2, "recvmsg on the socketpair gave %zd", r);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    CHECK(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS, "no SCM_RIGHTS received");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* Receive the descriptor on `via`, say ready, receive the group's messages. */
static int scm_receive(int via, const char *prefix)
{
    int fd = recv_fd(via);
    tu_set_rcvtimeo(fd, 5000);
    CHECK(write(via, "r", 1) == 1, "write ready");
    expect_seq(fd, prefix, 0, SCM_MSGS, "member received over SCM_RIGHTS");
    tu_expect_empty(fd, "member received over SCM_RIGHTS, at the end");
    CHECK(write(via, "d", 1) == 1, "write done");
    return 0;
}

static int scm_pair[2];

static int scm_forked_child(void *arg)
{
    (void)arg;
    close(scm_pair[0]);
    return scm_receive(scm_pair[1], "scm-fork");
}

static int scm_exec_child(void *arg)
{
    char **args = arg;
    close(scm_pair[0]);
    CHECK(fcntl(scm_pair[1], F_SETFD, 0) == 0, "clear FD_CLOEXEC");
    execv(self_exe, args);
    CHECK(0, "execv %s", self_exe);
    return 1;
}

static int scm_exec_main(char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_test_name = "t_lifecycle_dup (exec'd)";
    tu_role = "exec'd SCM_RIGHTS receiver";
    tu_watchdog_start();
    return scm_receive(atoi(argv[2]), "scm-exec");
}

static void wait_byte(int fd, char want, const char *what)
{
    double t0 = tu_now();
    for (;;) {
        tu_check_children();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) == 1)
            break;
        CHECK(tu_now() - t0 < 10, "%s: no word from the receiver", what);
    }
    char c;
    CHECK(read(fd, &c, 1) == 1 && c == want, "%s: the receiver died or said something else", what);
}

static void check_scm(int witness, int exec)
{
    const char *prefix = exec ? "scm-exec" : "scm-fork";
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, scm_pair) == 0, "socketpair");
    char pairstr[16];
    snprintf(pairstr, sizeof pairstr, "%d", scm_pair[1]);
    char *args[] = {"t_lifecycle_dup", "scm-receiver", pairstr, NULL};
    /* the receiver exists before the member socket does */
    pid_t child = exec ? tu_spawn("exec'd SCM_RIGHTS receiver", scm_exec_child, args)
                       : tu_spawn("SCM_RIGHTS receiver forked before the join", scm_forked_child, NULL);
    close(scm_pair[1]);
    tu_sleep_ms(50);
    int fd = tu_join(&group, 0);
    unsigned long ino = tu_socket_ino(fd);
    send_msgs(prefix, 0, SCM_MSGS / 2); /* queued before the hand-over */
    CHECK(send_fd(scm_pair[0], fd) == 2, "sendmsg SCM_RIGHTS");
    CHECK(close(fd) == 0, "close our member descriptor after passing it");
    wait_byte(scm_pair[0], 'r', prefix);
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, ino), "`umcast list` does not show the passed member socket %lu:\n%s",
          ino, list);
    free(list);
    send_msgs(prefix, SCM_MSGS / 2, SCM_MSGS);
    wait_byte(scm_pair[0], 'd', prefix);
    tu_wait_child(child);
    close(scm_pair[0]);
    expect_seq(witness, prefix, 0, SCM_MSGS, "witness");
    tu_ok("SCM_RIGHTS to %s: it receives the group's %d messages (half queued before the hand-over) "
          "on the descriptor it was given, after the sender closed its own",
          exec ? "an exec'd image that never saw the group" : "a process forked before the join",
          SCM_MSGS);
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "exec-member") == 0)
        return exec_member_main(argv);
    if (argc >= 3 && strcmp(argv[1], "scm-receiver") == 0)
        return scm_exec_main(argv);
    tu_start("t_lifecycle_dup");
    tu_abstract_group(&group, "dup");
    int g = tu_create_group(&group);
    /* the witness reads each part's messages afterwards: room for all of them */
    int witness = tu_dgram();
    tu_setint(witness, SOL_SOCKET, SO_RCVBUF, 1 << 20);
    tu_join_fd(witness, &group, 0);
    tu_set_rcvtimeo(witness, 5000);

    check_dups(witness);
    check_fork(witness);
    check_exec(witness);
    check_scm(witness, 0);
    check_scm(witness, 1);

    tu_expect_empty(witness, "witness at the end");
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
