/*
 * t_seq_errors: the SOCK_SEQPACKET errors of SPEC section 2, and that a
 * failed call changes nothing. The server is this process; clients are
 * agents (the test binary re-executed): M a member with LOOPBACK (its probe
 * messages prove that group traffic flows), C the client on whose accepted
 * socket Ac the ACCEPT_GROUP errors are tried, P a client of an ordinary
 * (not a group) SEQPACKET listener.
 *
 * ACCEPT_GROUP -> EINVAL on: a DGRAM socket, a connected SEQPACKET
 * socketpair end, the group's listening socket L, an unconnected SEQPACKET
 * socket, the client's own socket Ci, an accepted socket of a listener that
 * is not a group; on Ac with an address that is not the group's (another
 * SEQPACKET group, a DGRAM group, an unused name, a path, a longer name,
 * AF_INET), with unknown flags, or a short optlen. A second ACCEPT_GROUP on
 * Ac -> EADDRINUSE (unknown flags still EINVAL), and the first membership
 * keeps its flags. JOIN_GROUP on SEQPACKET sockets (unconnected, L, Ai, Ci)
 * -> EINVAL; a DGRAM socket's JOIN_GROUP to a SEQPACKET group's address ->
 * EPROTOTYPE, path and abstract (to an ordinary path SEQPACKET listener:
 * EINVAL, not a group); its sendto there fails as the kernel's to any
 * SEQPACKET listener (today's kernels hash abstract names by socket type, so
 * a DGRAM socket's connect()/sendto() to an abstract SEQPACKET name gives
 * ECONNREFUSED, to a path EPROTOTYPE).
 * CREATE_GROUP on SEQPACKET: flags -> EINVAL, address in use -> EADDRINUSE,
 * bound -> EINVAL. LEAVE_GROUP where there is no membership -> EADDRNOTAVAIL.
 * After each failure the socket is not a member (probes, `umcast list`).
 * Last, a DGRAM CREATE_GROUP at a SEQPACKET group's abstract name (allowed
 * by bind() on today's kernels) must leave the SEQPACKET group working.
 */
#include "testutil.h"

enum { M, CC, P, H1, H2, NA };
static const char *names[NA] = {"M", "C", "P", "H1", "H2"};
static struct ta_agent C[NA];
static struct unix_mreq group, group2, dgroup, plain_addr, pgroup, pplain;
static int L, L2, GD, PL, LP, PPL;
static int Am, Ac, Ap;
static unsigned probe_serial;

#define FULL ((socklen_t)sizeof(struct unix_mreq))

/* The last checks are independent: each is reported, then the test fails. */

/* setsockopt(SOL_UNIX) with any mreq (NULL: all zero), flags and length. */
static int opt(int fd, int name, const struct unix_mreq *m, unsigned flags, socklen_t len)
{
    struct {
        struct unix_mreq m;
        char slack[32];
    } buf;
    memset(&buf, 0, sizeof buf);
    if (m)
        buf.m = *m;
    buf.m.flags = flags;
    return setsockopt(fd, SOL_UNIX, name, &buf, len);
}

static struct ta_res agent_opt(int x, int name, const struct unix_mreq *m, unsigned flags)
{
    struct unix_mreq req;
    memset(&req, 0, sizeof req);
    if (m)
        req = *m;
    req.flags = flags;
    return ta_call(&C[x], TA_SETOPT, 0, SOL_UNIX, name, &req, sizeof req);
}

/* M's probe reaches M (LOOPBACK): the group works. Then x has nothing. */
static void probe_not_member(int x, const char *what)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "probe %u", ++probe_serial);
    ta_send(&C[M], msg, (size_t)n, 0, "M's probe");
    ta_expect(&C[M], msg, (size_t)n, "M's own probe (LOOPBACK)");
    if (x >= 0)
        ta_expect_empty(&C[x], what);
}

/* x is an ordinary client: its message reaches its peer a only. */
static void sends_to_peer_only(int x, int a, const char *what)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "%s to its peer %u", names[x], ++probe_serial);
    ta_send(&C[x], msg, (size_t)n, 0, what);
    tu_expect_msg(a, msg, (size_t)n, what);
    ta_expect_empty(&C[M], "M after a non-member's send");
}

static void not_listed(unsigned long ino, const char *what)
{
    char *list = tu_umcast("list");
    CHECK(!tu_listed_socket(list, ino), "%s: `umcast list` shows socket %lu:\n%s", what, ino, list);
    free(list);
}

static void not_a_socket_for_accept(void)
{
    int d = tu_dgram();
    CHECK_ERRNO(opt(d, UNIX_ACCEPT_GROUP, NULL, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_ACCEPT_GROUP, &group, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_ACCEPT_GROUP, NULL, UNIX_MREQ_LOOPBACK, FULL), EINVAL);
    probe_not_member(-1, "");
    tu_expect_empty(d, "DGRAM socket after ACCEPT_GROUP");
    not_listed(tu_socket_ino(d), "DGRAM socket after ACCEPT_GROUP");
    tu_ok("ACCEPT_GROUP on a SOCK_DGRAM socket -> EINVAL");

    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0, "socketpair");
    CHECK_ERRNO(opt(sp[0], UNIX_ACCEPT_GROUP, NULL, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(sp[0], UNIX_ACCEPT_GROUP, &group, UNIX_MREQ_SEND_TO_PEER, FULL), EINVAL);
    CHECK_ERRNO(opt(sp[1], UNIX_ACCEPT_GROUP, &group, 0, FULL), EINVAL);
    probe_not_member(-1, "");
    tu_expect_empty(sp[0], "socketpair end");
    tu_expect_empty(sp[1], "socketpair end");
    CHECK(send(sp[1], "pair", 4, 0) == 4, "send on the socketpair");
    tu_expect_str(sp[0], "pair", "the other socketpair end");
    not_listed(tu_socket_ino(sp[0]), "socketpair end");
    not_listed(tu_socket_ino(sp[1]), "socketpair end");
    tu_ok("ACCEPT_GROUP on a connected SEQPACKET socketpair end -> EINVAL; the pair works as before");

    CHECK_ERRNO(opt(L, UNIX_ACCEPT_GROUP, NULL, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(L, UNIX_ACCEPT_GROUP, &group, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(L, UNIX_ACCEPT_GROUP, NULL, UNIX_MREQ_LOOPBACK, FULL), EINVAL);
    CHECK_ERRNO(opt(L, UNIX_LEAVE_GROUP, &group, 0, FULL), EADDRNOTAVAIL);
    CHECK_ERRNO(opt(L, UNIX_JOIN_GROUP, &group, 0, FULL), EINVAL);
    not_listed(tu_socket_ino(L), "the listening socket L");
    tu_ok("on the group's listening socket L: ACCEPT_GROUP -> EINVAL, JOIN_GROUP -> EINVAL, LEAVE_GROUP -> "
          "EADDRNOTAVAIL");

    int u = tu_seqpacket();
    CHECK_ERRNO(opt(u, UNIX_ACCEPT_GROUP, NULL, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(u, UNIX_ACCEPT_GROUP, &group, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(u, UNIX_JOIN_GROUP, &group, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(u, UNIX_JOIN_GROUP, &group, UNIX_MREQ_LOOPBACK, FULL), EINVAL);
    CHECK_ERRNO(opt(u, UNIX_LEAVE_GROUP, &group, 0, FULL), EADDRNOTAVAIL);
    CHECK_ERRNO(opt(u, 99, &group, 0, FULL), ENOPROTOOPT);
    /* still an ordinary unconnected socket: it can connect and be accepted */
    CHECK(connect(u, (struct sockaddr *)&plain_addr.address, unix_mreq_addrlen(&plain_addr)) == 0,
          "connect after the failed calls");
    int a = accept4(PL, NULL, NULL, SOCK_CLOEXEC);
    CHECK(a >= 0, "accept");
    CHECK(send(u, "u", 1, 0) == 1, "send");
    tu_expect_str(a, "u", "ordinary connection");
    close(a);
    tu_ok("on an unconnected SEQPACKET socket: ACCEPT_GROUP, JOIN_GROUP -> EINVAL, LEAVE_GROUP -> "
          "EADDRNOTAVAIL, unknown option -> ENOPROTOOPT; it connects as usual afterwards");
    close(u);
    close(sp[0]);
    close(sp[1]);
    close(d);
}

static void not_a_group_listener(void)
{
    ta_connect(&C[P], &plain_addr, 0);
    Ap = tu_seq_accept(PL, &C[P]);
    CHECK_ERRNO(opt(Ap, UNIX_ACCEPT_GROUP, NULL, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(Ap, UNIX_ACCEPT_GROUP, &group, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(Ap, UNIX_ACCEPT_GROUP, &plain_addr, UNIX_MREQ_LOOPBACK, FULL), EINVAL);
    probe_not_member(P, "P (client of an ordinary listener) after ACCEPT_GROUP failed");
    sends_to_peer_only(P, Ap, "P after ACCEPT_GROUP failed");
    tu_expect_empty(Ap, "Ap");
    not_listed(tu_socket_ino(Ap), "Ap");
    not_listed((unsigned long)ta_ino(&C[P]), "P");
    tu_ok("ACCEPT_GROUP on an accepted socket of a listener that is not a group -> EINVAL; P is an ordinary "
          "client");
}

static void accept_errors(void)
{
    ta_connect(&C[CC], &group, 0);
    Ac = tu_seq_accept(L, &C[CC]);
    unsigned long c_ino = (unsigned long)ta_ino(&C[CC]), ac_ino = tu_socket_ino(Ac);
    const unsigned all = UNIX_MREQ_LOOPBACK | UNIX_MREQ_SEND_TO_PEER;

    /* Addresses that are not the group's. */
    struct unix_mreq unused, path, longer, inet;
    tu_abstract_group(&unused, "unused");
    tu_path_group(&path, "no-such-socket");
    longer = group;
    size_t n = unix_mreq_addrlen(&group) - offsetof(struct sockaddr_un, sun_path);
    CHECK(n + 1 < sizeof longer.address.sun_path, "name too long");
    longer.address.sun_path[n] = 'x';
    inet = group;
    inet.address.sun_family = AF_INET;
    const struct {
        const struct unix_mreq *m;
        const char *what;
    } wrong[] = {{&group2, "another SEQPACKET group"}, {&dgroup, "a DGRAM group"},
                 {&plain_addr, "an ordinary SEQPACKET listener"}, {&unused, "an unused abstract name"},
                 {&path, "a path with no socket"}, {&longer, "the group's name plus one byte"},
                 {&inet, "the group's address with sun_family AF_INET"}};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        errno = 0;
        int r = opt(Ac, UNIX_ACCEPT_GROUP, wrong[i].m, all, FULL);
        CHECK(r == -1 && errno == EINVAL, "ACCEPT_GROUP on Ac with %s: %d (%s), expected EINVAL", wrong[i].what, r,
              r ? tu_errname(errno) : "success");
    }
    tu_ok("ACCEPT_GROUP on Ac with an address that is not the group's (%zu kinds) -> EINVAL",
          sizeof wrong / sizeof wrong[0]);

    static const unsigned bad[] = {0x08, 0x100, 0x80000000u, UNIX_MREQ_LOOPBACK | 0x10};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, NULL, bad[i], FULL), EINVAL);
        CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, &group, bad[i], FULL), EINVAL);
    }
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, NULL, 0, FULL - 1), EINVAL);
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, &group, 0, 0), EINVAL);
    tu_ok("ACCEPT_GROUP on Ac with unknown flags or a short optlen -> EINVAL");

    CHECK_ERRNO(opt(Ac, UNIX_JOIN_GROUP, &group, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(Ac, UNIX_LEAVE_GROUP, &group, 0, FULL), EADDRNOTAVAIL);
    struct ta_res r = agent_opt(CC, UNIX_JOIN_GROUP, &group, 0);
    CHECK(r.ret == -1 && r.err == EINVAL, "JOIN_GROUP on the client's Ci: %ld (%s), expected EINVAL", r.ret,
          tu_errname(r.err));
    r = agent_opt(CC, UNIX_ACCEPT_GROUP, NULL, 0);
    CHECK(r.ret == -1 && r.err == EINVAL, "ACCEPT_GROUP on the client's Ci: %ld (%s), expected EINVAL", r.ret,
          tu_errname(r.err));
    r = agent_opt(CC, UNIX_LEAVE_GROUP, &group, 0);
    CHECK(r.ret == -1 && r.err == EADDRNOTAVAIL, "LEAVE_GROUP on the client's Ci: %ld (%s), expected EADDRNOTAVAIL",
          r.ret, tu_errname(r.err));
    tu_ok("JOIN_GROUP on Ac and on Ci -> EINVAL; ACCEPT_GROUP on Ci -> EINVAL; LEAVE_GROUP on either -> "
          "EADDRNOTAVAIL");

    probe_not_member(CC, "C after the failed calls");
    sends_to_peer_only(CC, Ac, "C after the failed calls");
    tu_expect_empty(Ac, "Ac");
    not_listed(c_ino, "C after the failed calls");
    not_listed(ac_ino, "Ac after the failed calls (no SEND_TO_PEER copy)");
    tu_ok("after all these failures C is not a member: no group message, its sends reach Ac only, not listed");

    /* Now it works, with flags 0. */
    CHECK(opt(Ac, UNIX_ACCEPT_GROUP, NULL, 0, FULL) == 0, "ACCEPT_GROUP on Ac after the failures");
    char msg[64];
    int k = snprintf(msg, sizeof msg, "probe %u", ++probe_serial);
    ta_send(&C[M], msg, (size_t)k, 0, "M's probe");
    ta_expect(&C[M], msg, (size_t)k, "M (LOOPBACK)");
    ta_expect(&C[CC], msg, (size_t)k, "C, a member now");

    /* A second ACCEPT_GROUP: EADDRINUSE (unknown flags: still EINVAL), flags unchanged. */
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, NULL, all, FULL), EADDRINUSE);
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, &group, 0, FULL), EADDRINUSE);
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, &group, UNIX_MREQ_DROP_WHEN_FULL, FULL), EADDRINUSE);
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, NULL, 0x100, FULL), EINVAL);
    CHECK_ERRNO(opt(Ac, UNIX_ACCEPT_GROUP, &group2, 0, FULL), EINVAL);
    ta_send_str(&C[CC], "from member C");
    ta_expect_str(&C[M], "from member C");
    ta_expect_empty(&C[M], "M: exactly one copy");
    ta_expect_empty(&C[CC], "C: still without LOOPBACK");
    tu_expect_empty(Ac, "Ac: still without SEND_TO_PEER");
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, c_ino) && !tu_listed_socket(list, ac_ino),
          "`umcast list` should show C's socket %lu once and no copy for Ac %lu:\n%s", c_ino, ac_ino, list);
    free(list);
    tu_ok("ACCEPT_GROUP then works; a second one -> EADDRINUSE (unknown flags -> EINVAL, another group -> "
          "EINVAL) and C keeps flags 0 (no LOOPBACK, no SEND_TO_PEER, one membership)");
}

static void join_and_create(void)
{
    /* JOIN_GROUP on SEQPACKET sockets: EINVAL (also to a DGRAM group's address). */
    int u = tu_seqpacket();
    CHECK_ERRNO(opt(u, UNIX_JOIN_GROUP, &dgroup, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(Am, UNIX_JOIN_GROUP, &group, 0, FULL), EINVAL);
    tu_ok("JOIN_GROUP on SEQPACKET sockets (unconnected, Ai), even to a DGRAM group -> EINVAL");

    /* A DGRAM socket and a path SEQPACKET group's address. */
    int d = tu_dgram();
    CHECK_ERRNO(opt(d, UNIX_JOIN_GROUP, &pgroup, 0, FULL), EPROTOTYPE);
    CHECK_ERRNO(opt(d, UNIX_JOIN_GROUP, &pgroup, UNIX_MREQ_LOOPBACK | UNIX_MREQ_DROP_WHEN_FULL, FULL), EPROTOTYPE);
    CHECK_ERRNO(opt(d, UNIX_JOIN_GROUP, &pplain, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &pgroup, 0, FULL), EADDRNOTAVAIL);
    tu_expect_empty(d, "DGRAM socket after JOIN_GROUP -> EPROTOTYPE");
    not_listed(tu_socket_ino(d), "DGRAM socket after JOIN_GROUP -> EPROTOTYPE");
    /* sendto the SEQPACKET group's address: as the kernel to any SEQPACKET listener there */
    errno = 0;
    long kr = sendto(d, "k", 1, MSG_DONTWAIT, (struct sockaddr *)&pplain.address, unix_mreq_addrlen(&pplain));
    int ke = errno;
    errno = 0;
    long gr = sendto(d, "g", 1, MSG_DONTWAIT, (struct sockaddr *)&pgroup.address, unix_mreq_addrlen(&pgroup));
    int ge = errno;
    CHECK(kr == -1 && gr == -1 && ge == ke, "sendto from a DGRAM socket: to the SEQPACKET group %ld (%s), to an "
          "ordinary SEQPACKET listener %ld (%s)", gr, tu_errname(ge), kr, tu_errname(ke));
    tu_ok("a DGRAM socket: JOIN_GROUP to a path SEQPACKET group -> EPROTOTYPE (to an ordinary SEQPACKET listener "
          "-> EINVAL, not a group), not a member afterwards; sendto the group's address -> %s as to any "
          "SEQPACKET listener",
          tu_errname(ke));

    /* CREATE_GROUP on SEQPACKET sockets. */
    struct unix_mreq fresh;
    tu_abstract_group(&fresh, "seq-fresh");
    int s = tu_seqpacket();
    CHECK_ERRNO(opt(s, UNIX_CREATE_GROUP, &fresh, UNIX_MREQ_LOOPBACK, FULL), EINVAL);
    CHECK_ERRNO(opt(s, UNIX_CREATE_GROUP, &group, 0, FULL), EADDRINUSE);
    CHECK_ERRNO(opt(s, UNIX_CREATE_GROUP, &plain_addr, 0, FULL), EADDRINUSE);
    struct sockaddr_un name;
    socklen_t len = sizeof name;
    CHECK(getsockname(s, (struct sockaddr *)&name, &len) == 0 && len == sizeof(sa_family_t),
          "the socket became bound after a failed CREATE_GROUP");
    CHECK(opt(s, UNIX_CREATE_GROUP, &fresh, 0, FULL) == 0, "CREATE_GROUP after the failures");
    CHECK_ERRNO(opt(s, UNIX_CREATE_GROUP, &fresh, 0, FULL), EINVAL);
    struct unix_mreq other;
    tu_abstract_group(&other, "seq-other");
    CHECK_ERRNO(opt(s, UNIX_CREATE_GROUP, &other, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(L, UNIX_CREATE_GROUP, &other, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(PL, UNIX_CREATE_GROUP, &other, 0, FULL), EINVAL);
    tu_ok("CREATE_GROUP on SEQPACKET: flags -> EINVAL, address in use -> EADDRINUSE (socket left unbound); "
          "on a bound socket or listener -> EINVAL");
    close(s);
    close(d);
    close(u);
}

/* A DGRAM socket and the abstract SEQPACKET group's address (last: see the report). */
static void join_abstract_seqpacket(void)
{
    int d = tu_dgram();
    errno = 0;
    long kr = sendto(d, "k", 1, MSG_DONTWAIT, (struct sockaddr *)&plain_addr.address, unix_mreq_addrlen(&plain_addr));
    int ke = errno;
    errno = 0;
    long gr = sendto(d, "g", 1, MSG_DONTWAIT, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group));
    int ge = errno;
    CHECK(kr == -1 && gr == -1 && ge == ke, "sendto from a DGRAM socket: to the abstract SEQPACKET group %ld (%s), "
          "to an ordinary abstract SEQPACKET listener %ld (%s)", gr, tu_errname(ge), kr, tu_errname(ke));
    ta_expect_empty(&C[M], "M after a DGRAM sendto the group's address");
    ta_expect_empty(&C[CC], "C after a DGRAM sendto the group's address");
    tu_ok("sendto from a DGRAM socket to the abstract SEQPACKET group's address -> %s, as the kernel to any "
          "abstract SEQPACKET listener; nobody got it",
          tu_errname(ke));
    errno = 0;
    int r = opt(d, UNIX_JOIN_GROUP, &group, 0, FULL);
    int e = errno;
    probe_not_member(-1, "");
    tu_expect_empty(d, "DGRAM socket after JOIN_GROUP to the abstract SEQPACKET group");
    not_listed(tu_socket_ino(d), "DGRAM socket after JOIN_GROUP to the abstract SEQPACKET group");
    SOFT_CHECK(r == -1 && e == EPROTOTYPE, "JOIN_GROUP of a DGRAM socket to an abstract SEQPACKET group: %d (%s), "
               "expected EPROTOTYPE (SPEC 2: the group is SEQPACKET)", r, r ? tu_errname(e) : "success");
    if (r == -1 && e == EPROTOTYPE)
        tu_ok("a DGRAM socket: JOIN_GROUP to an abstract SEQPACKET group -> EPROTOTYPE, not a member afterwards");
    close(d);
}

/*
 * Today's kernels keep abstract names apart by socket type: a DGRAM socket
 * may bind() the abstract name of a SEQPACKET listener. CREATE_GROUP on a
 * DGRAM socket at the abstract name of a SEQPACKET group either fails with
 * EADDRINUSE or makes a second, DGRAM, group; either way the SEQPACKET group
 * must be unharmed: a client accepted afterwards becomes a member and gets
 * its messages.
 */
static void same_abstract_name(void)
{
    struct unix_mreq h;
    tu_abstract_group(&h, "seq-shared-name");
    int lh = tu_seq_create_group(&h);
    ta_connect(&C[H1], &h, 0);
    int a1 = tu_seq_accept(lh, &C[H1]);
    CHECK(tu_seq_accept_group(a1, NULL, UNIX_MREQ_LOOPBACK) == 0, "ACCEPT_GROUP(H1)");

    int d = tu_dgram();
    errno = 0;
    int r = opt(d, UNIX_CREATE_GROUP, &h, 0, FULL);
    int e = errno;
    SOFT_CHECK(r == 0 || e == EADDRINUSE, "DGRAM CREATE_GROUP at the SEQPACKET group's abstract name: %s",
               tu_errname(e));
    int m = -1;
    if (r == 0) {
        /* a second group, of datagrams, under the same name */
        m = tu_dgram();
        tu_set_rcvtimeo(m, 2000);
        errno = 0;
        int j = opt(m, UNIX_JOIN_GROUP, &h, 0, FULL);
        SOFT_CHECK(j == 0, "JOIN_GROUP of a DGRAM socket to the DGRAM group that shares the name: %s",
                   tu_errname(errno));
        int s = tu_dgram();
        long k = tu_sendto_group(s, "dgram group", 11, 0, &h);
        SOFT_CHECK(k == 11, "sendto the DGRAM group that shares the name: %ld (%s)", k, tu_errname(errno));
        if (j == 0 && k == 11) {
            char buf[32];
            k = recv(m, buf, sizeof buf, 0);
            SOFT_CHECK(k == 11, "the DGRAM group's member got %ld (%s)", k, k < 0 ? tu_errname(errno) : "-");
        }
        close(s);
    } else {
        struct sockaddr_un name;
        socklen_t len = sizeof name;
        SOFT_CHECK(getsockname(d, (struct sockaddr *)&name, &len) == 0 && len == sizeof(sa_family_t),
                   "the DGRAM socket became bound after a failed CREATE_GROUP");
    }

    /* The SEQPACKET group: old member and a new client. */
    ta_send_str(&C[H1], "h1");
    ta_expect_str(&C[H1], "h1");
    ta_connect(&C[H2], &h, 0);
    int a2 = tu_seq_accept(lh, &C[H2]);
    errno = 0;
    r = tu_seq_accept_group(a2, NULL, 0);
    e = errno;
    SOFT_CHECK(r == 0, "after a DGRAM CREATE_GROUP at its abstract name, the SEQPACKET group refuses "
               "ACCEPT_GROUP of a new client: %s", tu_errname(e));
    if (r == 0) {
        ta_send_str(&C[H1], "h2");
        ta_expect_str(&C[H1], "h2");
        struct ta_res rr = ta_call(&C[H2], TA_RECV, 0, 64, 0, NULL, 0);
        SOFT_CHECK(rr.ret == 2 && memcmp(rr.data, "h2", 2) == 0, "the new member H2 got %ld (%s)", rr.ret,
                   rr.ret < 0 ? tu_errname(rr.err) : "-");
    }
    char *list = tu_umcast("list");
    char key[300];
    snprintf(key, sizeof key, "group @%s (seqpacket, ", h.address.sun_path + 1);
    char dkey[300];
    snprintf(dkey, sizeof dkey, "group @%s (dgram, ", h.address.sun_path + 1);
    SOFT_CHECK(strstr(list, key) != NULL, "`umcast list` no longer shows the SEQPACKET group @%s%s",
               h.address.sun_path + 1, strstr(list, dkey) ? " (it shows a DGRAM group of that name instead)" : "");
    free(list);
    if (soft_failures == 0)
        tu_ok("a DGRAM CREATE_GROUP at a SEQPACKET group's abstract name (%s) leaves the SEQPACKET group working",
              r == 0 ? "a second group" : "EADDRINUSE");
    if (m >= 0)
        close(m);
    close(d);
    close(a1);
    close(a2);
    close(lh);
}

int main(int argc, char **argv)
{
    TA_AGENT_DISPATCH(argc, argv);
    tu_start("t_seq_errors");
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < NA; i++)
        ta_spawn(&C[i], names[i]);

    tu_abstract_group(&group, "seq-err");
    L = tu_seq_create_group(&group);
    tu_abstract_group(&group2, "seq-err2");
    L2 = tu_seq_create_group(&group2);
    tu_abstract_group(&dgroup, "dgram");
    GD = tu_create_group(&dgroup);
    tu_abstract_group(&plain_addr, "plain-listener");
    PL = tu_seqpacket();
    CHECK(bind(PL, (struct sockaddr *)&plain_addr.address, unix_mreq_addrlen(&plain_addr)) == 0, "bind");
    CHECK(listen(PL, 8) == 0, "listen");
    tu_path_group(&pgroup, "seq-err-path");
    LP = tu_seq_create_group(&pgroup);
    tu_path_group(&pplain, "plain-listener");
    PPL = tu_seqpacket();
    CHECK(bind(PPL, (struct sockaddr *)&pplain.address, unix_mreq_addrlen(&pplain)) == 0, "bind");
    CHECK(listen(PPL, 8) == 0, "listen");

    ta_connect(&C[M], &group, 0);
    Am = tu_seq_accept(L, &C[M]);
    CHECK(tu_seq_accept_group(Am, NULL, UNIX_MREQ_LOOPBACK) == 0, "ACCEPT_GROUP(Am, LOOPBACK)");
    tu_ok("M is a member with LOOPBACK");

    not_a_socket_for_accept();
    not_a_group_listener();
    accept_errors();
    join_and_create();
    join_abstract_seqpacket();
    same_abstract_name();

    tu_expect_empty(Am, "Am");
    for (int i = 0; i < NA; i++)
        ta_exit(&C[i]);
    tu_wait_all();
    close(Am);
    close(Ac);
    close(Ap);
    close(L);
    close(L2);
    close(GD);
    close(PL);
    close(LP);
    close(PPL);
    CHECK(soft_failures == 0, "%d checks failed (see above)", soft_failures);
    return tu_done();
}
