/*
 * t_threads: one process, 8 threads, on one group, plus another process:
 *   - 3 threads read one shared member socket (blocking recv; poll +
 *     MSG_DONTWAIT; epoll + MSG_DONTWAIT): every message is read exactly once
 *     among them, each thread sees each sender's messages in order;
 *   - 2 threads each have their own member socket (blocking recv; poll):
 *     each gets every message exactly once, per-sender FIFO;
 *   - 3 threads send: one from its own socket with sendto, two from one
 *     shared socket connected to the group (send and sendmsg);
 *   - another process sends too (write on a connected socket).
 * No deadlock (every thread must finish within the deadline), no lost or
 * duplicated message, per-sender FIFO. Messages carry (sender, seq) and a
 * checksum; sizes vary from 8 to 1500 bytes.
 */
#include "testutil.h"

#include <pthread.h>
#include <sys/epoll.h>

#define NSEND 4 /* 3 threads + 1 process */
#define N 8000
#define MAX_PAYLOAD 1500
#define MSG_CAP (sizeof(struct tu_msg_hdr) + MAX_PAYLOAD + 64)
#define END_SEQ 0xffffffffu
#define DEADLINE 20.0

static struct unix_mreq group;
static int shared_member, shared_sender;
static uint8_t reads[NSEND][N];       /* by the shared readers */
static uint32_t shared_total, shared_ends;
static uint32_t shared_by[3];
static int shared_done;
static uint32_t own_got[2], own_joined;
static pthread_barrier_t start;
static struct tu_gate proc_go;

static size_t make(unsigned char *buf, uint32_t sender, uint32_t seq)
{
    if (seq == END_SEQ)
        return tu_make_msg(buf, MSG_CAP, sender, seq, 8);
    return tu_make_msg(buf, MSG_CAP, sender, seq, 8 + (seq * 2654435761u + sender * 97) % (MAX_PAYLOAD - 8));
}

/* ---- senders ---- */

static void *sender_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned char buf[MSG_CAP];
    int own = id == 0 ? tu_dgram() : -1;
    pthread_barrier_wait(&start);
    for (uint32_t i = 0; i <= N; i++) {
        uint32_t seq = i == N ? END_SEQ : i;
        size_t len = make(buf, (uint32_t)id, seq);
        ssize_t n;
        if (id == 0) {
            n = tu_sendto_group(own, buf, len, 0, &group);
        } else if (id == 1) {
            n = send(shared_sender, buf, len, 0);
        } else {
            struct iovec iov[2] = {{buf, 16}, {buf + 16, len - 16}};
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
            n = sendmsg(shared_sender, &mh, 0);
        }
        CHECK(n == (ssize_t)len, "sender thread %d: send %u", id, i);
    }
    return NULL;
}

static int sender_process(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    CHECK(connect(s, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0, "connect");
    unsigned char buf[MSG_CAP];
    tu_gate_arrive(&proc_go);
    tu_gate_pass(&proc_go);
    for (uint32_t i = 0; i <= N; i++) {
        size_t len = make(buf, 3, i == N ? END_SEQ : i);
        CHECK(write(s, buf, len) == (ssize_t)len, "sender process: write %u", i);
    }
    return 0;
}

/* ---- readers ---- */

static int check_one(const unsigned char *buf, ssize_t n, struct tu_msg_hdr *h, const char *who)
{
    CHECK(n >= 0, "%s: recv", who);
    CHECK(tu_check_msg(buf, n, h) == 0, "%s: corrupt message (%zd bytes)", who, n);
    CHECK(h->sender < NSEND && (h->seq < N || h->seq == END_SEQ), "%s: message (%u,%u)?", who, h->sender,
          h->seq);
    return h->seq == END_SEQ;
}

/* Own member: every message once, each sender in order. */
static void *own_reader(void *arg)
{
    int id = (int)(intptr_t)arg;
    char who[32];
    snprintf(who, sizeof who, "own reader %d", id);
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 10000);
    __atomic_add_fetch(&own_joined, 1, __ATOMIC_SEQ_CST);
    pthread_barrier_wait(&start);
    unsigned char buf[MSG_CAP];
    uint32_t next[NSEND] = {0};
    int ends = 0;
    while (ends < NSEND) {
        if (id == 1) { /* waits in poll */
            struct pollfd p = {.fd = m, .events = POLLIN};
            int r = poll(&p, 1, 10000);
            CHECK(r == 1 && (p.revents & POLLIN), "%s: poll gave %d (0x%x)", who, r, p.revents);
        }
        ssize_t n = recv(m, buf, sizeof buf, id == 1 ? MSG_DONTWAIT : 0);
        struct tu_msg_hdr h;
        if (check_one(buf, n, &h, who)) {
            CHECK(next[h.sender] == N, "%s: sender %u ended after %u", who, h.sender, next[h.sender]);
            ends++;
            continue;
        }
        CHECK(h.seq == next[h.sender], "%s: sender %u: seq %u, expected %u (lost, duplicated or reordered)",
              who, h.sender, h.seq, next[h.sender]);
        next[h.sender]++;
        __atomic_add_fetch(&own_got[id], 1, __ATOMIC_RELAXED);
    }
    tu_expect_empty(m, who);
    close(m);
    return NULL;
}

/* Shared member: each message read once among the three. */
static void *shared_reader(void *arg)
{
    int id = (int)(intptr_t)arg;
    char who[32];
    snprintf(who, sizeof who, "shared reader %d", id);
    int ep = -1;
    if (id == 2) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        CHECK(ep >= 0, "epoll_create1");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, shared_member, &ev) == 0, "epoll_ctl ADD");
    }
    pthread_barrier_wait(&start);
    unsigned char buf[MSG_CAP];
    int64_t last[NSEND] = {-1, -1, -1, -1};
    while (!__atomic_load_n(&shared_done, __ATOMIC_SEQ_CST)) {
        ssize_t n;
        if (id == 0) { /* blocking, short timeout to notice the end */
            n = recv(shared_member, buf, sizeof buf, 0);
        } else {
            if (id == 1) {
                struct pollfd p = {.fd = shared_member, .events = POLLIN};
                int r = poll(&p, 1, 200);
                CHECK(r >= 0, "%s: poll", who);
            } else {
                struct epoll_event ev;
                int r = epoll_wait(ep, &ev, 1, 200);
                CHECK(r >= 0, "%s: epoll_wait", who);
                CHECK(r == 0 || ev.data.u32 == 7, "%s: epoll data %u", who, ev.data.u32);
            }
            n = recv(shared_member, buf, sizeof buf, MSG_DONTWAIT);
        }
        if (n < 0 && errno == EAGAIN)
            continue; /* another reader took it, or the timeout */
        struct tu_msg_hdr h;
        if (check_one(buf, n, &h, who)) {
            if (__atomic_add_fetch(&shared_ends, 1, __ATOMIC_SEQ_CST) == NSEND)
                __atomic_store_n(&shared_done, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        CHECK((int64_t)h.seq > last[h.sender], "%s: sender %u: seq %u after %lld (out of order)", who,
              h.sender, h.seq, (long long)last[h.sender]);
        last[h.sender] = h.seq;
        uint8_t c = __atomic_add_fetch(&reads[h.sender][h.seq], 1, __ATOMIC_SEQ_CST);
        CHECK(c == 1, "%s: (%u,%u) was read %u times from the shared member", who, h.sender, h.seq, c);
        __atomic_add_fetch(&shared_total, 1, __ATOMIC_RELAXED);
        shared_by[id]++;
    }
    if (ep >= 0)
        close(ep);
    return NULL;
}

int main(void)
{
    tu_start("t_threads");
    tu_abstract_group(&group, "threads");
    int g = tu_create_group(&group);
    tu_gate_init(&proc_go);
    pid_t proc = tu_spawn("sender process", sender_process, NULL);
    tu_gate_wait(&proc_go, 1, 5000);

    shared_member = tu_join(&group, 0);
    tu_set_rcvtimeo(shared_member, 200);
    shared_sender = tu_dgram();
    CHECK(connect(shared_sender, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0,
          "connect the shared sending socket");

    CHECK(pthread_barrier_init(&start, NULL, 8) == 0, "barrier");
    pthread_t t[8];
    const char *names[8];
    int k = 0;
    for (int i = 0; i < 3; i++) {
        names[k] = "shared reader";
        CHECK(pthread_create(&t[k++], NULL, shared_reader, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    for (int i = 0; i < 2; i++) {
        names[k] = "own reader";
        CHECK(pthread_create(&t[k++], NULL, own_reader, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    for (int i = 0; i < 3; i++) {
        names[k] = "sender";
        CHECK(pthread_create(&t[k++], NULL, sender_thread, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    double t0 = tu_now();
    /* the own readers join inside their threads: the process starts once all are members */
    while (__atomic_load_n(&own_joined, __ATOMIC_SEQ_CST) < 2) {
        CHECK(tu_now() - t0 < 5, "the own readers did not join");
        tu_sleep_ms(1);
    }
    tu_gate_open(&proc_go, 1);
    for (int i = 0; i < 8; i++) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        double left = DEADLINE - (tu_now() - t0);
        CHECK(left > 0, "deadline passed");
        dl.tv_sec += (time_t)left;
        int r;
        while ((r = pthread_timedjoin_np(t[i], NULL, &dl)) == EINTR) {
        }
        CHECK(r == 0, "thread %d (%s) did not finish within %.0f s: deadlock? (shared readers got %u, own "
              "readers %u and %u of %d)", i, names[i], DEADLINE, shared_total, own_got[0], own_got[1],
              NSEND * N);
    }
    double took = tu_now() - t0;
    tu_wait_child(proc);
    for (int s = 0; s < NSEND; s++)
        for (int i = 0; i < N; i++)
            CHECK(reads[s][i] == 1, "(%d,%d) was read %u times from the shared member (expected once)", s,
                  i, reads[s][i]);
    CHECK(shared_total == NSEND * N, "shared readers read %u, expected %d", shared_total, NSEND * N);
    CHECK(own_got[0] == NSEND * N && own_got[1] == NSEND * N, "own readers got %u and %u of %d", own_got[0],
          own_got[1], NSEND * N);
    tu_expect_empty(shared_member, "shared member at the end");
    tu_ok("8 threads and a process, %d messages from 4 senders (3 threads on 2 sockets, 1 process) in "
          "%.2f s: the 3 threads sharing a member read each message exactly once (%u/%u/%u), each in "
          "order; the 2 own members got all, per-sender FIFO; no deadlock",
          NSEND * N, took, shared_by[0], shared_by[1], shared_by[2]);
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
