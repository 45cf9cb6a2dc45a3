/*
 * t_total_order: SPEC 5.2-5.5 under load. 3 sender processes x 4 receiver
 * processes, 30,000 messages of 16 to ~4,000 bytes. Every receiver must get
 * every message exactly once, intact, per-sender FIFO, and all four must see
 * the same sequence. Senders block (flow control) when receivers lag; one
 * receiver pauses now and then to make sure they do.
 */
#include "testutil.h"

#define NSENDERS 3
#define NRECEIVERS 4
#define PER_SENDER 10000
#define TOTAL (NSENDERS * PER_SENDER)
#define MAX_PAYLOAD 4000

struct results {
    uint32_t order[NRECEIVERS][TOTAL]; /* sender << 24 | seq, in arrival order */
    uint64_t hash[NRECEIVERS];         /* running FNV-1a of the same */
    uint32_t count[NRECEIVERS];
};

static struct unix_mreq group;
static struct tu_gate joined, go;
static struct results *res;

/* Payload length of message (sender, seq): spread over 0..MAX_PAYLOAD. */
static size_t payload_len(uint32_t sender, uint32_t seq)
{
    if (seq % 997 == 0)
        return 0;
    if (seq % 991 == 0)
        return MAX_PAYLOAD;
    return (size_t)((seq * 2654435761u + sender * 40503u) >> 7) % (MAX_PAYLOAD + 1);
}

static int receiver(void *arg)
{
    int id = (int)(intptr_t)arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 20000); /* a lost message fails clearly instead of hanging */
    tu_gate_arrive(&joined);

    static unsigned char buf[sizeof(struct tu_msg_hdr) + MAX_PAYLOAD + 64];
    uint32_t next[NSENDERS] = {0};
    uint64_t hash = TU_FNV64_INIT;
    for (uint32_t i = 0; i < TOTAL; i++) {
        ssize_t n = recv(m, buf, sizeof buf, 0);
        CHECK(n >= 0, "receiver %d: recv after %u of %d messages", id, i, TOTAL);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "receiver %d: message %u is corrupt (%zd bytes)", id, i, n);
        CHECK(h.sender < NSENDERS, "receiver %d: bad sender id %u", id, h.sender);
        CHECK(h.seq == next[h.sender],
              "receiver %d: from sender %u expected seq %u, got %u (loss, duplicate or reorder)", id,
              h.sender, next[h.sender], h.seq);
        CHECK(h.len == payload_len(h.sender, h.seq), "receiver %d: wrong length", id);
        next[h.sender]++;
        uint32_t key = h.sender << 24 | h.seq;
        res->order[id][i] = key;
        hash = tu_fnv1a64(hash, &key, sizeof key);
        res->count[id] = i + 1;
        if (id == NRECEIVERS - 1 && i % 200 == 0)
            tu_sleep_ms(2); /* one laggard: senders block on it now and then */
    }
    res->hash[id] = hash;
    /* Every message has arrived; anything more would be a duplicate. */
    tu_sleep_ms(100);
    tu_expect_empty(m, "receiver after the last message");
    return 0;
}

static int sender(void *arg)
{
    uint32_t id = (uint32_t)(intptr_t)arg;
    int s = tu_dgram();
    /* Different entry points per sender: sendto, connect+send, connect+write. */
    if (id != 0)
        CHECK(connect(s, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0,
              "connect to the group");
    tu_gate_pass(&go);

    static unsigned char buf[sizeof(struct tu_msg_hdr) + MAX_PAYLOAD];
    for (uint32_t seq = 0; seq < PER_SENDER; seq++) {
        size_t len = tu_make_msg(buf, sizeof buf, id, seq, payload_len(id, seq));
        ssize_t n;
        if (id == 0)
            n = tu_sendto_group(s, buf, len, 0, &group);
        else if (id == 1)
            n = send(s, buf, len, 0);
        else
            n = write(s, buf, len);
        CHECK(n == (ssize_t)len, "sender %u: send of seq %u (%zu bytes) returned %zd", id, seq, len, n);
    }
    return 0;
}

int main(void)
{
    tu_start("t_total_order");
    res = tu_shared_alloc(sizeof *res);
    tu_abstract_group(&group, "order");
    tu_gate_init(&joined);
    tu_gate_init(&go);
    int g = tu_create_group(&group);

    static const char *rnames[NRECEIVERS] = {"receiver 0", "receiver 1", "receiver 2", "receiver 3"};
    static const char *snames[NSENDERS] = {"sender 0", "sender 1", "sender 2"};
    for (int i = 0; i < NRECEIVERS; i++)
        tu_spawn(rnames[i], receiver, (void *)(intptr_t)i);
    tu_gate_wait(&joined, NRECEIVERS, 10000);
    for (int i = 0; i < NSENDERS; i++)
        tu_spawn(snames[i], sender, (void *)(intptr_t)i);

    double t0 = tu_now();
    tu_gate_open(&go, NSENDERS); /* every receiver joined before anyone sends */
    tu_wait_all();
    double secs = tu_now() - t0;

    for (int r = 0; r < NRECEIVERS; r++)
        CHECK(res->count[r] == TOTAL, "receiver %d got %u of %d", r, res->count[r], TOTAL);
    tu_ok("%d receivers each got all %d messages exactly once, intact, per-sender FIFO", NRECEIVERS,
          TOTAL);

    for (int r = 1; r < NRECEIVERS; r++) {
        for (int i = 0; i < TOTAL; i++)
            CHECK(res->order[r][i] == res->order[0][i],
                  "receiver %d differs from receiver 0 at position %d: (%u,%u) vs (%u,%u)", r, i,
                  res->order[r][i] >> 24, res->order[r][i] & 0xffffff, res->order[0][i] >> 24,
                  res->order[0][i] & 0xffffff);
        CHECK(res->hash[r] == res->hash[0], "receiver %d: running hash differs", r);
    }
    int switches = 0;
    for (int i = 1; i < TOTAL; i++)
        switches += (res->order[0][i] >> 24) != (res->order[0][i - 1] >> 24);
    tu_ok("all receivers saw the identical order (hash %016llx, %d sender switches) in %.1f s",
          (unsigned long long)res->hash[0], switches, secs);
    CHECK(switches > 0, "the senders never interleaved: the test did not test ordering");

    tu_expect_empty(g, "group socket G");
    tu_ok("G received nothing");
    return tu_done();
}
