/*
 * fanout.c - one sender, N receiver processes, one transport: the workload
 * that `make bench` runs over every transport (see transport.h).
 *
 *   fanout --transport umcast|unicast|udp|dbus --receivers N --size BYTES
 *          [--duration SEC] [--rate MSGS_PER_SEC] [--timeout SEC]
 *          [--dbus-address ADDR] [--daemon-pid PID]
 *   fanout --list-transports
 *
 * Throughput mode (no --rate): the sender sends as fast as the transport
 * lets it for --duration seconds, then an end marker. Latency mode (--rate):
 * it sends rate*duration messages at absolute, evenly spaced times, and each
 * receiver records, per message, its receive time minus the send timestamp
 * carried in the payload.
 *
 * Receivers record what arrived in a bitmap per receiver (in memory shared
 * with the driver), so the driver can count losses, duplicates, and the
 * messages that every receiver got ("fully delivered"). The throughput time
 * runs from the first send to the last receiver's last data message, so
 * buffering inside a transport (a daemon, socket queues) cannot flatter it.
 *
 * Output: one line on stdout, "RESULT key=value ...", parsed by
 * scripts/bench.sh; diagnostics go to stderr. Exit status 0 when the run
 * completed (even with losses: they are results), 1 when it could not.
 */
#include "benchutil.h"
#include "transport.h"

#include <fcntl.h>
#include <getopt.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* Throughput runs stop early at this many messages: it bounds the bitmaps
 * (512 KiB per receiver) whatever the transport's speed. */
#define MAX_MSGS (1u << 22)
/* A reliable receiver idle this long has stalled; a UDP receiver this long
 * after its last message assumes every end marker was lost. */
#define RELIABLE_IDLE_MS 10000
#define LOSSY_IDLE_MS 2000
/* UDP's end marker may be lost like any datagram: send it this often. */
#define LOSSY_END_REPEATS 10
#define LOSSY_END_GAP_NS 5000000ULL

enum rx_status { RX_RUNNING = 0, RX_DONE, RX_IDLE_END, RX_STALLED, RX_ERROR, RX_OPEN_FAILED };
static const char *rx_status_name[] = { "running", "done", "idle-end", "stalled", "error", "open-failed" };

/* One receiver's results, written by the receiver into shared memory. */
struct rx_result {
    uint32_t status; /* enum rx_status */
    int32_t err;     /* errno for RX_ERROR */
    uint64_t got;    /* distinct data messages */
    uint64_t dup, misorder, bad;
    uint64_t last_ns;   /* receive time of the last data message */
    int64_t rss_kb;     /* private RSS at the end (shared memory left out) */
    uint64_t shm_q;     /* bytes of the libumcast queue files this receiver maps */
    uint64_t shm_g;     /* bytes of the libumcast group segment it maps */
    int32_t rcvbuf;     /* SO_RCVBUF of its socket */
    int32_t pad;
};

static const struct transport_ops *const all_transports[] = {
    &transport_umcast,
    &transport_unicast,
    &transport_udp,
#ifndef BENCH_NO_DBUS
    &transport_dbus,
#endif
};

static struct bench_cfg cfg;
static const struct transport_ops *ops;
static double duration = 1.0;
static double rate; /* 0: throughput mode */
static unsigned timeout_s = 60;
static long daemon_pid;

static uint64_t max_msgs;      /* bitmap size in messages */
static size_t bitmap_words;    /* per receiver */
static struct rx_result *results;
static uint64_t *bitmaps;      /* receivers * bitmap_words */
static uint64_t *samples;      /* latency mode: receivers * max_msgs, indexed by seq */

int set_rcvtimeo(int fd, int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: fanout --transport T --receivers N --size BYTES [--duration SEC] [--rate MSG/S]\n"
            "              [--timeout SEC] [--dbus-address ADDR] [--daemon-pid PID]\n"
            "transports:");
    for (size_t i = 0; i < sizeof all_transports / sizeof all_transports[0]; i++)
        fprintf(stderr, " %s", all_transports[i]->name);
    fputc('\n', stderr);
    exit(2);
}

/* Sizes of the libumcast files this process maps (from /proc/self/maps):
 * the receiver's own queue, and the group segment. A file mapped twice (the
 * queue ring is mirrored) counts once. */
static void umcast_mapped_bytes(uint64_t *queue_bytes, uint64_t *group_bytes)
{
    char line[4096], seen[16][256];
    int nseen = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    *queue_bytes = *group_bytes = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *path = strstr(line, "/dev/shm/umcast.");
        struct stat st;
        int dup = 0;
        if (!path)
            continue;
        path[strcspn(path, "\n")] = 0;
        if (strstr(path, " (deleted)"))
            continue;
        for (int i = 0; i < nseen; i++)
            dup |= strcmp(seen[i], path) == 0;
        if (dup || nseen == 16 || strlen(path) >= sizeof seen[0])
            continue;
        strcpy(seen[nseen++], path);
        if (stat(path, &st) < 0)
            continue;
        if (strncmp(path, "/dev/shm/umcast.q.", 18) == 0)
            *queue_bytes += (uint64_t)st.st_size;
        else if (strncmp(path, "/dev/shm/umcast.g.", 18) == 0)
            *group_bytes += (uint64_t)st.st_size;
    }
    fclose(f);
}

static void receiver(int idx, int ready_fd)
{
    struct rx_result *r = &results[idx];
    uint64_t *bm = bitmaps + (size_t)idx * bitmap_words;
    uint64_t *lat = samples ? samples + (size_t)idx * max_msgs : NULL;
    size_t cap = cfg.size > sizeof(struct msg_hdr) ? cfg.size : sizeof(struct msg_hdr);
    char *buf = malloc(cap);
    uint64_t highest = 0;
    int any = 0;

    /* A receiver never outlives the driver's deadline by much: the default
     * SIGALRM action kills it. */
    signal(SIGALRM, SIG_DFL);
    alarm(timeout_s + 2 * DEADLINE_GRACE);
    if (!buf || ops->rx_open(&cfg, idx) < 0) {
        r->status = RX_OPEN_FAILED;
        r->err = errno;
        if (write(ready_fd, "E", 1) < 0) {
        }
        _exit(1);
    }
    r->rcvbuf = ops->rx_rcvbuf();
    if (write(ready_fd, "R", 1) != 1)
        _exit(1);
    close(ready_fd);

    for (;;) {
        ssize_t n = ops->rx_recv(buf, cap);
        uint64_t t = now_ns();
        const struct msg_hdr *h = (const struct msg_hdr *)buf;
        uint64_t seq, bit;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                r->status = ops->lossy ? RX_IDLE_END : RX_STALLED;
            } else {
                r->status = RX_ERROR;
                r->err = errno;
            }
            break;
        }
        if ((size_t)n < sizeof *h || h->magic != BENCH_MAGIC) {
            r->bad++;
            continue;
        }
        if (h->kind == MSG_END) {
            r->status = RX_DONE;
            break;
        }
        seq = h->seq;
        if (h->kind != MSG_DATA || (size_t)n != cfg.size || h->size != cfg.size || seq >= max_msgs) {
            r->bad++; /* wrong length or a corrupted header */
            continue;
        }
        bit = 1ULL << (seq % 64);
        if (bm[seq / 64] & bit) {
            r->dup++;
            continue;
        }
        bm[seq / 64] |= bit;
        r->got++;
        if (any && seq < highest)
            r->misorder++;
        else
            highest = seq;
        any = 1;
        r->last_ns = t;
        if (lat)
            lat[seq] = t - h->sent_ns;
    }
    /* Measured while still a member, so the queue file still exists. */
    r->rss_kb = private_rss_kb();
    umcast_mapped_bytes(&r->shm_q, &r->shm_g);
    ops->rx_close();
    _exit(0);
}

/* utime + stime of another process, in ns (0 if unknown). */
static uint64_t process_cpu_ns(long pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    p = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')')))
        return 0;
    /* Fields after "pid (comm)": state is field 3; utime, stime are 14, 15. */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (ut + st) * (NSEC_PER_SEC / (uint64_t)sysconf(_SC_CLK_TCK));
}

static void kill_children(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
}

/* atexit: a driver that dies (die()) after forking must not leave receivers
 * blocked in recv until their own alarm. Reaped children are 0 here. */
static void kill_leftover_children(void)
{
    if (deadline_children)
        kill_children(deadline_children, deadline_nchildren);
}

/* Reaps every child; returns how many died of a signal or exited non-zero. */
static int reap_children(pid_t *pids, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int st;
        if (pids[i] <= 0)
            continue;
        while (waitpid(pids[i], &st, 0) < 0) {
            if (errno != EINTR) {
                st = 0;
                break;
            }
            if (deadline_hit)
                kill_children(pids, n); /* then keep reaping */
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad++;
        pids[i] = 0;
    }
    return bad;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "transport", required_argument, NULL, 't' }, { "receivers", required_argument, NULL, 'n' },
        { "size", required_argument, NULL, 's' },      { "duration", required_argument, NULL, 'd' },
        { "rate", required_argument, NULL, 'r' },      { "timeout", required_argument, NULL, 'T' },
        { "dbus-address", required_argument, NULL, 'a' }, { "daemon-pid", required_argument, NULL, 'p' },
        { "list-transports", no_argument, NULL, 'l' }, { NULL, 0, NULL, 0 },
    };
    char run_id[64];
    int opt, ready[2], nready = 0, child_failures, sender_failed = 0, sender_errno = 0;
    const char *status = "ok";
    pid_t *pids;
    char *payload;
    struct msg_hdr *hdr;
    uint64_t sent = 0, t0, t_last_send, cpu0, cpu1, dcpu0, dcpu1, count = 0;

    cfg.receivers = 1;
    cfg.size = 64;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': cfg.transport = optarg; break;
        case 'n': cfg.receivers = (int)parse_long(optarg, "receivers"); break;
        case 's': cfg.size = (size_t)parse_long(optarg, "size"); break;
        case 'd': duration = parse_double(optarg, "duration"); break;
        case 'r': rate = parse_double(optarg, "rate"); break;
        case 'T': timeout_s = (unsigned)parse_long(optarg, "timeout"); break;
        case 'a': cfg.dbus_addr = optarg; break;
        case 'p': daemon_pid = parse_long(optarg, "daemon-pid"); break;
        case 'l':
            /* Lets bench.sh see whether this build has the D-Bus transport. */
            for (size_t i = 0; i < sizeof all_transports / sizeof all_transports[0]; i++)
                printf("%s\n", all_transports[i]->name);
            return 0;
        default: usage();
        }
    }
    if (!cfg.transport || optind != argc || cfg.receivers < 1 || cfg.receivers > 1024 || duration <= 0 || rate < 0)
        usage();
    for (size_t i = 0; i < sizeof all_transports / sizeof all_transports[0]; i++)
        if (strcmp(all_transports[i]->name, cfg.transport) == 0)
            ops = all_transports[i];
    if (!ops)
        die("unknown or not built transport '%s'", cfg.transport);
    if (cfg.size < sizeof(struct msg_hdr))
        die("--size must be at least %zu (the header)", sizeof(struct msg_hdr));
    if (ops->max_size && cfg.size > ops->max_size)
        die("%s carries at most %zu bytes per message", ops->name, ops->max_size);

    snprintf(run_id, sizeof run_id, "%d.%llu", (int)getpid(), (unsigned long long)(now_ns() % 1000000000ULL));
    cfg.run_id = run_id;
    cfg.rx_idle_ms = ops->lossy ? LOSSY_IDLE_MS : RELIABLE_IDLE_MS;
    if (rate > 0) {
        count = (uint64_t)(rate * duration + 0.5);
        if (count < 20)
            count = 20; /* enough samples for a p99 to mean something */
        max_msgs = count;
    } else {
        max_msgs = MAX_MSGS;
    }
    bitmap_words = (size_t)((max_msgs + 63) / 64);
    results = shared_alloc(sizeof *results * (size_t)cfg.receivers);
    bitmaps = shared_alloc(sizeof *bitmaps * bitmap_words * (size_t)cfg.receivers);
    if (rate > 0)
        samples = shared_alloc(sizeof *samples * (size_t)max_msgs * (size_t)cfg.receivers);
    signal(SIGPIPE, SIG_IGN);
    arm_deadline(timeout_s);

    if (ops->setup(&cfg) < 0)
        die("%s: setup failed:", ops->name);
    if (pipe(ready) < 0)
        die("pipe:");
    pids = calloc((size_t)cfg.receivers, sizeof *pids);
    if (!pids)
        die("calloc:");
    deadline_children = pids;
    atexit(kill_leftover_children); /* receivers leave with _exit: not run there */
    for (int i = 0; i < cfg.receivers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            warnx_("fork:");
            kill_children(pids, i);
            reap_children(pids, i);
            exit(1);
        }
        if (pid == 0) {
            close(ready[0]);
            receiver(i, ready[1]);
        }
        pids[i] = pid;
        deadline_nchildren = i + 1;
    }
    close(ready[1]);

    /* Wait until every receiver has joined / bound / added its match rule:
     * the sender must not start before the last one can receive. */
    while (nready < cfg.receivers) {
        char c;
        ssize_t n = read(ready[0], &c, 1);
        if (n == 1 && c == 'R') {
            nready++;
            continue;
        }
        if (n < 0 && errno == EINTR && !deadline_hit)
            continue;
        warnx_("%s: only %d of %d receivers got ready%s", ops->name, nready, cfg.receivers,
               deadline_hit ? " before the deadline" : "");
        kill_children(pids, cfg.receivers);
        reap_children(pids, cfg.receivers);
        printf("RESULT transport=%s n=%d size=%zu mode=%s status=setup-failed\n", ops->name, cfg.receivers,
               cfg.size, rate > 0 ? "lat" : "tput");
        return 1;
    }
    close(ready[0]);

    if (ops->tx_open(&cfg) < 0)
        die("%s: sender setup failed:", ops->name);
    payload = malloc(cfg.size);
    if (!payload)
        die("malloc:");
    memset(payload, 0xa5, cfg.size); /* touch it, so page faults are not in the timing */
    hdr = (struct msg_hdr *)payload;
    hdr->magic = BENCH_MAGIC;
    hdr->kind = MSG_DATA;
    hdr->size = (uint32_t)cfg.size;

    dcpu0 = process_cpu_ns(daemon_pid);
    cpu0 = cpu_ns();
    t0 = now_ns();
    t_last_send = t0;
    if (rate > 0) {
        /* Paced: message i leaves at t0 + i/rate. A late sender sends at
         * once rather than skipping; the stamp is the real send time. */
        double period = 1e9 / rate;
        for (sent = 0; sent < count && !deadline_hit; sent++) {
            uint64_t due = t0 + (uint64_t)(period * (double)sent);
            if (now_ns() < due)
                sleep_until_ns(due);
            hdr->seq = sent;
            hdr->sent_ns = t_last_send = now_ns();
            if (ops->tx_send(payload, cfg.size) < 0) {
                sender_failed = 1;
                sender_errno = errno;
                break;
            }
        }
    } else {
        uint64_t t_end = t0 + (uint64_t)(duration * 1e9);
        for (sent = 0; sent < max_msgs; sent++) {
            /* The timestamp doubles as the clock check: no extra call. */
            uint64_t t = now_ns();
            if (t >= t_end || deadline_hit)
                break;
            hdr->seq = sent;
            hdr->sent_ns = t_last_send = t;
            if (ops->tx_send(payload, cfg.size) < 0) {
                sender_failed = 1;
                sender_errno = errno;
                break;
            }
        }
    }
    if (ops->tx_flush && !sender_failed && ops->tx_flush() < 0) {
        sender_failed = 1;
        sender_errno = errno;
    }
    cpu1 = cpu_ns();

    if (sender_failed || deadline_hit) {
        if (deadline_hit)
            warnx_("%s: deadline of %us passed while sending (message %llu): a blocked send?", ops->name,
                   timeout_s, (unsigned long long)sent);
        else
            warnx_("%s: send of message %llu failed: %s", ops->name, (unsigned long long)sent,
                   strerror(sender_errno));
        status = deadline_hit ? "timeout" : "send-error";
        kill_children(pids, cfg.receivers);
    } else {
        /* The end marker carries the count. Reliable transports deliver it
         * after every data message; UDP may lose it, so repeat it. */
        int repeats = ops->lossy ? LOSSY_END_REPEATS : 1;
        hdr->kind = MSG_END;
        hdr->seq = sent;
        for (int i = 0; i < repeats; i++) {
            hdr->sent_ns = now_ns();
            if (ops->tx_send(payload, cfg.size) < 0 && !ops->lossy) {
                warnx_("%s: sending the end marker failed:", ops->name);
                status = "send-error";
                kill_children(pids, cfg.receivers);
                break;
            }
            if (i + 1 < repeats)
                sleep_until_ns(now_ns() + LOSSY_END_GAP_NS);
        }
        if (ops->tx_flush)
            ops->tx_flush();
    }
    child_failures = reap_children(pids, cfg.receivers);
    dcpu1 = process_cpu_ns(daemon_pid);
    ops->tx_close();
    if (ops->teardown)
        ops->teardown();
    if (deadline_hit && strcmp(status, "ok") == 0)
        status = "timeout";

    /* ---- results ---- */
    {
        uint64_t deliveries = 0, dup = 0, misorder = 0, bad = 0, last = t0, full = 0, shm_q = 0, shm_g = 0, expected;
        int64_t rss_max = 0;
        int rcvbuf = -1, stalled = 0, errors = 0;
        double secs, send_secs = (double)(t_last_send - t0) / 1e9;
        uint64_t p50 = 0, p99 = 0, pmax = 0, nsamples = 0;

        for (int i = 0; i < cfg.receivers; i++) {
            const struct rx_result *r = &results[i];
            deliveries += r->got;
            dup += r->dup;
            misorder += r->misorder;
            bad += r->bad;
            if (r->got && r->last_ns > last)
                last = r->last_ns;
            if (r->rss_kb > rss_max)
                rss_max = r->rss_kb;
            shm_q += r->shm_q;
            if (r->shm_g > shm_g)
                shm_g = r->shm_g;
            if (rcvbuf < 0)
                rcvbuf = r->rcvbuf;
            if (r->status == RX_STALLED)
                stalled++;
            else if (r->status != RX_DONE && r->status != RX_IDLE_END) {
                errors++;
                warnx_("%s: receiver %d ended as %s (%s)", ops->name, i,
                       r->status < sizeof rx_status_name / sizeof rx_status_name[0] ? rx_status_name[r->status] : "?",
                       r->err ? strerror(r->err) : "-");
            }
        }
        if (stalled)
            warnx_("%s: %d receiver(s) got nothing for %d ms and gave up (stall)", ops->name, stalled,
                   cfg.rx_idle_ms);
        if (strcmp(status, "ok") == 0 && (stalled || errors || child_failures))
            status = stalled ? "stall" : "receiver-error";

        /* Fully delivered: the messages present in every receiver's bitmap. */
        for (size_t w = 0; w < bitmap_words && (uint64_t)w * 64 < sent; w++) {
            uint64_t all = ~0ULL;
            for (int i = 0; i < cfg.receivers; i++)
                all &= bitmaps[(size_t)i * bitmap_words + w];
            if ((uint64_t)(w + 1) * 64 > sent)
                all &= (1ULL << (sent % 64)) - 1;
            full += (uint64_t)__builtin_popcountll(all);
        }

        if (samples) {
            uint64_t *all = malloc(sizeof *all * (deliveries ? deliveries : 1));
            for (int i = 0; all && i < cfg.receivers; i++)
                for (uint64_t s = 0; s < sent; s++)
                    if (bitmaps[(size_t)i * bitmap_words + s / 64] & (1ULL << (s % 64)))
                        all[nsamples++] = samples[(size_t)i * max_msgs + s];
            qsort(all, nsamples, sizeof *all, cmp_u64);
            p50 = percentile(all, nsamples, 50);
            p99 = percentile(all, nsamples, 99);
            pmax = nsamples ? all[nsamples - 1] : 0;
            free(all);
        }

        expected = sent * (uint64_t)cfg.receivers;
        secs = (double)(last - t0) / 1e9;
        if (secs <= 0)
            secs = 1e-9;
        printf("RESULT transport=%s n=%d size=%zu mode=%s status=%s sent=%llu secs=%.6f send_secs=%.6f"
               " full=%llu deliveries=%llu lost=%llu dup=%llu misorder=%llu bad=%llu"
               " msgs_per_s=%.1f deliv_per_s=%.1f cpu_ns_per_msg=%.1f daemon_cpu_ns_per_msg=%.1f"
               " rss_kb=%lld shm_q_per_member=%llu shm_g=%llu rcvbuf=%d"
               " rate=%.0f achieved_rate=%.1f samples=%llu p50_ns=%llu p99_ns=%llu max_ns=%llu\n",
               ops->name, cfg.receivers, cfg.size, rate > 0 ? "lat" : "tput", status, (unsigned long long)sent,
               secs, send_secs, (unsigned long long)full, (unsigned long long)deliveries,
               (unsigned long long)(expected > deliveries ? expected - deliveries : 0),
               (unsigned long long)dup, (unsigned long long)misorder, (unsigned long long)bad,
               (double)full / secs, (double)deliveries / secs,
               sent ? (double)(cpu1 - cpu0) / (double)sent : 0.0,
               sent && daemon_pid ? (double)(dcpu1 - dcpu0) / (double)sent : 0.0, (long long)rss_max,
               (unsigned long long)(shm_q / (uint64_t)cfg.receivers), (unsigned long long)shm_g, rcvbuf, rate,
               send_secs > 0 && sent > 1 ? (double)(sent - 1) / send_secs : 0.0, (unsigned long long)nsamples,
               (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)pmax);
    }
    return strcmp(status, "ok") == 0 ? 0 : 1;
}
