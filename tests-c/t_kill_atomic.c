/*
 * t_kill_atomic: SPEC 5.1 "each group message reaches all of its recipients
 * or none of them, even when the sender is ... killed with SIGKILL at any
 * point", with 5.2-5.4 around it.
 *
 * Round after round, a sender process streams large messages (20-200 KB, so
 * a kill often lands in the middle of copying one) and the parent kills it
 * with SIGKILL after a random delay; sometimes while it is blocked by flow
 * control (one receiver is slow). Three receivers record everything. In the
 * end every receiver must hold the identical sequence, every message intact,
 * and from each killed sender exactly a prefix 0..k-1 of what it sent: the
 * message it was killed in reached everybody or nobody. The group must keep
 * working after every kill (no lock or reservation left behind).
 */
#include "testutil.h"

#define NRECEIVERS 3
#define ROUNDS 40
#define POOL 8
#define MIN_PAYLOAD 20000
#define MAX_PAYLOAD 200000
#define MAX_RECORD 200000
#define END_ROUND 0xfff

struct shared {
    uint32_t got[NRECEIVERS][MAX_RECORD]; /* round << 20 | seq */
    uint32_t count[NRECEIVERS];
};

static struct unix_mreq group;
static struct shared *sh;
static struct tu_gate joined;

/* Payloads made once, before forking: senders only gather header + payload. */
static unsigned char *pool[POOL];
static size_t pool_len[POOL];
static uint32_t pool_csum[POOL];

static int receiver(void *arg)
{
    int id = (int)(intptr_t)arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 20000);
    tu_gate_arrive(&joined);
    size_t cap = sizeof(struct tu_msg_hdr) + MAX_PAYLOAD + 64;
    unsigned char *buf = malloc(cap);
    CHECK(buf != NULL, "malloc");
    for (uint32_t i = 0;; i++) {
        ssize_t n = recv(m, buf, cap, 0);
        CHECK(n >= 0, "receiver %d: recv after %u messages (a dead sender blocks the group?)", id, i);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0,
              "receiver %d: message %u torn or corrupt (%zd bytes): a killed sender's partial copy "
              "became visible",
              id, i, n);
        if (h.sender == END_ROUND)
            return 0;
        CHECK(i < MAX_RECORD, "too many messages");
        sh->got[id][i] = h.sender << 20 | h.seq;
        sh->count[id] = i + 1;
        if (id == NRECEIVERS - 1 && i % 16 == 0)
            tu_sleep_ms(1); /* the slow one: senders block on it now and then */
    }
}

/* Streams (round, 0), (round, 1), ... until killed. */
static int sender(void *arg)
{
    uint32_t round = (uint32_t)(intptr_t)arg;
    int s = tu_dgram();
    for (uint32_t seq = 0;; seq++) {
        int k = (int)((seq + round) % POOL);
        struct tu_msg_hdr h = {round, seq, (uint32_t)pool_len[k], pool_csum[k]};
        struct iovec iov[2] = {{&h, sizeof h}, {pool[k], pool_len[k]}};
        struct msghdr mh = {.msg_name = &group.address, .msg_namelen = unix_mreq_addrlen(&group),
                            .msg_iov = iov, .msg_iovlen = 2};
        ssize_t n = sendmsg(s, &mh, 0);
        CHECK(n == (ssize_t)(sizeof h + pool_len[k]), "round %u: send %u", round, seq);
        CHECK(seq < 0xfffff, "sequence overflow");
    }
}

int main(void)
{
    tu_start("t_kill_atomic");
    sh = tu_shared_alloc(sizeof *sh);
    unsigned seed = (unsigned)getpid();
    printf("  random seed %u\n", seed);
    srand(seed);
    for (int k = 0; k < POOL; k++) {
        pool_len[k] = MIN_PAYLOAD + (size_t)rand() % (MAX_PAYLOAD - MIN_PAYLOAD + 1);
        pool[k] = malloc(pool_len[k]);
        CHECK(pool[k] != NULL, "malloc");
        tu_fill_payload(pool[k], pool_len[k], 0xabc, (uint32_t)k);
        pool_csum[k] = tu_fnv1a32(pool[k], pool_len[k]);
    }
    tu_abstract_group(&group, "kill");
    tu_gate_init(&joined);
    int g = tu_create_group(&group);
    static const char *names[NRECEIVERS] = {"receiver 0", "receiver 1", "receiver 2 (slow)"};
    for (int i = 0; i < NRECEIVERS; i++)
        tu_spawn(names[i], receiver, (void *)(intptr_t)i);
    tu_gate_wait(&joined, NRECEIVERS, 10000);

    double t0 = tu_now();
    for (int round = 0; round < ROUNDS; round++) {
        pid_t s = tu_spawn("sender", sender, (void *)(intptr_t)round);
        tu_sleep_ms(rand() % 25); /* 0 ms: often killed before or inside its first send */
        CHECK(kill(s, SIGKILL) == 0, "kill");
        tu_wait_killed(s, SIGKILL);
        tu_check_children();
    }
    double killing = tu_now() - t0;

    /* The group still works: the end marker reaches everybody. */
    int e = tu_dgram();
    unsigned char endbuf[sizeof(struct tu_msg_hdr) + 8];
    size_t len = tu_make_msg(endbuf, sizeof endbuf, END_ROUND, 0, 8);
    t0 = tu_now();
    CHECK(tu_sendto_group(e, endbuf, len, 0, &group) == (ssize_t)len, "send after the kills");
    double sent = tu_now() - t0;
    tu_wait_all();
    double delivered = tu_now() - t0;
    CHECK(delivered < 5.0, "the group stalled after the kills: the end marker took %.2f s to send "
          "and %.2f s to reach every receiver", sent, delivered);
    tu_ok("after %d senders were SIGKILLed mid-stream (%.2f s), a send still reached all %d "
          "receivers (sent in %.1f ms, received in %.1f ms)",
          ROUNDS, killing, NRECEIVERS, sent * 1e3, delivered * 1e3);

    for (int r = 1; r < NRECEIVERS; r++) {
        CHECK(sh->count[r] == sh->count[0], "receiver %d got %u messages, receiver 0 got %u", r,
              sh->count[r], sh->count[0]);
        for (uint32_t i = 0; i < sh->count[0]; i++)
            CHECK(sh->got[r][i] == sh->got[0][i],
                  "receivers 0 and %d differ at message %u: (%u,%u) vs (%u,%u)", r, i,
                  sh->got[0][i] >> 20, sh->got[0][i] & 0xfffff, sh->got[r][i] >> 20,
                  sh->got[r][i] & 0xfffff);
    }
    /* Each round's messages: exactly 0..k-1, in order (a kill loses at most the tail). */
    uint32_t next[ROUNDS] = {0};
    for (uint32_t i = 0; i < sh->count[0]; i++) {
        uint32_t round = sh->got[0][i] >> 20, seq = sh->got[0][i] & 0xfffff;
        CHECK(round < ROUNDS, "bad round %u", round);
        CHECK(seq == next[round], "round %u: got seq %u, expected %u (gap or duplicate)", round, seq,
              next[round]);
        next[round]++;
    }
    int rounds_with_messages = 0;
    for (int r = 0; r < ROUNDS; r++)
        rounds_with_messages += next[r] > 0;
    CHECK(sh->count[0] > 0 && rounds_with_messages >= ROUNDS / 4,
          "only %d of %d killed senders got any message through: the test did not test much",
          rounds_with_messages, ROUNDS);
    tu_ok("all receivers hold the identical %u messages, all intact; every killed sender delivered "
          "exactly a prefix of its stream (%d of %d rounds sent something)",
          sh->count[0], rounds_with_messages, ROUNDS);
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
