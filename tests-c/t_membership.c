/*
 * t_membership: the effects in SPEC section 2's table and patch 01's
 * "A socket can be a member of several multicast groups":
 *   - one socket in two groups receives from both, with per-membership flags
 *     (LOOPBACK in one group only);
 *   - LEAVE ends one membership and keeps the other; messages already queued
 *     stay readable after LEAVE; nothing sent after LEAVE arrives;
 *   - a socket that left can still send to the group as a non-member, and can
 *     join again (with other flags);
 *   - CREATE_GROUP on a path creates the socket file under the umask, as
 *     bind() would.
 * Senders run in child processes.
 */
#include "testutil.h"

static struct unix_mreq A, B;

struct send_job {
    const struct unix_mreq *group;
    const char *text;
};

static int send_one(void *arg)
{
    struct send_job *j = arg;
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, j->text, strlen(j->text), 0, j->group) == (ssize_t)strlen(j->text),
          "sendto");
    return 0;
}

/* Another process sends text to group g; returns when it is sent. */
static void send_from_child(const struct unix_mreq *g, const char *text)
{
    struct send_job j = {g, text};
    tu_wait_child(tu_spawn("sender", send_one, &j));
}

/* Receive the next two messages in either order (different groups). */
static void expect_two(int fd, const char *x, const char *y, const char *what)
{
    char a[64], b[64];
    ssize_t n = recv(fd, a, sizeof a - 1, 0);
    CHECK(n >= 0, "%s: first recv", what);
    a[n] = 0;
    n = recv(fd, b, sizeof b - 1, 0);
    CHECK(n >= 0, "%s: second recv", what);
    b[n] = 0;
    CHECK((strcmp(a, x) == 0 && strcmp(b, y) == 0) || (strcmp(a, y) == 0 && strcmp(b, x) == 0),
          "%s: got \"%s\" and \"%s\", expected \"%s\" and \"%s\"", what, a, b, x, y);
    tu_expect_empty(fd, what);
}

int main(void)
{
    tu_start("t_membership");
    tu_abstract_group(&A, "A");
    tu_abstract_group(&B, "B");
    int ga = tu_create_group(&A), gb = tu_create_group(&B);
    int other = tu_join(&A, 0); /* a witness in A */
    tu_set_rcvtimeo(other, 10000);

    /* one socket, two groups, LOOPBACK in A only */
    int m = tu_dgram();
    tu_set_rcvtimeo(m, 10000);
    tu_join_fd(m, &A, UNIX_MREQ_LOOPBACK);
    tu_join_fd(m, &B, 0);
    send_from_child(&A, "to A");
    send_from_child(&B, "to B");
    expect_two(m, "to A", "to B", "member of A and B");
    tu_expect_str(other, "to A", "witness");
    CHECK(tu_sendto_group(m, "mine in A", 9, 0, &A) == 9, "send to A");
    tu_expect_str(m, "mine in A", "LOOPBACK member of A, its own message");
    tu_expect_str(other, "mine in A", "witness");
    CHECK(tu_sendto_group(m, "mine in B", 9, 0, &B) == 9, "send to B");
    tu_expect_empty(m, "member of B without LOOPBACK, after its own send");
    tu_ok("one socket is a member of two groups, receives from both, flags per membership");

    /* LEAVE A: B stays; queued messages of A stay readable */
    send_from_child(&A, "queued before LEAVE");
    CHECK(tu_setopt(m, UNIX_LEAVE_GROUP, &A, 0) == 0, "LEAVE A");
    send_from_child(&A, "after LEAVE");
    send_from_child(&B, "B after leaving A");
    /* two groups: their relative order is not promised */
    expect_two(m, "queued before LEAVE", "B after leaving A",
               "after LEAVE A: A's queued message and B's new one, nothing sent to A later");
    tu_expect_str(other, "queued before LEAVE", "witness");
    tu_expect_str(other, "after LEAVE", "witness");
    tu_ok("LEAVE: queued messages stay readable, later ones do not arrive, the other membership "
          "stays");

    /* a former member sends as a non-member (and so does not get its own copy) */
    CHECK(tu_sendto_group(m, "from a former member", 20, 0, &A) == 20, "send to A after LEAVE");
    tu_expect_str(other, "from a former member", "witness");
    tu_expect_empty(m, "former member after its send");
    /* and joins again, now without LOOPBACK */
    tu_join_fd(m, &A, 0);
    CHECK(tu_sendto_group(m, "rejoined", 8, 0, &A) == 8, "send");
    tu_expect_str(other, "rejoined", "witness");
    tu_expect_empty(m, "rejoined without LOOPBACK, after its own send");
    send_from_child(&A, "A again");
    tu_expect_str(m, "A again", "rejoined member");
    tu_expect_str(other, "A again", "witness");
    tu_ok("a former member sends as a non-member, joins again, the new flags apply");

    /* leaving both: nothing more arrives */
    CHECK(tu_setopt(m, UNIX_LEAVE_GROUP, &A, 0) == 0, "LEAVE A");
    CHECK(tu_setopt(m, UNIX_LEAVE_GROUP, &B, 0) == 0, "LEAVE B");
    send_from_child(&A, "A, nobody but the witness");
    send_from_child(&B, "B, nobody");
    tu_expect_str(other, "A, nobody but the witness", "witness");
    tu_expect_empty(m, "after leaving both groups");
    tu_ok("after leaving both groups nothing arrives");

    /* a path group's socket file is made under the umask, like bind() */
    mode_t old = umask(027);
    struct unix_mreq P;
    tu_path_group(&P, "umask");
    int gp = tu_create_group(&P);
    umask(old);
    struct stat st;
    CHECK(stat(P.address.sun_path, &st) == 0, "stat the path group's socket file");
    CHECK(S_ISSOCK(st.st_mode), "the path group's file is not a socket (mode %o)", st.st_mode);
    struct sockaddr_un ref;
    socklen_t rlen = tu_path_addr(&ref, "umask-bind");
    int b = tu_dgram();
    old = umask(027);
    CHECK(bind(b, (struct sockaddr *)&ref, rlen) == 0, "bind");
    umask(old);
    struct stat st_ref;
    CHECK(stat(ref.sun_path, &st_ref) == 0, "stat");
    CHECK((st.st_mode & 07777) == (st_ref.st_mode & 07777),
          "CREATE_GROUP made mode %o, bind() makes %o under the same umask", st.st_mode & 07777,
          st_ref.st_mode & 07777);
    int pm = tu_join(&P, 0);
    tu_set_rcvtimeo(pm, 10000);
    send_from_child(&P, "path group");
    tu_expect_str(pm, "path group", "member of the path group");
    tu_ok("CREATE_GROUP at a path makes a socket file with bind()'s mode under the umask (%o); "
          "the path group works",
          st.st_mode & 07777);

    tu_expect_empty(ga, "group socket of A");
    tu_expect_empty(gb, "group socket of B");
    tu_expect_empty(gp, "group socket of the path group");
    return tu_done();
}
