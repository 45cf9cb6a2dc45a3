/*
 * t_drop_when_full: SPEC 5.4-5.5. A member D that joined with
 * UNIX_MREQ_DROP_WHEN_FULL and never reads holds nobody back: a blocking
 * sender completes thousands of sends, non-blocking sends never see EAGAIN
 * because of D, the normal members get every message, and D gets a prefix of
 * the stream (its queue fills once and stays full: all messages have the same
 * size), in order, without duplicates. After D drains, it receives again.
 */
#include "testutil.h"

#define PAYLOAD 200
#define PHASE1 5000 /* blocking sends while D never reads */
#define PHASE2 50   /* after D drained */
#define PHASE3 200  /* non-blocking sends while D is full again */
#define TOTAL (PHASE1 + PHASE2 + PHASE3)
#define END_SENDER 99
#define NNORMAL 2

struct shared {
    uint32_t count[NNORMAL];
};

static struct unix_mreq group;
static struct shared *sh;
static struct tu_gate joined;

static int normal_member(void *arg)
{
    int id = (int)(intptr_t)arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 30000);
    tu_gate_arrive(&joined);
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    for (uint32_t seq = 0;; seq++) {
        ssize_t n = recv(m, buf, sizeof buf, 0);
        CHECK(n >= 0, "normal member %d: recv after %u messages", id, seq);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "normal member %d: corrupt message", id);
        if (h.sender == END_SENDER) {
            sh->count[id] = seq;
            return 0;
        }
        CHECK(h.seq == seq, "normal member %d: expected seq %u, got %u (a normal member lost or "
              "duplicated a message)", id, seq, h.seq);
    }
}

static int blocking_sender(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    for (uint32_t seq = 0; seq < PHASE1; seq++) {
        size_t len = tu_make_msg(buf, sizeof buf, 1, seq, PAYLOAD);
        CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "blocking send %u", seq);
    }
    return 0;
}

/* Read what D holds: seqs must be first, first+1, ..., a prefix. Returns how many. */
static uint32_t drain_prefix(int d, uint32_t first, uint32_t sent, const char *phase)
{
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    uint32_t got = 0;
    for (;;) {
        ssize_t n = recv(d, buf, sizeof buf, MSG_DONTWAIT);
        if (n == -1 && errno == EAGAIN)
            break;
        CHECK(n >= 0, "%s: recv on the drop-when-full member", phase);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "%s: corrupt message", phase);
        CHECK(h.seq == first + got,
              "%s: drop-when-full member got seq %u after %u messages, expected %u (not a prefix: "
              "duplicate, reorder or a gap)", phase, h.seq, got, first + got);
        got++;
    }
    CHECK(got >= 1, "%s: the drop-when-full member got nothing (an empty queue takes one message)",
          phase);
    CHECK(got < sent, "%s: the drop-when-full member got all %u messages without reading: "
          "its queue never filled", phase, sent);
    return got;
}

int main(void)
{
    tu_start("t_drop_when_full");
    sh = tu_shared_alloc(sizeof *sh);
    tu_abstract_group(&group, "drop");
    tu_gate_init(&joined);
    int g = tu_create_group(&group);

    int d = tu_dgram();
    tu_setint(d, SOL_SOCKET, SO_RCVBUF, 4096);
    tu_join_fd(d, &group, UNIX_MREQ_DROP_WHEN_FULL);
    static const char *names[NNORMAL] = {"normal member 0", "normal member 1"};
    for (int i = 0; i < NNORMAL; i++)
        tu_spawn(names[i], normal_member, (void *)(intptr_t)i);
    tu_gate_wait(&joined, NNORMAL, 10000);

    /* Phase 1: thousands of blocking sends; D never reads. */
    double t0 = tu_now();
    pid_t s = tu_spawn("blocking sender", blocking_sender, NULL);
    while (tu_child_running(s)) {
        CHECK(tu_now() - t0 < 30, "the blocking sender is still sending after 30 s: "
              "the drop-when-full member holds it back");
        tu_sleep_ms(5);
    }
    tu_wait_child(s);
    tu_ok("a blocking sender completed %d sends in %.2f s with a full drop-when-full member", PHASE1,
          tu_now() - t0);
    uint32_t got1 = drain_prefix(d, 0, PHASE1, "phase 1");
    tu_ok("the drop-when-full member holds messages 0..%u, a prefix in order, and missed %u", got1 - 1,
          PHASE1 - got1);

    /* Phase 2: drained, D receives again. */
    int snd = tu_dgram();
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    for (uint32_t seq = PHASE1; seq < PHASE1 + PHASE2; seq++) {
        size_t len = tu_make_msg(buf, sizeof buf, 1, seq, PAYLOAD);
        CHECK(tu_sendto_group(snd, buf, len, 0, &group) == (ssize_t)len, "send %u", seq);
    }
    uint32_t got2 = drain_prefix(d, PHASE1, PHASE2, "phase 2");
    tu_ok("after draining, the drop-when-full member receives again: %u of %d", got2, PHASE2);

    /* Phase 3: non-blocking sends never fail because of D (which fills up again). */
    for (uint32_t seq = PHASE1 + PHASE2; seq < TOTAL; seq++) {
        size_t len = tu_make_msg(buf, sizeof buf, 1, seq, PAYLOAD);
        ssize_t r = tu_sendto_group(snd, buf, len, MSG_DONTWAIT, &group);
        CHECK(r == (ssize_t)len, "non-blocking send %u with the drop-when-full member full", seq);
    }
    uint32_t got3 = drain_prefix(d, PHASE1 + PHASE2, PHASE3, "phase 3");
    tu_ok("%d MSG_DONTWAIT sends all succeeded while the drop-when-full member filled up (it kept %u)",
          PHASE3, got3);

    size_t len = tu_make_msg(buf, sizeof buf, END_SENDER, 0, PAYLOAD);
    CHECK(tu_sendto_group(snd, buf, len, 0, &group) == (ssize_t)len, "END send");
    tu_wait_all();
    for (int i = 0; i < NNORMAL; i++)
        CHECK(sh->count[i] == TOTAL, "normal member %d got %u of %d", i, sh->count[i], TOTAL);
    tu_ok("both normal members got all %d messages, in order, none missing", TOTAL);
    tu_expect_empty(g, "group socket G");
    return tu_done();
}
