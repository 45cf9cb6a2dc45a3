/*
 * benchutil.h - timing, statistics and memory helpers shared by the
 * libumcast benchmark programs (fanout, pingpong).
 *
 * Everything here is header-only and static so that each program stays one
 * self-contained binary; nothing in it depends on libumcast.
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NSEC_PER_SEC 1000000000ULL
#define BENCH_UNUSED __attribute__((unused))

/* CLOCK_MONOTONIC is one clock for the whole machine, so a timestamp taken
 * by the sender can be subtracted from one taken by a receiver process. */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling process (all its threads: a helper thread that
 * libumcast might start in the sender is part of the sender's cost). */
static inline uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Sleeps until the absolute CLOCK_MONOTONIC time `t` (used for pacing:
 * absolute deadlines do not drift when one send is slow). */
static inline void sleep_until_ns(uint64_t t)
{
    struct timespec ts = { .tv_sec = (time_t)(t / NSEC_PER_SEC), .tv_nsec = (long)(t % NSEC_PER_SEC) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

__attribute__((format(printf, 1, 2), noreturn)) static inline void die(const char *fmt, ...)
{
    va_list ap;
    int saved = errno;
    fprintf(stderr, "%s[%d]: ", program_invocation_short_name, (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (fmt[0] && fmt[strlen(fmt) - 1] == ':')
        fprintf(stderr, " %s", strerror(saved));
    fputc('\n', stderr);
    exit(2);
}

__attribute__((format(printf, 1, 2))) static inline void warnx_(const char *fmt, ...)
{
    va_list ap;
    int saved = errno;
    fprintf(stderr, "%s[%d]: ", program_invocation_short_name, (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (fmt[0] && fmt[strlen(fmt) - 1] == ':')
        fprintf(stderr, " %s", strerror(saved));
    fputc('\n', stderr);
}

/* Memory shared between the driver and the receivers it forks: results,
 * bitmaps and latency samples. It is a MAP_SHARED mapping, so in the
 * receivers it shows up as RssShmem, which the RSS we report leaves out. */
static inline void *shared_alloc(size_t len)
{
    void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap %zu bytes:", len);
    return p;
}

/* One "Name:   123 kB" field of /proc/self/status, in KiB (-1 if absent). */
static inline long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t flen = strlen(field);
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* The receiver's own memory: resident anonymous and file pages. Shared
 * memory (libumcast's queues, the driver's result area) is left out and
 * reported on its own. */
static inline long private_rss_kb(void)
{
    long anon = status_kb("RssAnon"), file = status_kb("RssFile");
    if (anon < 0 || file < 0)
        return status_kb("VmRSS");
    return anon + file;
}

static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array (p in 0..100). */
static inline uint64_t percentile(const uint64_t *sorted, size_t n, double p)
{
    size_t rank;
    if (n == 0)
        return 0;
    rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static inline double parse_double(const char *s, const char *what)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end)
        die("bad %s: %s", what, s);
    return v;
}

static inline long parse_long(const char *s, const char *what)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 0);
    if (errno || end == s || *end)
        die("bad %s: %s", what, s);
    return v;
}

/*
 * Time limits. Every program arms a deadline; nothing in the benchmark may
 * hang. The first SIGALRM only sets `deadline_hit` (the handler is installed
 * without SA_RESTART, so a blocked send or receive returns EINTR and the
 * program can report the stall). If the program is still running
 * DEADLINE_GRACE seconds later (stuck in a library that retries EINTR), the
 * second SIGALRM kills the children registered in deadline_children and
 * exits with status 3.
 */
#define DEADLINE_GRACE 5

static volatile sig_atomic_t deadline_hit BENCH_UNUSED;
static pid_t *deadline_children BENCH_UNUSED;
static volatile int deadline_nchildren BENCH_UNUSED;

static inline void on_alarm(int sig)
{
    static const char msg[] = "bench: deadline passed twice: killing children and exiting\n";
    (void)sig;
    if (!deadline_hit) {
        deadline_hit = 1;
        alarm(DEADLINE_GRACE);
        return;
    }
    for (int i = 0; i < deadline_nchildren; i++)
        if (deadline_children[i] > 0)
            kill(deadline_children[i], SIGKILL);
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
    }
    _exit(3);
}

static inline void arm_deadline(unsigned seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocked calls must return EINTR */
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

#endif /* BENCHUTIL_H */
