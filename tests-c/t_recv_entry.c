/*
 * t_recv_entry: every receive entry point gets group messages (SPEC 3):
 * recv, recvfrom (msg_name as for an ordinary datagram), recvmsg, recvmmsg,
 * read, readv; MSG_PEEK, MSG_TRUNC (flag and result), MSG_DONTWAIT,
 * SOCK_NONBLOCK/O_NONBLOCK, SO_PASSCRED (credentials of the sending process,
 * MSG_CTRUNC), SO_RCVTIMEO, ordinary datagrams beside group messages, and a
 * blocked receive waking promptly when another process sends.
 *
 * The fortify build calls __recv_chk, __recvfrom_chk and __read_chk here:
 * buffers are arrays of known size and lengths are opaque to the compiler
 * (tu_opaque_size), which is what makes glibc route them to the _chk
 * variants. tests-c/Makefile checks the binary's imports with nm.
 *
 * Where the kernel's own behaviour is the reference (msg_name, credentials),
 * the sender also sends the same datagram to an ordinary bound socket and
 * both results must agree.
 */
#include "testutil.h"

/* A group of its own for each check, so members never see older traffic. */
struct group {
    struct unix_mreq m;
    int g;
};

static void group_new(struct group *gr, const char *tag)
{
    tu_abstract_group(&gr->m, tag);
    gr->g = tu_create_group(&gr->m);
}

static int member_of(struct group *gr)
{
    int fd = tu_join(&gr->m, 0);
    tu_set_rcvtimeo(fd, 10000);
    return fd;
}

/* An ordinary bound datagram socket: the kernel's answer for comparison. */
static int plain_bound(struct sockaddr_un *a, socklen_t *len)
{
    int fd = tu_dgram();
    *len = tu_abstract_addr(a, "plain");
    CHECK(bind(fd, (struct sockaddr *)a, *len) == 0, "bind");
    tu_set_rcvtimeo(fd, 10000);
    return fd;
}

/* What a child sender does. */
struct send_job {
    const struct unix_mreq *group;
    const char *texts[8];
    int n;
    const struct sockaddr_un *bind_to; /* bind the sender first (NULL: unbound) */
    socklen_t bind_len;
    const struct sockaddr_un *twin; /* also send each text here, ordinarily */
    socklen_t twin_len;
    uid_t ruid; /* nonzero: real uid/gid to take (root only), effective stays */
    gid_t rgid;
};

static int sender(void *arg)
{
    struct send_job *j = arg;
    if (j->rgid)
        CHECK(setresgid(j->rgid, getegid(), getegid()) == 0, "setresgid");
    if (j->ruid)
        CHECK(setresuid(j->ruid, geteuid(), geteuid()) == 0, "setresuid");
    int s = tu_dgram();
    if (j->bind_to)
        CHECK(bind(s, (const struct sockaddr *)j->bind_to, j->bind_len) == 0, "sender bind");
    for (int i = 0; i < j->n; i++) {
        size_t len = strlen(j->texts[i]);
        CHECK(tu_sendto_group(s, j->texts[i], len, 0, j->group) == (ssize_t)len, "sendto group");
        if (j->twin)
            CHECK(sendto(s, j->texts[i], len, 0, (const struct sockaddr *)j->twin, j->twin_len) ==
                      (ssize_t)len,
                  "sendto ordinary twin");
    }
    return 0;
}

/* Run a send job in a child process; returns after the child exited. */
static pid_t run_job(struct send_job *j)
{
    pid_t pid = tu_spawn("sender", sender, j);
    tu_wait_child(pid);
    return pid;
}

static void send_texts(struct group *gr, int n, ...)
{
    struct send_job j = {.group = &gr->m, .n = n};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        j.texts[i] = va_arg(ap, const char *);
    va_end(ap);
    run_job(&j);
}

/* ---- plain entry points ---- */

static void check_recv_read(void)
{
    struct group gr;
    group_new(&gr, "rr");
    int r = member_of(&gr);
    char buf[256];
    send_texts(&gr, 2, "for recv", "for read");

    ssize_t n = recv(r, buf, tu_opaque_size(sizeof buf), 0);
    CHECK(n == 8 && memcmp(buf, "for recv", 8) == 0, "recv gave %zd", n);
    n = read(r, buf, tu_opaque_size(sizeof buf));
    CHECK(n == 8 && memcmp(buf, "for read", 8) == 0, "read gave %zd", n);
    tu_expect_empty(r, "member");
    tu_ok("recv and read (fortified: __recv_chk, __read_chk) get group messages");

    send_texts(&gr, 1, "0123456789abcdefghij");
    char a[3], b[7], c[20];
    struct iovec iov[4] = {{a, sizeof a}, {NULL, 0}, {b, sizeof b}, {c, sizeof c}};
    n = readv(r, iov, 4);
    CHECK(n == 20, "readv gave %zd", n);
    CHECK(memcmp(a, "012", 3) == 0 && memcmp(b, "3456789", 7) == 0 && memcmp(c, "abcdefghij", 10) == 0,
          "readv scattered wrongly");
    tu_ok("readv scatters one group message over 4 iovecs");
    close(r);
    close(gr.g);
}

static void check_recvmsg_mmsg(void)
{
    struct group gr;
    group_new(&gr, "mm");
    int r = member_of(&gr);
    send_texts(&gr, 1, "scattered by recvmsg");
    char a[10], b[64];
    struct iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t n = recvmsg(r, &mh, 0);
    CHECK(n == 20, "recvmsg gave %zd", n);
    CHECK(memcmp(a, "scattered ", 10) == 0 && memcmp(b, "by recvmsg", 10) == 0, "recvmsg scatter");
    CHECK(mh.msg_flags == 0, "recvmsg msg_flags 0x%x", mh.msg_flags);
    tu_ok("recvmsg scatters a group message, msg_flags 0");

    send_texts(&gr, 5, "m0", "m1", "", "m3 longer", "m4");
    static const char *want[5] = {"m0", "m1", "", "m3 longer", "m4"};
    char bufs[8][32];
    struct iovec iovs[8];
    struct mmsghdr mm[8];
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 8; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = sizeof bufs[i];
        mm[i].msg_hdr.msg_iov = &iovs[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(r, mm, 5, 0, NULL);
    CHECK(got == 5, "recvmmsg(vlen 5) with 5 queued gave %d", got);
    for (int i = 0; i < 5; i++)
        CHECK(mm[i].msg_len == strlen(want[i]) && memcmp(bufs[i], want[i], mm[i].msg_len) == 0,
              "recvmmsg message %d (len %u)", i, mm[i].msg_len);
    send_texts(&gr, 3, "w0", "w1", "w2");
    got = recvmmsg(r, mm, 8, MSG_WAITFORONE, NULL);
    CHECK(got == 3, "recvmmsg(vlen 8, MSG_WAITFORONE) with 3 queued gave %d", got);
    for (int i = 0; i < 3; i++)
        CHECK(mm[i].msg_len == 2 && bufs[i][0] == 'w' && bufs[i][1] == '0' + i, "recvmmsg %d", i);
    tu_expect_empty(r, "member");
    tu_ok("recvmmsg gets 5 queued group messages in one call, and 3 with MSG_WAITFORONE");
    close(r);
    close(gr.g);
}

/* ---- addresses ---- */

static void check_names(void)
{
    struct group gr;
    group_new(&gr, "names");
    int r = member_of(&gr);
    struct sockaddr_un twin, abs_name, path_name;
    socklen_t twin_len;
    int p = plain_bound(&twin, &twin_len);
    socklen_t abs_len = tu_abstract_addr(&abs_name, "sender");
    socklen_t path_len = tu_path_addr(&path_name, "sender");

    struct {
        const char *what;
        const struct sockaddr_un *a;
        socklen_t len;
    } kinds[3] = {{"unbound", NULL, 0}, {"abstract", &abs_name, abs_len}, {"path", &path_name, path_len}};
    for (int k = 0; k < 3; k++) {
        /* two sends each way: one read with recvfrom, one with recvmsg */
        struct send_job j = {.group = &gr.m, .texts = {"who am i", "who am i"}, .n = 2, .bind_to = kinds[k].a,
                             .bind_len = kinds[k].len, .twin = &twin, .twin_len = twin_len};
        run_job(&j);
        struct sockaddr_un from_g, from_p;
        memset(&from_g, 0x5a, sizeof from_g);
        memset(&from_p, 0x5a, sizeof from_p);
        socklen_t lg = sizeof from_g, lp = sizeof from_p;
        char buf[64];
        ssize_t ng = recvfrom(r, buf, tu_opaque_size(sizeof buf), 0, (struct sockaddr *)&from_g, &lg);
        CHECK(ng == 8, "recvfrom on the member gave %zd", ng);
        ssize_t np = recvfrom(p, buf, sizeof buf, 0, (struct sockaddr *)&from_p, &lp);
        CHECK(np == 8, "recvfrom on the ordinary socket gave %zd", np);
        CHECK(lg == lp, "%s sender: msg_namelen %u for the group message, %u for an ordinary one",
              kinds[k].what, lg, lp);
        CHECK(memcmp(&from_g, &from_p, lg) == 0, "%s sender: addresses differ", kinds[k].what);
        if (kinds[k].a)
            CHECK(lg == kinds[k].len && memcmp(&from_g, kinds[k].a, lg) == 0,
                  "%s sender: msg_name is not the sender's bound address", kinds[k].what);
        /* recvmsg's msg_name too */
        struct msghdr mh = {.msg_name = &from_g, .msg_namelen = sizeof from_g,
                            .msg_iov = &(struct iovec){buf, sizeof buf}, .msg_iovlen = 1};
        CHECK(recvmsg(r, &mh, 0) == 8, "recvmsg");
        CHECK(mh.msg_namelen == lp && memcmp(&from_g, &from_p, lp) == 0, "%s: recvmsg msg_name",
              kinds[k].what);
        CHECK(recv(p, buf, sizeof buf, 0) == 8, "drain twin");
        tu_ok("%s sender: recvfrom/recvmsg address length %u, same as for an ordinary datagram",
              kinds[k].what, lg);
    }
    close(r);
    close(p);
    close(gr.g);
}

/* ---- flags ---- */

static void check_peek_trunc(void)
{
    struct group gr;
    group_new(&gr, "flags");
    int r = member_of(&gr);
    char buf[64];
    send_texts(&gr, 2, "peek at me", "next one");
    ssize_t n = recv(r, buf, sizeof buf, MSG_PEEK);
    CHECK(n == 10 && memcmp(buf, "peek at me", 10) == 0, "MSG_PEEK gave %zd", n);
    n = recv(r, buf, 4, MSG_PEEK);
    CHECK(n == 4 && memcmp(buf, "peek", 4) == 0, "short MSG_PEEK gave %zd", n);
    n = recv(r, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    CHECK(n == 10, "MSG_PEEK|MSG_DONTWAIT gave %zd", n);
    tu_expect_str(r, "peek at me", "recv after peeking");
    tu_expect_str(r, "next one", "recv after that");
    tu_ok("MSG_PEEK leaves the message; the following recv returns the same one");

    send_texts(&gr, 4, "twenty bytes long!!!", "marker 1", "twenty bytes long!!!", "marker 2");
    memset(buf, 0, sizeof buf);
    n = recv(r, buf, 4, MSG_TRUNC);
    CHECK(n == 20, "recv(4 bytes, MSG_TRUNC) of a 20-byte message returned %zd (want 20)", n);
    CHECK(memcmp(buf, "twen", 4) == 0 && buf[4] == 0, "MSG_TRUNC copied wrongly");
    tu_expect_str(r, "marker 1", "after a MSG_TRUNC recv, the rest was discarded");

    struct iovec iov = {buf, 4};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    n = recvmsg(r, &mh, 0);
    CHECK(n == 4, "recvmsg into 4 bytes returned %zd", n);
    CHECK(mh.msg_flags & MSG_TRUNC, "MSG_TRUNC not set in msg_flags (0x%x)", mh.msg_flags);
    tu_expect_str(r, "marker 2", "after a truncated recvmsg, the rest was discarded");
    tu_ok("MSG_TRUNC: as a flag returns the real length; as a result flag marks truncation; "
          "the rest of the message is discarded");

    tu_expect_empty(r, "empty member (MSG_DONTWAIT)");
    int nb = tu_dgram();
    int flags = fcntl(nb, F_GETFL);
    CHECK(fcntl(nb, F_SETFL, flags | O_NONBLOCK) == 0, "O_NONBLOCK");
    tu_join_fd(nb, &gr.m, 0);
    CHECK_ERRNO(recv(nb, buf, sizeof buf, 0), EAGAIN);
    CHECK_ERRNO(read(nb, buf, sizeof buf), EAGAIN);
    int snb = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(snb >= 0, "socket(SOCK_NONBLOCK)");
    tu_join_fd(snb, &gr.m, 0);
    CHECK_ERRNO(recvfrom(snb, buf, sizeof buf, 0, NULL, NULL), EAGAIN);
    send_texts(&gr, 1, "now there is one");
    tu_expect_str(nb, "now there is one", "O_NONBLOCK member");
    tu_expect_str(snb, "now there is one", "SOCK_NONBLOCK member");
    tu_expect_str(r, "now there is one", "member");
    tu_ok("empty member: MSG_DONTWAIT, O_NONBLOCK and SOCK_NONBLOCK give EAGAIN; then they receive");
    close(nb);
    close(snb);
    close(r);
    close(gr.g);
}

/* ---- credentials ---- */

#define CRED_SPACE (CMSG_SPACE(sizeof(struct ucred)) + 64)

/* recvmsg of a "cred" message with controllen bytes of control buffer. */
static void recv_creds(int fd, struct ucred *uc, int *flags, size_t controllen, const char *what)
{
    union {
        struct cmsghdr align;
        char buf[CRED_SPACE];
    } control;
    char data[64];
    struct iovec iov = {data, sizeof data};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = controllen};
    memset(&control, 0, sizeof control);
    ssize_t n = recvmsg(fd, &mh, 0);
    CHECK(n == 4 && memcmp(data, "cred", 4) == 0, "%s: recvmsg gave %zd", what, n);
    *flags = mh.msg_flags;
    memset(uc, 0, sizeof *uc);
    uc->pid = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
            memcpy(uc, CMSG_DATA(c), sizeof *uc);
}

static void check_passcred(void)
{
    struct group gr;
    group_new(&gr, "cred");
    int before = tu_dgram();
    tu_setint(before, SOL_SOCKET, SO_PASSCRED, 1); /* set before JOIN */
    tu_join_fd(before, &gr.m, 0);
    tu_set_rcvtimeo(before, 10000);
    int after = member_of(&gr);
    tu_setint(after, SOL_SOCKET, SO_PASSCRED, 1); /* set after JOIN */
    struct sockaddr_un twin;
    socklen_t twin_len;
    int p = plain_bound(&twin, &twin_len);
    tu_setint(p, SOL_SOCKET, SO_PASSCRED, 1);

    int rounds = geteuid() == 0 ? 2 : 1;
    for (int round = 0; round < rounds; round++) {
        /* round 1: the sender has other real ids than ours (kernel reports real ids) */
        struct send_job j = {.group = &gr.m, .texts = {"cred"}, .n = 1, .twin = &twin,
                             .twin_len = twin_len, .ruid = round ? 4343 : 0, .rgid = round ? 4242 : 0};
        pid_t child = run_job(&j);
        struct ucred kernel, mine;
        int kf, mf;
        recv_creds(p, &kernel, &kf, CRED_SPACE, "ordinary socket");
        CHECK(kernel.pid == child, "kernel reference: pid %d, sender was %d", kernel.pid, (int)child);
        int fds[2] = {before, after};
        for (int k = 0; k < 2; k++) {
            recv_creds(fds[k], &mine, &mf, CRED_SPACE,
                       k ? "SO_PASSCRED after JOIN" : "SO_PASSCRED before JOIN");
            CHECK(mine.pid == child, "SCM_CREDENTIALS pid %d, the sender was pid %d", mine.pid,
                  (int)child);
            CHECK(mine.uid == kernel.uid && mine.gid == kernel.gid,
                  "SCM_CREDENTIALS uid/gid %u/%u, the kernel says %u/%u", mine.uid, mine.gid,
                  kernel.uid, kernel.gid);
            CHECK(mf == kf, "msg_flags 0x%x, the kernel gives 0x%x", mf, kf);
        }
        tu_ok("SO_PASSCRED (set before and after JOIN): SCM_CREDENTIALS pid %d uid %u gid %u of the "
              "sending process, as the kernel reports",
              (int)child, kernel.uid, kernel.gid);
    }
    if (rounds == 1)
        printf("  SKIP: credentials of a sender with other real ids need root\n");

    /* A control buffer too small for the credentials: MSG_CTRUNC as the kernel sets it. */
    struct send_job j = {.group = &gr.m, .texts = {"cred"}, .n = 1, .twin = &twin, .twin_len = twin_len};
    run_job(&j);
    struct ucred uc;
    int kf, mf;
    recv_creds(p, &uc, &kf, sizeof(struct cmsghdr), "ordinary socket, small control buffer");
    recv_creds(before, &uc, &mf, sizeof(struct cmsghdr), "member, small control buffer");
    CHECK(mf == kf, "small control buffer: msg_flags 0x%x, the kernel gives 0x%x", mf, kf);
    CHECK(mf & MSG_CTRUNC, "MSG_CTRUNC not set");
    recv_creds(after, &uc, &mf, sizeof(struct cmsghdr), "member, small control buffer");
    CHECK(mf == kf, "small control buffer: msg_flags 0x%x, the kernel gives 0x%x", mf, kf);
    tu_ok("a too-small control buffer gives MSG_CTRUNC, as for an ordinary datagram");
    close(before);
    close(after);
    close(p);
    close(gr.g);
}

/* ---- timing ---- */

static void check_rcvtimeo(void)
{
    struct group gr;
    group_new(&gr, "timeo");
    int r = tu_join(&gr.m, 0);
    tu_set_rcvtimeo(r, 300);
    char buf[16];
    double t0 = tu_now();
    CHECK_ERRNO(recv(r, buf, sizeof buf, 0), EAGAIN);
    double waited = tu_now() - t0;
    CHECK(waited >= 0.25 && waited < 2.0, "SO_RCVTIMEO 300 ms: recv returned after %.3f s", waited);
    t0 = tu_now();
    CHECK_ERRNO(read(r, buf, sizeof buf), EAGAIN);
    double waited2 = tu_now() - t0;
    CHECK(waited2 >= 0.25 && waited2 < 2.0, "SO_RCVTIMEO 300 ms: read returned after %.3f s", waited2);
    tu_ok("SO_RCVTIMEO 300 ms on an empty member: recv and read -> EAGAIN after %.3f s and %.3f s",
          waited, waited2);
    close(r);
    close(gr.g);
}

/* Group "g1", an ordinary datagram "o1" to the member's own address, group "g2". */
struct beside_job {
    const struct unix_mreq *group;
    const struct sockaddr_un *own;
    socklen_t own_len;
};

static int beside_sender(void *arg)
{
    struct beside_job *j = arg;
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "g1", 2, 0, j->group) == 2, "group send g1");
    CHECK(sendto(s, "o1", 2, 0, (const struct sockaddr *)j->own, j->own_len) == 2, "ordinary sendto");
    CHECK(tu_sendto_group(s, "g2", 2, 0, j->group) == 2, "group send g2");
    return 0;
}

static void check_ordinary_beside(void)
{
    struct group gr;
    group_new(&gr, "beside");
    int r = tu_dgram();
    struct sockaddr_un own;
    socklen_t own_len = tu_abstract_addr(&own, "member-own");
    CHECK(bind(r, (struct sockaddr *)&own, own_len) == 0, "bind the member");
    tu_join_fd(r, &gr.m, 0);
    tu_set_rcvtimeo(r, 10000);

    struct beside_job j = {&gr.m, &own, own_len};
    tu_wait_child(tu_spawn("sender", beside_sender, &j));
    char seen[3][3];
    for (int i = 0; i < 3; i++) {
        ssize_t n = recv(r, seen[i], 2, 0);
        CHECK(n == 2, "recv %d gave %zd", i, n);
        seen[i][2] = 0;
    }
    int g1 = -1, g2 = -1, o1 = -1;
    for (int i = 0; i < 3; i++) {
        if (strcmp(seen[i], "g1") == 0 && g1 < 0)
            g1 = i;
        else if (strcmp(seen[i], "g2") == 0 && g2 < 0)
            g2 = i;
        else if (strcmp(seen[i], "o1") == 0 && o1 < 0)
            o1 = i;
    }
    CHECK(g1 >= 0 && g2 >= 0 && o1 >= 0, "got \"%s\", \"%s\", \"%s\"; want g1, o1, g2 in any order",
          seen[0], seen[1], seen[2]);
    CHECK(g1 < g2, "group message g2 arrived before g1");
    tu_expect_empty(r, "member");
    tu_ok("a member bound to its own address gets an ordinary datagram beside group messages "
          "(order received: %s %s %s)",
          seen[0], seen[1], seen[2]);
    close(r);
    close(gr.g);
}

static int timed_sender(void *arg)
{
    struct unix_mreq *m = arg;
    int s = tu_dgram();
    for (int i = 0; i < 5; i++) {
        tu_sleep_ms(200);
        double t = tu_now(); /* CLOCK_MONOTONIC is system-wide */
        CHECK(tu_sendto_group(s, &t, sizeof t, 0, m) == sizeof t, "timed send");
    }
    return 0;
}

static void check_wakeup(void)
{
    struct group gr;
    group_new(&gr, "wake");
    int r = member_of(&gr);
    pid_t child = tu_spawn("timed sender", timed_sender, &gr.m);
    double worst = 0, least_blocked = 1e9;
    for (int i = 0; i < 5; i++) {
        double t_sent, t0 = tu_now();
        ssize_t n = recv(r, &t_sent, sizeof t_sent, 0);
        double t1 = tu_now();
        CHECK(n == sizeof t_sent, "recv gave %zd", n);
        CHECK(t1 - t_sent < 0.100, "blocked recv woke %.1f ms after the send", (t1 - t_sent) * 1e3);
        worst = t1 - t_sent > worst ? t1 - t_sent : worst;
        least_blocked = t1 - t0 < least_blocked ? t1 - t0 : least_blocked;
    }
    tu_wait_child(child);
    CHECK(least_blocked > 0.05, "recv did not really block (%.3f s)", least_blocked);
    tu_ok("a blocked recv wakes promptly when another process sends: worst %.2f ms over 5 rounds",
          worst * 1e3);
    close(r);
    close(gr.g);
}

int main(void)
{
    tu_start("t_recv_entry");
    check_recv_read();
    check_recvmsg_mmsg();
    check_peek_trunc();
    check_passcred();
    check_rcvtimeo();
    check_ordinary_beside();
    check_wakeup();
    check_names();
    return tu_done();
}
