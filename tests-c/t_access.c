/*
 * t_access: SPEC 9 "Access: a path group's shared state is accessible to
 * exactly those who may connect to its socket file; an abstract group's to
 * the creating user only", and docs/SPEC.md section 10 (the shared state
 * takes the socket file's read/write bits; chmod/chown of the socket file
 * are mirrored).
 *
 * Runs as root (prints SKIP otherwise). The groups are created by root; the
 * other user is a child that drops to uid/gid 65534 (nobody) and re-execs
 * this program, so it starts with a fresh library like any process of that
 * user. It reports each answer back over a socketpair.
 *   1. path group, socket file 0666 in a 0755 directory: nobody JOINs,
 *      receives (asleep when the message comes) and sends; the segment,
 *      FIFO and queue files are 0666;
 *   2. after root narrows the socket file to 0600, a member that joined
 *      before keeps receiving (as a connected socket keeps working);
 *   3. socket file 0600: JOIN, sendto and opening the segment give EACCES;
 *   4. socket file 0666 in a 0700 directory: JOIN and opening the segment
 *      give EACCES (nobody cannot reach the socket file);
 *   5. socket file 0660, group 65534 (chown): a process with gid 65534
 *      joins, one with gid 65533 gets EACCES;
 *   6. socket file 0755 (made under umask 022, as most servers do): nobody
 *      cannot connect (no write permission), so it must not read the
 *      segment or a member's queue either;
 *   7. abstract group: JOIN by nobody is EACCES, the segment, FIFO and
 *      queue are 0600 and owned by root; what a sendto by nobody gives is
 *      reported.
 */
#include "testutil.h"

#include <grp.h>

#define NOBODY 65534



/* tu_ok() for a case, or "not ok" if one of its soft checks failed. */
static int case_start;
#define CASE_BEGIN() (case_start = soft_failures)
#define CASE_OK(...)                                                             \
    do {                                                                         \
        if (soft_failures == case_start)                                         \
            tu_ok(__VA_ARGS__);                                                  \
        else {                                                                   \
            printf("  not ok: ");                                                \
            printf(__VA_ARGS__);                                                 \
            printf(" (see FAIL above)\n");                                       \
        }                                                                        \
    } while (0)

static const char *ename(int e)
{
    return e ? tu_errname(e) : "success";
}

/* ---- the other user's side (exec'd) ---- */

static void addr_from(struct unix_mreq *m, const char *kind, const char *addr)
{
    memset(m, 0, sizeof *m);
    m->address.sun_family = AF_UNIX;
    if (kind[0] == 'p')
        snprintf(m->address.sun_path, sizeof m->address.sun_path, "%s", addr);
    else
        snprintf(m->address.sun_path + 1, sizeof m->address.sun_path - 1, "%s", addr);
}

static void report(int sock, int e)
{
    char line[16];
    int n = snprintf(line, sizeof line, "%d\n", e);
    CHECK(write(sock, line, (size_t)n) == n, "report");
}

/* argv: self as-user <op> <a1> <a2> <sock> */
static int user_main(char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_test_name = "t_access (as nobody)";
    tu_role = "nobody";
    tu_watchdog_start();
    const char *op = argv[2], *a1 = argv[3], *a2 = argv[4];
    int sock = atoi(argv[5]);
    CHECK(getuid() == NOBODY && geteuid() == NOBODY, "not running as nobody");
    if (strcmp(op, "open") == 0) {
        int fd = open(a1, (a2[1] == 'w' ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        report(sock, fd >= 0 ? 0 : errno);
        return 0;
    }
    struct unix_mreq m;
    addr_from(&m, a1, a2);
    if (strcmp(op, "sendto") == 0) {
        int s = tu_dgram();
        report(sock, tu_sendto_group(s, "from-nobody", 11, 0, &m) == 11 ? 0 : errno);
        return 0;
    }
    CHECK(strcmp(op, "join") == 0, "op %s", op);
    int fd = tu_dgram();
    int r = tu_setopt(fd, UNIX_JOIN_GROUP, &m, 0);
    report(sock, r == 0 ? 0 : errno);
    if (r != 0)
        return 0;
    char c;
    CHECK(read(sock, &c, 1) == 1, "wait for go");
    tu_set_rcvtimeo(fd, 3000);
    char buf[32];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    report(sock, n == 5 && memcmp(buf, "hello", 5) == 0 ? 0 : n < 0 ? errno : EBADMSG);
    int s = tu_dgram();
    report(sock, tu_sendto_group(s, "from-nobody", 11, 0, &m) == 11 ? 0 : errno);
    return 0;
}

/* ---- root's side ---- */

static const char *self_exe = "/proc/self/exe";

struct user_job {
    uid_t uid;
    gid_t gid;
    char *args[8];
    int sock;
};

static int user_child(void *arg)
{
    struct user_job *j = arg;
    CHECK(fcntl(j->sock, F_SETFD, 0) == 0, "clear FD_CLOEXEC");
    CHECK(setgroups(0, NULL) == 0, "setgroups");
    CHECK(setgid(j->gid) == 0, "setgid %d", (int)j->gid);
    CHECK(setuid(j->uid) == 0, "setuid %d", (int)j->uid);
    execv(self_exe, j->args);
    CHECK(0, "execv");
    return 1;
}

struct user {
    pid_t pid;
    int sock;
};

static struct user as_user(uid_t uid, gid_t gid, const char *op, const char *a1, const char *a2)
{
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0, "socketpair");
    static struct user_job j; /* read by the child right after fork */
    static char sockstr[16];
    snprintf(sockstr, sizeof sockstr, "%d", sp[1]);
    j = (struct user_job){uid, gid, {"t_access", "as-user", (char *)op, (char *)a1, (char *)a2, sockstr, NULL}, sp[1]};
    struct user u = {tu_spawn("nobody", user_child, &j), sp[0]};
    close(sp[1]);
    return u;
}

/* The next answer of the other user's process. */
static int answer(struct user *u)
{
    char line[16];
    size_t len = 0;
    double t0 = tu_now();
    while (len == 0 || line[len - 1] != '\n') {
        tu_check_children();
        CHECK(tu_now() - t0 < 8, "no answer from the process running as nobody");
        struct pollfd p = {.fd = u->sock, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t n = read(u->sock, line + len, 1);
        CHECK(n == 1, "the process running as nobody died");
        len++;
        CHECK(len < sizeof line, "answer too long");
    }
    line[len] = 0;
    return atoi(line);
}

static void finish(struct user *u)
{
    tu_wait_child(u->pid);
    close(u->sock);
}

/* One operation as another user; its single answer. */
static int run_as(uid_t uid, gid_t gid, const char *op, const char *a1, const char *a2)
{
    struct user u = as_user(uid, gid, op, a1, a2);
    int e = answer(&u);
    finish(&u);
    return e;
}

static mode_t file_mode(const char *p, uid_t *uid, gid_t *gid)
{
    struct stat st;
    CHECK(stat(p, &st) == 0, "stat %s", p);
    if (uid)
        *uid = st.st_uid;
    if (gid)
        *gid = st.st_gid;
    return st.st_mode & 07777;
}

/* Mode of every file of the group: segment, FIFO and queues must all be `want`. */
static void check_modes(const struct unix_mreq *m, mode_t want, const char *what)
{
    char seg[512], p[600];
    tu_segment_path(m, seg, sizeof seg);
    mode_t sm = file_mode(seg, NULL, NULL);
    SOFT_CHECK(sm == want, "%s: the segment %s has mode %o, expected %o", what, seg, sm, want);
    uint64_t gid = tu_group_id(m);
    snprintf(p, sizeof p, "/dev/shm/umcast.w.%016llx", (unsigned long long)gid);
    mode_t fm = file_mode(p, NULL, NULL);
    SOFT_CHECK(fm == want, "%s: the FIFO %s has mode %o, expected %o", what, p, fm, want);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "umcast.q.%016llx.", (unsigned long long)gid);
    int n;
    char **q = tu_shm_names(prefix, &n);
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "/dev/shm/%s", q[i]);
        mode_t qm = file_mode(p, NULL, NULL);
        SOFT_CHECK(qm == want, "%s: the queue %s has mode %o, expected %o", what, p, qm, want);
    }
    tu_free_names(q, n);
}

/* A member queue file of the group (any). */
static int some_queue(const struct unix_mreq *m, char *out, size_t cap)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "umcast.q.%016llx.", (unsigned long long)tu_group_id(m));
    int n;
    char **q = tu_shm_names(prefix, &n);
    if (n > 0)
        snprintf(out, cap, "/dev/shm/%s", q[0]);
    tu_free_names(q, n);
    return n > 0;
}

static char dir_open[96], dir_closed[96];

/* A path group in dir with the socket file chmod'ed to mode. */
static int path_group(struct unix_mreq *m, const char *dir, const char *name, mode_t mode)
{
    memset(m, 0, sizeof *m);
    m->address.sun_family = AF_UNIX;
    int n = snprintf(m->address.sun_path, sizeof m->address.sun_path, "%s/%s", dir, name);
    CHECK(n > 0 && (size_t)n < sizeof m->address.sun_path, "path too long");
    int g = tu_create_group(m);
    CHECK(chmod(m->address.sun_path, mode) == 0, "chmod %s %o", m->address.sun_path, mode);
    return g;
}

static void case_open_member(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    int g = path_group(&m, dir_open, "open", 0666);
    int root_member = tu_join(&m, 0);
    tu_set_rcvtimeo(root_member, 3000);
    struct user u = as_user(NOBODY, NOBODY, "join", "p", m.address.sun_path);
    int e = answer(&u);
    CHECK(e == 0, "nobody could not JOIN a path group whose socket file is 0666: %s", ename(e));
    check_modes(&m, 0666, "socket file 0666");
    CHECK(write(u.sock, "g", 1) == 1, "go");
    tu_sleep_ms(100); /* nobody falls asleep in recv */
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "hello", 5, 0, &m) == 5, "send hello");
    e = answer(&u);
    SOFT_CHECK(e == 0, "socket file 0666: nobody's member did not receive: %s", ename(e));
    e = answer(&u);
    SOFT_CHECK(e == 0, "socket file 0666: nobody could not send to the group: %s", ename(e));
    finish(&u);
    tu_expect_str(root_member, "hello", "root's member");
    if (e == 0)
        tu_expect_str(root_member, "from-nobody", "root's member");
    CASE_OK("path group, socket file 0666: nobody joins, receives (asleep when it came) and sends; "
          "segment, FIFO and queues are 0666");
    close(root_member);
    close(g);
    close(s);
}

static void case_narrowed_after_join(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    int g = path_group(&m, dir_open, "narrowed", 0666);
    struct user u = as_user(NOBODY, NOBODY, "join", "p", m.address.sun_path);
    int e = answer(&u);
    CHECK(e == 0, "nobody could not JOIN (0666): %s", ename(e));
    CHECK(chmod(m.address.sun_path, 0600) == 0, "chmod 0600");
    check_modes(&m, 0600, "socket file narrowed to 0600 after nobody joined");
    /* the kernel's reference: a socket connected before a chmod keeps sending */
    CHECK(write(u.sock, "g", 1) == 1, "go");
    tu_sleep_ms(100);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "hello", 5, 0, &m) == 5, "send hello");
    e = answer(&u);
    SOFT_CHECK(e == 0, "a member that joined while the socket file was 0666 stopped receiving after "
               "root narrowed it to 0600: %s", ename(e));
    e = answer(&u);
    printf("    nobody's fresh sendto to the narrowed group: %s (the kernel: EACCES for a "
           "connect/sendto without write permission)\n", ename(e));
    SOFT_CHECK(e == EACCES, "after narrowing to 0600, nobody's sendto gave %s, expected EACCES", ename(e));
    finish(&u);
    CASE_OK("socket file narrowed to 0600 after nobody joined: its member keeps receiving; its files "
          "follow the chmod");
    close(g);
    close(s);
}

static void case_closed_file(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    int g = path_group(&m, dir_open, "private", 0600);
    int root_member = tu_join(&m, 0);
    check_modes(&m, 0600, "socket file 0600");
    int e = run_as(NOBODY, NOBODY, "join", "p", m.address.sun_path);
    SOFT_CHECK(e == EACCES, "socket file 0600: nobody's JOIN gave %s, expected EACCES", ename(e));
    e = run_as(NOBODY, NOBODY, "sendto", "p", m.address.sun_path);
    SOFT_CHECK(e == EACCES, "socket file 0600: nobody's sendto gave %s, expected EACCES", ename(e));
    char seg[512];
    tu_segment_path(&m, seg, sizeof seg);
    e = run_as(NOBODY, NOBODY, "open", seg, "r");
    SOFT_CHECK(e == EACCES, "socket file 0600: nobody opened the segment for reading (%s)", ename(e));
    char q[512];
    if (some_queue(&m, q, sizeof q)) {
        e = run_as(NOBODY, NOBODY, "open", q, "r");
        SOFT_CHECK(e == EACCES, "socket file 0600: nobody opened root's queue for reading (%s)", ename(e));
    }
    CASE_OK("path group, socket file 0600: nobody's JOIN and sendto get EACCES, its files are closed to it");
    close(root_member);
    close(g);
}

static void case_closed_dir(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    int g = path_group(&m, dir_closed, "hidden", 0666);
    int e = run_as(NOBODY, NOBODY, "join", "p", m.address.sun_path);
    SOFT_CHECK(e == EACCES, "socket file 0666 in a 0700 directory: nobody's JOIN gave %s, expected EACCES",
               ename(e));
    char seg[512];
    tu_segment_path(&m, seg, sizeof seg);
    e = run_as(NOBODY, NOBODY, "open", seg, "rw");
    SOFT_CHECK(e == EACCES, "socket file 0666 in a 0700 directory: nobody cannot connect, yet it opened "
               "the group's segment %s for writing (%s)", seg, ename(e));
    CASE_OK("socket file 0666 in a 0700 directory: nobody's JOIN gets EACCES%s",
          e == EACCES ? ", and the segment is closed to it" : "");
    close(g);
}

static void case_group_bits(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    int g = path_group(&m, dir_open, "team", 0660);
    CHECK(chown(m.address.sun_path, 0, NOBODY) == 0, "chown root:%d", NOBODY);
    check_modes(&m, 0660, "socket file 0660 root:65534");
    char seg[512];
    tu_segment_path(&m, seg, sizeof seg);
    gid_t sg;
    file_mode(seg, NULL, &sg);
    SOFT_CHECK(sg == NOBODY, "after chown of the socket file to group %d the segment's group is %d", NOBODY,
               (int)sg);
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/dev/shm/umcast.w.%016llx", (unsigned long long)tu_group_id(&m));
    file_mode(fifo, NULL, &sg);
    SOFT_CHECK(sg == NOBODY, "after chown of the socket file to group %d the FIFO %s has group %d (mode "
               "%o): members of group %d cannot wait for messages", NOBODY, fifo, (int)sg,
               file_mode(fifo, NULL, NULL), NOBODY);
    struct user u = as_user(NOBODY, NOBODY, "join", "p", m.address.sun_path);
    int e = answer(&u);
    SOFT_CHECK(e == 0, "socket file 0660 group 65534: a process with gid 65534 could not JOIN: %s",
               ename(e));
    if (e == 0) {
        CHECK(write(u.sock, "g", 1) == 1, "go");
        tu_sleep_ms(100); /* it falls asleep in recv */
        int s = tu_dgram();
        CHECK(tu_sendto_group(s, "hello", 5, 0, &m) == 5, "send");
        close(s);
        e = answer(&u);
        SOFT_CHECK(e == 0, "socket file 0660 group 65534: the member of gid 65534 did not receive "
                   "(asleep when the message came): %s", ename(e));
        answer(&u);
    }
    finish(&u);
    e = run_as(NOBODY, NOBODY - 1, "join", "p", m.address.sun_path);
    SOFT_CHECK(e == EACCES, "socket file 0660 group 65534: uid 65534 with gid 65533 got %s, expected EACCES",
               ename(e));
    CASE_OK("socket file 0660 root:65534: gid 65534 joins and receives, gid 65533 gets EACCES; the "
          "segment follows the chown");
    close(g);
}

static void case_readable_only(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    memset(&m, 0, sizeof m);
    m.address.sun_family = AF_UNIX;
    int n = snprintf(m.address.sun_path, sizeof m.address.sun_path, "%s/umask022", dir_open);
    CHECK(n > 0 && (size_t)n < sizeof m.address.sun_path, "path too long");
    mode_t old = umask(022);
    int g = tu_create_group(&m);
    umask(old);
    mode_t sm = file_mode(m.address.sun_path, NULL, NULL);
    int root_member = tu_join(&m, 0);
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "secret", 6, 0, &m) == 6, "send");
    int e = run_as(NOBODY, NOBODY, "join", "p", m.address.sun_path);
    SOFT_CHECK(e == EACCES, "socket file %o: nobody's JOIN gave %s, expected EACCES", sm, ename(e));
    char seg[512], q[512];
    tu_segment_path(&m, seg, sizeof seg);
    mode_t segm = file_mode(seg, NULL, NULL);
    e = run_as(NOBODY, NOBODY, "open", seg, "r");
    SOFT_CHECK(e == EACCES, "socket file %o (nobody may not connect): nobody opened the segment (mode %o) "
               "for reading (%s)", sm, segm, ename(e));
    if (some_queue(&m, q, sizeof q)) {
        mode_t qm = file_mode(q, NULL, NULL);
        e = run_as(NOBODY, NOBODY, "open", q, "r");
        SOFT_CHECK(e == EACCES, "socket file %o (nobody may not connect): nobody opened root's queue %s "
                   "(mode %o, holding a message) for reading (%s)", sm, q, qm, ename(e));
    }
    CASE_OK("socket file %o (made under umask 022): nobody may not connect, JOIN gets EACCES", sm);
    tu_expect_str(root_member, "secret", "root's member");
    close(root_member);
    close(g);
    close(s);
}

static void case_abstract(void)
{
    CASE_BEGIN();
    struct unix_mreq m;
    tu_abstract_group(&m, "access");
    int g = tu_create_group(&m);
    int root_member = tu_join(&m, 0);
    check_modes(&m, 0600, "abstract group");
    char seg[512];
    tu_segment_path(&m, seg, sizeof seg);
    uid_t su;
    file_mode(seg, &su, NULL);
    SOFT_CHECK(su == 0, "the abstract group's segment is owned by uid %d, not its creator", (int)su);
    const char *name = m.address.sun_path + 1;
    int je = run_as(NOBODY, NOBODY, "join", "a", name);
    printf("    nobody's JOIN of root's abstract group: %s\n", ename(je));
    SOFT_CHECK(je == EACCES, "abstract group created by root: nobody's JOIN gave %s, expected EACCES",
               ename(je));
    int e = run_as(NOBODY, NOBODY, "sendto", "a", name);
    printf("    nobody's sendto to root's abstract group: %s\n", ename(e));
    SOFT_CHECK(e != 0, "abstract group created by root: nobody's sendto succeeded");
    e = run_as(NOBODY, NOBODY, "open", seg, "r");
    SOFT_CHECK(e == EACCES, "nobody opened root's abstract group segment (%s)", ename(e));
    tu_expect_empty(root_member, "root's member: nothing from nobody");
    CASE_OK("abstract group by root: segment, FIFO and queue 0600 owned by root; nobody's JOIN gets %s",
          ename(je));
    close(root_member);
    close(g);
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "as-user") == 0)
        return user_main(argv);
    tu_start("t_access");
    if (geteuid() != 0) {
        printf("  SKIP: t_access needs root (to drop to uid/gid %d); running as uid %d\n", NOBODY,
               (int)geteuid());
        return tu_done();
    }
    /* directories nobody can search (0755) and cannot (0700) */
    const char *top = tu_tmpdir();
    CHECK(chmod(top, 0755) == 0, "chmod %s", top);
    snprintf(dir_open, sizeof dir_open, "%s/open", top);
    snprintf(dir_closed, sizeof dir_closed, "%s/closed", top);
    CHECK(mkdir(dir_open, 0755) == 0 && chmod(dir_open, 0755) == 0, "mkdir %s", dir_open);
    CHECK(mkdir(dir_closed, 0700) == 0 && chmod(dir_closed, 0700) == 0, "mkdir %s", dir_closed);

    case_open_member();
    case_narrowed_after_join();
    case_closed_file();
    case_closed_dir();
    case_group_bits();
    case_readable_only();
    case_abstract();
    if (soft_failures) {
        fprintf(stderr, "FAIL: %d check(s) failed (see above)\n", soft_failures);
        return 1;
    }
    return tu_done();
}
