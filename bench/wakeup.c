/*
 * wakeup.c - wake-up latency: the time from a send until a receiver that was
 * asleep in epoll_wait has returned from it and holds the message.
 *
 *   wakeup --transport umcast|unix [--receivers N] [--duration SEC]
 *          [--max-samples K] [--warmup K] [--gap-us US] [--timeout SEC]
 *          [--cpu-sender C] [--cpu-receivers C]
 *
 * One sender (this process) and N receiver processes (forked). Each receiver
 * has one blocking AF_UNIX SOCK_DGRAM socket registered once, level-triggered
 * (EPOLLIN), in its own epoll set. It loops: epoll_wait(-1); recv(MSG_DONTWAIT);
 * take CLOCK_MONOTONIC; store (that time - the send time in the message) in
 * memory shared with the sender; write one byte to the acknowledgement pipe.
 *
 * The sender, per sample: takes CLOCK_MONOTONIC, puts it in a 64-byte
 * message, sends; waits for the N acknowledgements; sleeps --gap-us (200 µs)
 * so that every receiver is back asleep in epoll_wait before the next
 * message. It stops after --duration seconds of measuring (after --warmup
 * unmeasured rounds: page faults, the library's first doorbell use) or at
 * --max-samples.
 *
 * umcast: the driver creates a libumcast group (it must run under
 *         LD_PRELOAD=libumcast.so), every receiver joins it, the sender sends
 *         one sendto() to the group address from an unbound socket.
 * unix:   every receiver binds its socket to an abstract address; the sender
 *         makes one sendto() per receiver, in receiver order, all copies
 *         carrying the one timestamp taken before the first sendto (what it
 *         costs to tell N processes the same thing without multicast).
 *
 * Abstract addresses only: nothing is left in the file system, and the
 * group's segment goes away with the last of its sockets ("umbench." prefix,
 * which scripts/bench.sh checks for leftovers).
 *
 * --cpu-sender / --cpu-receivers pin the sender / every receiver to one CPU
 * (-1, the default: not pinned).
 *
 * Output: one line on stdout, "RESULT key=value ...", read by
 * scripts/bench.sh: p50/p99/max over every delivery (samples x N), and the
 * same for the last receiver of each message (the time until all N have it).
 * Exit status 0 when the run completed, 1 otherwise.
 */
#include "benchutil.h"
#include "umcast.h"

#include <getopt.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define MSG_SIZE 64
#define WAKE_MAGIC 0x656b61776d756d75ULL /* "umumwake" */
enum { WK_DATA = 1, WK_END = 2 };

struct wake_msg {
    uint64_t magic;
    uint64_t seq;     /* round number, warm-up rounds included */
    uint64_t sent_ns; /* CLOCK_MONOTONIC just before the (first) sendto */
    uint32_t kind;    /* WK_DATA or WK_END */
    int32_t send_cpu; /* the CPU the sender was on when it took sent_ns */
    char pad[MSG_SIZE - 32];
};
_Static_assert(sizeof(struct wake_msg) == MSG_SIZE, "the message is 64 bytes");

enum rx_status { RX_RUNNING = 0, RX_DONE, RX_ERROR, RX_OPEN_FAILED };

/* One receiver's counters, in shared memory. */
struct rx_result {
    uint32_t status;
    int32_t err;
    uint64_t got;      /* data messages */
    uint64_t spurious; /* epoll_wait returned but recv found nothing */
    uint64_t bad;      /* wrong length, magic or sequence */
    uint64_t same_cpu; /* deliveries where the receiver ran on the sender's CPU */
};

static int use_umcast, nrx = 1, cpu_sender = -1, cpu_receivers = -1;
static double duration = 2.0;
static long max_samples = 20000, warmup = 200, gap_us = 200;
static unsigned timeout_s = 30;

static struct rx_result *results;
static uint64_t *lat; /* (warmup + max_samples) rounds x nrx, ns; 0 = none */
static uint64_t rounds_cap;

static struct unix_mreq mreq; /* umcast: the group address */
static struct sockaddr_un *rx_addr; /* unix: each receiver's address */
static socklen_t *rx_addrlen;

static void pin(int cpu)
{
    cpu_set_t set;
    if (cpu < 0)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        die("sched_setaffinity(CPU %d):", cpu);
}

static void receiver(int idx, int ack_fd)
{
    struct rx_result *r = &results[idx];
    struct epoll_event ev = { .events = EPOLLIN };
    struct wake_msg m;
    int fd, ep;

    /* Never outlive the driver: killed with it, or by our own alarm. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGALRM, SIG_DFL);
    alarm(timeout_s + 2 * DEADLINE_GRACE);
    pin(cpu_receivers);

    fd = socket(AF_UNIX, SOCK_DGRAM, 0); /* blocking */
    if (fd < 0)
        goto open_failed;
    if (use_umcast) {
        if (setsockopt(fd, SOL_UNIX, UNIX_JOIN_GROUP, &mreq, sizeof mreq) < 0) {
            warnx_("UNIX_JOIN_GROUP:");
            goto open_failed;
        }
    } else if (bind(fd, (struct sockaddr *)&rx_addr[idx], rx_addrlen[idx]) < 0) {
        warnx_("bind:");
        goto open_failed;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) /* level-triggered, once */
        goto open_failed;
    if (write(ack_fd, "R", 1) != 1)
        _exit(1);

    for (;;) {
        struct epoll_event out;
        ssize_t n;
        uint64_t t;
        int k = epoll_wait(ep, &out, 1, -1);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            r->status = RX_ERROR;
            r->err = errno;
            break;
        }
        if (k == 0)
            continue;
        n = recv(fd, &m, sizeof m, MSG_DONTWAIT);
        t = now_ns();
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                r->spurious++;
                continue;
            }
            r->status = RX_ERROR;
            r->err = errno;
            break;
        }
        if (n != MSG_SIZE || m.magic != WAKE_MAGIC || (m.kind == WK_DATA && m.seq >= rounds_cap)) {
            r->bad++;
            continue;
        }
        if (m.kind == WK_END) {
            r->status = RX_DONE;
            break;
        }
        if (m.seq >= (uint64_t)warmup && m.send_cpu >= 0 && sched_getcpu() == m.send_cpu)
            r->same_cpu++;
        lat[m.seq * (uint64_t)nrx + (uint64_t)idx] = t > m.sent_ns ? t - m.sent_ns : 1;
        r->got++;
        if (write(ack_fd, "A", 1) != 1) {
            r->status = RX_ERROR;
            r->err = errno;
            break;
        }
    }
    close(fd);
    _exit(r->status == RX_DONE ? 0 : 1);

open_failed:
    r->status = RX_OPEN_FAILED;
    r->err = errno;
    if (write(ack_fd, "E", 1) < 0) {
    }
    _exit(1);
}

static pid_t *pids;

static void kill_children(void)
{
    for (int i = 0; i < nrx; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
}

static int reap_children(void)
{
    int bad = 0;
    for (int i = 0; i < nrx; i++) {
        int st;
        if (pids[i] <= 0)
            continue;
        while (waitpid(pids[i], &st, 0) < 0) {
            if (errno != EINTR) {
                st = 0;
                break;
            }
            if (deadline_hit)
                kill_children();
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad++;
        pids[i] = 0;
    }
    return bad;
}

/* Sends one message to every receiver: 0, or -1 with errno. */
static int send_all(int fd, const struct wake_msg *m)
{
    if (use_umcast)
        return sendto(fd, m, sizeof *m, 0, (const struct sockaddr *)&mreq.address, unix_mreq_addrlen(&mreq)) ==
                       (ssize_t)sizeof *m
                   ? 0
                   : -1;
    for (int i = 0; i < nrx; i++)
        if (sendto(fd, m, sizeof *m, 0, (const struct sockaddr *)&rx_addr[i], rx_addrlen[i]) != (ssize_t)sizeof *m)
            return -1;
    return 0;
}

/* Reads `want` one-byte acknowledgements; 0, or -1 (error, a receiver
 * failed ('E'), end of file, or the deadline). */
static int read_acks(int fd, int want)
{
    char buf[64];
    while (want > 0) {
        ssize_t n = read(fd, buf, (size_t)want < sizeof buf ? (size_t)want : sizeof buf);
        if (n < 0 && errno == EINTR && !deadline_hit)
            continue;
        if (n <= 0)
            return -1;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == 'E')
                return -1;
        want -= (int)n;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: wakeup --transport umcast|unix [--receivers N] [--duration SEC] [--max-samples K]\n"
                    "              [--warmup K] [--gap-us US] [--timeout SEC] [--cpu-sender C] [--cpu-receivers C]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "transport", required_argument, NULL, 't' },     { "receivers", required_argument, NULL, 'n' },
        { "duration", required_argument, NULL, 'd' },      { "max-samples", required_argument, NULL, 'm' },
        { "warmup", required_argument, NULL, 'w' },        { "gap-us", required_argument, NULL, 'g' },
        { "timeout", required_argument, NULL, 'T' },       { "cpu-sender", required_argument, NULL, 's' },
        { "cpu-receivers", required_argument, NULL, 'r' }, { NULL, 0, NULL, 0 },
    };
    const char *transport = NULL, *status = "ok";
    char name[80];
    int opt, ack[2], group_fd = -1, tx_fd, nready = 0;
    uint64_t round = 0, measured = 0, t0 = 0, t_end = 0, t1;
    struct wake_msg m;
    uint64_t gap_ns;

    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': transport = optarg; break;
        case 'n': nrx = (int)parse_long(optarg, "receivers"); break;
        case 'd': duration = parse_double(optarg, "duration"); break;
        case 'm': max_samples = parse_long(optarg, "max-samples"); break;
        case 'w': warmup = parse_long(optarg, "warmup"); break;
        case 'g': gap_us = parse_long(optarg, "gap-us"); break;
        case 'T': timeout_s = (unsigned)parse_long(optarg, "timeout"); break;
        case 's': cpu_sender = (int)parse_long(optarg, "cpu-sender"); break;
        case 'r': cpu_receivers = (int)parse_long(optarg, "cpu-receivers"); break;
        default: usage();
        }
    }
    if (!transport || optind != argc || nrx < 1 || nrx > 64 || duration <= 0 || max_samples < 1 ||
        max_samples > 1000000 || warmup < 0 || gap_us < 0 || timeout_s < 1)
        usage();
    if (strcmp(transport, "umcast") == 0)
        use_umcast = 1;
    else if (strcmp(transport, "unix") != 0)
        usage();

    rounds_cap = (uint64_t)(warmup + max_samples);
    results = shared_alloc(sizeof *results * (size_t)nrx);
    lat = shared_alloc(sizeof *lat * (size_t)rounds_cap * (size_t)nrx);
    pids = calloc((size_t)nrx, sizeof *pids);
    rx_addr = calloc((size_t)nrx, sizeof *rx_addr);
    rx_addrlen = calloc((size_t)nrx, sizeof *rx_addrlen);
    if (!pids || !rx_addr || !rx_addrlen)
        die("calloc:");
    signal(SIGPIPE, SIG_IGN);
    arm_deadline(timeout_s);

    snprintf(name, sizeof name, "umbench.wake.%d.%llu", (int)getpid(), (unsigned long long)(now_ns() % 1000000000ULL));
    if (use_umcast) {
        memset(&mreq, 0, sizeof mreq);
        mreq.address.sun_family = AF_UNIX;
        snprintf(mreq.address.sun_path + 1, sizeof mreq.address.sun_path - 1, "%s", name);
        group_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (group_fd < 0)
            die("socket:");
        if (setsockopt(group_fd, SOL_UNIX, UNIX_CREATE_GROUP, &mreq, sizeof mreq) < 0)
            die("UNIX_CREATE_GROUP failed (is LD_PRELOAD=libumcast.so set?):");
    } else {
        for (int i = 0; i < nrx; i++) {
            int len;
            rx_addr[i].sun_family = AF_UNIX;
            len = snprintf(rx_addr[i].sun_path + 1, sizeof rx_addr[i].sun_path - 1, "%s.rx%d", name, i);
            rx_addrlen[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
        }
    }

    if (pipe(ack) < 0)
        die("pipe:");
    deadline_children = pids;
    atexit(kill_children); /* receivers leave with _exit: not run there */
    for (int i = 0; i < nrx; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            warnx_("fork:");
            kill_children();
            reap_children();
            exit(1);
        }
        if (pid == 0) {
            close(ack[0]);
            receiver(i, ack[1]);
        }
        pids[i] = pid;
        deadline_nchildren = i + 1;
    }
    close(ack[1]);
    pin(cpu_sender);
    /* The gap is a short sleep: keep its default 50 µs of timer slack out. */
    prctl(PR_SET_TIMERSLACK, 1000UL);

    /* Every receiver has joined / bound and registered before the first send. */
    while (nready < nrx) {
        char c;
        ssize_t n = read(ack[0], &c, 1);
        if (n == 1 && c == 'R') {
            nready++;
            continue;
        }
        if (n < 0 && errno == EINTR && !deadline_hit)
            continue;
        warnx_("%s: only %d of %d receivers got ready", transport, nready, nrx);
        kill_children();
        reap_children();
        printf("RESULT wakeup=1 transport=%s n=%d status=setup-failed\n", transport, nrx);
        return 1;
    }

    tx_fd = socket(AF_UNIX, SOCK_DGRAM, 0); /* unbound, blocking */
    if (tx_fd < 0)
        die("socket:");
    memset(&m, 0, sizeof m);
    memset(m.pad, 0xa5, sizeof m.pad);
    m.magic = WAKE_MAGIC;
    m.kind = WK_DATA;
    gap_ns = (uint64_t)gap_us * 1000;

    for (round = 0; round < rounds_cap; round++) {
        if (round == (uint64_t)warmup) {
            t0 = now_ns();
            t_end = t0 + (uint64_t)(duration * 1e9);
        }
        if (round > (uint64_t)warmup && now_ns() >= t_end)
            break;
        if (deadline_hit) {
            status = "timeout";
            break;
        }
        m.seq = round;
        m.send_cpu = sched_getcpu();
        m.sent_ns = now_ns();
        if (send_all(tx_fd, &m) < 0) {
            warnx_("%s: send of round %llu failed:", transport, (unsigned long long)round);
            status = "send-error";
            break;
        }
        if (read_acks(ack[0], nrx) < 0) {
            warnx_("%s: round %llu: %s", transport, (unsigned long long)round,
                   deadline_hit ? "no acknowledgement before the deadline" : "a receiver failed");
            status = deadline_hit ? "timeout" : "receiver-error";
            break;
        }
        if ((uint64_t)round >= (uint64_t)warmup)
            measured++;
        /* The receivers are back in epoll_wait long before this ends. */
        sleep_until_ns(now_ns() + gap_ns);
    }
    t1 = now_ns();

    if (strcmp(status, "ok") == 0) {
        m.kind = WK_END;
        m.seq = round;
        m.sent_ns = now_ns();
        if (send_all(tx_fd, &m) < 0) {
            warnx_("%s: sending the end marker failed:", transport);
            status = "send-error";
        }
    }
    if (strcmp(status, "ok") != 0)
        kill_children();
    if (reap_children() && strcmp(status, "ok") == 0)
        status = "receiver-error";
    close(tx_fd);
    if (group_fd >= 0)
        close(group_fd);
    close(ack[0]);

    {
        uint64_t first = (uint64_t)warmup, last = first + measured, nall = 0, nlast = 0;
        uint64_t *all = malloc(sizeof *all * (size_t)(measured * (uint64_t)nrx + 1));
        uint64_t *worst = malloc(sizeof *worst * (size_t)(measured + 1));
        uint64_t spurious = 0, bad = 0, same = 0, got = 0, sum = 0;
        if (!all || !worst)
            die("malloc:");
        for (int i = 0; i < nrx; i++) {
            spurious += results[i].spurious;
            bad += results[i].bad;
            same += results[i].same_cpu;
            got += results[i].got;
            if (results[i].status != RX_DONE && strcmp(status, "ok") == 0)
                status = "receiver-error";
        }
        for (uint64_t s = first; s < last; s++) {
            uint64_t w = 0;
            int complete = 1;
            for (int i = 0; i < nrx; i++) {
                uint64_t v = lat[s * (uint64_t)nrx + (uint64_t)i];
                if (!v) {
                    complete = 0;
                    continue;
                }
                all[nall++] = v;
                sum += v;
                if (v > w)
                    w = v;
            }
            if (complete)
                worst[nlast++] = w;
        }
        qsort(all, nall, sizeof *all, cmp_u64);
        qsort(worst, nlast, sizeof *worst, cmp_u64);
        printf("RESULT wakeup=1 transport=%s n=%d size=%d status=%s cpu_sender=%d cpu_receivers=%d gap_us=%ld"
               " warmup=%ld samples=%llu deliveries=%llu secs=%.3f p50_ns=%llu p99_ns=%llu max_ns=%llu mean_ns=%.0f"
               " last_p50_ns=%llu last_p99_ns=%llu last_max_ns=%llu spurious=%llu bad=%llu same_cpu=%llu got=%llu\n",
               transport, nrx, MSG_SIZE, status, cpu_sender, cpu_receivers, gap_us, warmup,
               (unsigned long long)measured, (unsigned long long)nall, (double)(t1 - t0) / 1e9,
               (unsigned long long)percentile(all, nall, 50), (unsigned long long)percentile(all, nall, 99),
               (unsigned long long)(nall ? all[nall - 1] : 0), nall ? (double)sum / (double)nall : 0.0,
               (unsigned long long)percentile(worst, nlast, 50), (unsigned long long)percentile(worst, nlast, 99),
               (unsigned long long)(nlast ? worst[nlast - 1] : 0), (unsigned long long)spurious,
               (unsigned long long)bad, (unsigned long long)same, (unsigned long long)got);
        free(all);
        free(worst);
    }
    return strcmp(status, "ok") == 0 ? 0 : 1;
}
