/*
 * t_errors: every SOCK_DGRAM error of SPEC section 2, their precedence, and
 * that a failed call changes nothing (a failed JOIN leaves a non-member, a
 * failed CREATE_GROUP leaves an unbound socket, a failed LEAVE leaves the
 * membership). Level SOL_UNIX on a non-AF_UNIX socket must reach the kernel
 * untouched: compared with a copy of this program run without LD_PRELOAD.
 */
#include "testutil.h"

#include <grp.h>
#include <netinet/in.h>

static struct unix_mreq A;    /* the group most checks use */
static int control;           /* a member of A that proves probes are delivered */
static unsigned probe_serial; /* makes every probe message distinct */

/* setsockopt with an arbitrary mreq, flags and length. */
static int opt(int fd, int name, const struct unix_mreq *m, unsigned flags, socklen_t len)
{
    struct {
        struct unix_mreq m;
        char slack[32]; /* lets a test pass optlen > sizeof(struct unix_mreq) */
    } buf;
    memset(&buf, 0, sizeof buf);
    buf.m = *m;
    buf.m.flags = flags;
    return setsockopt(fd, SOL_UNIX, name, &buf, len);
}

#define FULL ((socklen_t)sizeof(struct unix_mreq))

/* fd is not a member of A: a probe to A reaches the control member, not fd. */
static void assert_not_member(int fd, const char *what)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "probe %u", ++probe_serial);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, msg, (size_t)n, 0, &A) == n, "%s: probe send", what);
    close(s);
    tu_expect_msg(control, msg, (size_t)n, "control member");
    tu_expect_empty(fd, what);
}

/* fd is a member of A (without loopback): it gets exactly one copy of a probe. */
static void assert_member(int fd, const char *what)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "probe %u", ++probe_serial);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, msg, (size_t)n, 0, &A) == n, "%s: probe send", what);
    close(s);
    tu_expect_msg(control, msg, (size_t)n, "control member");
    tu_expect_msg(fd, msg, (size_t)n, what);
    tu_expect_empty(fd, what);
}

/* An unbound socket's name is just the family (unix(7)). */
static void assert_unbound(int fd, const char *what)
{
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "%s: getsockname", what);
    CHECK(len == sizeof(sa_family_t), "%s: socket became bound (name length %u)", what, len);
}

/* A JOIN that must fail with e and leave fd a non-member of A. */
#define JOIN_FAILS(fd, m, flags, len, e)                                         \
    do {                                                                         \
        CHECK_ERRNO(opt(fd, UNIX_JOIN_GROUP, m, flags, len), e);                 \
        assert_not_member(fd, "socket after a failed JOIN");                     \
    } while (0)

/* A CREATE_GROUP that must fail with e and leave fd unbound. */
#define CREATE_FAILS(fd, m, flags, len, e)                                       \
    do {                                                                         \
        CHECK_ERRNO(opt(fd, UNIX_CREATE_GROUP, m, flags, len), e);               \
        assert_unbound(fd, "socket after a failed CREATE_GROUP");                \
    } while (0)

static void check_option_names(void)
{
    int d = tu_dgram();
    int st = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(st >= 0, "socket(SOCK_STREAM)");
    static const int unknown[] = {0, 5, 99, -1};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK_ERRNO(opt(d, unknown[i], &A, 0, FULL), ENOPROTOOPT);
        /* unknown option wins over every other error */
        CHECK_ERRNO(opt(st, unknown[i], &A, 0x80, 1), ENOPROTOOPT);
        CHECK_ERRNO(opt(d, unknown[i], &A, 0x80, 1), ENOPROTOOPT);
    }
    char buf[64];
    socklen_t len = sizeof buf;
    CHECK_ERRNO(getsockopt(d, SOL_UNIX, 99, buf, &len), ENOPROTOOPT);
    assert_not_member(d, "socket after unknown options");
    tu_ok("unknown option names -> ENOPROTOOPT (before stream, optlen and flag errors); "
          "getsockopt(SOL_UNIX, unknown) -> ENOPROTOOPT");
    close(st);
    close(d);
}

static void check_stream(void)
{
    int st = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(st >= 0, "socket(SOCK_STREAM)");
    static const int names[] = {UNIX_CREATE_GROUP, UNIX_JOIN_GROUP, UNIX_LEAVE_GROUP,
                                UNIX_ACCEPT_GROUP};
    for (size_t i = 0; i < 4; i++) {
        CHECK_ERRNO(opt(st, names[i], &A, 0, FULL), EOPNOTSUPP);
        CHECK_ERRNO(opt(st, names[i], &A, 0, 1), EOPNOTSUPP);       /* before optlen */
        CHECK_ERRNO(opt(st, names[i], &A, 0x80, FULL), EOPNOTSUPP); /* before flags */
    }
    struct unix_mreq fresh;
    tu_abstract_group(&fresh, "stream");
    CHECK_ERRNO(opt(st, UNIX_CREATE_GROUP, &fresh, 0, FULL), EOPNOTSUPP);
    assert_unbound(st, "stream socket after CREATE_GROUP");
    tu_ok("SOL_UNIX options on SOCK_STREAM -> EOPNOTSUPP (before optlen and flags)");
    close(st);
}

static void check_optlen(void)
{
    int d = tu_dgram();
    struct unix_mreq missing;
    tu_path_group(&missing, "missing"); /* JOIN there would be ENOENT */
    JOIN_FAILS(d, &A, 0, FULL - 1, EINVAL);
    JOIN_FAILS(d, &A, 0, 0, EINVAL);
    JOIN_FAILS(d, &A, 0, sizeof(struct sockaddr_un), EINVAL);
    JOIN_FAILS(d, &missing, 0, FULL - 1, EINVAL); /* optlen before the lookup */
    JOIN_FAILS(d, &A, 0x80, FULL - 1, EINVAL);
    struct unix_mreq fresh;
    tu_abstract_group(&fresh, "optlen");
    CREATE_FAILS(d, &fresh, 0, FULL - 1, EINVAL);
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL - 1), EINVAL);
    tu_ok("optlen < sizeof(struct unix_mreq) -> EINVAL (before lookup); socket unchanged");

    /* A longer optlen is fine: "optlen >= sizeof". */
    int g = tu_dgram();
    CHECK(opt(g, UNIX_CREATE_GROUP, &fresh, 0, FULL + 16) == 0, "CREATE_GROUP with optlen > sizeof");
    CHECK(opt(d, UNIX_JOIN_GROUP, &A, 0, FULL + 16) == 0, "JOIN with optlen > sizeof");
    assert_member(d, "member joined with a long optlen");
    CHECK(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL + 16) == 0, "LEAVE with optlen > sizeof");
    assert_not_member(d, "socket after LEAVE");
    tu_ok("optlen > sizeof(struct unix_mreq) accepted by CREATE, JOIN and LEAVE");
    close(g);
    close(d);
}

static void check_flags(void)
{
    int d = tu_dgram();
    struct unix_mreq nobody;
    tu_abstract_group(&nobody, "nobody"); /* JOIN there would be ECONNREFUSED */
    static const unsigned bad[] = {0x08, 0x100, 0x80000000u, UNIX_MREQ_LOOPBACK | 0x10};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        JOIN_FAILS(d, &A, bad[i], FULL, EINVAL);
        JOIN_FAILS(d, &nobody, bad[i], FULL, EINVAL); /* flags before the lookup */
    }
    /* flags before the membership check */
    tu_join_fd(d, &A, 0);
    CHECK_ERRNO(opt(d, UNIX_JOIN_GROUP, &A, 0x100, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &A, 0x100, FULL), EINVAL);
    assert_member(d, "member after JOIN/LEAVE with bad flags");
    CHECK(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL) == 0, "LEAVE");
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &A, 0x100, FULL), EINVAL); /* not EADDRNOTAVAIL */
    assert_not_member(d, "socket after LEAVE");
    tu_ok("unknown flag bits -> EINVAL (before lookup and membership); membership unchanged");
    close(d);
}

static void check_family(void)
{
    int d = tu_dgram();
    struct unix_mreq bad = A; /* a valid group address... */
    static const sa_family_t families[] = {AF_INET, AF_UNSPEC, AF_INET6, 0xffff};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        bad.address.sun_family = families[i]; /* ...with the wrong family */
        JOIN_FAILS(d, &bad, 0, FULL, EINVAL);
        JOIN_FAILS(d, &bad, UNIX_MREQ_LOOPBACK, FULL, EINVAL);
        struct unix_mreq fresh;
        tu_abstract_group(&fresh, "family");
        fresh.address.sun_family = families[i];
        CREATE_FAILS(d, &fresh, 0, FULL, EINVAL);
    }
    tu_ok("sun_family != AF_UNIX -> EINVAL for JOIN and CREATE_GROUP (even at a real group)");
    close(d);
}

/* A path group at which CREATE_GROUP failed (check_create); joined late. */
static struct unix_mreq path_group;
static int path_group_socket;

/* Run late: path groups need the most machinery (lookup by socket file). */
static void check_path_group_join(void)
{
    int pm = tu_join(&path_group, 0);
    tu_set_rcvtimeo(pm, 5000);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "pg", 2, 0, &path_group) == 2, "send to path group");
    tu_expect_str(pm, "pg", "member of the path group");
    tu_ok("the path group at which CREATE_GROUP failed with EADDRINUSE works: JOIN, send, receive");
    close(pm);
    close(s);
    close(path_group_socket);
}

static void check_create(void)
{
    int d = tu_dgram();
    struct unix_mreq fresh, missing_dir, taken_file, bound_name;
    tu_abstract_group(&fresh, "create");

    /* CREATE_GROUP takes no flags: EINVAL, before "address in use" */
    CREATE_FAILS(d, &fresh, UNIX_MREQ_LOOPBACK, FULL, EINVAL);
    CREATE_FAILS(d, &fresh, UNIX_MREQ_DROP_WHEN_FULL, FULL, EINVAL);
    CREATE_FAILS(d, &A, UNIX_MREQ_LOOPBACK, FULL, EINVAL);

    /* address in use, as bind(): an existing group, an ordinary socket, a file */
    CREATE_FAILS(d, &A, 0, FULL, EADDRINUSE);
    int plain = tu_dgram();
    tu_abstract_group(&bound_name, "ordinary");
    CHECK(bind(plain, (struct sockaddr *)&bound_name.address, unix_mreq_addrlen(&bound_name)) == 0,
          "bind");
    CREATE_FAILS(d, &bound_name, 0, FULL, EADDRINUSE);
    tu_path_group(&taken_file, "file");
    int f = open(taken_file.address.sun_path, O_CREAT | O_WRONLY, 0600);
    CHECK(f >= 0, "create a regular file");
    close(f);
    CREATE_FAILS(d, &taken_file, 0, FULL, EADDRINUSE);
    tu_path_group(&path_group, "pathgroup");
    path_group_socket = tu_create_group(&path_group);
    CREATE_FAILS(d, &path_group, 0, FULL, EADDRINUSE);
    tu_ok("CREATE_GROUP at an address in use (group, bound socket, file, path group) -> EADDRINUSE");

    /* path in a directory that does not exist */
    memset(&missing_dir, 0, sizeof missing_dir);
    missing_dir.address.sun_family = AF_UNIX;
    snprintf(missing_dir.address.sun_path, sizeof missing_dir.address.sun_path, "%s/no-such-dir/g",
             tu_tmpdir());
    CREATE_FAILS(d, &missing_dir, 0, FULL, ENOENT);
    tu_ok("CREATE_GROUP in a missing directory -> ENOENT");

    /* the socket is still unbound and usable after all these failures */
    CHECK(opt(d, UNIX_CREATE_GROUP, &fresh, 0, FULL) == 0, "CREATE_GROUP after failures");
    /* already bound: EINVAL, before address-in-use and lookup errors */
    struct unix_mreq other;
    tu_abstract_group(&other, "other");
    CHECK_ERRNO(opt(d, UNIX_CREATE_GROUP, &other, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_CREATE_GROUP, &fresh, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_CREATE_GROUP, &A, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_CREATE_GROUP, &missing_dir, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(plain, UNIX_CREATE_GROUP, &other, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(plain, UNIX_CREATE_GROUP, &missing_dir, 0, FULL), EINVAL);
    tu_ok("CREATE_GROUP on a bound socket (group or ordinary) -> EINVAL, before EADDRINUSE/ENOENT");

    /* the group created after the failures works */
    int m = tu_join(&fresh, 0);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "works", 5, 0, &fresh) == 5, "send");
    tu_expect_str(m, "works", "member of the group created after failures");
    tu_expect_empty(d, "group socket");
    tu_ok("after the failed calls the socket still became a working group");

    /* ACCEPT_GROUP is for accepted SEQPACKET sockets only */
    struct unix_mreq empty;
    memset(&empty, 0, sizeof empty);
    int d2 = tu_dgram();
    CHECK_ERRNO(opt(d2, UNIX_ACCEPT_GROUP, &empty, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d2, UNIX_ACCEPT_GROUP, &A, 0, FULL), EINVAL);
    CHECK_ERRNO(opt(d, UNIX_ACCEPT_GROUP, &fresh, 0, FULL), EINVAL);
    assert_not_member(d2, "socket after ACCEPT_GROUP");
    tu_ok("ACCEPT_GROUP on a SOCK_DGRAM socket -> EINVAL");

    close(m);
    close(s);
    close(d);
    close(d2);
    close(plain);
}

static void check_lookup(void)
{
    int d = tu_dgram();
    struct unix_mreq nofile, nodir, noname, ordinary_abs, ordinary_path;

    tu_path_group(&nofile, "absent"); /* directory exists, file does not */
    JOIN_FAILS(d, &nofile, 0, FULL, ENOENT);
    memset(&nodir, 0, sizeof nodir);
    nodir.address.sun_family = AF_UNIX;
    snprintf(nodir.address.sun_path, sizeof nodir.address.sun_path, "%s/no-such-dir/g", tu_tmpdir());
    JOIN_FAILS(d, &nodir, 0, FULL, ENOENT);
    JOIN_FAILS(d, &nodir, UNIX_MREQ_LOOPBACK, FULL, ENOENT);
    tu_ok("JOIN with no socket at a path -> ENOENT");

    tu_abstract_group(&noname, "unbound");
    JOIN_FAILS(d, &noname, 0, FULL, ECONNREFUSED);
    JOIN_FAILS(d, &noname, UNIX_MREQ_DROP_WHEN_FULL, FULL, ECONNREFUSED);
    tu_ok("JOIN with no socket at an abstract name -> ECONNREFUSED");

    /* a bound ordinary datagram socket is not a group */
    int p1 = tu_dgram(), p2 = tu_dgram();
    tu_abstract_group(&ordinary_abs, "plain");
    CHECK(bind(p1, (struct sockaddr *)&ordinary_abs.address, unix_mreq_addrlen(&ordinary_abs)) == 0,
          "bind abstract");
    tu_path_group(&ordinary_path, "plain");
    CHECK(bind(p2, (struct sockaddr *)&ordinary_path.address, unix_mreq_addrlen(&ordinary_path)) == 0,
          "bind path");
    JOIN_FAILS(d, &ordinary_abs, 0, FULL, EINVAL);
    JOIN_FAILS(d, &ordinary_path, 0, FULL, EINVAL);
    /* and the ordinary socket still works as before */
    CHECK(sendto(d, "plain", 5, 0, (struct sockaddr *)&ordinary_abs.address,
                 unix_mreq_addrlen(&ordinary_abs)) == 5, "sendto ordinary socket");
    tu_expect_str(p1, "plain", "ordinary socket after a failed JOIN to it");
    tu_ok("JOIN to a bound ordinary SOCK_DGRAM socket (abstract, path) -> EINVAL");
    close(p1);
    close(p2);
    close(d);
}

static void check_membership(void)
{
    int d = tu_dgram();
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL), EADDRNOTAVAIL);
    assert_not_member(d, "socket after a failed LEAVE");

    tu_join_fd(d, &A, 0);
    CHECK_ERRNO(opt(d, UNIX_JOIN_GROUP, &A, 0, FULL), EADDRINUSE);
    CHECK_ERRNO(opt(d, UNIX_JOIN_GROUP, &A, UNIX_MREQ_LOOPBACK, FULL), EADDRINUSE);
    assert_member(d, "member after JOIN twice"); /* exactly one copy */
    /* the failed second JOIN did not switch loopback on */
    CHECK(tu_sendto_group(d, "own", 3, 0, &A) == 3, "member sends");
    tu_expect_str(control, "own", "control member");
    tu_expect_empty(d, "member without loopback after its own send");
    tu_ok("JOIN twice -> EADDRINUSE; the first membership (flags too) unchanged");

    /* LEAVE of another group the socket is not in */
    struct unix_mreq B;
    tu_abstract_group(&B, "B");
    int gb = tu_create_group(&B);
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &B, 0, FULL), EADDRNOTAVAIL);
    assert_member(d, "member of A after a failed LEAVE of B");

    CHECK(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL) == 0, "LEAVE");
    assert_not_member(d, "socket after LEAVE");
    CHECK_ERRNO(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL), EADDRNOTAVAIL);
    tu_join_fd(d, &A, 0);
    assert_member(d, "socket joined again after LEAVE");
    CHECK(opt(d, UNIX_LEAVE_GROUP, &A, 0, FULL) == 0, "LEAVE");

    /* the group socket itself is not a member */
    CHECK_ERRNO(opt(gb, UNIX_LEAVE_GROUP, &B, 0, FULL), EADDRNOTAVAIL);
    tu_ok("LEAVE when not a member (never joined, other group, left already, G) -> EADDRNOTAVAIL");
    close(gb);
    close(d);
}

/* Drop to uid/gid 65534 and try path groups with various permissions. */
struct access_case {
    struct unix_mreq open_group, closed_sock, closed_dir;
    struct tu_gate tried, sent;
};

static int unprivileged_joiner(void *arg)
{
    struct access_case *c = arg;
    CHECK(setgroups(0, NULL) == 0, "setgroups");
    CHECK(setgid(65534) == 0 && setuid(65534) == 0, "drop to 65534");
    int ok = tu_dgram(), s1 = tu_dgram(), s2 = tu_dgram();
    tu_set_rcvtimeo(ok, 10000);
    CHECK(tu_setopt(ok, UNIX_JOIN_GROUP, &c->open_group, 0) == 0,
          "JOIN as uid 65534 to a path group whose socket is mode 0666");
    CHECK_ERRNO(tu_setopt(s1, UNIX_JOIN_GROUP, &c->closed_sock, 0), EACCES);
    CHECK_ERRNO(tu_setopt(s2, UNIX_JOIN_GROUP, &c->closed_dir, 0), EACCES);
    tu_gate_arrive(&c->tried);
    tu_gate_pass(&c->sent);
    tu_expect_str(ok, "to the open group", "unprivileged member");
    tu_expect_empty(s1, "socket after EACCES (socket 0600)");
    tu_expect_empty(s2, "socket after EACCES (directory 0700)");
    return 0;
}

static void check_access(void)
{
    if (geteuid() != 0) {
        printf("  SKIP: JOIN -> EACCES needs root (to run a child as uid 65534)\n");
        return;
    }
    static struct access_case c;
    char dir[128], closed[160];
    tu_gate_init(&c.tried);
    tu_gate_init(&c.sent);
    CHECK(chmod(tu_tmpdir(), 0755) == 0, "chmod tmpdir");
    snprintf(dir, sizeof dir, "%s/acc", tu_tmpdir());
    CHECK(mkdir(dir, 0755) == 0, "mkdir");
    snprintf(closed, sizeof closed, "%s/acc/closed", tu_tmpdir());
    CHECK(mkdir(closed, 0700) == 0, "mkdir");

    struct unix_mreq *grp[3] = {&c.open_group, &c.closed_sock, &c.closed_dir};
    const char *paths[3] = {"%s/acc/open.sock", "%s/acc/closed.sock", "%s/acc/closed/g.sock"};
    const mode_t modes[3] = {0666, 0600, 0666};
    int gs[3], members[3];
    for (int i = 0; i < 3; i++) {
        memset(grp[i], 0, sizeof *grp[i]);
        grp[i]->address.sun_family = AF_UNIX;
        snprintf(grp[i]->address.sun_path, sizeof grp[i]->address.sun_path, paths[i], tu_tmpdir());
        gs[i] = tu_create_group(grp[i]);
        CHECK(chmod(grp[i]->address.sun_path, modes[i]) == 0, "chmod socket");
        members[i] = tu_join(grp[i], 0);
        tu_set_rcvtimeo(members[i], 10000);
    }
    pid_t child = tu_spawn("uid 65534", unprivileged_joiner, &c);
    tu_gate_wait(&c.tried, 1, 10000);
    int s = tu_dgram();
    const char *texts[3] = {"to the open group", "to the 0600 group", "to the 0700-dir group"};
    for (int i = 0; i < 3; i++) {
        CHECK(tu_sendto_group(s, texts[i], strlen(texts[i]), 0, grp[i]) == (ssize_t)strlen(texts[i]),
              "send");
        tu_expect_str(members[i], texts[i], "root's member"); /* delivered before the child looks */
    }
    tu_gate_open(&c.sent, 1);
    tu_wait_child(child);
    for (int i = 0; i < 3; i++) {
        close(gs[i]);
        close(members[i]);
    }
    close(s);
    tu_ok("JOIN as uid 65534: socket 0666 -> member; socket 0600 -> EACCES; dir 0700 -> EACCES "
          "(and not a member)");
}

/* ---- SOL_UNIX level on non-AF_UNIX sockets: compare with the bare kernel ---- */

#define NPROBES 4

/* The calls; run both under the library and (in a re-exec) without it. */
static void run_probe(int i, int *ret, int *err)
{
    struct unix_mreq m;
    memset(&m, 0, sizeof m);
    m.address.sun_family = AF_UNIX;
    strcpy(m.address.sun_path + 1, "umcast-t-probe");
    int fd = socket(AF_INET, i == 2 ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0) {
        *ret = -2;
        *err = errno;
        return;
    }
    char buf[128];
    socklen_t len = sizeof buf;
    errno = 0;
    switch (i) {
    case 0: *ret = setsockopt(fd, SOL_UNIX, UNIX_JOIN_GROUP, &m, sizeof m); break;
    case 1: *ret = setsockopt(fd, SOL_UNIX, UNIX_CREATE_GROUP, &m, sizeof m); break;
    case 2: *ret = setsockopt(fd, SOL_UNIX, UNIX_JOIN_GROUP, &m, sizeof m); break;
    default: *ret = getsockopt(fd, SOL_UNIX, UNIX_GROUP_STATS, buf, &len); break;
    }
    *err = *ret == 0 ? 0 : errno;
    close(fd);
}

static const char *probe_names[NPROBES] = {
    "setsockopt(UDP, 280, JOIN)", "setsockopt(UDP, 280, CREATE)", "setsockopt(TCP, 280, JOIN)",
    "getsockopt(UDP, 280, GROUP_STATS)"};

static int kernel_probe_main(void)
{
    for (int i = 0; i < NPROBES; i++) {
        int ret, err;
        run_probe(i, &ret, &err);
        printf("%d %d\n", ret, err);
    }
    return 0;
}

static void check_other_families(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(p[1], 1);
        unsetenv("LD_PRELOAD"); /* the kernel alone */
        extern char **environ;
        char *argv[] = {"t_errors", "--kernel-probe", NULL};
        execve("/proc/self/exe", argv, environ);
        _exit(127);
    }
    close(p[1]);
    FILE *f = fdopen(p[0], "r");
    CHECK(f != NULL, "fdopen");
    int kret[NPROBES], kerr[NPROBES];
    for (int i = 0; i < NPROBES; i++)
        CHECK(fscanf(f, "%d %d", &kret[i], &kerr[i]) == 2, "reading the kernel's answer %d", i);
    fclose(f);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "kernel probe process");
    for (int i = 0; i < NPROBES; i++) {
        int ret, err;
        run_probe(i, &ret, &err);
        CHECK(ret == kret[i] && err == kerr[i], "%s: library gives %d/%s, kernel gives %d/%s",
              probe_names[i], ret, tu_errname(err), kret[i], tu_errname(kerr[i]));
        CHECK(ret == -1, "%s succeeded: the library took a non-AF_UNIX socket", probe_names[i]);
        tu_ok("%s -> %s, as the kernel alone", probe_names[i], tu_errname(err));
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--kernel-probe") == 0)
        return kernel_probe_main();
    tu_start("t_errors");
    tu_abstract_group(&A, "A");
    int g = tu_create_group(&A);
    control = tu_join(&A, 0);
    tu_set_rcvtimeo(control, 5000);

    check_option_names();
    check_stream();
    check_optlen();
    check_flags();
    check_family();
    check_create();
    check_lookup();
    check_membership();
    check_path_group_join();
    check_access();
    check_other_families();

    tu_expect_empty(g, "group socket G");
    close(control);
    close(g);
    return tu_done();
}
