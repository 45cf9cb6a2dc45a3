/*
 * t_filter_basic: socket filters on SOCK_DGRAM group members (SPEC 6).
 * Members are filter agents (this binary re-executed, one socket each, one
 * plain call per command); the main process creates the groups, sends most
 * messages and asks the kernel, on ordinary sockets, what it answers to the
 * same calls.
 *
 *   Group G1, members in five processes:
 *     M1 "first byte 'A'" (attached after JOIN; also a member of a second
 *        group, where it filters too), M2 "ret 4" (attached before JOIN),
 *     M3 no filter, M4 "ret 0", M5 "only zero-length messages".
 *   Delivery: a sender in a sixth process sees success for every message;
 *   each member gets exactly what its program passes, truncated to
 *   min(k, len) bytes (recv MSG_TRUNC reports the truncated length, the
 *   MSG_TRUNC result flag only when the buffer was smaller, as the kernel
 *   on an ordinary socket); zero-length messages delivered for k > 0 and
 *   dropped for k == 0 (kernel answers compared); ordinary datagrams to a
 *   member stay kernel-filtered; UNIX_GROUP_STATS's queued and filtered
 *   counters.
 *   Options: SO_GET_FILTER shows the program; attaching replaces;
 *   SO_DETACH_FILTER removes (a second one ENOENT, as the kernel);
 *   SO_LOCK_FILTER makes attach (valid, invalid or unrunnable programs) and
 *   detach fail with the kernel's EPERM and the locked program keeps
 *   filtering; SO_ATTACH_BPF and programs with SKF_AD_CPU/SKF_AD_RANDOM
 *   (which the kernel accepts on an ordinary socket) EOPNOTSUPP; programs the
 *   kernel refuses get the kernel's errno; a refused attach leaves the old
 *   program in force.
 *   Wake-ups: M5 asleep in poll and M4 in a blocking recv stay asleep (their
 *   context switches do not move) while 100 messages their filters refuse
 *   reach the others; the poll times out, the recv fails with EAGAIN after
 *   SO_RCVTIMEO; the next message M5's filter passes wakes it.
 *   Queue room: group G2's only member Q has the smallest SO_RCVBUF and a
 *   filter refusing everything and never reads: 300 blocking (SO_SNDTIMEO)
 *   and 300 MSG_DONTWAIT 1000-byte sends all succeed, its queue stays empty;
 *   without the filter a few sends fill it (EAGAIN, and a blocking send
 *   times out); with a filter passing only 'K' messages, others still go
 *   through at once while its queue is full and a 'K' one gets EAGAIN.
 */
#include "testutil.h"

#include <dirent.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <sys/syscall.h>
#include "filter_agent.h"

/* ------------------------------------------------------------------------ */
/* Programs                                                                  */

#define RET_K(k) BPF_STMT(BPF_RET | BPF_K, (k))
#define FIRST_BYTE_IS(c)                                                         \
    {                                                                            \
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (c), 0, 1), RET_K(0xffff), \
            RET_K(0)                                                             \
    }

static const struct sock_filter F_FIRST_A[] = FIRST_BYTE_IS('A');
static const struct sock_filter F_FIRST_B[] = FIRST_BYTE_IS('B');
static const struct sock_filter F_FIRST_K[] = FIRST_BYTE_IS('K');
static const struct sock_filter F_TRUNC4[] = {RET_K(4)};
static const struct sock_filter F_NONE[] = {RET_K(0)};
static const struct sock_filter F_ALL[] = {RET_K(0xffffffff)};
static const struct sock_filter F_EMPTY_ONLY[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
    RET_K(0xffff),
    RET_K(0),
};
/* Accepted by the kernel, not runnable by the library. */
static const struct sock_filter F_CPU[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_CPU), RET_K(0xffff)};
static const struct sock_filter F_RANDOM[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_RANDOM),
                                              BPF_STMT(BPF_RET | BPF_A, 0)};
/* Refused by the kernel. */
static const struct sock_filter I_NORET[] = {BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0)};
static const struct sock_filter I_JUMP_PAST[] = {BPF_STMT(BPF_JMP | BPF_JA, 5), RET_K(0)};
static const struct sock_filter I_COND_PAST[] = {BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 1, 0, 3), RET_K(0)};
static const struct sock_filter I_DIV0[] = {BPF_STMT(BPF_ALU | BPF_DIV | BPF_K, 0), BPF_STMT(BPF_RET | BPF_A, 0)};
static const struct sock_filter I_MOD0[] = {BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, 0), BPF_STMT(BPF_RET | BPF_A, 0)};
static const struct sock_filter I_MEM_UNINIT[] = {BPF_STMT(BPF_LD | BPF_MEM, 3), BPF_STMT(BPF_RET | BPF_A, 0)};
static const struct sock_filter I_MEM_ONE_PATH[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0), BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
    BPF_STMT(BPF_ST, 2),                   BPF_STMT(BPF_LDX | BPF_MEM, 2),
    BPF_STMT(BPF_RET | BPF_A, 0)};
static const struct sock_filter I_BADOP[] = {{0xffff, 0, 0, 0}, RET_K(0)};
static const struct sock_filter I_BAD_ANC[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + 200), RET_K(0)};
static const struct sock_filter I_SHIFT32[] = {BPF_STMT(BPF_ALU | BPF_LSH | BPF_K, 32),
                                               BPF_STMT(BPF_RET | BPF_A, 0)};
static const struct sock_filter I_MEMIDX[] = {BPF_STMT(BPF_ST, 16), RET_K(0)};
static struct sock_filter I_TOO_LONG[BPF_MAXINSNS + 1];

struct prog {
    const char *name;
    const struct sock_filter *p;
    size_t n;
};
#define PROG(x) {#x, x, NELEM(x)}

static struct prog invalid[] = {
    PROG(I_NORET),  PROG(I_JUMP_PAST), PROG(I_COND_PAST), PROG(I_DIV0),    PROG(I_MOD0),
    PROG(I_MEM_UNINIT), PROG(I_MEM_ONE_PATH), PROG(I_BADOP), PROG(I_BAD_ANC), PROG(I_SHIFT32),
    PROG(I_MEMIDX), {"empty program", F_ALL, 0}, {"4097 instructions", I_TOO_LONG, BPF_MAXINSNS + 1},
};

/* ------------------------------------------------------------------------ */
/* Kernel answers on ordinary sockets                                        */

static int attach_errno(int fd, const struct sock_filter *p, size_t n)
{
    return fa_attach_raw(fd, p, n) == 0 ? 0 : errno;
}

/* What the kernel says to SO_ATTACH_FILTER of (p, n) on an ordinary unix
 * datagram socket, locked with a program first if `locked`. */
static int kernel_attach(const struct sock_filter *p, size_t n, int locked)
{
    int fd = tu_dgram();
    if (locked) {
        CHECK(fa_attach_raw(fd, F_ALL, 1) == 0, "kernel: attach");
        tu_setint(fd, SOL_SOCKET, SO_LOCK_FILTER, 1);
    }
    int e = attach_errno(fd, p, n);
    close(fd);
    return e;
}

/* One datagram through the kernel with program (p, n) on the receiver. */
struct kres {
    long ret;
    int err, mflags;
    char data[64];
};

static struct kres kernel_deliver(int sv[2], const char *s, size_t len, size_t cap)
{
    CHECK(send(sv[0], s, len, 0) == (ssize_t)len, "kernel: send");
    struct kres k;
    memset(&k, 0, sizeof k);
    struct iovec iov = {k.data, cap};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    errno = 0;
    k.ret = recvmsg(sv[1], &mh, MSG_TRUNC | MSG_DONTWAIT);
    k.err = k.ret < 0 ? errno : 0;
    k.mflags = mh.msg_flags;
    return k;
}

static struct kres k_trunc_big, k_trunc_small;

static void kernel_reference(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    CHECK(fa_attach_raw(sv[1], F_TRUNC4, NELEM(F_TRUNC4)) == 0, "kernel: attach ret 4");
    struct kres k = kernel_deliver(sv, "", 0, 64);
    CHECK(k.ret == 0, "kernel: a zero-length datagram with `ret 4`: recv gave %ld (%s)", k.ret, tu_errname(k.err));
    k_trunc_big = kernel_deliver(sv, "Banana", 6, 64);
    CHECK(k_trunc_big.ret == 4 && !(k_trunc_big.mflags & MSG_TRUNC) && memcmp(k_trunc_big.data, "Bana", 4) == 0,
          "kernel: `ret 4` on \"Banana\": %ld bytes, flags 0x%x", k_trunc_big.ret, k_trunc_big.mflags);
    k_trunc_small = kernel_deliver(sv, "Banana", 6, 2);
    CHECK(k_trunc_small.ret == 4 && (k_trunc_small.mflags & MSG_TRUNC),
          "kernel: `ret 4` on \"Banana\" into 2 bytes with MSG_TRUNC: %ld, flags 0x%x", k_trunc_small.ret,
          k_trunc_small.mflags);
    k = kernel_deliver(sv, "xyz", 3, 64);
    CHECK(k.ret == 3, "kernel: `ret 4` on 3 bytes gave %ld", k.ret);
    CHECK(fa_attach_raw(sv[1], F_FIRST_A, NELEM(F_FIRST_A)) == 0, "kernel: attach");
    k = kernel_deliver(sv, "", 0, 64);
    CHECK(k.ret == -1 && k.err == EAGAIN, "kernel: zero-length datagram with `ldb [0]` not dropped (%ld)", k.ret);
    CHECK(fa_attach_raw(sv[1], F_EMPTY_ONLY, NELEM(F_EMPTY_ONLY)) == 0, "kernel: attach");
    k = kernel_deliver(sv, "", 0, 64);
    CHECK(k.ret == 0, "kernel: zero-length datagram with `len == 0 ? 0xffff : 0` gave %ld", k.ret);
    k = kernel_deliver(sv, "x", 1, 64);
    CHECK(k.ret == -1 && k.err == EAGAIN, "kernel: 1 byte with `len == 0 ? 0xffff : 0` gave %ld", k.ret);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int)) == 0, "kernel: detach");
    CHECK_ERRNO(setsockopt(sv[1], SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int)), ENOENT);
    close(sv[0]);
    close(sv[1]);
    tu_ok("kernel, ordinary socketpair: `ret 4` delivers a zero-length datagram empty, truncates 6 bytes to 4 "
          "(MSG_TRUNC flag only with a 2-byte buffer; recv returns 4), keeps 3 of 3; `ldb [0]` drops it; "
          "a second SO_DETACH_FILTER is ENOENT");
}

/* ------------------------------------------------------------------------ */
/* The test                                                                  */

#define NM 5
static struct ta_agent M[NM + 1]; /* M[1]..M[5] */
static struct ta_agent S, Q;
static struct unix_mreq g1, g1b, g2;
static int sender; /* main's unbound datagram socket */

static void send_group(const struct unix_mreq *m, const void *p, size_t len, const char *what)
{
    ssize_t r = tu_sendto_group(sender, p, len, 0, m);
    CHECK(r == (ssize_t)len, "%s: sendto the group gave %zd", what, r);
}

static void send_str(const struct unix_mreq *m, const char *s) { send_group(m, s, strlen(s), s); }

static struct fa_res fa_sendto_group(struct ta_agent *a, const struct unix_mreq *m, const void *p, size_t len,
                                     int flags)
{
    static unsigned char buf[sizeof(struct sockaddr_un) + 2048];
    socklen_t al = unix_mreq_addrlen(m);
    CHECK(len <= 2048, "message too long");
    memcpy(buf, &m->address, al);
    memcpy(buf + al, p, len);
    return fa_call(a, FA_SENDTO, flags, (int)al, 0, buf, al + len);
}

static void expect_stats(struct ta_agent *a, const struct unix_mreq *m, unsigned long long queued,
                         unsigned long long bytes, unsigned long long filtered, const char *what)
{
    struct unix_group_stats st = fa_stats(a, m);
    CHECK(st.queued_messages == queued && st.queued_bytes == bytes && st.filtered == filtered && st.dropped == 0,
          "%s: agent %s: UNIX_GROUP_STATS queued %llu messages / %llu bytes, filtered %llu, dropped %llu; "
          "expected %llu / %llu, filtered %llu, dropped 0",
          what, a->name, st.queued_messages, st.queued_bytes, st.filtered, st.dropped, queued, bytes, filtered);
}

static void expect_drain(struct ta_agent *a, long n, const char *what)
{
    struct fa_res r = fa_call(a, FA_DRAIN, 0, 0, 0, NULL, 0);
    CHECK(r.ret == n, "%s: agent %s had %ld messages queued, expected %ld", what, a->name, r.ret, n);
}

static struct sockaddr_un a1, a2; /* M1's and M2's own addresses */
static socklen_t a1len, a2len;

/* End M's running FA_RECV (begun with a big enough buffer): exactly s. */
static void fa_expect_str_end(struct ta_agent *a, const char *s, const char *what)
{
    struct fa_res r = fa_end_within(a, 5000);
    size_t len = strlen(s);
    CHECK(r.ret == (long)len && memcmp(r.data, s, len) == 0, "%s: agent %s got %ld bytes (%s), expected \"%s\"",
          what, a->name, r.ret, r.ret < 0 ? tu_errname(r.err) : "-", s);
}

static void setup(void)
{
    for (int i = 1; i <= NM; i++)
        fa_socket(&M[i], SOCK_DGRAM, 0);
    a1len = tu_abstract_addr(&a1, "filter-m1");
    a2len = tu_abstract_addr(&a2, "filter-m2");
    CHECK(fa_call(&M[1], FA_BIND, 0, 0, 0, &a1, a1len).ret == 0, "bind M1");
    CHECK(fa_call(&M[2], FA_BIND, 0, 0, 0, &a2, a2len).ret == 0, "bind M2");

    /* M2's program goes on before it joins. */
    fa_attach_ok(&M[2], F_TRUNC4, NELEM(F_TRUNC4), "M2 before JOIN");
    for (int i = 1; i <= NM; i++)
        fa_join(&M[i], &g1, 0);
    fa_join(&M[1], &g1b, 0);
    fa_attach_ok(&M[1], F_FIRST_A, NELEM(F_FIRST_A), "M1 after JOIN");
    fa_attach_ok(&M[4], F_NONE, NELEM(F_NONE), "M4");
    fa_attach_ok(&M[5], F_EMPTY_ONLY, NELEM(F_EMPTY_ONLY), "M5");
    fa_expect_filter(&M[1], F_FIRST_A, NELEM(F_FIRST_A), "M1");
    fa_expect_filter(&M[2], F_TRUNC4, NELEM(F_TRUNC4), "M2");
    fa_expect_filter(&M[3], NULL, 0, "M3");
    fa_expect_filter(&M[4], F_NONE, NELEM(F_NONE), "M4");
    fa_expect_filter(&M[5], F_EMPTY_ONLY, NELEM(F_EMPTY_ONLY), "M5");
    fa_socket(&S, SOCK_DGRAM, 0);
    tu_ok("five members of G1 in five processes (M1 also of G1b): M1 `first byte 'A'` attached after JOIN, "
          "M2 `ret 4` before JOIN, M3 none, M4 `ret 0`, M5 `only zero-length`; SO_GET_FILTER shows each");
}

static void delivery(void)
{
    static char avocado[300];
    memset(avocado, 'a', sizeof avocado);
    memcpy(avocado, "Avocado", 7);
    struct {
        const char *p;
        size_t n;
    } msg[] = {{"Apple pie", 9}, {"Banana", 6}, {"", 0}, {avocado, sizeof avocado}, {"xyz", 3}, {"A", 1}};
    for (size_t i = 0; i < NELEM(msg); i++) {
        struct fa_res r = fa_sendto_group(&S, &g1, msg[i].p, msg[i].n, 0);
        CHECK(r.ret == (long)msg[i].n, "sender: sendto of message %zu (%zu bytes) gave %ld (%s)", i, msg[i].n,
              r.ret, r.ret < 0 ? tu_errname(r.err) : "-");
    }
    tu_ok("a sender in a sixth process: each of the 6 sends (0 to 300 bytes) returned its full length");

    expect_stats(&M[1], &g1, 3, 9 + 300 + 1, 3, "M1 after 6 messages");
    expect_stats(&M[2], &g1, 6, 4 + 4 + 0 + 4 + 3 + 1, 0, "M2 after 6 messages");
    expect_stats(&M[3], &g1, 6, 9 + 6 + 0 + 300 + 3 + 1, 0, "M3 after 6 messages");
    expect_stats(&M[4], &g1, 0, 0, 6, "M4 after 6 messages");
    expect_stats(&M[5], &g1, 1, 0, 5, "M5 after 6 messages");
    tu_ok("UNIX_GROUP_STATS: queued messages and (truncated) bytes as the programs decided; `filtered` counts "
          "the refusals: M1 3, M2 0, M3 0, M4 6, M5 5");

    fa_expect_str(&M[1], "Apple pie", "M1");
    fa_expect(&M[1], avocado, sizeof avocado, "M1");
    fa_expect_str(&M[1], "A", "M1");
    fa_expect_empty(&M[1], "M1");

    /* M2: the first one into a 2-byte buffer, compared with the kernel. */
    struct fa_res r = fa_call(&M[2], FA_RECV, MSG_TRUNC, 2, 0, NULL, 0);
    CHECK(r.ret == k_trunc_small.ret && (r.mflags & MSG_TRUNC) == (k_trunc_small.mflags & MSG_TRUNC) &&
              memcmp(r.data, "Ap", 2) == 0,
          "M2: `ret 4` message into 2 bytes with MSG_TRUNC gave %ld (msg_flags 0x%x), the kernel %ld (0x%x)",
          r.ret, r.mflags, k_trunc_small.ret, k_trunc_small.mflags);
    r = fa_call(&M[2], FA_RECV, MSG_TRUNC, 64, 0, NULL, 0);
    CHECK(r.ret == k_trunc_big.ret && (r.mflags & MSG_TRUNC) == (k_trunc_big.mflags & MSG_TRUNC) &&
              memcmp(r.data, k_trunc_big.data, 4) == 0,
          "M2: `ret 4` on \"Banana\" gave %ld bytes \"%.*s\" (msg_flags 0x%x), the kernel %ld \"Bana\" (0x%x)",
          r.ret, (int)r.len, r.data, r.mflags, k_trunc_big.ret, k_trunc_big.mflags);
    fa_expect(&M[2], "", 0, "M2 zero-length message");
    fa_expect_str(&M[2], "Avoc", "M2");
    fa_expect_str(&M[2], "xyz", "M2");
    fa_expect_str(&M[2], "A", "M2");
    fa_expect_empty(&M[2], "M2");

    for (size_t i = 0; i < NELEM(msg); i++)
        fa_expect(&M[3], msg[i].p, msg[i].n, "M3 (no filter)");
    fa_expect_empty(&M[3], "M3");
    fa_expect_empty(&M[4], "M4 (ret 0)");
    fa_expect(&M[5], "", 0, "M5 (only zero-length)");
    fa_expect_empty(&M[5], "M5");
    tu_ok("M1 got the 3 'A' messages whole; M2 every message cut to min(4, len) bytes (the empty one empty; "
          "recv MSG_TRUNC and msg_flags as the kernel's); M3 all 6; M4 none; M5 only the empty one");

    /* M1's program also filters its other group. */
    send_str(&g1b, "Apricot");
    send_str(&g1b, "Blueberry");
    expect_stats(&M[1], &g1b, 1, 7, 1, "M1 in G1b");
    fa_expect_str(&M[1], "Apricot", "M1 in G1b");
    fa_expect_empty(&M[1], "M1 in G1b");
    tu_ok("M1's program filters its second group too (G1b: \"Apricot\" kept, \"Blueberry\" refused)");

    /* Ordinary datagrams to a member: the kernel's filter, as before. */
    CHECK(sendto(sender, "Zebra", 5, 0, (struct sockaddr *)&a1, a1len) == 5, "sendto M1");
    CHECK(sendto(sender, "Aardvark", 8, 0, (struct sockaddr *)&a1, a1len) == 8, "sendto M1");
    CHECK(sendto(sender, "Ordinary", 8, 0, (struct sockaddr *)&a2, a2len) == 8, "sendto M2");
    fa_expect_str(&M[1], "Aardvark", "M1 ordinary datagrams");
    fa_expect_empty(&M[1], "M1 ordinary datagrams");
    fa_expect_str(&M[2], "Ordi", "M2 ordinary datagram");
    fa_expect_empty(&M[2], "M2");
    tu_ok("ordinary datagrams to M1 and M2 are filtered by the kernel with the same programs");
}

static void replace_and_detach(void)
{
    fa_attach_ok(&M[1], F_FIRST_B, NELEM(F_FIRST_B), "M1 replaces its program");
    fa_expect_filter(&M[1], F_FIRST_B, NELEM(F_FIRST_B), "M1 after replacing");
    /* (the order between two groups is unspecified: one group at a time) */
    send_str(&g1, "Apple2");
    send_str(&g1, "Banana2");
    fa_expect_str(&M[1], "Banana2", "M1 with `first byte 'B'`");
    fa_expect_empty(&M[1], "M1 with `first byte 'B'`");
    send_str(&g1b, "Avocado2");
    send_str(&g1b, "Blue2");
    fa_expect_str(&M[1], "Blue2", "M1 with `first byte 'B'` (G1b)");
    fa_expect_empty(&M[1], "M1 with `first byte 'B'`");
    tu_ok("attaching again replaces M1's program, in both of its groups");

    struct fa_res r = fa_call(&M[1], FA_SETOPT, 0, SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int));
    CHECK(r.ret == 0, "M1: SO_DETACH_FILTER failed with %s", tu_errname(r.err));
    fa_expect_filter(&M[1], NULL, 0, "M1 after SO_DETACH_FILTER");
    send_str(&g1, "Apple3");
    send_str(&g1, "Cherry3");
    send_group(&g1, "", 0, "zero-length");
    fa_expect_str(&M[1], "Apple3", "M1 without filter");
    fa_expect_str(&M[1], "Cherry3", "M1 without filter");
    fa_expect(&M[1], "", 0, "M1 without filter");
    fa_expect_empty(&M[1], "M1 without filter");
    send_str(&g1b, "Cherry3b");
    fa_expect_str(&M[1], "Cherry3b", "M1 without filter (G1b)");
    fa_expect_empty(&M[1], "M1 without filter");
    r = fa_call(&M[1], FA_SETOPT, 0, SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int));
    CHECK(r.ret == -1 && r.err == ENOENT, "M1: a second SO_DETACH_FILTER gave %ld (%s), the kernel says ENOENT",
          r.ret, tu_errname(r.err));
    tu_ok("SO_DETACH_FILTER: M1 gets everything again, in both groups; a second detach is ENOENT, as the kernel");
    expect_drain(&M[3], 5, "M3");
    expect_drain(&M[2], 5, "M2");
    expect_drain(&M[5], 1, "M5");
}

static void refused_attaches(void)
{
    /* SO_ATTACH_BPF: the kernel takes an eBPF program on an ordinary socket. */
    int prog = fa_load_ebpf();
    int kfd = tu_dgram();
    if (prog >= 0) {
        CHECK(setsockopt(kfd, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof prog) == 0,
              "kernel: SO_ATTACH_BPF on an ordinary socket");
        close(prog);
    }
    close(kfd);
    struct fa_res r = fa_call(&M[2], FA_ATTACH_BPF, 0, 0, 0, NULL, 0);
    CHECK(r.ret != -2, "M2: could not load an eBPF program (%s)", tu_errname(r.err));
    CHECK(r.ret == -1 && r.err == EOPNOTSUPP, "M2: SO_ATTACH_BPF on a member gave %ld (%s), expected EOPNOTSUPP",
          r.ret, tu_errname(r.err));

    const struct prog unrunnable[] = {PROG(F_CPU), PROG(F_RANDOM)};
    for (size_t i = 0; i < NELEM(unrunnable); i++) {
        int k = kernel_attach(unrunnable[i].p, unrunnable[i].n, 0);
        CHECK(k == 0, "kernel: %s refused on an ordinary socket (%s)", unrunnable[i].name, tu_errname(k));
        r = fa_attach(&M[2], unrunnable[i].p, unrunnable[i].n);
        CHECK(r.ret == -1 && r.err == EOPNOTSUPP, "M2: %s on a member gave %ld (%s), expected EOPNOTSUPP",
              unrunnable[i].name, r.ret, tu_errname(r.err));
    }
    tu_ok("on member M2: SO_ATTACH_BPF, and classic programs loading SKF_AD_CPU or SKF_AD_RANDOM (all accepted "
          "by the kernel on an ordinary socket): EOPNOTSUPP");

    for (size_t i = 0; i < NELEM(invalid); i++) {
        int k = kernel_attach(invalid[i].p, invalid[i].n, 0);
        CHECK(k != 0, "kernel: accepted %s", invalid[i].name);
        r = fa_attach(&M[2], invalid[i].p, invalid[i].n);
        CHECK(r.ret == -1 && r.err == k, "M2: %s gave %ld (%s), the kernel %s", invalid[i].name, r.ret,
              r.ret < 0 ? tu_errname(r.err) : "-", tu_errname(k));
    }
    tu_ok("on member M2: %zu programs the kernel refuses get the kernel's errno (EINVAL...)", NELEM(invalid));

    fa_expect_filter(&M[2], F_TRUNC4, NELEM(F_TRUNC4), "M2 after refused attaches");
    send_str(&g1, "Still four");
    fa_expect_str(&M[2], "Stil", "M2 after refused attaches");
    fa_expect_empty(&M[2], "M2");
    CHECK(sendto(sender, "Ordinary2", 9, 0, (struct sockaddr *)&a2, a2len) == 9, "sendto M2");
    fa_expect_str(&M[2], "Ordi", "M2 ordinary datagram after refused attaches");
    tu_ok("after the refused attaches M2's `ret 4` still filters group messages and ordinary datagrams");
    expect_drain(&M[1], 1, "M1");
    expect_drain(&M[3], 1, "M3");
}

static void locked(void)
{
    struct fa_res r = fa_setint(&M[4], SOL_SOCKET, SO_LOCK_FILTER, 1);
    CHECK(r.ret == 0, "M4: SO_LOCK_FILTER failed with %s", tu_errname(r.err));
    const struct prog tries[] = {PROG(F_ALL), PROG(F_FIRST_A), PROG(I_NORET), PROG(I_DIV0), PROG(F_CPU),
                                 PROG(F_RANDOM)};
    for (size_t i = 0; i < NELEM(tries); i++) {
        int k = kernel_attach(tries[i].p, tries[i].n, 1);
        CHECK(k == EPERM, "kernel: %s on a locked socket gave %s", tries[i].name, tu_errname(k));
        r = fa_attach(&M[4], tries[i].p, tries[i].n);
        CHECK(r.ret == -1 && r.err == k, "M4 (locked): %s gave %ld (%s), the kernel %s", tries[i].name, r.ret,
              r.ret < 0 ? tu_errname(r.err) : "-", tu_errname(k));
    }
    r = fa_call(&M[4], FA_SETOPT, 0, SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int));
    CHECK(r.ret == -1 && r.err == EPERM, "M4 (locked): SO_DETACH_FILTER gave %ld (%s), the kernel EPERM", r.ret,
          tu_errname(r.err));
    r = fa_setint(&M[4], SOL_SOCKET, SO_LOCK_FILTER, 0);
    CHECK(r.ret == -1 && r.err == EPERM, "M4 (locked): SO_LOCK_FILTER 0 gave %ld (%s), the kernel EPERM", r.ret,
          tu_errname(r.err));
    r = fa_call(&M[4], FA_ATTACH_BPF, 0, 0, 0, NULL, 0);
    CHECK(r.ret == -1 && (r.err == EPERM || r.err == EOPNOTSUPP),
          "M4 (locked): SO_ATTACH_BPF gave %ld (%s), expected EPERM (kernel) or EOPNOTSUPP (member)", r.ret,
          tu_errname(r.err));
    const char *bpf_err = tu_errname(r.err);
    fa_expect_filter(&M[4], F_NONE, NELEM(F_NONE), "M4 (locked)");
    send_str(&g1, "Locked out");
    fa_expect_empty(&M[4], "M4 (locked, ret 0)");
    fa_expect_str(&M[3], "Locked out", "M3");
    expect_stats(&M[4], &g1, 0, 0, 6 + 5 + 1 + 1, "M4 (locked)");
    tu_ok("SO_LOCK_FILTER on member M4: attaching (valid, invalid and unrunnable programs), detaching and "
          "unlocking fail with EPERM as on a locked ordinary socket (SO_ATTACH_BPF: %s); `ret 0` still "
          "refuses everything",
          bpf_err);
    expect_drain(&M[1], 1, "M1");
    expect_drain(&M[2], 1, "M2");
}

static void no_wakeups(void)
{
    struct timeval tv = {2, 0};
    struct fa_res r = fa_call(&M[4], FA_SETOPT, 0, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(r.ret == 0, "M4: SO_RCVTIMEO");
    fa_begin(&M[5], FA_POLL, POLLIN, 8000, 0, NULL, 0);
    fa_begin(&M[4], FA_RECV, 0, 256, 0, NULL, 0);
    tu_sleep_ms(200);
    fa_still_blocked(&M[5], 0, "M5 in poll");
    fa_still_blocked(&M[4], 0, "M4 in recv");
    long c5 = fa_ctxsw_of(M[5].pid), c4 = fa_ctxsw_of(M[4].pid);
    double t0 = tu_now();
    for (int i = 0; i < 100; i++) {
        char s[32];
        snprintf(s, sizeof s, "flow %03d", i);
        send_str(&g1, s);
        tu_sleep_ms(8);
        CHECK(!ta_done_within(&M[5], 0), "M5's poll returned during the flow of refused messages");
        CHECK(!ta_done_within(&M[4], 0), "M4's recv returned during the flow of refused messages");
    }
    double flow = tu_now() - t0;
    long d5 = fa_ctxsw_of(M[5].pid) - c5, d4 = fa_ctxsw_of(M[4].pid) - c4;
    fa_still_blocked(&M[5], 0, "M5 in poll after the flow");
    CHECK(d5 <= 5 && d4 <= 5,
          "members whose filters refused all 100 messages were woken: %ld context switches for M5 (poll), "
          "%ld for M4 (recv) during the %.2f s flow",
          d5, d4, flow);
    r = fa_end_within(&M[4], 5000);
    CHECK(r.ret == -1 && r.err == EAGAIN, "M4: recv with SO_RCVTIMEO 2 s gave %ld (%s), expected EAGAIN", r.ret,
          tu_errname(r.err));
    fa_still_blocked(&M[5], 0, "M5 in poll");
    send_group(&g1, "", 0, "zero-length");
    r = fa_end_within(&M[5], 3000);
    CHECK(r.ret == 1 && (r.revents & POLLIN), "M5: poll gave %ld (revents 0x%x) after the message it accepts",
          r.ret, r.revents);
    CHECK(r.aux < 7000, "M5: poll returned after %u ms", r.aux);
    fa_expect(&M[5], "", 0, "M5");
    fa_expect_empty(&M[5], "M5");
    tu_ok("during 100 messages in %.2f s that their filters refuse, M5 asleep in poll and M4 in recv were never "
          "woken (%ld and %ld context switches); M4's recv failed with EAGAIN at SO_RCVTIMEO; the next message "
          "M5 accepts woke its poll",
          flow, d5, d4);
    expect_drain(&M[3], 101, "M3");
    expect_drain(&M[2], 101, "M2");
    expect_drain(&M[1], 101, "M1");
    fa_expect_empty(&M[4], "M4");

    /* Again, while the member that gets the messages (M3) sleeps too: it is
     * woken for each of them, the refusing members must not be. */
    fa_begin(&M[5], FA_POLL, POLLIN, 8000, 0, NULL, 0);
    fa_begin(&M[4], FA_RECV, 0, 256, 0, NULL, 0);
    tu_sleep_ms(100);
    fa_still_blocked(&M[5], 0, "M5 in poll");
    fa_still_blocked(&M[4], 0, "M4 in recv");
    c5 = fa_ctxsw_of(M[5].pid);
    c4 = fa_ctxsw_of(M[4].pid);
    long c3 = fa_ctxsw_of(M[3].pid);
    t0 = tu_now();
    enum { NWAKE = 40 };
    for (int i = 0; i < NWAKE; i++) {
        char s[32];
        snprintf(s, sizeof s, "wake M3 %03d", i);
        fa_begin(&M[3], FA_RECV, MSG_TRUNC, 256, 0, NULL, 0);
        double until = tu_now() + 2;
        while (tu_proc_state(M[3].pid) != 'S') {
            CHECK(tu_now() < until, "M3 does not fall asleep in recv");
            tu_sleep_ms(1);
        }
        tu_sleep_ms(2);
        send_str(&g1, s);
        fa_expect_str_end(&M[3], s, "M3 woken by each message");
        CHECK(!ta_done_within(&M[5], 0), "M5's poll returned during the flow of refused messages");
        CHECK(!ta_done_within(&M[4], 0), "M4's recv returned during the flow of refused messages");
    }
    flow = tu_now() - t0;
    d5 = fa_ctxsw_of(M[5].pid) - c5;
    d4 = fa_ctxsw_of(M[4].pid) - c4;
    long d3 = fa_ctxsw_of(M[3].pid) - c3;
    CHECK(d5 <= 5 && d4 <= 5,
          "M5 (asleep in poll) and M4 (asleep in recv), whose filters refused all %d messages, were woken while "
          "M3, asleep in recv, was woken for each message: %ld and %ld context switches (M3: %ld) in %.2f s",
          NWAKE, d5, d4, d3, flow);
    r = fa_end_within(&M[4], 5000);
    CHECK(r.ret == -1 && r.err == EAGAIN, "M4: recv with SO_RCVTIMEO 2 s gave %ld (%s), expected EAGAIN", r.ret,
          tu_errname(r.err));
    send_group(&g1, "", 0, "zero-length");
    r = fa_end_within(&M[5], 3000);
    CHECK(r.ret == 1 && (r.revents & POLLIN), "M5: poll gave %ld (revents 0x%x) after the message it accepts",
          r.ret, r.revents);
    fa_expect(&M[5], "", 0, "M5");
    tu_ok("while M3, asleep in recv, was woken by each of %d messages, M5 (poll) and M4 (recv), whose filters "
          "refused them, stayed asleep (%ld and %ld context switches; M3 %ld)",
          NWAKE, d5, d4, d3);
    expect_drain(&M[3], 1, "M3");
    expect_drain(&M[2], NWAKE + 1, "M2");
    expect_drain(&M[1], NWAKE + 1, "M1");
}

#define QMSG 1000
#define QN 300

static void queue_room(void)
{
    fa_socket(&Q, SOCK_DGRAM, 1);
    fa_attach_ok(&Q, F_NONE, NELEM(F_NONE), "Q");
    fa_join(&Q, &g2, 0);
    struct unix_group_stats st = fa_stats(&Q, &g2);
    unsigned long long cap = st.capacity;
    CHECK(cap > 0 && cap < 20 * QMSG, "Q's queue capacity is %llu bytes (SO_RCVBUF 1 asked)", cap);

    int s = tu_dgram();
    tu_set_timeout(s, SO_SNDTIMEO, 3000);
    static char buf[QMSG];
    memset(buf, 'x', sizeof buf);
    double t0 = tu_now();
    for (int i = 0; i < QN; i++) {
        ssize_t r = tu_sendto_group(s, buf, sizeof buf, 0, &g2);
        CHECK(r == QMSG, "blocking send %d to a group whose only member refuses everything gave %zd", i, r);
    }
    for (int i = 0; i < QN; i++) {
        ssize_t r = tu_sendto_group(s, buf, sizeof buf, MSG_DONTWAIT, &g2);
        CHECK(r == QMSG, "MSG_DONTWAIT send %d to a group whose only member refuses everything gave %zd", i, r);
    }
    double took = tu_now() - t0;
    expect_stats(&Q, &g2, 0, 0, 2 * QN, "Q (ret 0, never reads)");
    tu_ok("Q (capacity %llu bytes, `ret 0`, never reads): %d blocking and %d MSG_DONTWAIT sends of %d bytes "
          "all succeeded in %.2f s; its queue stayed empty, filtered = %d",
          cap, QN, QN, QMSG, took, 2 * QN);

    /* Without the filter the same queue holds the sender back. */
    struct fa_res r = fa_call(&Q, FA_SETOPT, 0, SOL_SOCKET, SO_DETACH_FILTER, &(int){0}, sizeof(int));
    CHECK(r.ret == 0, "Q: SO_DETACH_FILTER");
    int k = 0;
    for (;; k++) {
        ssize_t n = tu_sendto_group(s, buf, sizeof buf, MSG_DONTWAIT, &g2);
        if (n == -1 && errno == EAGAIN)
            break;
        CHECK(n == QMSG, "MSG_DONTWAIT send to Q without a filter gave %zd", n);
        CHECK(k < (int)(cap / QMSG) + 2, "Q without a filter took %d messages of %d bytes (capacity %llu)", k + 1,
              QMSG, cap);
    }
    CHECK(k >= 1, "Q's empty queue refused a message");
    tu_set_timeout(s, SO_SNDTIMEO, 500);
    t0 = tu_now();
    errno = 0;
    ssize_t n = tu_sendto_group(s, buf, sizeof buf, 0, &g2);
    CHECK(n == -1 && errno == EAGAIN && tu_now() - t0 > 0.4,
          "a blocking send to full Q gave %zd (%s) after %.2f s, expected EAGAIN after SO_SNDTIMEO 0.5 s", n,
          tu_errname(errno), tu_now() - t0);

    /* With a filter passing only 'K' messages: the full queue holds back only those. */
    fa_attach_ok(&Q, F_FIRST_K, NELEM(F_FIRST_K), "Q");
    for (int i = 0; i < 50; i++) {
        n = tu_sendto_group(s, buf, sizeof buf, MSG_DONTWAIT, &g2);
        CHECK(n == QMSG, "MSG_DONTWAIT send of a message Q refuses, Q full, gave %zd (%s)", n, tu_errname(errno));
    }
    t0 = tu_now();
    n = tu_sendto_group(s, buf, sizeof buf, 0, &g2);
    CHECK(n == QMSG && tu_now() - t0 < 0.3, "blocking send of a message Q refuses, Q full, gave %zd after %.2f s",
          n, tu_now() - t0);
    buf[0] = 'K';
    errno = 0;
    n = tu_sendto_group(s, buf, sizeof buf, MSG_DONTWAIT, &g2);
    CHECK(n == -1 && errno == EAGAIN, "MSG_DONTWAIT send of a message Q accepts, Q full, gave %zd (%s)", n,
          tu_errname(errno));
    expect_stats(&Q, &g2, (unsigned long long)k, (unsigned long long)k * QMSG, 2 * QN + 51, "Q full");
    expect_drain(&Q, k, "Q");
    n = tu_sendto_group(s, buf, sizeof buf, MSG_DONTWAIT, &g2);
    CHECK(n == QMSG, "MSG_DONTWAIT send of a 'K' message to drained Q gave %zd (%s)", n, tu_errname(errno));
    fa_expect(&Q, buf, sizeof buf, "Q");
    tu_ok("without the filter Q took %d messages, then EAGAIN (and a blocking send timed out); with `first "
          "byte 'K'` and Q still full, 51 other messages went through at once, a 'K' one got EAGAIN",
          k);
    close(s);
}

int main(int argc, char **argv)
{
    FA_AGENT_DISPATCH(argc, argv);
    tu_start("t_filter_basic");
    static const char *names[NM + 1] = {"", "M1", "M2", "M3", "M4", "M5"};
    for (int i = 1; i <= NM; i++)
        fa_spawn(&M[i], names[i]);
    fa_spawn(&S, "sender S");
    fa_spawn(&Q, "Q");
    for (size_t i = 0; i < NELEM(I_TOO_LONG); i++)
        I_TOO_LONG[i] = (struct sock_filter)RET_K(1);

    kernel_reference();
    tu_abstract_group(&g1, "filter-g1");
    tu_abstract_group(&g1b, "filter-g1b");
    tu_abstract_group(&g2, "filter-g2");
    int G1 = tu_create_group(&g1), G1b = tu_create_group(&g1b), G2 = tu_create_group(&g2);
    sender = tu_dgram();

    setup();
    delivery();
    replace_and_detach();
    refused_attaches();
    locked();
    no_wakeups();
    queue_room();

    for (int i = 1; i <= NM; i++)
        fa_exit(&M[i]);
    fa_exit(&S);
    fa_exit(&Q);
    tu_wait_all();
    close(G1);
    close(G1b);
    close(G2);
    close(sender);
    return tu_done();
}
