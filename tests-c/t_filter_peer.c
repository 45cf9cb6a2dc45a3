/*
 * t_filter_peer: peer filters in SOCK_SEQPACKET groups (SPEC 6). The server
 * (this process) owns the listening socket L and the accepted sockets Ai;
 * the clients Ci are filter agents (this binary re-executed, one socket
 * each). Every program here is a table "first byte c -> return k, else 0"
 * (a zero-length message is refused: its first byte cannot be loaded), and
 * what each client must receive is computed from the tables in force:
 * both its own program and its peer's must pass a message, and the smaller
 * return value (truncation) wins.
 *
 *   Peer filters: P1 attached to A1 before ACCEPT_GROUP, P2 to A2 after;
 *   C1 and C2 receive only what they pass (C3, unfiltered, everything;
 *   UNIX_GROUP_STATS's `filtered` counts the refusals); C1 adds its own
 *   program (shorter truncations win, either refusal drops), then removes it:
 *   Ci's SO_GET_FILTER never shows the peer's program, Ci's
 *   SO_DETACH_FILTER removes only its own (a second one is ENOENT, as for a
 *   socket without a filter of its own) and the peer filter stays.
 *   What C1 sends is not filtered by P1 (the other members get it); what
 *   the server sends on A1 reaches C1 whole. The server replaces P2, locks
 *   A2 (its attach and detach: EPERM, P2 stays; C2's own filter still works)
 *   and detaches P1 (C1 gets everything again).
 *   SEND_TO_PEER: C5's peer A5 has program P5: C5 receives only what P5
 *   passes, the other members get everything C5 sends, and A5's copy of
 *   what C5 sends passes A5's own program, as the kernel does for any
 *   datagram reaching A5 (checked on an ordinary SEQPACKET pair first).
 *   A client's own program attached before the server's ACCEPT_GROUP (C6)
 *   applies to its group messages once it is a member, as a program
 *   attached before JOIN_GROUP does for a datagram member.
 */
#include "testutil.h"

#include <dirent.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <sys/syscall.h>
/* ------------------------------------------------------------------------ */
/* Filter agents: the test binary re-executed ("--filter-agent"), owning one */
/* socket and making one plain call per command (as testutil's SEQPACKET     */
/* agents, with the filter options that need a pointer in the agent's own    */
/* memory). Each command answers "started" just before the call and "done"   */
/* with its result.                                                          */

enum fa_op {
    FA_SOCKET = 1, /* close the old socket; socket(AF_UNIX, arg); SO_RCVBUF = arg2 if > 0; SO_RCVTIMEO 5 s */
    FA_BIND,       /* bind(fd, payload) */
    FA_CONNECT,    /* connect(fd, payload) */
    FA_SETOPT,     /* setsockopt(fd, level = arg, name = arg2, payload, len) */
    FA_ATTACH,     /* SO_ATTACH_FILTER with the instructions in payload (len / 8 of them) */
    FA_ATTACH_BPF, /* load a trivial eBPF socket filter, SO_ATTACH_BPF it (ret -2: the load failed) */
    FA_GETFILTER,  /* SO_GET_FILTER: ret = instruction count (asked with length 0), data = the program */
    FA_SEND,       /* send(fd, payload, len, flags) */
    FA_SENDTO,     /* sendto(fd, payload + arg, len - arg, flags, payload as address of arg bytes) */
    FA_RECV,       /* recvmsg(fd, arg bytes, flags): ret, mflags, data */
    FA_POLL,       /* poll(fd, events = flags, timeout = arg ms): ret, revents, aux = elapsed ms */
    FA_DRAIN,      /* recv(MSG_DONTWAIT) until EAGAIN: ret = messages, aux = bytes */
    FA_STATS,      /* getsockopt(SOL_UNIX, UNIX_GROUP_STATS) for the unix_mreq in payload: data = stats */
    FA_EXIT,
};

static const char *const fa_op_names[] TU_UNUSED = {
    "?", "socket", "bind", "connect", "setsockopt", "SO_ATTACH_FILTER", "SO_ATTACH_BPF", "SO_GET_FILTER",
    "send", "sendto", "recvmsg", "poll", "drain", "UNIX_GROUP_STATS", "exit"};

/* A socket filter program that the kernel accepts: "return 0xffff" in eBPF. */
static int fa_load_ebpf(void)
{
    struct bpf_insn insns[2];
    memset(insns, 0, sizeof insns);
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
    insns[0].dst_reg = BPF_REG_0;
    insns[0].imm = 0xffff;
    insns[1].code = BPF_JMP | BPF_EXIT;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = 2;
    attr.license = (uint64_t)(uintptr_t) "GPL";
    return (int)syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
}

static int fa_attach_raw(int fd, const void *insns, size_t n)
{
    struct sock_fprog f = {.len = (unsigned short)n, .filter = (struct sock_filter *)insns};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &f, sizeof f);
}

static long fa_ctxsw_of(pid_t pid) TU_UNUSED;

static inline int fa_agent_main(int argc, char **argv)
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
    int fd = -1;
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
        r.kind = 0;
        ta_write_full(cout, &r, sizeof r, "agent: started");
        r.kind = 1;
        long ret = 0;
        size_t out = 0;
        errno = 0;
        switch (c.op) {
        case FA_SOCKET:
            if (fd >= 0)
                close(fd);
            fd = socket(AF_UNIX, c.arg | SOCK_CLOEXEC, 0);
            CHECK(fd >= 0, "agent: socket");
            if (c.arg2 > 0)
                tu_setint(fd, SOL_SOCKET, SO_RCVBUF, c.arg2);
            tu_set_rcvtimeo(fd, 5000);
            ret = fd;
            break;
        case FA_BIND: ret = bind(fd, (struct sockaddr *)payload, c.len); break;
        case FA_CONNECT: ret = connect(fd, (struct sockaddr *)payload, c.len); break;
        case FA_SETOPT: ret = setsockopt(fd, c.arg, c.arg2, payload, c.len); break;
        case FA_ATTACH: ret = fa_attach_raw(fd, payload, c.len / 8); break;
        case FA_ATTACH_BPF: {
            int p = fa_load_ebpf();
            if (p < 0) {
                ret = -2;
                break;
            }
            ret = setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &p, sizeof p);
            int e = errno;
            close(p);
            errno = e;
            break;
        }
        case FA_GETFILTER: {
            socklen_t n = 0;
            ret = getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &n);
            if (ret == 0 && n > 0) {
                socklen_t m = n;
                CHECK((size_t)n * 8 <= TA_BUFCAP, "agent: filter of %u instructions", n);
                CHECK(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, buf, &m) == 0 && m == n,
                      "agent: SO_GET_FILTER with room for %u instructions", n);
                out = (size_t)n * 8;
            }
            if (ret == 0)
                ret = n;
            break;
        }
        case FA_SEND: ret = send(fd, payload, c.len, c.flags); break;
        case FA_SENDTO:
            CHECK(c.arg >= 0 && (uint32_t)c.arg <= c.len, "agent: sendto address");
            ret = sendto(fd, payload + c.arg, c.len - (uint32_t)c.arg, c.flags, (struct sockaddr *)payload,
                         (socklen_t)c.arg);
            break;
        case FA_RECV: {
            CHECK(c.arg >= 0 && c.arg <= TA_BUFCAP, "agent: recv size");
            struct iovec iov = {buf, tu_opaque_size((size_t)c.arg)};
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            ret = recvmsg(fd, &mh, c.flags);
            r.mflags = mh.msg_flags;
            if (ret > 0)
                out = (size_t)ret < (size_t)c.arg ? (size_t)ret : (size_t)c.arg;
            break;
        }
        case FA_POLL: {
            struct pollfd p = {.fd = fd, .events = (short)c.flags};
            double t0 = tu_now();
            ret = poll(&p, 1, c.arg);
            int e = errno;
            r.pad = (uint32_t)((tu_now() - t0) * 1000);
            r.revents = p.revents;
            errno = e;
            break;
        }
        case FA_DRAIN: {
            uint64_t bytes = 0;
            for (;;) {
                ssize_t k = recv(fd, buf, TA_BUFCAP, MSG_DONTWAIT);
                if (k < 0)
                    break;
                ret++;
                bytes += (uint64_t)k;
            }
            CHECK(errno == EAGAIN, "agent: drain ended with %s", tu_errname(errno));
            errno = 0;
            r.pad = (uint32_t)bytes;
            break;
        }
        case FA_STATS: {
            CHECK(c.len == sizeof(struct unix_mreq), "agent: stats request");
            memcpy(buf, payload, c.len);
            socklen_t len = 128;
            ret = getsockopt(fd, SOL_UNIX, UNIX_GROUP_STATS, buf, &len);
            if (ret == 0) {
                CHECK(len == sizeof(struct unix_group_stats), "agent: stats length %u", len);
                out = len;
            }
            break;
        }
        case FA_EXIT: break;
        default: CHECK(0, "agent: unknown op %d", c.op);
        }
        r.err = ret < 0 ? errno : 0;
        r.ret = ret;
        r.len = (uint32_t)out;
        ta_write_full(cout, &r, sizeof r, "agent: done");
        if (out)
            ta_write_full(cout, buf, out, "agent: data");
        if (c.op == FA_EXIT)
            return 0;
    }
}

#define FA_AGENT_DISPATCH(argc, argv)                                            \
    do {                                                                         \
        if ((argc) > 1 && strcmp((argv)[1], "--filter-agent") == 0)              \
            return fa_agent_main((argc), (argv));                                \
    } while (0)

static inline int fa_exec(void *arg)
{
    struct ta_agent *a = arg;
    char in[16], out[16];
    snprintf(in, sizeof in, "%d", a->child_cmd);
    snprintf(out, sizeof out, "%d", a->child_rep);
    CHECK(fcntl(a->child_cmd, F_SETFD, 0) == 0 && fcntl(a->child_rep, F_SETFD, 0) == 0, "F_SETFD");
    char *argv[] = {(char *)tu_test_name, "--filter-agent", (char *)a->name, in, out, NULL};
    extern char **environ;
    execve("/proc/self/exe", argv, environ);
    CHECK(0, "execve /proc/self/exe");
    return 1;
}

static inline void fa_spawn(struct ta_agent *a, const char *name)
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
    a->pid = tu_spawn(name, fa_exec, a);
    close(c[0]);
    close(r[1]);
}

struct fa_res {
    long ret;
    int err, mflags, revents;
    unsigned aux;
    size_t len;
    const unsigned char *data;
};

static inline void fa_begin(struct ta_agent *a, int op, int flags, int arg, int arg2, const void *payload,
                            size_t len)
{
    CHECK(!a->busy, "agent %s is still busy", a->name);
    CHECK(len <= TA_BUFCAP, "payload too big");
    struct ta_cmd c = {op, flags, arg, arg2, (uint32_t)len};
    ta_write_full(a->cmd, &c, sizeof c, a->name);
    if (len)
        ta_write_full(a->cmd, payload, len, a->name);
    struct ta_rep r;
    ta_read_rep(a, &r, sizeof r, tu_now() + 10, fa_op_names[op]);
    CHECK(r.kind == 0, "agent %s: protocol", a->name);
    a->busy = op;
}

static inline struct fa_res fa_end_within(struct ta_agent *a, int ms)
{
    CHECK(a->busy, "agent %s runs nothing", a->name);
    struct ta_rep r;
    double deadline = tu_now() + ms / 1000.0;
    ta_read_rep(a, &r, sizeof r, deadline, fa_op_names[a->busy]);
    CHECK(r.kind == 1 && r.len <= TA_BUFCAP, "agent %s: protocol", a->name);
    if (r.len)
        ta_read_rep(a, a->data, r.len, deadline + 10, fa_op_names[a->busy]);
    a->busy = 0;
    struct fa_res res = {(long)r.ret, r.err, r.mflags, r.revents, r.pad, r.len, a->data};
    return res;
}

static inline struct fa_res fa_end(struct ta_agent *a) { return fa_end_within(a, 15000); }

static inline struct fa_res fa_call(struct ta_agent *a, int op, int flags, int arg, int arg2, const void *payload,
                                    size_t len)
{
    fa_begin(a, op, flags, arg, arg2, payload, len);
    return fa_end(a);
}

/* The agent's running call has not returned after ms and the agent sleeps. */
static inline void fa_still_blocked(struct ta_agent *a, int ms, const char *what)
{
    CHECK(a->busy, "agent %s runs nothing", a->name);
    CHECK(!ta_done_within(a, ms), "%s: agent %s's %s returned within %d ms, it should still block", what,
          a->name, fa_op_names[a->busy], ms);
    char s = tu_proc_state(a->pid);
    CHECK(s == 'S', "%s: agent %s is in state %c, not asleep in %s", what, a->name, s, fa_op_names[a->busy]);
}

/* Context switches of every thread of process pid (a wake-up costs at least one). */
TU_UNUSED static long fa_ctxsw_of(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[400], line[256];
        snprintf(path, sizeof path, "%s/%s/status", dir, e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* the thread just ended */
        while (fgets(line, sizeof line, f)) {
            long v;
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
                total += v;
        }
        fclose(f);
    }
    closedir(d);
    return total;
}

static inline void fa_socket(struct ta_agent *a, int type, int rcvbuf)
{
    struct fa_res r = fa_call(a, FA_SOCKET, 0, type, rcvbuf, NULL, 0);
    CHECK(r.ret >= 0, "agent %s: socket", a->name);
}

static inline void fa_join(struct ta_agent *a, const struct unix_mreq *m, unsigned flags)
{
    struct unix_mreq copy = *m;
    copy.flags = flags;
    struct fa_res r = fa_call(a, FA_SETOPT, 0, SOL_UNIX, UNIX_JOIN_GROUP, &copy, sizeof copy);
    CHECK(r.ret == 0, "agent %s: JOIN_GROUP failed with %s", a->name, tu_errname(r.err));
}

static inline struct fa_res fa_attach(struct ta_agent *a, const struct sock_filter *p, size_t n)
{
    return fa_call(a, FA_ATTACH, 0, 0, 0, p, n * sizeof *p);
}

static inline void fa_attach_ok(struct ta_agent *a, const struct sock_filter *p, size_t n, const char *what)
{
    struct fa_res r = fa_attach(a, p, n);
    CHECK(r.ret == 0, "%s: agent %s: SO_ATTACH_FILTER failed with %s", what, a->name, tu_errname(r.err));
}

static inline struct fa_res fa_setint(struct ta_agent *a, int level, int name, int v)
{
    return fa_call(a, FA_SETOPT, 0, level, name, &v, sizeof v);
}

/* The agent's next message is exactly (data, len): received with MSG_TRUNC
 * into a buffer bigger than that, no MSG_TRUNC result flag. */
static inline void fa_expect(struct ta_agent *a, const void *data, size_t len, const char *what)
{
    struct fa_res r = fa_call(a, FA_RECV, MSG_TRUNC, (int)(len + 256), 0, NULL, 0);
    CHECK(r.ret >= 0, "%s: agent %s: recv failed with %s (expected %zu bytes)", what, a->name,
          tu_errname(r.err), len);
    CHECK((size_t)r.ret == len && memcmp(r.data, data, len) == 0 && !(r.mflags & MSG_TRUNC),
          "%s: agent %s got %ld bytes \"%.*s\" (msg_flags 0x%x), expected %zu \"%.*s\"", what, a->name, r.ret,
          (int)(r.len < 40 ? r.len : 40), (const char *)r.data, r.mflags, len, (int)(len < 40 ? len : 40),
          (const char *)data);
}

static inline void fa_expect_str(struct ta_agent *a, const char *s, const char *what)
{
    fa_expect(a, s, strlen(s), what);
}

static inline void fa_expect_empty(struct ta_agent *a, const char *what)
{
    struct fa_res r = fa_call(a, FA_RECV, MSG_DONTWAIT, 256, 0, NULL, 0);
    CHECK(r.ret == -1 && r.err == EAGAIN, "%s: agent %s should have nothing queued, recv gave %ld (%s) \"%.*s\"",
          what, a->name, r.ret, r.ret < 0 ? tu_errname(r.err) : "data", (int)(r.len < 40 ? r.len : 40),
          (const char *)r.data);
}

static inline struct unix_group_stats fa_stats(struct ta_agent *a, const struct unix_mreq *m)
{
    struct fa_res r = fa_call(a, FA_STATS, 0, 0, 0, m, sizeof *m);
    CHECK(r.ret == 0, "agent %s: UNIX_GROUP_STATS failed with %s", a->name, tu_errname(r.err));
    struct unix_group_stats st;
    memcpy(&st, r.data, sizeof st);
    return st;
}

/* The agent's SO_GET_FILTER is exactly (p, n) (n == 0: no filter). */
static inline void fa_expect_filter(struct ta_agent *a, const struct sock_filter *p, size_t n, const char *what)
{
    struct fa_res r = fa_call(a, FA_GETFILTER, 0, 0, 0, NULL, 0);
    CHECK(r.ret == (long)n, "%s: agent %s: SO_GET_FILTER gave %ld (%s), expected %zu instructions", what,
          a->name, r.ret, r.ret < 0 ? tu_errname(r.err) : "-", n);
    CHECK(n == 0 || (r.len == n * sizeof *p && memcmp(r.data, p, r.len) == 0),
          "%s: agent %s: SO_GET_FILTER returned another program", what, a->name);
}

static inline void fa_exit(struct ta_agent *a)
{
    fa_call(a, FA_EXIT, 0, 0, 0, NULL, 0);
    tu_wait_child(a->pid);
    close(a->cmd);
    close(a->rep);
}

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

/* ------------------------------------------------------------------------ */
/* Table programs: "first byte c -> ret k", anything else (and an empty      */
/* message) -> 0                                                             */

struct entry {
    unsigned char c;
    unsigned k;
};

struct table {
    const char *name;
    const struct entry *e;
    size_t n;
    struct sock_filter prog[64];
    size_t len;
};

#define TABLE(nm, ...)                                                           \
    static const struct entry nm##_e[] = {__VA_ARGS__};                          \
    static struct table nm = {#nm, nm##_e, NELEM(nm##_e), {{0, 0, 0, 0}}, 0}

TABLE(P1, {'a', 6}, {'b', 6}, {'e', 6}, {'f', 8}, {'t', 100});
TABLE(O1, {'a', 3}, {'c', 3}, {'e', 10}, {'f', 2}, {'t', 100});
TABLE(P2, {'b', 100}, {'d', 3}, {'g', 100});
TABLE(O2, {'b', 100}, {'d', 100});
TABLE(P2R, {'c', 100});
TABLE(P5, {'k', 100});
TABLE(O6, {'a', 100}, {'g', 2});

static void build(struct table *t)
{
    size_t n = 0;
    t->prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0);
    for (size_t i = 0; i < t->n; i++) {
        t->prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, t->e[i].c, 0, 1);
        t->prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, t->e[i].k);
    }
    t->prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    t->len = n;
}

/* What the program returns for message s (0: refused). */
static unsigned model(const struct table *t, const char *s)
{
    if (!t)
        return 0xffffffffu;
    if (!s[0])
        return 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].c == (unsigned char)s[0])
            return t->e[i].k;
    return 0;
}

/* ------------------------------------------------------------------------ */

#define NC 6
static struct unix_mreq group;
static struct ta_agent C[NC + 1];
static int L, A[NC + 1];
static const struct table *own[NC + 1], *peer[NC + 1]; /* what is in force, for the model */
static unsigned long long filtered[NC + 1];           /* the model's count of refusals */
static int member[NC + 1];                            /* Ci is a member */

static const char *const round_msgs[] = {"apple-pie", "banana-split", "cherry-tart", "damson", "eclair-cake",
                                         "fudge-brownie", "grape",     "trifle",      "kiwi",   ""};

static void attach_ok(int fd, const struct table *t, const char *what)
{
    CHECK(fa_attach_raw(fd, t->prog, t->len) == 0, "%s: SO_ATTACH_FILTER %s", what, t->name);
}

static void server_expect_filter(int fd, const struct table *t, const char *what)
{
    socklen_t n = 0;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) == 0, "%s: SO_GET_FILTER", what);
    CHECK(n == (t ? t->len : 0), "%s: SO_GET_FILTER says %u instructions, expected %zu", what, n,
          t ? t->len : 0);
    if (t) {
        struct sock_filter got[64];
        socklen_t m = n;
        CHECK(getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, got, &m) == 0 && memcmp(got, t->prog, n * 8) == 0,
              "%s: SO_GET_FILTER gave another program", what);
    }
}

static void client_send(int i, const char *s)
{
    struct fa_res r = fa_call(&C[i], FA_SEND, 0, 0, 0, s, strlen(s));
    CHECK(r.ret == (long)strlen(s), "C%d: send of \"%s\" gave %ld (%s)", i, s, r.ret,
          r.ret < 0 ? tu_errname(r.err) : "-");
}

/* Client i got exactly what the programs in force pass of msgs (in order). */
static void expect_passed(int i, const char *const *msgs, size_t n, const char *what)
{
    char w[160];
    for (size_t j = 0; j < n; j++) {
        unsigned a = model(own[i], msgs[j]), b = model(peer[i], msgs[j]);
        unsigned k = a < b ? a : b;
        if (k == 0) {
            filtered[i]++;
            continue;
        }
        size_t len = strlen(msgs[j]);
        snprintf(w, sizeof w, "%s: C%d (own %s, peer %s), message \"%s\"", what, i, own[i] ? own[i]->name : "-",
                 peer[i] ? peer[i]->name : "-", msgs[j]);
        fa_expect(&C[i], msgs[j], k < len ? k : len, w);
    }
    snprintf(w, sizeof w, "%s: C%d (own %s, peer %s)", what, i, own[i] ? own[i]->name : "-",
             peer[i] ? peer[i]->name : "-");
    fa_expect_empty(&C[i], w);
    struct unix_group_stats st = fa_stats(&C[i], &group);
    CHECK(st.filtered == filtered[i] && st.queued_messages == 0,
          "%s: UNIX_GROUP_STATS of C%d: filtered %llu (expected %llu), queued %llu", w, i, st.filtered,
          filtered[i], st.queued_messages);
}

/* C4 sends the round's messages; every member client checks what it got. */
static void do_round(const char *what)
{
    for (size_t j = 0; j < NELEM(round_msgs); j++)
        client_send(4, round_msgs[j]);
    for (int i = 1; i <= NC; i++)
        if (i != 4 && member[i])
            expect_passed(i, round_msgs, NELEM(round_msgs), what);
    for (int i = 1; i <= NC; i++)
        if (A[i] >= 0)
            tu_expect_empty(A[i], "server sockets get no group messages without SEND_TO_PEER");
}

static void client_detach(int i, int expect_err, const char *what)
{
    struct fa_res r = fa_call(&C[i], FA_SETOPT, 0, SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int));
    if (expect_err)
        CHECK(r.ret == -1 && r.err == expect_err, "%s: C%d's SO_DETACH_FILTER gave %ld (%s), expected %s", what,
              i, r.ret, tu_errname(r.err), tu_errname(expect_err));
    else
        CHECK(r.ret == 0, "%s: C%d's SO_DETACH_FILTER failed with %s", what, i, tu_errname(r.err));
}

static void kernel_reference(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    attach_ok(sv[1], &P5, "kernel");
    CHECK(send(sv[0], "lemon", 5, 0) == 5 && send(sv[0], "kiwi", 4, 0) == 4, "kernel: send");
    char buf[16];
    ssize_t r = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
    CHECK(r == 4 && memcmp(buf, "kiwi", 4) == 0, "kernel: a filtered SOCK_SEQPACKET socket got %zd bytes", r);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) == -1 && errno == EAGAIN, "kernel: more");
    /* The program on one end does not filter what that end sends. */
    CHECK(send(sv[1], "lemon", 5, 0) == 5 && recv(sv[0], buf, sizeof buf, MSG_DONTWAIT) == 5, "kernel: reverse");
    close(sv[0]);
    close(sv[1]);
    tu_ok("kernel, ordinary SOCK_SEQPACKET pair: a program on one end filters what reaches it, not what it sends");
}

int main(int argc, char **argv)
{
    FA_AGENT_DISPATCH(argc, argv);
    tu_start("t_filter_peer");
    static const char *names[NC + 1] = {"", "C1", "C2", "C3", "C4", "C5", "C6"};
    for (int i = 1; i <= NC; i++)
        fa_spawn(&C[i], names[i]);
    struct table *all[] = {&P1, &O1, &P2, &O2, &P2R, &P5, &O6};
    for (size_t i = 0; i < NELEM(all); i++)
        build(all[i]);
    kernel_reference();

    tu_abstract_group(&group, "filter-peer");
    L = tu_seq_create_group(&group);
    for (int i = 1; i <= NC; i++) {
        A[i] = -1;
        fa_socket(&C[i], SOCK_SEQPACKET, 0);
        struct fa_res r = fa_call(&C[i], FA_CONNECT, 0, 0, 0, &group.address, unix_mreq_addrlen(&group));
        CHECK(r.ret == 0, "C%d: connect failed with %s", i, tu_errname(r.err));
        A[i] = tu_seq_accept(L, &C[i]);
    }

    /* P1 before ACCEPT_GROUP, P2 and P5 after. */
    attach_ok(A[1], &P1, "A1 before ACCEPT_GROUP");
    peer[1] = &P1;
    CHECK(tu_seq_accept_group(A[1], NULL, 0) == 0, "ACCEPT_GROUP(A1)");
    CHECK(tu_seq_accept_group(A[2], &group, 0) == 0, "ACCEPT_GROUP(A2)");
    attach_ok(A[2], &P2, "A2 after ACCEPT_GROUP");
    peer[2] = &P2;
    CHECK(tu_seq_accept_group(A[3], NULL, 0) == 0, "ACCEPT_GROUP(A3)");
    CHECK(tu_seq_accept_group(A[4], NULL, 0) == 0, "ACCEPT_GROUP(A4)");
    CHECK(tu_seq_accept_group(A[5], NULL, UNIX_MREQ_SEND_TO_PEER) == 0, "ACCEPT_GROUP(A5, SEND_TO_PEER)");
    attach_ok(A[5], &P5, "A5 after ACCEPT_GROUP");
    peer[5] = &P5;
    for (int i = 1; i <= 5; i++)
        member[i] = 1; /* C6 becomes a member at the end */

    do_round("peer filters only");
    tu_ok("C1 (P1 attached to A1 before ACCEPT_GROUP), C2 (P2 attached to A2 after) and C5 (P5, SEND_TO_PEER) "
          "got only what their peer's program passes, truncated by it; C3 everything; stats count the refusals");

    fa_expect_filter(&C[1], NULL, 0, "C1 (peer filter only)");
    fa_expect_filter(&C[2], NULL, 0, "C2 (peer filter only)");
    fa_expect_filter(&C[5], NULL, 0, "C5 (peer filter only)");
    server_expect_filter(A[1], &P1, "A1");
    server_expect_filter(A[2], &P2, "A2");
    client_detach(2, ENOENT, "C2 without a program of its own");
    do_round("after C2's SO_DETACH_FILTER");
    tu_ok("the clients' SO_GET_FILTER does not show their peer's program (the server's does); C2's "
          "SO_DETACH_FILTER is ENOENT and P2 still applies");

    fa_attach_ok(&C[1], O1.prog, O1.len, "C1's own program");
    own[1] = &O1;
    fa_attach_ok(&C[2], O2.prog, O2.len, "C2's own program");
    own[2] = &O2;
    fa_expect_filter(&C[1], O1.prog, O1.len, "C1 with its own program");
    fa_expect_filter(&C[2], O2.prog, O2.len, "C2 with its own program");
    do_round("own and peer programs");
    tu_ok("with programs of their own too, C1 and C2 get what both pass, cut to the smaller return value; "
          "SO_GET_FILTER shows only their own");

    client_detach(1, 0, "C1");
    own[1] = NULL;
    client_detach(1, ENOENT, "C1 after detaching its own");
    client_detach(2, 0, "C2");
    own[2] = NULL;
    fa_expect_filter(&C[1], NULL, 0, "C1 after SO_DETACH_FILTER");
    do_round("after the clients detached their own");
    tu_ok("the clients' SO_DETACH_FILTER removed only their own programs (a second one: ENOENT); "
          "the peer filters stay");

    /* What C1 sends is not filtered by P1. */
    const char *const c1msgs[] = {"zebra", "cherry-c1", "banana-c1", ""};
    for (size_t j = 0; j < NELEM(c1msgs); j++)
        client_send(1, c1msgs[j]);
    for (int i = 2; i <= 5; i++)
        expect_passed(i, c1msgs, NELEM(c1msgs), "C1's messages");
    fa_expect_empty(&C[1], "C1 (no LOOPBACK)");
    tu_expect_empty(A[1], "A1 (no SEND_TO_PEER)");
    tu_ok("what C1 sends is not filtered by P1: C3 and C4 got all 4 messages (C2 and C5 what their peers pass)");

    /* The server's own messages on A1 are ordinary: no peer filtering. */
    CHECK(send(A[1], "zulu-direct", 11, 0) == 11, "send on A1");
    fa_expect_str(&C[1], "zulu-direct", "C1: the server's own message on A1");
    fa_expect_empty(&C[1], "C1");
    tu_ok("what the server sends on A1 reaches C1 whole (P1 refuses 'z' group messages)");

    attach_ok(A[2], &P2R, "A2 replaces P2");
    peer[2] = &P2R;
    server_expect_filter(A[2], &P2R, "A2 after replacing");
    do_round("after A2 replaced its program");
    tu_setint(A[2], SOL_SOCKET, SO_LOCK_FILTER, 1);
    CHECK_ERRNO(fa_attach_raw(A[2], P2.prog, P2.len), EPERM);
    CHECK_ERRNO(setsockopt(A[2], SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int)), EPERM);
    fa_attach_ok(&C[2], O2.prog, O2.len, "C2's own program, A2 locked");
    own[2] = &O2;
    do_round("A2 locked, C2 with its own program");
    client_detach(2, 0, "C2, A2 locked");
    own[2] = NULL;
    do_round("A2 locked");
    tu_ok("the server replaced P2 (C2 follows the new program); A2 locked: its attach and detach fail with "
          "EPERM and the program stays; C2 still attaches and detaches its own");

    CHECK(setsockopt(A[1], SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int)) == 0, "A1: SO_DETACH_FILTER");
    peer[1] = NULL;
    server_expect_filter(A[1], NULL, "A1 after SO_DETACH_FILTER");
    do_round("after A1 detached P1");
    tu_ok("the server's SO_DETACH_FILTER on A1 removed the peer filter: C1 gets everything");

    /* SEND_TO_PEER: A5's copy of C5's messages passes A5's own program. */
    server_expect_filter(A[5], &P5, "A5");
    const char *const c5msgs[] = {"kiwi-from-c5", "lemon-from-c5"};
    for (size_t j = 0; j < NELEM(c5msgs); j++)
        client_send(5, c5msgs[j]);
    for (int i = 1; i <= 4; i++)
        expect_passed(i, c5msgs, NELEM(c5msgs), "C5's messages");
    fa_expect_empty(&C[5], "C5 (no LOOPBACK)");
    tu_expect_str(A[5], "kiwi-from-c5", "A5: SEND_TO_PEER copy that P5 passes");
    char got[64];
    errno = 0;
    ssize_t n = recv(A[5], got, sizeof got, MSG_DONTWAIT);
    CHECK(n == -1 && errno == EAGAIN,
          "A5 (program P5, first byte 'k' only) got C5's SEND_TO_PEER copy \"%.*s\" (%zd bytes), which P5 "
          "refuses: the kernel would have dropped it (see the kernel reference above)",
          (int)(n > 0 ? n : 0), got, n);
    tu_ok("C5's messages reach every other member unfiltered by P5; A5's SEND_TO_PEER copies pass A5's own "
          "program (only \"kiwi-from-c5\"), as any datagram reaching A5 does in the kernel");

    /* A client's own program attached before it became a member. */
    fa_attach_ok(&C[6], O6.prog, O6.len, "C6 before ACCEPT_GROUP");
    CHECK(tu_seq_accept_group(A[6], NULL, 0) == 0, "ACCEPT_GROUP(A6)");
    fa_expect_filter(&C[6], O6.prog, O6.len, "C6 (its own program, in the kernel)");
    own[6] = &O6;
    member[6] = 1;
    do_round("C6's own program attached before ACCEPT_GROUP");
    tu_ok("C6's own program, attached before the server's ACCEPT_GROUP, filters its group messages");

    for (int i = 1; i <= NC; i++)
        fa_exit(&C[i]);
    tu_wait_all();
    for (int i = 1; i <= NC; i++)
        close(A[i]);
    close(L);
    return tu_done();
}
