/*
 * filter_bench.c - what socket filters save a libumcast datagram group.
 *
 *   LD_PRELOAD=/path/to/libumcast.so filter_bench [--members N] [--size BYTES]
 *                                                 [--duration SEC] [--timeout SEC]
 *
 * One sender (this process) and N member processes (default 16) in one
 * group, three cases run one after the other, each for about --duration
 * seconds (default 1.5) of sending:
 *
 *   filtered:   member i has a classic BPF program accepting a message only
 *               when its first byte modulo N is i (or the end marker 0xff),
 *               so each member gets 1/N of the messages; the sender runs the
 *               N programs for every message, refused copies cost nothing;
 *   unfiltered: no programs, every member gets every message;
 *   refuse-all: (for reference) every member's program refuses every data
 *               message: the sender's cost of running N programs alone.
 *
 * The sender makes one blocking sendto() per --size-byte message (default
 * 64) as fast as the members let it (a full member holds it back), with
 * first byte seq % N, then an end marker. Members count what they get and
 * check the first byte. A case's time runs from the first send to the last
 * member's end marker, so queued backlog cannot flatter it.
 *
 * Output: the machine, one line per case (messages/s sent, deliveries/s,
 * per member, the sender's CPU time per message) and the ratios filtered /
 * unfiltered. Exit status 0 when both cases
 * completed with every message where it belongs, 1 otherwise.
 */
#include "benchutil.h"
#include "umcast.h"

#include <getopt.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define MAX_MEMBERS 64
#define END_MARK 0xff

struct member_result {
    volatile uint32_t ready, done;
    uint64_t got;      /* data messages (end marker not counted) */
    uint64_t wrong;    /* a message this member's program should have refused, or a bad length */
    uint64_t last_ns;  /* when the end marker arrived */
    int32_t err;
};

static struct unix_mreq group;
static int members = 16;
static size_t size = 64;
static double duration = 1.5;
static unsigned timeout_s = 60;

/* mode 0: "modulo" program; 2: "refuse all" (a data message's first byte is < n, never n + 1000). */
static int attach_modulo_filter(int fd, int idx, int n, int mode)
{
    if (mode == 2)
        idx = n + 1000;
    /* A = P[0]; if A == 0xff accept; A %= n; if A == idx accept; refuse. */
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, END_MARK, 2, 0),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (uint32_t)n),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)idx, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog f = { .len = sizeof prog / sizeof prog[0], .filter = prog };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &f, sizeof f);
}

enum { FILTERED, UNFILTERED, REFUSE_ALL };

static void member(int idx, int mode, struct member_result *r)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0)
        die("member %d: socket:", idx);
    if (mode != UNFILTERED && attach_modulo_filter(fd, idx, members, mode) < 0)
        die("member %d: SO_ATTACH_FILTER:", idx);
    if (setsockopt(fd, SOL_UNIX, UNIX_JOIN_GROUP, &group, sizeof group) < 0)
        die("member %d: UNIX_JOIN_GROUP:", idx);
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    __atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
    static unsigned char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            r->err = errno;
            break;
        }
        if (n >= 1 && buf[0] == END_MARK) {
            r->last_ns = now_ns();
            break;
        }
        if ((size_t)n != size || (mode == FILTERED && buf[0] % members != idx) || mode == REFUSE_ALL)
            r->wrong++;
        r->got++;
    }
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    _exit(0);
}

struct case_result {
    uint64_t sent;
    double send_s, total_s, cpu_s;
    uint64_t deliveries;
    int ok;
};

static struct case_result run_case(int mode, struct member_result *res)
{
    struct case_result c = { 0 };
    pid_t pids[MAX_MEMBERS];
    memset(res, 0, sizeof *res * (size_t)members);
    for (int i = 0; i < members; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] < 0)
            die("fork:");
        if (pids[i] == 0)
            member(i, mode, &res[i]);
    }
    deadline_children = pids;
    deadline_nchildren = members;
    for (int i = 0; i < members; i++)
        while (!__atomic_load_n(&res[i].ready, __ATOMIC_ACQUIRE)) {
            if (deadline_hit)
                die("members did not join in time");
            usleep(1000);
        }

    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s < 0)
        die("socket:");
    socklen_t alen = unix_mreq_addrlen(&group);
    unsigned char *msg = calloc(1, size);
    if (!msg)
        die("calloc:");
    uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(duration * 1e9), c0 = cpu_ns();
    uint64_t seq = 0;
    for (;;) {
        if ((seq & 63) == 0 && now_ns() >= stop)
            break;
        msg[0] = (unsigned char)(seq % (uint64_t)members);
        if (size >= 9)
            memcpy(msg + 1, &seq, 8);
        if (sendto(s, msg, size, 0, (struct sockaddr *)&group.address, alen) != (ssize_t)size)
            die("sendto (message %llu):", (unsigned long long)seq);
        seq++;
    }
    uint64_t t1 = now_ns();
    c.cpu_s = (double)(cpu_ns() - c0) / 1e9;
    msg[0] = END_MARK;
    if (sendto(s, msg, size, 0, (struct sockaddr *)&group.address, alen) != (ssize_t)size)
        die("sendto (end marker):");
    c.ok = 1;
    uint64_t last = t1;
    for (int i = 0; i < members; i++) {
        int st;
        while (waitpid(pids[i], &st, 0) < 0) {
            if (errno != EINTR)
                die("waitpid:");
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !res[i].done || res[i].err) {
            warnx_("member %d failed (status 0x%x, error %s)", i, st, res[i].err ? strerror(res[i].err) : "-");
            c.ok = 0;
            continue;
        }
        uint64_t want = mode == FILTERED ? seq / (uint64_t)members + ((uint64_t)i < seq % (uint64_t)members)
                        : mode == UNFILTERED ? seq : 0;
        if (res[i].got != want || res[i].wrong) {
            warnx_("member %d got %llu messages (%llu wrong), expected %llu", i, (unsigned long long)res[i].got,
                   (unsigned long long)res[i].wrong, (unsigned long long)want);
            c.ok = 0;
        }
        c.deliveries += res[i].got;
        if (res[i].last_ns > last)
            last = res[i].last_ns;
    }
    deadline_nchildren = 0;
    close(s);
    free(msg);
    c.sent = seq;
    c.send_s = (double)(t1 - t0) / 1e9;
    c.total_s = (double)(last - t0) / 1e9;
    return c;
}

static void print_machine(void)
{
    char line[256], model[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                snprintf(model, sizeof model, "%s", p + 2);
                model[strcspn(model, "\n")] = 0;
            }
            break;
        }
    }
    if (f)
        fclose(f);
    printf("machine: %ld CPUs online, %s\n", sysconf(_SC_NPROCESSORS_ONLN), model);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "members", required_argument, NULL, 'n' }, { "size", required_argument, NULL, 's' },
        { "duration", required_argument, NULL, 'd' }, { "timeout", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    int o;
    while ((o = getopt_long(argc, argv, "n:s:d:t:", opts, NULL)) != -1) {
        switch (o) {
        case 'n': members = (int)parse_long(optarg, "--members"); break;
        case 's': size = (size_t)parse_long(optarg, "--size"); break;
        case 'd': duration = parse_double(optarg, "--duration"); break;
        case 't': timeout_s = (unsigned)parse_long(optarg, "--timeout"); break;
        default:
            fprintf(stderr, "usage: %s [--members N] [--size BYTES] [--duration SEC] [--timeout SEC]\n", argv[0]);
            return 1;
        }
    }
    if (members < 1 || members > MAX_MEMBERS || members >= END_MARK)
        die("--members must be 1..%d", MAX_MEMBERS);
    if (size < 1 || size > 65000)
        die("--size must be 1..65000");
    arm_deadline(timeout_s);

    memset(&group, 0, sizeof group);
    group.address.sun_family = AF_UNIX;
    snprintf(group.address.sun_path + 1, sizeof group.address.sun_path - 1, "umcast-filter-bench-%d", (int)getpid());
    int g = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (g < 0 || setsockopt(g, SOL_UNIX, UNIX_CREATE_GROUP, &group, sizeof group) < 0)
        die("UNIX_CREATE_GROUP (is LD_PRELOAD=libumcast.so set?):");

    print_machine();
    printf("group of %d member processes, %zu-byte messages, one blocking sender, %.1f s of sending per case\n",
           members, size, duration);
    struct member_result *res = shared_alloc(sizeof *res * (size_t)members);
    struct case_result r[3];
    const char *name[3] = { "filtered", "unfiltered", "refuse-all" };
    for (int k = 0; k < 3; k++) {
        r[k] = run_case(k, res);
        printf("%-10s: %9llu messages in %.3f s (+%.3f s to drain): %9.0f messages/s sent, %9.0f deliveries/s "
               "(%.0f per member); sender CPU %.2f us/message%s\n",
               name[k], (unsigned long long)r[k].sent, r[k].send_s, r[k].total_s - r[k].send_s,
               (double)r[k].sent / r[k].total_s, (double)r[k].deliveries / r[k].total_s,
               (double)r[k].deliveries / r[k].total_s / members, r[k].cpu_s * 1e6 / (double)r[k].sent,
               r[k].ok ? "" : "  [ERRORS]");
    }
    double mf = (double)r[0].sent / r[0].total_s, mu = (double)r[1].sent / r[1].total_s;
    double df = (double)r[0].deliveries / r[0].total_s, du = (double)r[1].deliveries / r[1].total_s;
    printf("ratio filtered/unfiltered: messages/s sent %.2f, deliveries/s %.2f\n", mf / mu, df / du);
    close(g);
    return r[0].ok && r[1].ok && r[2].ok ? 0 : 1;
}
