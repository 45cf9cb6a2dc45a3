/*
 * t_pollout_exact: SPEC 5.6 says POLLOUT on a socket connected to a group
 * "is set exactly when a 1-byte send would not block" (docs/SPEC.md: every
 * recipient without DROP_WHEN_FULL has room for a 1-byte message *from it*).
 *
 * A member that never reads is filled step by step with MSG_DONTWAIT sends
 * of shrinking sizes (1024, 512, ... 8, then 1 byte), each size until
 * EAGAIN, so its free room passes through many values. After each step the
 * test asks poll (timeout 0) for POLLOUT and then tries a 1-byte MSG_DONTWAIT
 * send: the two must agree (POLLOUT and the send succeeds, or no POLLOUT
 * and EAGAIN). Senders: unbound (the usual client), bound to a short
 * abstract name, and bound to the longest abstract name.
 */
#include "testutil.h"

struct sender_kind {
    const char *name;
    int name_len; /* -1: unbound; else bytes of abstract name after the NUL */
};

static const struct sender_kind kinds[] = {
    {"unbound sender", -1},
    {"sender bound to a 6-byte abstract name", 6},
    {"sender bound to a 107-byte abstract name", 107},
};

static int pollout(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r = poll(&p, 1, 0);
    CHECK(r >= 0, "poll");
    return r == 1 && (p.revents & POLLOUT);
}

static struct unix_group_stats stats_of(int fd, const struct unix_mreq *m)
{
    union {
        struct unix_mreq m;
        struct unix_group_stats s;
    } u;
    memset(&u, 0, sizeof u);
    u.m = *m;
    socklen_t len = sizeof u;
    CHECK(getsockopt(fd, SOL_UNIX, UNIX_GROUP_STATS, &u, &len) == 0, "UNIX_GROUP_STATS");
    return u.s;
}

static int check_kind(const struct sender_kind *k)
{
    struct unix_mreq m;
    tu_abstract_group(&m, "exact");
    int g = tu_create_group(&m);
    int f = tu_dgram();
    tu_setint(f, SOL_SOCKET, SO_RCVBUF, 4096);
    tu_join_fd(f, &m, 0);
    int s = tu_dgram();
    if (k->name_len >= 0) {
        struct sockaddr_un a;
        memset(&a, 0, sizeof a);
        a.sun_family = AF_UNIX;
        char tmp[160];
        snprintf(tmp, sizeof tmp, "exact-%d-%u-%0120d", (int)getpid(), (unsigned)k->name_len, 0);
        memcpy(a.sun_path + 1, tmp, (size_t)k->name_len);
        socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k->name_len);
        CHECK(bind(s, (struct sockaddr *)&a, alen) == 0, "bind the sender (%d-byte name)", k->name_len);
    }
    CHECK(connect(s, (struct sockaddr *)&m.address, unix_mreq_addrlen(&m)) == 0, "connect");
    CHECK(pollout(s), "%s: no POLLOUT with an empty queue", k->name);

    static const size_t sizes[] = {1024, 512, 256, 128, 96, 64, 48, 32, 24, 16, 8, 1};
    static char buf[1024];
    memset(buf, 'e', sizeof buf);
    int mismatches = 0, steps = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int n = 0;; n++) {
            CHECK(n < 100000, "no EAGAIN");
            ssize_t r = send(s, buf, sizes[i], MSG_DONTWAIT);
            if (r == -1 && errno == EAGAIN)
                break;
            CHECK(r == (ssize_t)sizes[i], "send %zu bytes", sizes[i]);
        }
        struct unix_group_stats st = stats_of(f, &m);
        int p = pollout(s);
        errno = 0;
        ssize_t r = send(s, "x", 1, MSG_DONTWAIT);
        int e = errno;
        CHECK(r == 1 || (r == -1 && e == EAGAIN), "1-byte send: %zd (errno %s)", r, tu_errname(e));
        steps++;
        if (p != (r == 1)) {
            mismatches++;
            fprintf(stderr,
                    "    %s, after %zu-byte sends until EAGAIN (member: %llu messages, %llu payload bytes, "
                    "capacity %llu): poll says %s, but a 1-byte MSG_DONTWAIT send %s\n",
                    k->name, sizes[i], st.queued_messages, st.queued_bytes, st.capacity,
                    p ? "POLLOUT" : "no POLLOUT", r == 1 ? "succeeded" : "failed with EAGAIN");
        }
    }
    CHECK(!pollout(s), "%s: POLLOUT after 1-byte sends failed with EAGAIN", k->name);
    close(s);
    close(f);
    close(g);
    if (mismatches == 0)
        tu_ok("%s: POLLOUT agreed with a 1-byte non-blocking send at all %d fill levels", k->name, steps);
    else
        fprintf(stderr, "  %s: POLLOUT and a 1-byte send disagreed at %d of %d fill levels\n", k->name, mismatches,
                steps);
    return mismatches;
}

int main(void)
{
    tu_start("t_pollout_exact");
    int bad = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        bad += check_kind(&kinds[i]) != 0;
    if (bad) {
        fflush(stdout);
        fprintf(stderr, "FAIL: POLLOUT is not exactly \"a 1-byte send would not block\" for %d sender kind(s)\n", bad);
        return 1;
    }
    return tu_done();
}
