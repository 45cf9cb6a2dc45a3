/*
 * testutil.h - shared helpers of the libumcast C test suite.
 *
 * Every test is one program run under LD_PRELOAD=libumcast.so. It calls
 * tu_start() first (line-buffered output, a watchdog, and a check that the
 * library is really loaded), uses CHECK()/CHECK_ERRNO() for every assertion
 * (print file:line, message, errno and exit 1), and exits 0 only if all passed.
 *
 * Children are started with tu_spawn() and reaped with tu_wait_all(), which
 * fails the test if any child failed or died of a signal, and kills the other
 * children at once so that one failure never turns into a hang.
 *
 * Everything here is static: the header is included by exactly one .c file.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "umcast.h"

#define TU_UNUSED __attribute__((unused))

/* Seconds before the watchdog fails a hung test (the runner's limit is 60). */
#define TU_WATCHDOG_SECONDS 45
#define TU_STR_(x) #x
#define TU_STR(x) TU_STR_(x)

/* ------------------------------------------------------------------------ */
/* Reporting                                                                 */

static const char *tu_test_name TU_UNUSED = "test";
static const char *tu_role TU_UNUSED = "main"; /* "main" or the child's name */

static inline const char *tu_errname(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

__attribute__((noreturn, format(printf, 5, 6))) static inline void
tu_fail(const char *file, int line, const char *cond, int err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "FAIL %s:%d [%s, pid %d]: %s\n    check: %s\n    errno: %d %s (%s)\n",
            file, line, tu_role, (int)getpid(), msg, cond, err, tu_errname(err), strerror(err));
    fflush(stderr);
    exit(1);
}

/* CHECK(cond, fmt, ...): cond must hold; errno is captured right after it. */
#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            int tu_e_ = errno;                                                   \
            tu_fail(__FILE__, __LINE__, #cond, tu_e_, __VA_ARGS__);              \
        }                                                                        \
    } while (0)

/* CHECK_ERRNO(expr, E): expr must return -1 with errno == E. */
#define CHECK_ERRNO(expr, expected)                                              \
    do {                                                                         \
        errno = 0;                                                               \
        long tu_r_ = (long)(expr);                                               \
        int tu_e_ = errno;                                                       \
        if (tu_r_ != -1 || tu_e_ != (expected))                                  \
            tu_fail(__FILE__, __LINE__, #expr, tu_e_,                            \
                    "expected -1 with %s, got %ld with errno %s", tu_errname(expected), \
                    tu_r_, tu_r_ == -1 ? tu_errname(tu_e_) : "(untouched)");    \
    } while (0)

/* Progress lines: what was checked. */
__attribute__((format(printf, 1, 2))) static inline void tu_ok(const char *fmt, ...)
{
    va_list ap;
    printf("  ok: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* ------------------------------------------------------------------------ */
/* Small utilities                                                           */

static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* FNV-1a, 32 bits: payload checksums. */
static inline uint32_t tu_fnv1a32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* FNV-1a, 64 bits, incremental: running hashes of received sequences. */
#define TU_FNV64_INIT 14695981039346656037ull
static inline uint64_t tu_fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Memory shared with forked children (they write results, the parent reads). */
static inline void *tu_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap of %zu shared bytes", size);
    return p;
}

/* A length the compiler cannot see through (keeps fortified calls fortified). */
static inline size_t tu_opaque_size(size_t n)
{
    volatile size_t v = n;
    return v;
}

/* ------------------------------------------------------------------------ */
/* Watchdog and children                                                     */

#define TU_MAX_CHILDREN 64

static pid_t tu_children[TU_MAX_CHILDREN] TU_UNUSED;
static const char *tu_child_names[TU_MAX_CHILDREN] TU_UNUSED;
static int tu_nchildren TU_UNUSED;

static inline void tu_kill_children(void)
{
    for (int i = 0; i < tu_nchildren; i++)
        if (tu_children[i] > 0)
            kill(tu_children[i], SIGKILL);
}

/* SIGALRM: the test hung. Only async-signal-safe calls here. */
static inline void tu_watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog: still running after " TU_STR(TU_WATCHDOG_SECONDS) " s, the test hung (";
    ssize_t r = write(2, msg, sizeof msg - 1);
    r = write(2, tu_role, strlen(tu_role));
    r = write(2, ")\n", 2);
    (void)r;
    tu_kill_children();
    _exit(3);
}

static inline void tu_watchdog_start(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tu_watchdog_fired;
    sigaction(SIGALRM, &sa, NULL);
    alarm(TU_WATCHDOG_SECONDS);
}

/*
 * Start a child running fn(arg); its exit status is fn's return value.
 * The child dies with its parent (PR_SET_PDEATHSIG) and has its own watchdog
 * (alarms are not inherited across fork).
 */
static inline pid_t tu_spawn(const char *name, int (*fn)(void *), void *arg)
{
    CHECK(tu_nchildren < TU_MAX_CHILDREN, "too many children");
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork for %s", name);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        tu_role = name;
        tu_nchildren = 0;
        tu_watchdog_start();
        int rc = fn(arg);
        fflush(stdout);
        exit(rc);
    }
    tu_children[tu_nchildren] = pid;
    tu_child_names[tu_nchildren] = name;
    tu_nchildren++;
    return pid;
}

/* Describe a wait status; returns 0 when it is a clean exit 0. */
static inline int tu_report_status(const char *name, pid_t pid, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        fprintf(stderr, "FAIL: child '%s' (pid %d) exited with %d\n", name, (int)pid,
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "FAIL: child '%s' (pid %d) killed by signal %d (%s)\n", name, (int)pid,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        fprintf(stderr, "FAIL: child '%s' (pid %d): wait status 0x%x\n", name, (int)pid, status);
    return -1;
}

static inline int tu_child_index(pid_t pid)
{
    for (int i = 0; i < tu_nchildren; i++)
        if (tu_children[i] == pid)
            return i;
    return -1;
}

static inline void tu_forget_child(int i)
{
    tu_children[i] = tu_children[tu_nchildren - 1];
    tu_child_names[i] = tu_child_names[tu_nchildren - 1];
    tu_nchildren--;
}

/* Wait for one child; fail the test (killing the others) unless it exited 0. */
static inline void tu_wait_child(pid_t pid)
{
    int status;
    int i = tu_child_index(pid);
    CHECK(i >= 0, "pid %d is not a child of ours", (int)pid);
    const char *name = tu_child_names[i];
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR) {
    }
    CHECK(r == pid, "waitpid(%s)", name);
    tu_forget_child(i);
    if (tu_report_status(name, pid, status) != 0) {
        tu_kill_children();
        exit(1);
    }
}

/*
 * Wait for every child. The first failure kills the remaining children
 * (they may be blocked waiting for the failed one) and fails the test.
 */
static inline void tu_wait_all(void)
{
    int failed = 0;
    while (tu_nchildren > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid == -1 && errno == EINTR)
            continue;
        CHECK(pid > 0, "waitpid with %d children left", tu_nchildren);
        int i = tu_child_index(pid);
        if (i < 0)
            continue;
        const char *name = tu_child_names[i];
        tu_forget_child(i);
        if (tu_report_status(name, pid, status) != 0 && !failed) {
            failed = 1;
            tu_kill_children();
        }
    }
    if (failed) {
        fprintf(stderr, "FAIL: a child process failed (see above)\n");
        exit(1);
    }
}

/* Reap a child that we killed on purpose: it must have died of signal sig. */
static inline void tu_wait_killed(pid_t pid, int sig)
{
    int status;
    int i = tu_child_index(pid);
    CHECK(i >= 0, "pid %d is not a child of ours", (int)pid);
    const char *name = tu_child_names[i];
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR) {
    }
    CHECK(r == pid, "waitpid(%s)", name);
    tu_forget_child(i);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == sig)) {
        tu_report_status(name, pid, status);
        tu_kill_children();
        fprintf(stderr, "FAIL: child '%s' should have died of signal %d\n", name, sig);
        exit(1);
    }
}

/* Is the child still running (not exited, not a zombie)? */
static inline int tu_child_running(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
    CHECK(r == 0, "waitid(%d)", (int)pid);
    return si.si_pid == 0;
}

/*
 * Fail at once if a child already failed (exited non-zero or died of a
 * signal), instead of waiting for something it will never do. Children that
 * exited 0 are left for tu_wait_child()/tu_wait_all() to reap.
 */
static inline void tu_check_children(void)
{
    for (int i = 0; i < tu_nchildren; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)tu_children[i], &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
            continue;
        if (si.si_code == CLD_EXITED && si.si_status == 0)
            continue;
        tu_wait_child(tu_children[i]); /* reports it, kills the others, exits */
    }
}

/*
 * A gate: children arrive (say "ready") and then pass (wait for "go"), the
 * parent waits until n have arrived and then opens the gate for n of them.
 * Create it before forking the children that use it.
 */
struct tu_gate {
    int ready[2];
    int go[2];
};

static inline void tu_gate_init(struct tu_gate *g)
{
    CHECK(pipe2(g->ready, O_CLOEXEC) == 0, "pipe");
    CHECK(pipe2(g->go, O_CLOEXEC) == 0, "pipe");
}

static inline void tu_gate_arrive(struct tu_gate *g)
{
    CHECK(write(g->ready[1], "r", 1) == 1, "gate: write ready");
}

static inline void tu_gate_pass(struct tu_gate *g)
{
    char c;
    ssize_t r;
    while ((r = read(g->go[0], &c, 1)) == -1 && errno == EINTR) {
    }
    CHECK(r == 1, "gate: read go");
}

/* Parent: wait until n children arrived (at most timeout_ms). */
static inline void tu_gate_wait(struct tu_gate *g, int n, int timeout_ms)
{
    double deadline = tu_now() + timeout_ms / 1000.0;
    for (int got = 0; got < n;) {
        int left = (int)((deadline - tu_now()) * 1000);
        CHECK(left > 0, "gate: only %d of %d children arrived within %d ms", got, n, timeout_ms);
        tu_check_children();
        struct pollfd p = {.fd = g->ready[0], .events = POLLIN};
        int r = poll(&p, 1, left < 100 ? left : 100);
        if (r == -1 && errno == EINTR)
            continue;
        CHECK(r >= 0, "gate: poll");
        if (r == 0)
            continue;
        char buf[64];
        ssize_t k = read(g->ready[0], buf, (size_t)(n - got) < sizeof buf ? (size_t)(n - got) : sizeof buf);
        CHECK(k > 0, "gate: read ready");
        got += (int)k;
    }
}

static inline void tu_gate_open(struct tu_gate *g, int n)
{
    for (int i = 0; i < n; i++)
        CHECK(write(g->go[1], "g", 1) == 1, "gate: write go");
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */

static unsigned tu_addr_counter TU_UNUSED;

/* A unique abstract group address: pid, counter and clock keep runs apart. */
static inline void tu_abstract_group(struct unix_mreq *m, const char *tag)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    memset(m, 0, sizeof *m);
    m->address.sun_family = AF_UNIX;
    snprintf(m->address.sun_path + 1, sizeof m->address.sun_path - 1, "umcast-t-%s-%d-%u-%lx",
             tag, (int)getpid(), ++tu_addr_counter, (unsigned long)ts.tv_nsec);
}

/* The same, as a plain sockaddr_un (for ordinary bind/sendto). */
static inline socklen_t tu_abstract_addr(struct sockaddr_un *a, const char *tag)
{
    struct unix_mreq m;
    tu_abstract_group(&m, tag);
    *a = m.address;
    return unix_mreq_addrlen(&m);
}

static char tu_tmpdir_path[64] TU_UNUSED;
static pid_t tu_tmpdir_owner TU_UNUSED;

static inline int tu_rm_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st;
    (void)type;
    (void)f;
    remove(path);
    return 0;
}

/* atexit: only the process that created the directory removes it. */
static inline void tu_tmpdir_cleanup(void)
{
    if (tu_tmpdir_path[0] && getpid() == tu_tmpdir_owner)
        nftw(tu_tmpdir_path, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh private directory for path groups, removed at exit. */
static inline const char *tu_tmpdir(void)
{
    if (!tu_tmpdir_path[0]) {
        strcpy(tu_tmpdir_path, "/tmp/umcast-test-XXXXXX");
        CHECK(mkdtemp(tu_tmpdir_path) != NULL, "mkdtemp");
        tu_tmpdir_owner = getpid();
        atexit(tu_tmpdir_cleanup);
    }
    return tu_tmpdir_path;
}

/* A unique path group address inside tu_tmpdir(). */
static inline void tu_path_group(struct unix_mreq *m, const char *tag)
{
    memset(m, 0, sizeof *m);
    m->address.sun_family = AF_UNIX;
    int n = snprintf(m->address.sun_path, sizeof m->address.sun_path, "%s/%s-%u", tu_tmpdir(), tag,
                     ++tu_addr_counter);
    CHECK(n > 0 && (size_t)n < sizeof m->address.sun_path, "path too long");
}

static inline socklen_t tu_path_addr(struct sockaddr_un *a, const char *tag)
{
    struct unix_mreq m;
    tu_path_group(&m, tag);
    *a = m.address;
    return unix_mreq_addrlen(&m);
}

/* ------------------------------------------------------------------------ */
/* Sockets and groups                                                        */

static inline int tu_dgram(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket(AF_UNIX, SOCK_DGRAM)");
    return fd;
}

static inline int tu_setopt(int fd, int name, const struct unix_mreq *m, unsigned flags)
{
    struct unix_mreq copy = *m;
    copy.flags = flags;
    return setsockopt(fd, SOL_UNIX, name, &copy, sizeof copy);
}

/* A new group socket G at m's address. */
static inline int tu_create_group(const struct unix_mreq *m)
{
    int g = tu_dgram();
    CHECK(tu_setopt(g, UNIX_CREATE_GROUP, m, 0) == 0, "CREATE_GROUP");
    return g;
}

static inline void tu_join_fd(int fd, const struct unix_mreq *m, unsigned flags)
{
    CHECK(tu_setopt(fd, UNIX_JOIN_GROUP, m, flags) == 0, "JOIN_GROUP (flags 0x%x)", flags);
}

/* A new member socket of the group at m's address. */
static inline int tu_join(const struct unix_mreq *m, unsigned flags)
{
    int fd = tu_dgram();
    tu_join_fd(fd, m, flags);
    return fd;
}

static inline ssize_t tu_sendto_group(int fd, const void *buf, size_t len, int flags,
                                      const struct unix_mreq *m)
{
    return sendto(fd, buf, len, flags, (const struct sockaddr *)&m->address, unix_mreq_addrlen(m));
}

static inline void tu_set_timeout(int fd, int optname, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    CHECK(setsockopt(fd, SOL_SOCKET, optname, &tv, sizeof tv) == 0, "set timeout %d", optname);
}

/* Blocking receives give up after ms (a lost message fails, never hangs). */
static inline void tu_set_rcvtimeo(int fd, int ms) { tu_set_timeout(fd, SO_RCVTIMEO, ms); }

static inline int tu_getint(int fd, int level, int name)
{
    int v = 0;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt(%d, %d)", level, name);
    return v;
}

static inline void tu_setint(int fd, int level, int name, int v)
{
    CHECK(setsockopt(fd, level, name, &v, sizeof v) == 0, "setsockopt(%d, %d, %d)", level, name, v);
}

/* Nothing is waiting on fd: a non-blocking receive says EAGAIN. */
static inline void tu_expect_empty(int fd, const char *what)
{
    char c;
    errno = 0;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    CHECK(r == -1 && errno == EAGAIN, "%s: expected nothing queued, recv gave %zd", what, r);
}

/* Receive one message and require exactly (data, len). */
static inline void tu_expect_msg(int fd, const void *data, size_t len, const char *what)
{
    size_t cap = len + 64;
    char *buf = malloc(cap);
    CHECK(buf != NULL, "malloc");
    ssize_t r = recv(fd, buf, cap, 0);
    CHECK(r >= 0, "%s: recv (expected %zu bytes)", what, len);
    CHECK((size_t)r == len, "%s: got %zd bytes, expected %zu", what, r, len);
    CHECK(memcmp(buf, data, len) == 0, "%s: payload differs (got \"%.*s\")", what,
          (int)(r < 40 ? r : 40), buf);
    free(buf);
}

static inline void tu_expect_str(int fd, const char *s, const char *what)
{
    tu_expect_msg(fd, s, strlen(s), what);
}

/* ------------------------------------------------------------------------ */
/* Test messages: header (sender, seq, payload length, checksum) + payload   */

struct tu_msg_hdr {
    uint32_t sender;
    uint32_t seq;
    uint32_t len;  /* payload bytes after the header */
    uint32_t csum; /* FNV-1a of the payload */
};

/* Deterministic pseudo-random payload for (sender, seq). */
static inline void tu_fill_payload(unsigned char *p, size_t len, uint32_t sender, uint32_t seq)
{
    uint64_t x = ((uint64_t)sender << 32 | seq) * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

/* Build a message in buf (cap bytes); returns its total length. */
static inline size_t tu_make_msg(void *buf, size_t cap, uint32_t sender, uint32_t seq, size_t paylen)
{
    CHECK(sizeof(struct tu_msg_hdr) + paylen <= cap, "message too big for buffer");
    struct tu_msg_hdr h = {sender, seq, (uint32_t)paylen, 0};
    unsigned char *p = (unsigned char *)buf + sizeof h;
    tu_fill_payload(p, paylen, sender, seq);
    h.csum = tu_fnv1a32(p, paylen);
    memcpy(buf, &h, sizeof h);
    return sizeof h + paylen;
}

/* Validate a received message of n bytes; fills *h. Returns 0 if intact. */
static inline int tu_check_msg(const void *buf, ssize_t n, struct tu_msg_hdr *h)
{
    if (n < (ssize_t)sizeof *h)
        return -1;
    memcpy(h, buf, sizeof *h);
    if ((size_t)n != sizeof *h + h->len)
        return -1;
    return tu_fnv1a32((const unsigned char *)buf + sizeof *h, h->len) == h->csum ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Start of every test                                                       */

/* Fail unless libumcast is loaded: CREATE_GROUP must succeed. */
static inline void tu_require_library(void)
{
    struct unix_mreq m;
    tu_abstract_group(&m, "probe");
    int fd = tu_dgram();
    if (tu_setopt(fd, UNIX_CREATE_GROUP, &m, 0) != 0) {
        int e = errno;
        fprintf(stderr,
                "FAIL: not running under libumcast: CREATE_GROUP failed with %s (%s); "
                "run as LD_PRELOAD=/path/to/libumcast.so %s\n",
                tu_errname(e), strerror(e), tu_test_name);
        exit(1);
    }
    close(fd);
}

static inline void tu_start(const char *name)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_test_name = name;
    tu_watchdog_start();
    printf("== %s (pid %d)\n", name, (int)getpid());
    tu_require_library();
}

static inline int tu_done(void)
{
    printf("== %s: all checks passed\n", tu_test_name);
    return 0;
}

#endif /* TESTUTIL_H */

/* ------------------------------------------------------------------------ */
/* The umcast tool and /dev/shm (lifecycle, liveness and access tests)       */
#ifndef TESTUTIL_SHM_H
#define TESTUTIL_SHM_H

#include <dirent.h>

/*
 * The umcast tool: beside the libumcast.so named by UMCAST_LIB or LD_PRELOAD
 * (cargo puts both in target/release), else target/release relative to the
 * test's directory (tests-c/build/<variant>).
 */
static inline const char *tu_umcast_tool(void)
{
    static char path[4096];
    if (path[0])
        return path;
    const char *libs[2] = {getenv("UMCAST_LIB"), getenv("LD_PRELOAD")};
    for (int i = 0; i < 2; i++) {
        if (!libs[i] || !libs[i][0])
            continue;
        char tmp[4096], *save = NULL;
        snprintf(tmp, sizeof tmp, "%s", libs[i]);
        for (char *tok = strtok_r(tmp, ": ", &save); tok; tok = strtok_r(NULL, ": ", &save)) {
            char *slash = strrchr(tok, '/');
            if (!strstr(tok, "libumcast") || !slash)
                continue;
            *slash = 0;
            snprintf(path, sizeof path, "%s/umcast", tok);
            if (access(path, X_OK) == 0)
                return path;
        }
    }
    static const char *rel[] = {"../../../target/release/umcast", "../target/release/umcast",
                                "target/release/umcast"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if (access(rel[i], X_OK) == 0 && realpath(rel[i], path))
            return path;
    path[0] = 0;
    CHECK(0, "cannot find the umcast tool (beside UMCAST_LIB/LD_PRELOAD or in target/release)");
    return NULL;
}

/* Run `umcast <cmd>`; returns its standard output (malloc'd). It must exit 0. */
static inline char *tu_umcast(const char *cmd)
{
    const char *tool = tu_umcast_tool();
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork for umcast %s", cmd);
    if (pid == 0) {
        dup2(p[1], 1);
        execl(tool, "umcast", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    CHECK(out != NULL, "malloc");
    for (;;) {
        if (cap - len < 2048) {
            out = realloc(out, cap *= 2);
            CHECK(out != NULL, "realloc");
        }
        ssize_t n = read(p[0], out + len, cap - len - 1);
        if (n == -1 && errno == EINTR)
            continue;
        CHECK(n >= 0, "read umcast %s output", cmd);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    out[len] = 0;
    close(p[0]);
    int status;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR) {
    }
    CHECK(r == pid, "waitpid(umcast %s)", cmd);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "`%s %s` failed (wait status 0x%x)", tool,
          cmd, status);
    return out;
}

static inline unsigned long tu_socket_ino(int fd)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat(%d)", fd);
    return (unsigned long)st.st_ino;
}

/* Does this `umcast list` output show a member whose socket has inode ino? */
static inline int tu_listed_socket(const char *list, unsigned long ino)
{
    for (const char *p = list; (p = strstr(p, "socket ")) != NULL; p += 7) {
        char *end;
        unsigned long v = strtoul(p + 7, &end, 10);
        if (end != p + 7 && v == ino && (*end == ' ' || *end == '\n' || *end == 0))
            return 1;
    }
    return 0;
}

/* The group's name as `umcast list` prints it: a path, or @name for abstract. */
static inline void tu_group_display_name(const struct unix_mreq *m, char *out, size_t cap)
{
    if (m->address.sun_path[0])
        snprintf(out, cap, "%s", m->address.sun_path);
    else
        snprintf(out, cap, "@%.*s", (int)(unix_mreq_addrlen(m) - offsetof(struct sockaddr_un, sun_path) - 1),
                 m->address.sun_path + 1);
}

/*
 * The group's line in this `umcast list` output: its member count, or -1 if
 * the group is not listed. *closed (if not NULL) says whether it is "closed".
 */
static inline int tu_listed_group(const char *list, const struct unix_mreq *m, int *closed)
{
    char name[256], key[300];
    tu_group_display_name(m, name, sizeof name);
    snprintf(key, sizeof key, "group %s (", name);
    for (const char *p = list; (p = strstr(p, key)) != NULL; p++) {
        if (p != list && p[-1] != '\n')
            continue;
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line - 1 ? n : sizeof line - 1), p);
        if (closed)
            *closed = strstr(line, ", closed)") != NULL;
        const char *q = strstr(line, ") members ");
        return q ? atoi(q + 10) : -1;
    }
    return -1;
}

/* Names in /dev/shm starting with prefix (malloc'd array, *n entries). */
static inline char **tu_shm_names(const char *prefix, int *n)
{
    DIR *d = opendir("/dev/shm");
    CHECK(d != NULL, "opendir /dev/shm");
    int cap = 16;
    char **v = malloc(sizeof *v * (size_t)cap);
    CHECK(v != NULL, "malloc");
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        if (*n == cap) {
            v = realloc(v, sizeof *v * (size_t)(cap *= 2));
            CHECK(v != NULL, "realloc");
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    return v;
}

static inline void tu_free_names(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static inline int tu_names_has(char **v, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0)
            return 1;
    return 0;
}

/* The /dev/shm segment file of the group at m (the library's naming). */
static inline void tu_segment_path(const struct unix_mreq *m, char *out, size_t cap)
{
    struct stat st;
    if (m->address.sun_path[0]) {
        CHECK(stat(m->address.sun_path, &st) == 0, "stat %s", m->address.sun_path);
        snprintf(out, cap, "/dev/shm/umcast.g.p.%lx.%lx", (unsigned long)st.st_dev,
                 (unsigned long)st.st_ino);
        return;
    }
    CHECK(stat("/proc/self/ns/net", &st) == 0, "stat /proc/self/ns/net");
    int len = snprintf(out, cap, "/dev/shm/umcast.g.a.%lx.d.", (unsigned long)st.st_ino); /* datagram groups */
    size_t namelen = unix_mreq_addrlen(m) - offsetof(struct sockaddr_un, sun_path) - 1;
    for (size_t i = 0; i < namelen && (size_t)len + 3 < cap; i++)
        len += snprintf(out + len, cap - (size_t)len, "%02x", (unsigned char)m->address.sun_path[1 + i]);
}

/*
 * The group's random id (it names its queue files umcast.q.<id>.* and its
 * FIFO umcast.w.<id>), read from the segment header (offset 32, layout
 * version 2); checked against the FIFO's name.
 */
static inline uint64_t tu_group_id(const struct unix_mreq *m)
{
    char seg[512];
    tu_segment_path(m, seg, sizeof seg);
    int fd = open(seg, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s", seg);
    uint64_t id = 0;
    CHECK(pread(fd, &id, sizeof id, 32) == (ssize_t)sizeof id, "read the group id from %s", seg);
    close(fd);
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/dev/shm/umcast.w.%016llx", (unsigned long long)id);
    struct stat st;
    CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode),
          "no FIFO %s for the group id read from %s (segment layout changed?)", fifo, seg);
    return id;
}

#endif /* TESTUTIL_SHM_H */

/* ------------------------------------------------------------------------ */
/* SOCK_SEQPACKET groups: client agents and server helpers (t_seq_*)         */
#ifndef TESTUTIL_SEQ_H
#define TESTUTIL_SEQ_H

#include <sys/epoll.h>

/*
 * A client agent is the test binary re-executed ("--seq-agent"): a fresh
 * process image under the same LD_PRELOAD that shares nothing with the
 * server but what connect() finds. It owns one SOCK_SEQPACKET socket and
 * makes only plain socket calls on it, one per command read from a pipe:
 * for each command it answers "started" (just before the call, so the test
 * can tell that it is now blocked in it) and then "done" with the call's
 * result, errno, flags and received bytes. The test's main() must begin
 * with TA_AGENT_DISPATCH(argc, argv). Spawn agents first (before the server
 * creates anything) and give every descriptor of the server SOCK_CLOEXEC.
 */
enum ta_op {
    TA_CONNECT = 1, /* socket(); SO_RCVBUF = arg if > 0; SO_RCVTIMEO = arg2 ms; connect(payload) */
    TA_SEND,        /* send(fd, payload, len, flags) */
    TA_WRITE,       /* write(fd, payload, len) */
    TA_SENDMSG,     /* sendmsg(fd, payload in 3 iovecs, flags) */
    TA_RECV,        /* recv(fd, buf, arg, flags) */
    TA_RECVMSG,     /* recvmsg(fd, one iovec of arg bytes, flags): mflags = msg_flags */
    TA_READ,        /* read(fd, buf, arg) */
    TA_POLL,        /* poll(fd, events = flags, timeout = arg): revents */
    TA_EPOLL,       /* epoll_ctl(ADD first, then MOD, events = flags); epoll_wait(timeout = arg) */
    TA_SETOPT,      /* setsockopt(fd, level = arg, name = arg2, payload, len) */
    TA_SHUTDOWN,    /* shutdown(fd, arg) */
    TA_CLOSE,       /* close(fd) */
    TA_NONBLOCK,    /* O_NONBLOCK on (arg 1) or off (arg 0) */
    TA_INO,         /* ret = the socket's inode */
    TA_GETINT,      /* ret = getsockopt(fd, arg, arg2) as int */
    TA_BURST_SEND,  /* arg test messages (sender, first seq = payload's 2 u32), payloads up to arg2 bytes (< 0: -arg2) */
    TA_BURST_RECV,  /* up to arg test messages with recv(flags); data = (sender, seq) pairs; ret = count
                       (a 1-byte message b counts as (TA_BYTE_SENDER, b)) */
    TA_EXIT,
};

struct ta_cmd {
    int32_t op, flags, arg, arg2;
    uint32_t len; /* payload bytes that follow */
};

struct ta_rep {
    int32_t kind; /* 0 started, 1 done */
    int32_t err;  /* errno when ret == -1 */
    int64_t ret;
    int32_t mflags, revents;
    uint32_t len; /* data bytes that follow */
    uint32_t pad;
};

#define TA_BUFCAP (512 * 1024)
#define TA_BYTE_SENDER 0xffffffffu
#define TA_EPOLL_DATA 0x5eedf00dcafeull

static inline int ta_read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

static inline void ta_write_full(int fd, const void *p, size_t n, const char *what)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, (const char *)p + put, n - put);
        if (r == -1 && errno == EINTR)
            continue;
        CHECK(r > 0, "%s: write to the agent pipe", what);
        put += (size_t)r;
    }
}

/* Payload length of test message (sender, seq) in bursts: up to max bytes, or exactly -max if max < 0. */
static inline size_t ta_burst_len(uint32_t sender, uint32_t seq, int max)
{
    if (max < 0)
        return (size_t)-max;
    return max == 0 ? 0 : (size_t)((seq * 53u + sender * 17u) % (uint32_t)(max + 1));
}

/* The agent process. */
static inline int ta_agent_main(int argc, char **argv)
{
    CHECK(argc >= 5, "agent: arguments");
    tu_role = argv[2];
    tu_test_name = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    tu_watchdog_start();
    signal(SIGPIPE, SIG_IGN);
    int cin = atoi(argv[3]), cout = atoi(argv[4]);
    fcntl(cin, F_SETFD, FD_CLOEXEC);
    fcntl(cout, F_SETFD, FD_CLOEXEC);
    int fd = -1, ep = -1, registered = 0;
    unsigned char *buf = malloc(TA_BUFCAP), *payload = malloc(TA_BUFCAP);
    CHECK(buf && payload, "malloc");
    for (;;) {
        struct ta_cmd c;
        if (!ta_read_full(cin, &c, sizeof c))
            return 0; /* the test is gone */
        CHECK(c.len <= TA_BUFCAP, "agent: payload of %u bytes", c.len);
        CHECK(c.len == 0 || ta_read_full(cin, payload, c.len), "agent: read payload");
        struct ta_rep r;
        memset(&r, 0, sizeof r);
        ta_write_full(cout, &r, sizeof r, "agent: started");
        r.kind = 1;
        size_t out = 0;
        long ret = 0;
        errno = 0;
        switch (c.op) {
        case TA_CONNECT: {
            CHECK(fd < 0, "agent: CONNECT while a socket is open");
            fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
            CHECK(fd >= 0, "agent: socket");
            if (c.arg > 0)
                tu_setint(fd, SOL_SOCKET, SO_RCVBUF, c.arg);
            if (c.arg2 > 0)
                tu_set_rcvtimeo(fd, c.arg2);
            ret = connect(fd, (const struct sockaddr *)payload, (socklen_t)c.len);
            break;
        }
        case TA_SEND: ret = send(fd, payload, c.len, c.flags); break;
        case TA_WRITE: ret = write(fd, payload, c.len); break;
        case TA_SENDMSG: {
            size_t a = c.len / 3, b = c.len / 3;
            struct iovec iov[3] = {{payload, a}, {payload + a, b}, {payload + a + b, c.len - a - b}};
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = iov;
            mh.msg_iovlen = 3;
            ret = sendmsg(fd, &mh, c.flags);
            break;
        }
        case TA_RECV:
            CHECK(c.arg >= 0 && c.arg <= TA_BUFCAP, "agent: recv size");
            ret = recv(fd, buf, tu_opaque_size((size_t)c.arg), c.flags);
            break;
        case TA_READ:
            CHECK(c.arg >= 0 && c.arg <= TA_BUFCAP, "agent: read size");
            ret = read(fd, buf, tu_opaque_size((size_t)c.arg));
            break;
        case TA_RECVMSG: {
            CHECK(c.arg >= 0 && c.arg <= TA_BUFCAP, "agent: recvmsg size");
            struct iovec iov = {buf, (size_t)c.arg};
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            ret = recvmsg(fd, &mh, c.flags);
            r.mflags = mh.msg_flags;
            break;
        }
        case TA_POLL: {
            struct pollfd p = {.fd = fd, .events = (short)c.flags};
            ret = poll(&p, 1, c.arg);
            r.revents = p.revents;
            break;
        }
        case TA_EPOLL: {
            if (ep < 0) {
                ep = epoll_create1(EPOLL_CLOEXEC);
                CHECK(ep >= 0, "agent: epoll_create1");
            }
            struct epoll_event ev = {.events = (uint32_t)c.flags, .data.u64 = TA_EPOLL_DATA};
            CHECK(epoll_ctl(ep, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0,
                  "agent: epoll_ctl");
            registered = 1;
            struct epoll_event evs[4];
            memset(evs, 0, sizeof evs);
            ret = epoll_wait(ep, evs, 4, c.arg);
            if (ret > 0) {
                CHECK(ret == 1, "agent: epoll_wait reported %ld events for one descriptor", ret);
                CHECK(evs[0].data.u64 == TA_EPOLL_DATA, "agent: epoll_wait gave data %llx",
                      (unsigned long long)evs[0].data.u64);
                r.revents = (int32_t)evs[0].events;
            }
            break;
        }
        case TA_SETOPT: ret = setsockopt(fd, c.arg, c.arg2, payload, c.len); break;
        case TA_SHUTDOWN: ret = shutdown(fd, c.arg); break;
        case TA_CLOSE:
            ret = close(fd);
            fd = -1;
            registered = 0;
            break;
        case TA_NONBLOCK: {
            int fl = fcntl(fd, F_GETFL);
            CHECK(fl >= 0, "agent: F_GETFL");
            ret = fcntl(fd, F_SETFL, c.arg ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
            break;
        }
        case TA_INO: {
            struct stat st;
            CHECK(fstat(fd, &st) == 0, "agent: fstat");
            ret = (long)st.st_ino;
            break;
        }
        case TA_GETINT: ret = tu_getint(fd, c.arg, c.arg2); break;
        case TA_BURST_SEND: {
            uint32_t id[2];
            CHECK(c.len == sizeof id, "agent: burst payload");
            memcpy(id, payload, sizeof id);
            for (ret = 0; ret < c.arg; ret++) {
                uint32_t seq = id[1] + (uint32_t)ret;
                size_t n = tu_make_msg(buf, TA_BUFCAP, id[0], seq, ta_burst_len(id[0], seq, c.arg2));
                ssize_t k = send(fd, buf, n, c.flags);
                if (k != (ssize_t)n) {
                    r.err = k < 0 ? errno : EMSGSIZE;
                    break;
                }
            }
            break;
        }
        case TA_BURST_RECV: {
            CHECK(c.arg >= 0 && (size_t)c.arg * 8 <= TA_BUFCAP, "agent: burst count");
            for (ret = 0; ret < c.arg; ret++) {
                ssize_t k = recv(fd, payload, TA_BUFCAP, c.flags);
                struct tu_msg_hdr h;
                if (k == 1) { /* a 1-byte message b: recorded as (TA_BYTE_SENDER, b) */
                    h.sender = TA_BYTE_SENDER;
                    h.seq = payload[0];
                } else if (k < 0 || tu_check_msg(payload, k, &h) != 0) {
                    r.err = k < 0 ? errno : EBADMSG;
                    break;
                }
                memcpy(buf + 8 * ret, &h.sender, 4);
                memcpy(buf + 8 * ret + 4, &h.seq, 4);
            }
            out = (size_t)ret * 8;
            break;
        }
        case TA_EXIT: break;
        default: CHECK(0, "agent: unknown op %d", c.op);
        }
        if (c.op != TA_BURST_SEND && c.op != TA_BURST_RECV) {
            r.err = ret == -1 ? errno : 0;
            if (ret > 0 && (c.op == TA_RECV || c.op == TA_READ || c.op == TA_RECVMSG))
                out = (size_t)ret < (size_t)c.arg ? (size_t)ret : (size_t)c.arg;
        }
        r.ret = ret;
        r.len = (uint32_t)out;
        ta_write_full(cout, &r, sizeof r, "agent: done");
        if (out)
            ta_write_full(cout, buf, out, "agent: data");
        if (c.op == TA_EXIT)
            return 0;
    }
}

#define TA_AGENT_DISPATCH(argc, argv)                                            \
    do {                                                                         \
        if ((argc) > 1 && strcmp((argv)[1], "--seq-agent") == 0)                 \
            return ta_agent_main((argc), (argv));                                \
    } while (0)

/* The test's side of an agent. */
struct ta_agent {
    const char *name;
    pid_t pid;
    int cmd, rep;             /* our ends */
    int child_cmd, child_rep; /* its ends (until it has started) */
    int busy;                 /* a command is running (started, not yet done) */
    unsigned char *data;      /* the last result's bytes */
};

struct ta_res {
    long ret;
    int err, mflags, revents;
    size_t len;
    const unsigned char *data;
};

static inline int ta_exec(void *arg)
{
    struct ta_agent *a = arg;
    char in[16], out[16];
    snprintf(in, sizeof in, "%d", a->child_cmd);
    snprintf(out, sizeof out, "%d", a->child_rep);
    CHECK(fcntl(a->child_cmd, F_SETFD, 0) == 0 && fcntl(a->child_rep, F_SETFD, 0) == 0, "F_SETFD");
    char *argv[] = {(char *)tu_test_name, "--seq-agent", (char *)a->name, in, out, NULL};
    extern char **environ;
    execve("/proc/self/exe", argv, environ);
    CHECK(0, "execve /proc/self/exe");
    return 1;
}

static inline void ta_spawn(struct ta_agent *a, const char *name)
{
    int c[2], r[2];
    memset(a, 0, sizeof *a);
    a->name = name;
    CHECK(pipe2(c, O_CLOEXEC) == 0 && pipe2(r, O_CLOEXEC) == 0, "pipe2");
    a->cmd = c[1];
    a->rep = r[0];
    a->child_cmd = c[0];
    a->child_rep = r[1];
    a->data = malloc(TA_BUFCAP);
    CHECK(a->data != NULL, "malloc");
    a->pid = tu_spawn(name, ta_exec, a);
    close(c[0]);
    close(r[1]);
}

/* Read exactly n bytes of the agent's answer, giving up after the deadline. */
static inline void ta_read_rep(struct ta_agent *a, void *p, size_t n, double deadline, const char *what)
{
    size_t got = 0;
    while (got < n) {
        int left = (int)((deadline - tu_now()) * 1000);
        CHECK(left > 0, "agent %s: no answer to %s in time", a->name, what);
        struct pollfd pf = {.fd = a->rep, .events = POLLIN};
        int k = poll(&pf, 1, left < 200 ? left : 200);
        if (k == -1 && errno == EINTR)
            continue;
        CHECK(k >= 0, "poll on agent %s", a->name);
        if (k == 0) {
            tu_check_children();
            continue;
        }
        ssize_t r = read(a->rep, (char *)p + got, n - got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            tu_check_children(); /* reports the agent's failure, if that is why */
        CHECK(r > 0, "agent %s died during %s", a->name, what);
        got += (size_t)r;
    }
}

static const char *const ta_op_names[] TU_UNUSED = {
    "?", "connect", "send", "write", "sendmsg", "recv", "recvmsg", "read", "poll", "epoll_wait",
    "setsockopt", "shutdown", "close", "O_NONBLOCK", "fstat", "getsockopt", "burst send",
    "burst recv", "exit"};

/* Send a command and wait until the agent is about to make the call. */
static inline void ta_begin(struct ta_agent *a, int op, int flags, int arg, int arg2, const void *payload,
                            size_t len)
{
    CHECK(!a->busy, "agent %s is still busy", a->name);
    CHECK(len <= TA_BUFCAP, "payload too big");
    struct ta_cmd c = {op, flags, arg, arg2, (uint32_t)len};
    ta_write_full(a->cmd, &c, sizeof c, a->name);
    if (len)
        ta_write_full(a->cmd, payload, len, a->name);
    struct ta_rep r;
    ta_read_rep(a, &r, sizeof r, tu_now() + 10, ta_op_names[op]);
    CHECK(r.kind == 0, "agent %s: protocol", a->name);
    a->busy = op;
}

/* Has the running call of the agent finished (its answer is waiting)? */
static inline int ta_done_within(struct ta_agent *a, int ms)
{
    struct pollfd pf = {.fd = a->rep, .events = POLLIN};
    double deadline = tu_now() + ms / 1000.0;
    for (;;) {
        int left = (int)((deadline - tu_now()) * 1000);
        int k = poll(&pf, 1, left > 0 ? left : 0);
        if (k == -1 && errno == EINTR)
            continue;
        CHECK(k >= 0, "poll on agent %s", a->name);
        return k > 0;
    }
}

/* The scheduler state letter of a process ('S': sleeping, 'R': running...). */
static inline char tu_proc_state(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    CHECK(f != NULL, "open %s", path);
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    CHECK(p && p[1] == ' ', "parse %s", path);
    return p[2];
}

/* The agent's call is still blocked after ms milliseconds (asleep, no answer). */
static inline void ta_still_blocked(struct ta_agent *a, int ms, const char *what)
{
    CHECK(a->busy, "agent %s runs nothing", a->name);
    CHECK(!ta_done_within(a, ms), "%s: agent %s's %s returned within %d ms, it should still block",
          what, a->name, ta_op_names[a->busy], ms);
    /* asleep (not spinning): seen sleeping in at least one of a few looks */
    char s = 0;
    for (int i = 0; i < 5 && s != 'S'; i++) {
        if (i)
            tu_sleep_ms(10);
        s = tu_proc_state(a->pid);
    }
    CHECK(s == 'S', "%s: agent %s is in state %c, not asleep in %s", what, a->name, s, ta_op_names[a->busy]);
    CHECK(!ta_done_within(a, 0), "%s: agent %s's %s returned", what, a->name, ta_op_names[a->busy]);
}

/* Collect the answer of the running call (waiting at most ms). */
static inline struct ta_res ta_end_within(struct ta_agent *a, int ms)
{
    CHECK(a->busy, "agent %s runs nothing", a->name);
    struct ta_rep r;
    double deadline = tu_now() + ms / 1000.0;
    ta_read_rep(a, &r, sizeof r, deadline, ta_op_names[a->busy]);
    CHECK(r.kind == 1 && r.len <= TA_BUFCAP, "agent %s: protocol", a->name);
    if (r.len)
        ta_read_rep(a, a->data, r.len, deadline + 10, ta_op_names[a->busy]);
    a->busy = 0;
    struct ta_res res = {(long)r.ret, r.err, r.mflags, r.revents, r.len, a->data};
    return res;
}

static inline struct ta_res ta_end(struct ta_agent *a) { return ta_end_within(a, 15000); }

static inline struct ta_res ta_call(struct ta_agent *a, int op, int flags, int arg, int arg2,
                                    const void *payload, size_t len)
{
    ta_begin(a, op, flags, arg, arg2, payload, len);
    return ta_end(a);
}

/* Connect the agent's new socket to the group (SO_RCVBUF rcvbuf if > 0). */
static inline void ta_connect(struct ta_agent *a, const struct unix_mreq *m, int rcvbuf)
{
    struct ta_res r = ta_call(a, TA_CONNECT, 0, rcvbuf, 5000, &m->address, unix_mreq_addrlen(m));
    CHECK(r.ret == 0, "agent %s: connect failed with %s", a->name, tu_errname(r.err));
}

static inline void ta_send(struct ta_agent *a, const void *data, size_t len, int flags, const char *what)
{
    struct ta_res r = ta_call(a, TA_SEND, flags, 0, 0, data, len);
    CHECK(r.ret == (long)len, "%s: agent %s: send of %zu bytes gave %ld (%s)", what, a->name, len, r.ret,
          r.ret < 0 ? tu_errname(r.err) : "-");
}

static inline void ta_send_str(struct ta_agent *a, const char *s)
{
    ta_send(a, s, strlen(s), 0, s);
}

/* The agent's next message is exactly (data, len). */
static inline void ta_expect(struct ta_agent *a, const void *data, size_t len, const char *what)
{
    struct ta_res r = ta_call(a, TA_RECV, 0, (int)(len + 64), 0, NULL, 0);
    CHECK(r.ret >= 0, "%s: agent %s: recv failed with %s (expected %zu bytes)", what, a->name,
          tu_errname(r.err), len);
    CHECK((size_t)r.ret == len && memcmp(r.data, data, len) == 0,
          "%s: agent %s got %ld bytes \"%.*s\", expected %zu \"%.*s\"", what, a->name, r.ret,
          (int)(r.len < 40 ? r.len : 40), (const char *)r.data, len, (int)(len < 40 ? len : 40),
          (const char *)data);
}

static inline void ta_expect_str(struct ta_agent *a, const char *s) { ta_expect(a, s, strlen(s), s); }

/* Nothing waits for the agent: a non-blocking recv says EAGAIN. */
static inline void ta_expect_empty(struct ta_agent *a, const char *what)
{
    struct ta_res r = ta_call(a, TA_RECV, MSG_DONTWAIT, 256, 0, NULL, 0);
    CHECK(r.ret == -1 && r.err == EAGAIN, "%s: agent %s should have nothing queued, recv gave %ld (%s) \"%.*s\"",
          what, a->name, r.ret, r.ret < 0 ? tu_errname(r.err) : "data", (int)(r.len < 40 ? r.len : 40),
          (const char *)r.data);
}

static inline long ta_ino(struct ta_agent *a)
{
    struct ta_res r = ta_call(a, TA_INO, 0, 0, 0, NULL, 0);
    return r.ret;
}

static inline void ta_exit(struct ta_agent *a)
{
    ta_call(a, TA_EXIT, 0, 0, 0, NULL, 0);
    tu_wait_child(a->pid);
    close(a->cmd);
    close(a->rep);
}

/* Server side. */

static inline int tu_seqpacket(void)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket(AF_UNIX, SOCK_SEQPACKET)");
    return fd;
}

/* The group's listening socket L: CREATE_GROUP, then listen(). */
static inline int tu_seq_create_group(const struct unix_mreq *m)
{
    int l = tu_seqpacket();
    CHECK(tu_setopt(l, UNIX_CREATE_GROUP, m, 0) == 0, "CREATE_GROUP on a SOCK_SEQPACKET socket");
    CHECK(listen(l, 32) == 0, "listen");
    return l;
}

static inline pid_t tu_peer_pid(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0, "SO_PEERCRED");
    return cr.pid;
}

/* accept() the next connection, which must be the agent's. */
static inline int tu_seq_accept(int l, const struct ta_agent *a)
{
    int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(fd >= 0, "accept (for agent %s)", a->name);
    CHECK(tu_peer_pid(fd) == a->pid, "accepted the connection of pid %d, expected agent %s (pid %d)",
          (int)tu_peer_pid(fd), a->name, (int)a->pid);
    tu_set_rcvtimeo(fd, 10000);
    return fd;
}

/* ACCEPT_GROUP on accepted socket fd: with an empty address, or the group's (m). */
static inline int tu_seq_accept_group(int fd, const struct unix_mreq *m, unsigned flags)
{
    struct unix_mreq req;
    memset(&req, 0, sizeof req);
    if (m)
        req = *m;
    req.flags = flags;
    return setsockopt(fd, SOL_UNIX, UNIX_ACCEPT_GROUP, &req, sizeof req);
}

/*
 * Soft checks: a failed one is reported and counted, the test goes on (to
 * report independent checks, or every mismatch with the kernel), and fails
 * at the end if soft_failures is nonzero.
 */
static int soft_failures __attribute__((unused));
#define SOFT_CHECK(cond, ...)                                                    \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fflush(stdout);                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n    check: %s\n", #cond);                        \
            soft_failures++;                                                     \
        }                                                                        \
    } while (0)

#endif /* TESTUTIL_SEQ_H */
