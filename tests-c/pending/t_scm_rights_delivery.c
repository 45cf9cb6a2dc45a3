/*
 * t_scm_rights: SPEC 3, "SCM_RIGHTS sent to a group gives every recipient
 * its own descriptors, as N separate sends would", and MSG_CMSG_CLOEXEC.
 *
 * One sendmsg passes the write ends of two pipes to a group of five members:
 * two in child processes, three in this process (with and without
 * MSG_CMSG_CLOEXEC, and one that closes its socket without reading). Every
 * reader writes its name into both pipes through the descriptors it got.
 * Once every received copy is closed, both pipes must reach end-of-file:
 * nobody (the library included) may keep a copy.
 */
#include "testutil.h"

static struct unix_mreq group;
static struct tu_gate joined, sent;
static struct stat want[2]; /* the pipes' write ends, to recognise them */

/* Receive one message carrying exactly two descriptors. */
static void recv_two_fds(int m, int flags, int fds[2], const char *who)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(2 * sizeof(int)) + 64];
    } control;
    char data[16];
    struct iovec iov = {data, sizeof data};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(m, &mh, flags);
    CHECK(n == 6 && memcmp(data, "rights", 6) == 0, "%s: recvmsg gave %zd", who, n);
    CHECK(!(mh.msg_flags & MSG_CTRUNC), "%s: MSG_CTRUNC", who);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    CHECK(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
              c->cmsg_len == CMSG_LEN(2 * sizeof(int)),
          "%s: no SCM_RIGHTS with two descriptors", who);
    memcpy(fds, CMSG_DATA(c), 2 * sizeof(int));
    for (int i = 0; i < 2; i++) {
        struct stat st;
        CHECK(fstat(fds[i], &st) == 0, "%s: fstat of received descriptor %d", who, fds[i]);
        CHECK(st.st_dev == want[i].st_dev && st.st_ino == want[i].st_ino,
              "%s: descriptor %d is not the pipe that was sent", who, i);
        int fdflags = fcntl(fds[i], F_GETFD);
        int cloexec = (flags & MSG_CMSG_CLOEXEC) != 0;
        CHECK(((fdflags & FD_CLOEXEC) != 0) == cloexec, "%s: FD_CLOEXEC is %d, expected %d", who,
              (fdflags & FD_CLOEXEC) != 0, cloexec);
    }
}

/* Write our two-letter name into both pipes, then close our copies. */
static void sign_and_close(int fds[2], const char *tag)
{
    for (int i = 0; i < 2; i++) {
        CHECK(write(fds[i], tag, 2) == 2, "write through the received descriptor");
        CHECK(close(fds[i]) == 0, "close");
    }
}

static int child_member(void *arg)
{
    const char *tag = arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 10000);
    tu_gate_arrive(&joined);
    tu_gate_pass(&sent);
    int fds[2];
    recv_two_fds(m, 0, fds, tag);
    sign_and_close(fds, tag);
    tu_expect_empty(m, tag);
    return 0;
}

/* Read a pipe to end-of-file (within 10 s); returns what was written. */
static void read_to_eof(int fd, char *out, size_t cap, const char *what)
{
    size_t len = 0;
    double deadline = tu_now() + 10;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int left = (int)((deadline - tu_now()) * 1000);
        CHECK(left > 0, "%s: no end-of-file after 10 s (read so far: \"%.*s\"): a copy of the "
              "descriptor is still open somewhere", what, (int)len, out);
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = read(fd, out + len, cap - len - 1);
        CHECK(n >= 0, "%s: read", what);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    out[len] = 0;
}

int main(void)
{
    tu_start("t_scm_rights");
    tu_abstract_group(&group, "rights");
    tu_gate_init(&joined);
    tu_gate_init(&sent);
    int g = tu_create_group(&group);

    int pipes[2][2];
    for (int i = 0; i < 2; i++) {
        CHECK(pipe2(pipes[i], O_CLOEXEC) == 0, "pipe");
        CHECK(fstat(pipes[i][1], &want[i]) == 0, "fstat");
    }
    tu_spawn("member C1", child_member, "C1");
    tu_spawn("member C2", child_member, "C2");
    tu_gate_wait(&joined, 2, 10000);
    int p1 = tu_join(&group, 0), p2 = tu_join(&group, 0), gone = tu_join(&group, 0);
    tu_set_rcvtimeo(p1, 10000);
    tu_set_rcvtimeo(p2, 10000);

    /* one sendmsg to the group, two descriptors */
    int s = tu_dgram();
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {"rights", 6};
    struct msghdr mh = {.msg_name = &group.address, .msg_namelen = unix_mreq_addrlen(&group),
                        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(2 * sizeof(int));
    int pass[2] = {pipes[0][1], pipes[1][1]};
    memcpy(CMSG_DATA(c), pass, sizeof pass);
    CHECK(sendmsg(s, &mh, 0) == 6, "sendmsg with SCM_RIGHTS to the group");
    close(pipes[0][1]); /* from now on only the recipients hold write ends */
    close(pipes[1][1]);
    tu_gate_open(&sent, 2);

    int f1[2], f2[2];
    recv_two_fds(p1, 0, f1, "P1");
    recv_two_fds(p2, MSG_CMSG_CLOEXEC, f2, "P2 (MSG_CMSG_CLOEXEC)");
    CHECK(f1[0] != f2[0] && f1[1] != f2[1], "two members of one process got the same descriptors");
    sign_and_close(f1, "P1");
    sign_and_close(f2, "P2");
    close(gone); /* never read: its descriptors must be released with its queue */
    tu_wait_all();
    tu_ok("5 members (3 processes) each got their own two descriptors; MSG_CMSG_CLOEXEC honoured");

    for (int i = 0; i < 2; i++) {
        char got[64];
        read_to_eof(pipes[i][0], got, sizeof got, i ? "pipe 2" : "pipe 1");
        CHECK(strlen(got) == 8 && strstr(got, "C1") && strstr(got, "C2") && strstr(got, "P1") &&
                  strstr(got, "P2"),
              "pipe %d: got \"%s\", expected C1, C2, P1 and P2 in any order", i + 1, got);
    }
    tu_ok("every recipient wrote through its descriptors; both pipes reached end-of-file, so no "
          "copy was left behind (not even by the member that closed without reading)");
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
