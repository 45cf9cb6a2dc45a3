/*
 * t_dead_member: SPEC 5.8 "A dead member never holds the group back: once
 * its socket is gone (..., its processes exited or killed), it stops
 * counting for flow control within one second and its queue is freed."
 *
 * Phase 1: member D (its own process, small SO_RCVBUF, never reads) fills
 * up while a blocking sender streams messages of mixed sizes; the sender is
 * held back. D is SIGKILLed: the sender resumes within about a second, the
 * two other members (A and B, their own processes) get every message intact
 * and in order, and D's queue file /dev/shm/umcast.q.<group id>.<queue id>
 * disappears (the set of the group's queue files before D joined and after
 * it died are compared); `umcast list` no longer shows D.
 *
 * Phase 2: member E (default SO_RCVBUF, reading, so mostly asleep in a
 * blocking recv, never full) is SIGKILLed while a sender keeps sending small messages: nothing
 * blocks on E, yet its queue file is removed and it leaves `umcast list`
 * within about a second (the senders' periodic liveness sweep).
 */
#include "testutil.h"

#define N1 2000
#define MAX_PAYLOAD 2000
#define MSG_CAP (sizeof(struct tu_msg_hdr) + MAX_PAYLOAD + 64)
#define END_SENDER 99

struct shared {
    uint32_t sent1, sent2;
    int stop2;
    uint32_t got[2][3]; /* reader, sender id 1..2 */
    unsigned long ino_d, ino_e;
};

static struct shared *sh;
static struct unix_mreq group;
static struct tu_gate readers_joined, victim_joined;

static int reader(void *arg)
{
    int id = (int)(intptr_t)arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 10000);
    tu_gate_arrive(&readers_joined);
    unsigned char buf[MSG_CAP];
    uint32_t next[3] = {0, 0, 0};
    for (;;) {
        ssize_t n = recv(m, buf, sizeof buf, 0);
        CHECK(n >= 0, "reader %d: recv (after %u + %u messages)", id, next[1], next[2]);
        struct tu_msg_hdr h;
        CHECK(tu_check_msg(buf, n, &h) == 0, "reader %d: corrupt message (%zd bytes)", id, n);
        if (h.sender == END_SENDER)
            break;
        CHECK(h.sender == 1 || h.sender == 2, "reader %d: sender %u?", id, h.sender);
        CHECK(h.seq == next[h.sender], "reader %d: sender %u: got seq %u, expected %u (lost, "
              "duplicated or reordered)", id, h.sender, h.seq, next[h.sender]);
        next[h.sender]++;
        __atomic_store_n(&sh->got[id][h.sender], next[h.sender], __ATOMIC_SEQ_CST);
    }
    tu_expect_empty(m, "reader at the end");
    return 0;
}

/* A member that never reads: small queue (D) or default, asleep in recv (E). */
static int victim(void *arg)
{
    int small = (int)(intptr_t)arg;
    int m = tu_dgram();
    if (small)
        tu_setint(m, SOL_SOCKET, SO_RCVBUF, 4096);
    tu_join_fd(m, &group, 0);
    *(small ? &sh->ino_d : &sh->ino_e) = tu_socket_ino(m);
    tu_gate_arrive(&victim_joined);
    if (small)
        for (;;)
            pause();
    /* E: reads everything, so it is asleep in a blocking receive most of the time */
    unsigned char buf[MSG_CAP];
    for (;;)
        CHECK(recv(m, buf, sizeof buf, 0) >= 0, "member E: recv");
}

static int sender1(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    unsigned char buf[MSG_CAP];
    for (uint32_t i = 0; i < N1; i++) {
        size_t len = tu_make_msg(buf, sizeof buf, 1, i, 100 + (i * 7919) % (MAX_PAYLOAD - 100));
        CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "send %u", i);
        __atomic_store_n(&sh->sent1, i + 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

static int sender2(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    unsigned char buf[MSG_CAP];
    for (uint32_t i = 0; !__atomic_load_n(&sh->stop2, __ATOMIC_SEQ_CST); i++) {
        size_t len = tu_make_msg(buf, sizeof buf, 2, i, 16);
        CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "send %u", i);
        __atomic_store_n(&sh->sent2, i + 1, __ATOMIC_SEQ_CST);
        tu_sleep_ms(5);
    }
    return 0;
}

/* This group's queue files, umcast.q.<gid>.* */
static char **queues(uint64_t gid, int *n)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "umcast.q.%016llx.", (unsigned long long)gid);
    return tu_shm_names(prefix, n);
}

/* The one name in `after` that is not in `before`. */
static char *new_name(char **before, int nb, char **after, int na, const char *what)
{
    char *found = NULL;
    for (int i = 0; i < na; i++)
        if (!tu_names_has(before, nb, after[i])) {
            CHECK(found == NULL, "%s: more than one new queue file (%s, %s)", what, found, after[i]);
            found = after[i];
        }
    CHECK(found != NULL, "%s: no new queue file in /dev/shm after the JOIN", what);
    return strdup(found);
}

static int shm_exists(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "/dev/shm/%s", name);
    return access(p, F_OK) == 0;
}

int main(void)
{
    tu_start("t_dead_member");
    sh = tu_shared_alloc(sizeof *sh);
    tu_abstract_group(&group, "dead");
    int g = tu_create_group(&group);
    uint64_t gid = tu_group_id(&group);
    tu_gate_init(&readers_joined);
    tu_gate_init(&victim_joined);
    pid_t r0 = tu_spawn("reader A", reader, (void *)0);
    pid_t r1 = tu_spawn("reader B", reader, (void *)1);
    tu_gate_wait(&readers_joined, 2, 5000);

    /* ---- phase 1: the member that holds the sender back is killed ---- */
    int nb, na;
    char **before = queues(gid, &nb);
    CHECK(nb == 2, "expected the 2 readers' queue files, found %d", nb);
    pid_t d = tu_spawn("member D (small, never reads)", victim, (void *)1);
    tu_gate_wait(&victim_joined, 1, 5000);
    char **after = queues(gid, &na);
    char *dq = new_name(before, nb, after, na, "member D");
    tu_free_names(after, na);
    printf("  member D's queue file: %s\n", dq);

    pid_t s1 = tu_spawn("sender 1", sender1, NULL);
    double still = tu_now(), t0 = tu_now();
    uint32_t last = 0;
    for (;;) {
        tu_check_children();
        tu_sleep_ms(20);
        uint32_t now = __atomic_load_n(&sh->sent1, __ATOMIC_SEQ_CST);
        CHECK(now < N1, "sender 1 was never held back by member D");
        if (now != last) {
            last = now;
            still = tu_now();
        } else if (now > 0 && tu_now() - still > 0.3) {
            break;
        }
        CHECK(tu_now() - t0 < 10, "sender 1 never stalled");
    }
    uint32_t stalled = last;
    /* the readers got what was sent: it's D that holds the sender back */
    for (int r = 0; r < 2; r++)
        CHECK(sh->got[r][1] == stalled, "reader %c has %u of the %u messages sent", 'A' + r,
              sh->got[r][1], stalled);
    char *list = tu_umcast("list");
    CHECK(tu_listed_socket(list, sh->ino_d), "`umcast list` does not show member D:\n%s", list);
    free(list);
    CHECK(shm_exists(dq), "member D's queue file vanished while it lived");

    t0 = tu_now();
    CHECK(kill(d, SIGKILL) == 0, "kill D");
    tu_wait_killed(d, SIGKILL);
    double resumed = -1, unlinked = -1;
    for (;;) {
        double t = tu_now() - t0;
        if (resumed < 0 && __atomic_load_n(&sh->sent1, __ATOMIC_SEQ_CST) > stalled)
            resumed = t;
        if (unlinked < 0 && !shm_exists(dq))
            unlinked = t;
        if (resumed >= 0 && unlinked >= 0)
            break;
        tu_check_children();
        CHECK(t < 3.0, "3 s after member D was SIGKILLed: the sender %s (%u sent, stalled at %u), D's "
              "queue file %s",
              resumed >= 0 ? "resumed" : "is still held back", sh->sent1, stalled,
              unlinked >= 0 ? "is gone" : "is still there");
        tu_sleep_ms(5);
    }
    CHECK(resumed <= 1.5, "the sender resumed only %.2f s after member D was SIGKILLed (SPEC 5.8: "
          "within one second)", resumed);
    CHECK(unlinked <= 1.5, "member D's queue file disappeared only %.2f s after it was SIGKILLed", unlinked);
    tu_wait_child(s1);
    after = queues(gid, &na);
    CHECK(na == nb, "the group has %d queue files after D died, %d before it joined", na, nb);
    for (int i = 0; i < na; i++)
        CHECK(tu_names_has(before, nb, after[i]), "unexpected queue file %s", after[i]);
    tu_free_names(after, na);
    list = tu_umcast("list");
    CHECK(!tu_listed_socket(list, sh->ino_d), "`umcast list` still shows the dead member D:\n%s", list);
    CHECK(tu_listed_group(list, &group, NULL) == 2, "`umcast list` does not show 2 members:\n%s", list);
    free(list);
    for (int r = 0; r < 2; r++) {
        double w0 = tu_now();
        while (__atomic_load_n(&sh->got[r][1], __ATOMIC_SEQ_CST) < N1) {
            tu_check_children();
            CHECK(tu_now() - w0 < 5, "reader %c got only %u of %d messages", 'A' + r, sh->got[r][1], N1);
            tu_sleep_ms(5);
        }
    }
    tu_ok("member D SIGKILLed with a full queue holding the sender back: the sender resumed after "
          "%.0f ms, D's queue file was gone after %.0f ms (the group's queue files are those from "
          "before D joined), both other members got all %d messages intact and in order",
          resumed * 1e3, unlinked * 1e3, N1);

    /* ---- phase 2: a member that holds nobody back is killed ---- */
    tu_free_names(before, nb);
    before = queues(gid, &nb);
    pid_t e = tu_spawn("member E (asleep in recv)", victim, (void *)0);
    tu_gate_wait(&victim_joined, 1, 5000);
    after = queues(gid, &na);
    char *eq = new_name(before, nb, after, na, "member E");
    tu_free_names(after, na);
    pid_t s2 = tu_spawn("sender 2", sender2, NULL);
    tu_sleep_ms(300);
    CHECK(sh->sent2 > 10, "sender 2 is not sending (%u)", sh->sent2);
    t0 = tu_now();
    CHECK(kill(e, SIGKILL) == 0, "kill E");
    tu_wait_killed(e, SIGKILL);
    double gone = -1;
    while (gone < 0) {
        double t = tu_now() - t0;
        if (!shm_exists(eq))
            gone = t;
        tu_check_children();
        CHECK(t < 3.0, "member E's queue file %s is still there 3 s after E was SIGKILLed, while a "
              "sender kept sending (%u sent)", eq, sh->sent2);
        tu_sleep_ms(10);
    }
    list = tu_umcast("list");
    CHECK(!tu_listed_socket(list, sh->ino_e), "`umcast list` still shows the dead member E:\n%s", list);
    free(list);
    CHECK(gone <= 2.0, "member E's queue file disappeared only %.2f s after it was SIGKILLed", gone);
    __atomic_store_n(&sh->stop2, 1, __ATOMIC_SEQ_CST);
    tu_wait_child(s2);
    tu_ok("member E SIGKILLed while asleep, holding nobody back: its queue file was removed %.0f ms "
          "later while a sender kept sending, and `umcast list` dropped it",
          gone * 1e3);

    /* end: the readers got everything from both senders */
    int s = tu_dgram();
    unsigned char buf[64];
    size_t len = tu_make_msg(buf, sizeof buf, END_SENDER, 0, 8);
    CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "send end marker");
    tu_wait_child(r0);
    tu_wait_child(r1);
    for (int r = 0; r < 2; r++)
        CHECK(sh->got[r][1] == N1 && sh->got[r][2] == sh->sent2,
              "reader %c got %u + %u messages, %d + %u were sent", 'A' + r, sh->got[r][1], sh->got[r][2],
              N1, sh->sent2);
    tu_ok("both readers got all %d + %u messages of both senders, in order", N1, sh->sent2);
    tu_expect_empty(g, "group socket G");
    free(dq);
    free(eq);
    tu_free_names(before, nb);
    return tu_done();
}
