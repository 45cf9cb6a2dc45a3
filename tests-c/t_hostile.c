/*
 * t_hostile: SPEC 9 "Shared state may be written by any member, so a member
 * must never be able to crash another process through it: every value read
 * from shared memory is checked; corruption yields an error (EIO/EPROTO) on
 * that group only." (docs/DESIGN.md section 6.)
 *
 * Two groups, H and S, used at the same time by the same processes:
 *   - 2 member processes, each with a member socket in H and one in S,
 *     waiting in poll() on both and reading whatever comes;
 *   - 2 sender processes, each sending from one socket alternately to S
 *     (blocking, mixed sizes, every message checked by the members) and to
 *     H (with SO_SNDTIMEO);
 *   - a joiner process that keeps joining and leaving H;
 *   - a corrupter process that maps H's segment /dev/shm/umcast.g.a.* and
 *     its member queues /dev/shm/umcast.q.<H's id>.* and writes random
 *     bytes into them: anywhere in the segment, the queues' head and tail
 *     (random, and plausible: shifted by 8 bytes), and the records.
 * No process may crash or hang (all exit normally within the time limit);
 * errors on H are counted and shown (EIO, EPROTO, EINVAL are the expected
 * kinds); S must be unaffected: every message of both senders arrives at
 * both members intact and in order. Finally `umcast list` and `umcast gc`
 * run over the corrupted segment and must not crash, and once H's G is
 * closed and gc ran, H's segment must be gone.
 */
#include "testutil.h"

#define NSENDERS 2
#define NMEMBERS 2
#define MAX_PAYLOAD 4000
#define MSG_CAP (sizeof(struct tu_msg_hdr) + MAX_PAYLOAD + 64)
#define END_SEQ 0xffffffffu
#define CLEAN_SECONDS 0.3   /* H works before the corruption starts */
#define PHASE_A_SECONDS 2.0 /* corrupt everything but the segment's identity and state (48 bytes) */
#define PHASE_B_SECONDS 1.0 /* corrupt anything */
#define DEADLINE 15.0

enum { OP_SEND, OP_RECV, OP_POLL, OP_JOIN, OP_LEAVE, NOPS };
static const char *op_names[NOPS] = {"send", "recv", "poll", "join", "leave"};

struct shared {
    int corrupt;                     /* 1: phase A, 2: phase B */
    int stop;                        /* senders send their end marker, the others stop */
    uint32_t s_sent[NSENDERS];
    uint32_t s_got[NMEMBERS][NSENDERS];
    uint32_t h_ok[3][NOPS];          /* successful operations on H, by phase (clean, A, B) */
    uint32_t h_err[3][NOPS][160];    /* failed operations on H, by phase and errno */
    uint32_t writes_seg, writes_queue, queues_seen;
    uint32_t members_done, senders_done;
};

static struct shared *sh;
static struct unix_mreq H, S;
static struct tu_gate ready;
static char h_segment[512];
static uint64_t h_gid;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void h_result(int op, long r)
{
    int e = errno, ph = __atomic_load_n(&sh->corrupt, __ATOMIC_RELAXED);
    if (r >= 0)
        __atomic_add_fetch(&sh->h_ok[ph][op], 1, __ATOMIC_RELAXED);
    else
        __atomic_add_fetch(&sh->h_err[ph][op][e < 160 && e > 0 ? e : 0], 1, __ATOMIC_RELAXED);
}

/* ---- members ---- */

static int member(void *arg)
{
    int id = (int)(intptr_t)arg;
    rng_state = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull | 1;
    int mh = tu_join(&H, 0), ms = tu_join(&S, 0);
    tu_gate_arrive(&ready);
    unsigned char buf[MSG_CAP];
    uint32_t next[NSENDERS] = {0};
    int ended = 0;
    double last_s = tu_now();
    while (ended < NSENDERS) {
        struct pollfd p[2] = {{.fd = ms, .events = POLLIN}, {.fd = mh, .events = POLLIN}};
        int r = poll(p, 2, 100);
        int poll_failed = r < 0;
        if (r >= 0)
            h_result(OP_POLL, r);
        if (r < 0) {
            CHECK(errno != EBADF && errno != EFAULT, "member %d: poll failed with %s", id,
                  tu_errname(errno));
            h_result(OP_POLL, -1);
            tu_sleep_ms(1);
        } else if (p[1].revents & POLLNVAL) {
            CHECK(0, "member %d: poll says POLLNVAL on the H member", id);
        }
        /* S: read everything waiting (also when poll failed because of H) */
        if (poll_failed || (p[0].revents & POLLIN)) {
            for (;;) {
                ssize_t n = recv(ms, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) {
                    CHECK(errno == EAGAIN, "member %d: recv on S failed", id);
                    break;
                }
                struct tu_msg_hdr h;
                CHECK(tu_check_msg(buf, n, &h) == 0, "member %d: S message corrupt (%zd bytes)", id, n);
                CHECK(h.sender < NSENDERS, "member %d: S message from sender %u", id, h.sender);
                last_s = tu_now();
                if (h.seq == END_SEQ) {
                    uint32_t sent = __atomic_load_n(&sh->s_sent[h.sender], __ATOMIC_SEQ_CST);
                    CHECK(next[h.sender] == sent, "member %d: sender %u's end marker after %u of its %u "
                          "messages", id, h.sender, next[h.sender], sent);
                    ended++;
                    continue;
                }
                CHECK(h.seq == next[h.sender], "member %d: S from sender %u: seq %u, expected %u", id,
                      h.sender, h.seq, next[h.sender]);
                next[h.sender]++;
                __atomic_store_n(&sh->s_got[id][h.sender], next[h.sender], __ATOMIC_RELAXED);
            }
        }
        /* H: anything goes, but no crash and no hang */
        if (poll_failed || (p[1].revents & (POLLIN | POLLERR))) {
            for (int k = 0; k < 64; k++) {
                errno = 0;
                ssize_t n = recv(mh, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0 && errno == EAGAIN)
                    break;
                h_result(OP_RECV, n);
                if (n < 0)
                    break;
            }
        }
        CHECK(tu_now() - last_s < 8, "member %d: nothing from S for 8 s (got %u, %u)", id, next[0],
              next[1]);
    }
    __atomic_add_fetch(&sh->members_done, 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* ---- senders ---- */

static int sender(void *arg)
{
    uint32_t id = (uint32_t)(intptr_t)arg;
    rng_state = (uint64_t)getpid() * 0x2545F4914F6CDD1Dull | 1;
    int s = tu_dgram();
    tu_set_timeout(s, SO_SNDTIMEO, 500);
    unsigned char buf[MSG_CAP];
    tu_gate_arrive(&ready);
    for (uint32_t i = 0;; i++) {
        int last = __atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST);
        if (last)
            __atomic_store_n(&sh->s_sent[id], i, __ATOMIC_SEQ_CST);
        size_t len = last ? tu_make_msg(buf, sizeof buf, id, END_SEQ, 8)
                          : tu_make_msg(buf, sizeof buf, id, i, 16 + rnd() % (MAX_PAYLOAD - 16));
        double t0 = tu_now();
        for (;;) {
            ssize_t n = tu_sendto_group(s, buf, len, 0, &S);
            if (n == (ssize_t)len)
                break;
            /* EAGAIN: the timeout passed, nobody got it; anything else is H hurting S */
            CHECK(n < 0 && errno == EAGAIN, "sender %u: send %u to S failed", id, i);
            CHECK(tu_now() - t0 < 8, "sender %u: S held back for 8 s", id);
        }
        if (last)
            break;
        size_t hl = rnd() % 3000;
        errno = 0;
        h_result(OP_SEND, tu_sendto_group(s, buf, hl, 0, &H));
        if (i % 4 == 0)
            tu_sleep_ms(1);
    }
    __atomic_add_fetch(&sh->senders_done, 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* ---- a joiner: JOIN/LEAVE on H over and over ---- */

static int joiner(void *arg)
{
    (void)arg;
    tu_gate_arrive(&ready);
    while (!__atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST)) {
        int fd = tu_dgram();
        errno = 0;
        int r = tu_setopt(fd, UNIX_JOIN_GROUP, &H, 0);
        h_result(OP_JOIN, r);
        if (r == 0) {
            char c;
            errno = 0;
            long n = recv(fd, &c, 1, MSG_DONTWAIT);
            if (!(n < 0 && errno == EAGAIN))
                h_result(OP_RECV, n);
            errno = 0;
            h_result(OP_LEAVE, tu_setopt(fd, UNIX_LEAVE_GROUP, &H, 0));
        }
        close(fd);
        tu_sleep_ms(5);
    }
    return 0;
}

/* ---- the corrupter ---- */

struct mapped {
    char name[128];
    unsigned char *p;
    size_t len;
};

static int corrupter(void *arg)
{
    (void)arg;
    rng_state = (uint64_t)(intptr_t)arg ^ 0xdeadbeefcafef00dull;
    rng_state = rng_state * 31 + (uint64_t)getpid();
    int fd = open(h_segment, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0, "open %s", h_segment);
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat");
    size_t seglen = (size_t)st.st_size;
    unsigned char *seg = mmap(NULL, seglen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(seg != MAP_FAILED, "mmap the segment");
    close(fd);
    struct mapped q[64];
    int nq = 0;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "umcast.q.%016llx.", (unsigned long long)h_gid);
    tu_gate_arrive(&ready);
    while (!__atomic_load_n(&sh->corrupt, __ATOMIC_SEQ_CST))
        tu_sleep_ms(5);
    double t0 = tu_now(), rescan = 0;
    for (;;) {
        double t = tu_now() - t0;
        if (t > PHASE_A_SECONDS + PHASE_B_SECONDS)
            break;
        int identity_too = t > PHASE_A_SECONDS;
        if (identity_too)
            __atomic_store_n(&sh->corrupt, 2, __ATOMIC_SEQ_CST);
        if (tu_now() - rescan > 0.2) { /* new queues (the joiner's) */
            rescan = tu_now();
            int n;
            char **names = tu_shm_names(prefix, &n);
            for (int i = 0; i < n; i++) {
                int known = 0;
                for (int k = 0; k < nq; k++)
                    known |= strcmp(q[k].name, names[i]) == 0;
                if (known || nq == 64)
                    continue;
                char path[200];
                snprintf(path, sizeof path, "/dev/shm/%s", names[i]);
                int qf = open(path, O_RDWR | O_CLOEXEC);
                if (qf < 0)
                    continue; /* gone already */
                if (fstat(qf, &st) == 0 && st.st_size > 4096) {
                    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, qf, 0);
                    if (m != MAP_FAILED) {
                        snprintf(q[nq].name, sizeof q[nq].name, "%s", names[i]);
                        q[nq].p = m;
                        q[nq].len = (size_t)st.st_size;
                        nq++;
                        sh->queues_seen++;
                    }
                }
                close(qf);
            }
            tu_free_names(names, n);
        }
        uint64_t r = rnd();
        if (r % 3 == 0 || nq == 0) {
            /* the segment: 1-8 random bytes anywhere, often in the header and slots' start */
            size_t off = (r >> 8) % 2 ? (size_t)((r >> 16) % 512) : (size_t)((r >> 16) % seglen);
            if (!identity_too && off < 48)
                off += 48;
            size_t n = 1 + (r >> 40) % 8;
            for (size_t i = 0; i < n && off + i < seglen; i++)
                seg[off + i] = (unsigned char)rnd();
            sh->writes_seg++;
        } else {
            struct mapped *m = &q[(r >> 8) % (uint64_t)nq];
            uint64_t *head = (uint64_t *)(m->p + 64), *tail = (uint64_t *)(m->p + 128);
            switch ((r >> 16) % 6) {
            case 0:
                __atomic_store_n(head, rnd(), __ATOMIC_RELAXED);
                break;
            case 1:
                __atomic_store_n(tail, rnd(), __ATOMIC_RELAXED);
                break;
            case 2: /* plausible: shifted by a record alignment */
                __atomic_add_fetch(head, 8, __ATOMIC_RELAXED);
                break;
            case 3:
                __atomic_sub_fetch(tail, 8, __ATOMIC_RELAXED);
                break;
            default: { /* record bytes */
                size_t data = m->len - 4096;
                size_t off = 4096 + (size_t)(rnd() % data);
                size_t n = 1 + rnd() % 16;
                for (size_t i = 0; i < n && off + i < m->len; i++)
                    m->p[off + i] = (unsigned char)rnd();
            }
            }
            sh->writes_queue++;
        }
        if (r % 4 == 0)
            tu_sleep_ms(1);
    }
    return 0;
}

/* Run `umcast cmd`; its wait status (it must not crash on the corrupted segment). */
static int tool_status(const char *cmd, double *took)
{
    double t0 = tu_now();
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        alarm(20);
        execl(tu_umcast_tool(), "umcast", cmd, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR) {
    }
    *took = tu_now() - t0;
    return status;
}

int main(void)
{
    tu_start("t_hostile");
    sh = tu_shared_alloc(sizeof *sh);
    tu_abstract_group(&H, "hostile");
    tu_abstract_group(&S, "safe");
    int gh = tu_create_group(&H), gs = tu_create_group(&S);
    tu_segment_path(&H, h_segment, sizeof h_segment);
    h_gid = tu_group_id(&H);
    printf("  hostile group's segment: %s\n", h_segment);
    tu_gate_init(&ready);
    for (int i = 0; i < NMEMBERS; i++)
        tu_spawn("member", member, (void *)(intptr_t)i);
    tu_gate_wait(&ready, NMEMBERS, 5000);
    tu_spawn("joiner", joiner, NULL);
    pid_t corr = tu_spawn("corrupter", corrupter, (void *)(intptr_t)getpid());
    tu_gate_wait(&ready, 2, 5000);
    for (int i = 0; i < NSENDERS; i++)
        tu_spawn("sender", sender, (void *)(intptr_t)i);
    tu_gate_wait(&ready, NSENDERS, 5000);

    double t0 = tu_now();
    tu_sleep_ms((int)(CLEAN_SECONDS * 1000));
    __atomic_store_n(&sh->corrupt, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&sh->corrupt, __ATOMIC_SEQ_CST) < 2 ||
           tu_child_running(corr)) { /* the corrupter runs its phases */
        tu_check_children();
        CHECK(tu_now() - t0 < DEADLINE, "the corrupter does not finish");
        tu_sleep_ms(20);
    }
    tu_wait_child(corr);
    __atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
    while (sh->members_done < NMEMBERS || sh->senders_done < NSENDERS) {
        tu_check_children();
        CHECK(tu_now() - t0 < DEADLINE,
              "after %.0f s: %u of %d senders and %u of %d members finished (S: member 0 has %u+%u, "
              "member 1 %u+%u): something hangs",
              DEADLINE, sh->senders_done, NSENDERS, sh->members_done, NMEMBERS, sh->s_got[0][0],
              sh->s_got[0][1], sh->s_got[1][0], sh->s_got[1][1]);
        tu_sleep_ms(20);
    }
    double ran = tu_now() - t0;
    tu_wait_all();
    for (int m = 0; m < NMEMBERS; m++)
        for (int s = 0; s < NSENDERS; s++)
            CHECK(sh->s_got[m][s] == sh->s_sent[s], "member %d got %u of sender %d's %u S messages", m,
                  sh->s_got[m][s], s, sh->s_sent[s]);
    printf("  corrupter: %u writes into the segment, %u into %u queue files\n", sh->writes_seg,
           sh->writes_queue, sh->queues_seen);
    static const char *phase_names[3] = {"clean", "corrupt (A)", "corrupt (B)"};
    int unexpected = 0;
    for (int ph = 0; ph < 3; ph++) {
        printf("  H, %s:\n", phase_names[ph]);
        for (int op = 0; op < NOPS; op++) {
            char line[1024];
            int len = snprintf(line, sizeof line, "    %-5s: %u ok", op_names[op], sh->h_ok[ph][op]);
            for (int e = 0; e < 160; e++) {
                if (!sh->h_err[ph][op][e])
                    continue;
                len += snprintf(line + len, sizeof line - (size_t)len, ", %u %s", sh->h_err[ph][op][e],
                                e ? tu_errname(e) : "errno 0?");
                int fine = e == EIO || e == EPROTO || e == EINVAL || e == EAGAIN || e == ECONNREFUSED ||
                           e == EMSGSIZE || e == ENOBUFS || e == EADDRNOTAVAIL;
                if (ph == 0 || !fine) {
                    unexpected++;
                    fprintf(stderr, "FAIL: H %s failed %u times with %s %s\n", op_names[op],
                            sh->h_err[ph][op][e], e ? tu_errname(e) : "errno 0",
                            ph == 0 ? "before any corruption"
                                    : "while corrupted: not an error corruption should give (EIO, EPROTO, "
                                      "EINVAL)");
                }
            }
            printf("%s\n", line);
        }
    }
    CHECK(sh->h_ok[0][OP_SEND] > 0 && sh->h_ok[0][OP_RECV] > 0, "H did not work before the corruption");
    CHECK(sh->writes_seg > 100 && sh->writes_queue > 100 && sh->queues_seen >= NMEMBERS,
          "the corrupter hardly wrote anything");
    tu_ok("%d senders' %u + %u messages to S reached both members intact and in order while H was "
          "corrupted; no process crashed or hung (%.1f s)",
          NSENDERS, sh->s_sent[0], sh->s_sent[1], ran);

    double took;
    int st = tool_status("list", &took);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "`umcast list` over the corrupted segment: wait status "
          "0x%x (%s)", st, WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exit");
    CHECK(took < 10, "`umcast list` took %.1f s", took);
    tu_ok("`umcast list` over the corrupted segment exits normally (%.0f ms)", took * 1e3);

    /* S still works after everything; H's G closes cleanly */
    int m = tu_join(&S, 0), s = tu_dgram();
    tu_set_rcvtimeo(m, 3000);
    CHECK(tu_sendto_group(s, "after", 5, 0, &S) == 5, "send to S afterwards");
    tu_expect_str(m, "after", "S afterwards");
    close(gh);
    close(m);
    close(gs);
    st = tool_status("gc", &took);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "`umcast gc` after the corruption: wait status 0x%x",
          st);
    if (access(h_segment, F_OK) == 0) {
        fprintf(stderr, "FAIL: the corrupted group's segment %s remains after its G was closed and "
                "`umcast gc` ran: nothing will ever remove it (the test removes it now)\n", h_segment);
        unexpected++;
        unlink(h_segment);
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "umcast.q.%016llx.", (unsigned long long)h_gid);
    int nleft;
    char **left = tu_shm_names(prefix, &nleft);
    if (nleft)
        printf("  NOTE: %d queue file(s) of the corrupted group remain after its G closed and `umcast gc` "
               "ran (gc removes orphaned queues once 10 s old), e.g. %s\n", nleft, left[0]);
    tu_free_names(left, nleft);
    if (unexpected) {
        fprintf(stderr, "FAIL: %d unexpected error kind(s) or leftovers of the corrupted group (see above)\n",
                unexpected);
        return 1;
    }
    return tu_done();
}
