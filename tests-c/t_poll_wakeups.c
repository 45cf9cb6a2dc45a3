/*
 * t_poll_wakeups: no lost wake-ups (SPEC 5.7) under load. 4 receiver
 * processes, each waiting its own way:
 *   R0  epoll, edge-triggered, non-blocking member, drains to EAGAIN per event
 *   R1  epoll, level-triggered, blocking member, one recv per event
 *   R2  select, non-blocking member, one MSG_DONTWAIT recv per wake-up
 *   R3  poll, blocking member, one blocking recv per wake-up
 * and 2 sender processes sending 25,000 messages each with random short
 * pauses (usleep 0-200 us now and then). Every receiver must get every
 * message, intact, per-sender FIFO, all in the same order; after every
 * readiness report the receive must find a message (no spurious readiness),
 * and a wait that times out while a message is queued is a lost wake-up.
 * Each wait uses a timeout (so a lost wake-up is detected, not a hang).
 */
#include "testutil.h"

#include <sys/epoll.h>
#include <sys/select.h>

#define NSENDERS 2
#define NRECEIVERS 4
#define PER_SENDER 25000
#define TOTAL (NSENDERS * PER_SENDER)
#define MAX_PAYLOAD 48
#define WAIT_MS 3000 /* a wait this long with messages still to come means trouble */

struct results {
    uint64_t hash[NRECEIVERS];
    uint32_t count[NRECEIVERS];
    uint32_t wakeups[NRECEIVERS];
    uint32_t timeouts[NRECEIVERS];
    double secs[NRECEIVERS];
};

static struct unix_mreq group;
static struct tu_gate joined, go;
static struct results *res;

static const char *styles[NRECEIVERS] = {"epoll EPOLLET, non-blocking, drain to EAGAIN",
                                         "epoll level-triggered, blocking, one recv per event",
                                         "select, non-blocking, one recv per wake-up",
                                         "poll, blocking, one blocking recv per wake-up"};

struct rstate {
    int id;
    int fd;
    uint32_t next[NSENDERS];
    uint32_t count;
    uint64_t hash;
};

static size_t payload_len(uint32_t sender, uint32_t seq)
{
    return (size_t)((seq * 2654435761u + sender * 40503u) >> 9) % (MAX_PAYLOAD + 1);
}

/* Take one received message into the state. */
static void take(struct rstate *r, const unsigned char *buf, ssize_t n)
{
    struct tu_msg_hdr h;
    CHECK(tu_check_msg(buf, n, &h) == 0, "R%d: message %u is corrupt (%zd bytes)", r->id, r->count, n);
    CHECK(h.sender < NSENDERS, "R%d: bad sender %u", r->id, h.sender);
    CHECK(h.seq == r->next[h.sender], "R%d: from sender %u expected seq %u, got %u (loss, duplicate or reorder)",
          r->id, h.sender, r->next[h.sender], h.seq);
    CHECK(h.len == payload_len(h.sender, h.seq), "R%d: wrong length", r->id);
    r->next[h.sender]++;
    uint32_t key = h.sender << 24 | h.seq;
    r->hash = tu_fnv1a64(r->hash, &key, sizeof key);
    r->count++;
}

/* The wait timed out: a message waiting now was a lost wake-up. */
static void timed_out(struct rstate *r)
{
    char c;
    ssize_t n = recv(r->fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    CHECK(n < 0 && errno == EAGAIN,
          "R%d (%s): lost wake-up: a %d ms wait timed out with a message queued (%u of %d received)", r->id,
          styles[r->id], WAIT_MS, r->count, TOTAL);
    res->timeouts[r->id]++;
    CHECK(res->timeouts[r->id] < 5, "R%d: %u waits of %d ms timed out with %u of %d messages received: "
          "the senders stopped?", r->id, res->timeouts[r->id], WAIT_MS, r->count, TOTAL);
}

static int receiver(void *arg)
{
    struct rstate r;
    memset(&r, 0, sizeof r);
    r.id = (int)(intptr_t)arg;
    r.hash = TU_FNV64_INIT;
    int nonblocking = r.id == 0 || r.id == 2;
    r.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    CHECK(r.fd >= 0, "socket");
    tu_join_fd(r.fd, &group, 0);
    tu_set_rcvtimeo(r.fd, 10000);
    int ep = -1;
    if (r.id <= 1) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN | (r.id == 0 ? EPOLLET : 0), .data.u64 = 0x1234567890abcdefull};
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, r.fd, &e) == 0, "epoll_ctl");
    }
    tu_gate_arrive(&joined);
    tu_gate_pass(&go);
    double t0 = tu_now();
    static unsigned char buf[sizeof(struct tu_msg_hdr) + MAX_PAYLOAD + 64];
    while (r.count < TOTAL) {
        int ready;
        if (ep >= 0) {
            struct epoll_event ev[4];
            ready = epoll_wait(ep, ev, 4, WAIT_MS);
            CHECK(ready >= 0, "R%d: epoll_wait", r.id);
            CHECK(ready <= 1, "R%d: epoll_wait reported %d events for one registration", r.id, ready);
            if (ready == 1)
                CHECK(ev[0].data.u64 == 0x1234567890abcdefull && ev[0].events == EPOLLIN,
                      "R%d: event 0x%x data 0x%llx", r.id, ev[0].events, (unsigned long long)ev[0].data.u64);
        } else if (r.id == 2) {
            fd_set rd;
            FD_ZERO(&rd);
            FD_SET(r.fd, &rd);
            struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
            ready = select(r.fd + 1, &rd, NULL, NULL, &tv);
            CHECK(ready >= 0, "R%d: select", r.id);
            CHECK(ready == 0 || FD_ISSET(r.fd, &rd), "R%d: select", r.id);
        } else {
            struct pollfd p = {.fd = r.fd, .events = POLLIN};
            ready = poll(&p, 1, WAIT_MS);
            CHECK(ready >= 0, "R%d: poll", r.id);
            CHECK(ready == 0 || p.revents == POLLIN, "R%d: poll revents 0x%x", r.id, p.revents);
        }
        if (ready == 0) {
            timed_out(&r);
            continue;
        }
        res->wakeups[r.id]++;
        /* after readiness, the first receive must succeed without waiting (R3: a plain
           blocking recv, which SO_RCVTIMEO keeps from hanging) */
        ssize_t n = recv(r.fd, buf, sizeof buf, r.id == 3 ? 0 : MSG_DONTWAIT);
        CHECK(n >= 0, "R%d (%s): spurious readiness: the wait reported a message, MSG_DONTWAIT recv failed "
              "(%u of %d received)", r.id, styles[r.id], r.count, TOTAL);
        take(&r, buf, n);
        if (r.id == 0) {
            for (;;) { /* edge-triggered: drain to EAGAIN */
                n = recv(r.fd, buf, sizeof buf, 0);
                if (n == -1 && errno == EAGAIN)
                    break;
                CHECK(n >= 0, "R0: recv while draining");
                take(&r, buf, n);
            }
        }
        res->count[r.id] = r.count;
    }
    res->secs[r.id] = tu_now() - t0;
    tu_expect_empty(r.fd, "receiver after the last message");
    res->hash[r.id] = r.hash;
    res->count[r.id] = r.count;
    return 0;
}

static int sender(void *arg)
{
    uint32_t id = (uint32_t)(intptr_t)arg;
    int s = tu_dgram();
    if (id == 1)
        CHECK(connect(s, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0, "connect");
    tu_gate_arrive(&joined);
    tu_gate_pass(&go);
    uint64_t x = 0x9E3779B97F4A7C15ull * (id + 1);
    static unsigned char buf[sizeof(struct tu_msg_hdr) + MAX_PAYLOAD];
    for (uint32_t seq = 0; seq < PER_SENDER; seq++) {
        size_t len = tu_make_msg(buf, sizeof buf, id, seq, payload_len(id, seq));
        ssize_t r = id == 1 ? send(s, buf, len, 0) : tu_sendto_group(s, buf, len, 0, &group);
        CHECK(r == (ssize_t)len, "sender %u: send %u", id, seq);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if ((x & 15) == 0)
            usleep((useconds_t)((x >> 8) % 201)); /* 0-200 us, now and then */
    }
    return 0;
}

int main(void)
{
    tu_start("t_poll_wakeups");
    res = tu_shared_alloc(sizeof *res);
    tu_abstract_group(&group, "wake");
    int g = tu_create_group(&group);
    tu_gate_init(&joined);
    tu_gate_init(&go);
    for (int i = 0; i < NRECEIVERS; i++)
        tu_spawn(styles[i], receiver, (void *)(intptr_t)i);
    tu_gate_wait(&joined, NRECEIVERS, 10000);
    tu_spawn("sender 0 (sendto)", sender, (void *)(intptr_t)0);
    tu_spawn("sender 1 (connected)", sender, (void *)(intptr_t)1);
    tu_gate_wait(&joined, NSENDERS, 10000);
    double t0 = tu_now();
    tu_gate_open(&go, NRECEIVERS + NSENDERS);
    tu_wait_all();
    double secs = tu_now() - t0;
    for (int i = 0; i < NRECEIVERS; i++) {
        CHECK(res->count[i] == TOTAL, "R%d got %u of %d", i, res->count[i], TOTAL);
        tu_ok("R%d (%s): all %d messages in %.2f s, %u wake-ups, %u idle timeouts", i, styles[i], TOTAL, res->secs[i],
              res->wakeups[i], res->timeouts[i]);
    }
    for (int i = 1; i < NRECEIVERS; i++)
        CHECK(res->hash[i] == res->hash[0], "R%d saw another order than R0 (hash %llx vs %llx)", i,
              (unsigned long long)res->hash[i], (unsigned long long)res->hash[0]);
    tu_ok("all four receivers saw the same order of %d messages from 2 senders (hash %llx), %.2f s in all",
          TOTAL, (unsigned long long)res->hash[0], secs);
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
