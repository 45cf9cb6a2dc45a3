/*
 * t_scm_rights: until descriptors are carried in group messages, a group
 * send with SCM_RIGHTS fails with EOPNOTSUPP, delivers nothing to anybody,
 * and keeps no copy of the descriptors (docs/SPEC.md section 10, "Interim
 * limits"; the full behaviour is tests-c/pending/t_scm_rights_delivery.c).
 * The same send to an ordinary socket still passes the descriptors.
 */
#include "testutil.h"

static struct unix_mreq group;
static struct tu_gate joined, sent;

static int child_member(void *arg)
{
    const char *tag = arg;
    int m = tu_join(&group, 0);
    tu_gate_arrive(&joined);
    tu_gate_pass(&sent);
    tu_expect_str(m, "after", tag); /* the refused message never shows up first */
    tu_expect_empty(m, tag);
    return 0;
}

static ssize_t send_rights(int s, const struct sockaddr_un *to, socklen_t tolen, int fd, int flags)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {"rights", 6};
    struct msghdr mh = {.msg_name = (void *)to, .msg_namelen = tolen, .msg_iov = &iov,
                        .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(s, &mh, flags);
}

int main(void)
{
    tu_start("t_scm_rights");
    tu_abstract_group(&group, "rights");
    tu_gate_init(&joined);
    tu_gate_init(&sent);
    int g = tu_create_group(&group);
    tu_spawn("member C1", child_member, "C1");
    tu_gate_wait(&joined, 1, 10000);
    int p1 = tu_join(&group, 0);

    int pipefd[2];
    CHECK(pipe2(pipefd, O_CLOEXEC) == 0, "pipe");
    int s = tu_dgram();
    socklen_t len = unix_mreq_addrlen(&group);
    CHECK_ERRNO(send_rights(s, &group.address, len, pipefd[1], 0), EOPNOTSUPP);
    CHECK_ERRNO(send_rights(s, &group.address, len, pipefd[1], MSG_DONTWAIT), EOPNOTSUPP);
    /* connected to the group, too */
    int c = tu_dgram();
    CHECK(connect(c, (struct sockaddr *)&group.address, len) == 0, "connect to the group");
    CHECK_ERRNO(send_rights(c, NULL, 0, pipefd[1], 0), EOPNOTSUPP);
    tu_ok("sendmsg with SCM_RIGHTS to a group -> EOPNOTSUPP (sendto and connected)");

    CHECK(tu_sendto_group(s, "after", 5, 0, &group) == 5, "plain send after the refusals");
    tu_gate_open(&sent, 1);
    tu_expect_str(p1, "after", "P1");
    tu_expect_empty(p1, "P1");
    tu_wait_all();
    tu_ok("nobody received the refused messages; the group keeps working");

    /* No copy of the write end was kept: closing ours gives end-of-file. */
    close(pipefd[1]);
    struct pollfd p = {pipefd[0], POLLIN, 0};
    CHECK(poll(&p, 1, 5000) == 1, "pipe readable (end-of-file) after closing the only write end");
    char b;
    CHECK(read(pipefd[0], &b, 1) == 0, "end-of-file: the library kept no copy of the descriptor");
    tu_ok("the refused descriptors were not kept");

    /* Ordinary sockets still pass descriptors. */
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) == 0, "socketpair");
    int pp[2];
    CHECK(pipe(pp) == 0, "pipe");
    CHECK(send_rights(sp[0], NULL, 0, pp[1], 0) == 6, "SCM_RIGHTS over an ordinary socketpair");
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    char data[8];
    struct iovec iov = {data, sizeof data};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                        .msg_controllen = sizeof control.buf};
    CHECK(recvmsg(sp[1], &mh, 0) == 6, "recvmsg on the socketpair");
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    CHECK(cm && cm->cmsg_type == SCM_RIGHTS, "descriptor received over the ordinary socket");
    tu_ok("SCM_RIGHTS over ordinary unix sockets is untouched");
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
