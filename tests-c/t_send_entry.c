/*
 * t_send_entry: every send entry point reaches every member (SPEC 3):
 * sendto from a member and from a non-member, connect then send, write,
 * sendmsg (named and connected), sendmmsg, writev; sender exclusion and
 * LOOPBACK; G never receives; zero-length messages; a group without members;
 * EMSGSIZE at exactly the kernel's limit; a 200 KiB message intact.
 * Most sends happen in child processes that exit before the parent looks.
 */
#include "testutil.h"

static struct unix_mreq A;
static int G;

/* The members: two plain ones, S (a member that sends), L (LOOPBACK). */
enum { M1, M2, S, L, NMEMBERS };
static int member[NMEMBERS];
static const char *member_name[NMEMBERS] = {"member M1", "member M2", "member S", "member L (loopback)"};
#define ALL 0u
#define EXCEPT(i) (1u << (i))

static void expect_nothing(const char *what);

/* Every member except those in the mask gets exactly (data, len) next. */
static void expect_all(unsigned except, const void *data, size_t len, const char *what)
{
    char label[128];
    for (int i = 0; i < NMEMBERS; i++) {
        snprintf(label, sizeof label, "%s: %s", what, member_name[i]);
        if (!(except & EXCEPT(i)))
            tu_expect_msg(member[i], data, len, label);
    }
    expect_nothing(what);
}

/* Nothing is queued on any member nor on G. */
static void expect_nothing(const char *what)
{
    char label[128];
    for (int i = 0; i < NMEMBERS; i++) {
        snprintf(label, sizeof label, "%s: %s", what, member_name[i]);
        tu_expect_empty(member[i], label);
    }
    tu_expect_empty(G, "group socket G");
}

static void expect_all_str(unsigned except, const char *s, const char *what)
{
    expect_all(except, s, strlen(s), what);
}

/* Run fn in a child process and wait for it: the send happens elsewhere. */
static void in_child(const char *name, int (*fn)(void *), void *arg)
{
    tu_wait_child(tu_spawn(name, fn, arg));
}

static int connected_socket(void)
{
    int s = tu_dgram();
    CHECK(connect(s, (struct sockaddr *)&A.address, unix_mreq_addrlen(&A)) == 0, "connect to group");
    return s;
}

/* ---- the senders (child processes) ---- */

static int send_sendto(void *arg)
{
    const char *text = arg;
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, text, strlen(text), 0, &A) == (ssize_t)strlen(text), "sendto");
    tu_expect_empty(s, "non-member sender");
    return 0;
}

static int send_connect_send(void *arg)
{
    (void)arg;
    int s = connected_socket();
    CHECK(send(s, "via send", 8, 0) == 8, "send on a connected socket");
    CHECK(send(s, "via send again", 14, 0) == 14, "send on a connected socket");
    return 0;
}

static int send_write(void *arg)
{
    (void)arg;
    int s = connected_socket();
    CHECK(write(s, "via write", 9) == 9, "write on a connected socket");
    return 0;
}

static int send_sendmsg(void *arg)
{
    (void)arg;
    struct iovec iov[2] = {{"via ", 4}, {"sendmsg", 7}};
    struct msghdr mh = {.msg_name = &A.address, .msg_namelen = unix_mreq_addrlen(&A),
                        .msg_iov = iov, .msg_iovlen = 2};
    int s = tu_dgram();
    CHECK(sendmsg(s, &mh, 0) == 11, "sendmsg with msg_name = group");
    int c = connected_socket();
    struct iovec iov2[1] = {{"connected sendmsg", 17}};
    struct msghdr mh2 = {.msg_iov = iov2, .msg_iovlen = 1};
    CHECK(sendmsg(c, &mh2, 0) == 17, "sendmsg on a connected socket");
    return 0;
}

static const char *mmsg_text[5] = {"mmsg one", "", "mmsg three", "mmsg four (longer than the others)",
                                   "mmsg five"};

static int send_sendmmsg(void *arg)
{
    int connected = arg != NULL;
    int s = connected ? connected_socket() : tu_dgram();
    struct iovec iov[5];
    struct mmsghdr mm[5];
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 5; i++) {
        iov[i].iov_base = (void *)mmsg_text[i];
        iov[i].iov_len = strlen(mmsg_text[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        if (!connected) {
            mm[i].msg_hdr.msg_name = &A.address;
            mm[i].msg_hdr.msg_namelen = unix_mreq_addrlen(&A);
        }
    }
    int n = sendmmsg(s, mm, 5, 0);
    CHECK(n == 5, "sendmmsg of 5 messages returned %d", n);
    for (int i = 0; i < 5; i++)
        CHECK(mm[i].msg_len == strlen(mmsg_text[i]), "sendmmsg msg_len[%d] = %u", i, mm[i].msg_len);
    return 0;
}

static int send_writev(void *arg)
{
    (void)arg;
    int s = connected_socket();
    struct iovec iov[4] = {{"gath", 4}, {"", 0}, {"ered by ", 8}, {"writev", 6}};
    CHECK(writev(s, iov, 4) == 18, "writev");
    return 0;
}

static int send_zero(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "", 0, 0, &A) == 0, "zero-length sendto");
    int c = connected_socket();
    CHECK(send(c, "", 0, 0) == 0, "zero-length send");
    CHECK(send(c, "after zero", 10, 0) == 10, "send");
    return 0;
}

static unsigned char *big;       /* 200 KiB test message */
#define BIG_LEN (200 * 1024)

static int send_big(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, big, BIG_LEN, 0, &A) == BIG_LEN, "sendto of 200 KiB");
    return 0;
}

/* ---- checks ---- */

static void check_entry_points(void)
{
    in_child("sendto", send_sendto, "sendto from another process");
    expect_all_str(ALL, "sendto from another process", "sendto from a non-member");
    tu_ok("sendto(group) from a non-member process reaches all 4 members");

    CHECK(tu_sendto_group(member[S], "from S", 6, 0, &A) == 6, "member S sendto");
    expect_all_str(EXCEPT(S), "from S", "sendto from member S");
    tu_ok("sendto from a member reaches the others, not itself");

    CHECK(tu_sendto_group(member[L], "from L", 6, 0, &A) == 6, "member L sendto");
    expect_all_str(ALL, "from L", "sendto from loopback member L");
    tu_ok("a LOOPBACK member also receives its own message");

    in_child("connect+send", send_connect_send, NULL);
    for (int i = 0; i < NMEMBERS; i++) {
        tu_expect_str(member[i], "via send", member_name[i]);
        tu_expect_str(member[i], "via send again", member_name[i]);
    }
    expect_nothing("after send");
    tu_ok("connect(group) then send reaches all members, in order");

    in_child("write", send_write, NULL);
    expect_all_str(ALL, "via write", "write");
    tu_ok("connect(group) then write reaches all members");

    in_child("sendmsg", send_sendmsg, NULL);
    for (int i = 0; i < NMEMBERS; i++) {
        tu_expect_str(member[i], "via sendmsg", member_name[i]);
        tu_expect_str(member[i], "connected sendmsg", member_name[i]);
    }
    expect_nothing("after sendmsg");
    tu_ok("sendmsg with msg_name = group (2 iovecs gathered) and on a connected socket");

    for (int connected = 0; connected < 2; connected++) {
        in_child("sendmmsg", send_sendmmsg, connected ? "connected" : NULL);
        for (int i = 0; i < NMEMBERS; i++)
            for (int k = 0; k < 5; k++)
                tu_expect_str(member[i], mmsg_text[k], member_name[i]);
        expect_nothing("after sendmmsg");
    }
    tu_ok("sendmmsg of 5 messages (named and connected): 5 deliveries each, in order");

    in_child("writev", send_writev, NULL);
    expect_all_str(ALL, "gathered by writev", "writev");
    tu_ok("writev with 4 iovecs (one empty) delivers one gathered message");

    in_child("zero-length", send_zero, NULL);
    for (int i = 0; i < NMEMBERS; i++) {
        tu_expect_msg(member[i], "", 0, member_name[i]);
        tu_expect_msg(member[i], "", 0, member_name[i]);
        tu_expect_str(member[i], "after zero", member_name[i]);
    }
    expect_nothing("after zero-length");
    tu_ok("zero-length messages (sendto and send) are delivered as zero-length messages");
}

static void check_no_members(void)
{
    struct unix_mreq B;
    tu_abstract_group(&B, "empty");
    int gb = tu_create_group(&B);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "to nobody", 9, 0, &B) == 9, "sendto a group without members");
    CHECK(connect(s, (struct sockaddr *)&B.address, unix_mreq_addrlen(&B)) == 0, "connect");
    CHECK(send(s, "to nobody", 9, MSG_DONTWAIT) == 9, "send to a group without members");
    tu_expect_empty(gb, "group socket of the empty group");
    expect_nothing("members of another group");
    tu_ok("a send to a group without members succeeds and reaches nobody");
    close(s);
    close(gb);
}

/*
 * The kernel's largest datagram on a socket with this SO_SNDBUF (0: default),
 * found by bisection on an ordinary socketpair.
 */
static size_t kernel_limit(int sndbuf, unsigned char *buf, size_t cap)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0, "socketpair");
    if (sndbuf)
        tu_setint(sv[0], SOL_SOCKET, SO_SNDBUF, sndbuf);
    size_t lo = 0, hi = cap; /* lo is known to fit, hi known not to */
    CHECK(send(sv[0], buf, hi, MSG_DONTWAIT) == -1 && errno == EMSGSIZE, "%zu bytes fit?", hi);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        ssize_t r = send(sv[0], buf, mid, MSG_DONTWAIT);
        if (r == (ssize_t)mid) {
            CHECK(recv(sv[1], buf, cap, 0) == (ssize_t)mid, "socketpair recv");
            lo = mid;
        } else {
            CHECK(r == -1 && errno == EMSGSIZE, "socketpair send of %zu", mid);
            hi = mid;
        }
    }
    close(sv[0]);
    close(sv[1]);
    return lo;
}

static void check_msgsize(void)
{
    size_t cap = 4 << 20;
    unsigned char *buf = malloc(cap), *rbuf = malloc(cap);
    CHECK(buf && rbuf, "malloc");
    static const int sndbufs[2] = {0, 32768};
    for (int k = 0; k < 2; k++) {
        memset(buf, 0, cap);
        size_t limit = kernel_limit(sndbufs[k], buf, cap);
        int s = tu_dgram();
        if (sndbufs[k])
            tu_setint(s, SOL_SOCKET, SO_SNDBUF, sndbufs[k]);
        int effective = tu_getint(s, SOL_SOCKET, SO_SNDBUF);
        tu_fill_payload(buf, limit + 1, 7, (uint32_t)k);

        CHECK_ERRNO(tu_sendto_group(s, buf, limit + 1, 0, &A), EMSGSIZE);
        expect_nothing("after EMSGSIZE");
        CHECK(tu_sendto_group(s, buf, limit, 0, &A) == (ssize_t)limit, "send of %zu bytes", limit);
        for (int i = 0; i < NMEMBERS; i++) {
            ssize_t n = recv(member[i], rbuf, cap, 0);
            CHECK(n == (ssize_t)limit, "%s: got %zd of %zu bytes", member_name[i], n, limit);
            CHECK(memcmp(rbuf, buf, limit) == 0, "%s: large message corrupted", member_name[i]);
        }
        expect_nothing("after the largest message");
        tu_ok("SO_SNDBUF %d: kernel limit %zu bytes; group send of %zu -> EMSGSIZE (nobody got it), "
              "of %zu -> delivered intact to all",
              effective, limit, limit + 1, limit);
        close(s);
    }
    free(buf);
    free(rbuf);
}

static void check_big(void)
{
    big = malloc(BIG_LEN);
    unsigned char *rbuf = malloc(BIG_LEN + 4096);
    CHECK(big && rbuf, "malloc");
    tu_fill_payload(big, BIG_LEN, 200, 1024);
    in_child("200 KiB sender", send_big, NULL);
    for (int i = 0; i < NMEMBERS; i++) {
        ssize_t n = recv(member[i], rbuf, BIG_LEN + 4096, 0);
        CHECK(n == BIG_LEN, "%s: got %zd of %d bytes", member_name[i], n, BIG_LEN);
        CHECK(tu_fnv1a32(rbuf, BIG_LEN) == tu_fnv1a32(big, BIG_LEN), "%s: 200 KiB message corrupted",
              member_name[i]);
    }
    expect_nothing("after the 200 KiB message");
    tu_ok("a 200 KiB message from another process arrives intact at all 4 members");
    free(big);
    free(rbuf);
}

int main(void)
{
    tu_start("t_send_entry");
    tu_abstract_group(&A, "send");
    G = tu_create_group(&A);
    for (int i = 0; i < NMEMBERS; i++) {
        member[i] = tu_join(&A, i == L ? UNIX_MREQ_LOOPBACK : 0);
        tu_set_rcvtimeo(member[i], 10000);
    }

    check_entry_points();
    check_no_members();
    check_msgsize();
    check_big();

    tu_expect_empty(G, "group socket G");
    tu_ok("the group socket G never received anything");
    return tu_done();
}
