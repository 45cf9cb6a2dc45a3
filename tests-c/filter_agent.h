/*
 * filter_agent.h - filter agents shared by the t_filter_* tests: the test
 * binary re-executed ("--filter-agent"), owning one socket and making one
 * plain call per command. Include after testutil.h.
 */
#ifndef FILTER_AGENT_H
#define FILTER_AGENT_H
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
#endif /* FILTER_AGENT_H */
