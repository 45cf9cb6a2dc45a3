/*
 * t_epoll_dup: an epoll descriptor that is duplicated (dup, dup2,
 * fcntl(F_DUPFD_CLOEXEC)) names the same epoll set, as in the kernel: every
 * descriptor of the set reports the group events of its registrations,
 * registrations made through one descriptor are seen through the others,
 * and the set keeps working through a duplicate after the original
 * descriptor is closed, even when that number is reused by another epoll
 * set (which must not be confused with it). Each step is also done with an
 * ordinary bound unix socket in the same set, the kernel's own reference.
 */
#include "testutil.h"

#include <sys/epoll.h>

#define MAXEV 8
#define D_MEMBER UINT64_C(0xfeedfacecafebeef)
#define D_OTHER UINT64_C(0x0123456789abcdef)
#define D_PLAIN UINT64_C(0x7777000011112222)
#define D_PIPE UINT64_C(0x5555aaaa5555aaaa)

static struct unix_mreq group;
static int tx;
static struct sockaddr_un paddr;
static socklen_t palen;

static void add(int ep, int fd, uint64_t data)
{
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = data};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0, "EPOLL_CTL_ADD fd %d through epoll descriptor %d", fd, ep);
}

static int failures;

/* Report a failed expectation and go on (the later steps tell more). */
#define EXPECT(cond, ...)                                                                   \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fflush(stdout);                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                            \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fprintf(stderr, "\n");                                                          \
            failures++;                                                                     \
        }                                                                                   \
    } while (0)

#define WAIT_FAILED 0x100u

/*
 * Which of the given data values were reported (bit i for data[i]);
 * WAIT_FAILED if epoll_wait failed; fails on unknown data.
 */
static unsigned wait_mask(int ep, const char *what, int nd, const uint64_t *data)
{
    struct epoll_event ev[MAXEV];
    int n = epoll_wait(ep, ev, MAXEV, 0);
    if (n < 0) {
        int e = errno;
        fflush(stdout);
        fprintf(stderr, "    %s: epoll_wait on epoll descriptor %d failed with %s\n", what, ep, tu_errname(e));
        return WAIT_FAILED;
    }
    unsigned mask = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < nd && data[k] != ev[i].data.u64)
            k++;
        CHECK(k < nd, "%s: epoll descriptor %d reported unexpected data 0x%llx", what, ep,
              (unsigned long long)ev[i].data.u64);
        mask |= 1u << k;
    }
    return mask;
}

static void send_both(void)
{
    CHECK(tu_sendto_group(tx, "g", 1, 0, &group) == 1, "send to the group");
    CHECK(sendto(tx, "p", 1, 0, (struct sockaddr *)&paddr, palen) == 1, "send to the ordinary socket");
}

static void drain(int fd)
{
    char c[8];
    while (recv(fd, c, sizeof c, MSG_DONTWAIT) >= 0) {
    }
}

int main(void)
{
    tu_start("t_epoll_dup");
    tu_abstract_group(&group, "edup");
    int g = tu_create_group(&group);
    tx = tu_dgram();
    int m = tu_join(&group, 0);
    int plain = tu_dgram();
    palen = tu_abstract_addr(&paddr, "edupplain");
    CHECK(bind(plain, (struct sockaddr *)&paddr, palen) == 0, "bind");
    const uint64_t both[2] = {D_MEMBER, D_PLAIN};

    int ep = epoll_create1(0);
    add(ep, m, D_MEMBER);
    add(ep, plain, D_PLAIN);
    int ep2 = dup(ep);
    int ep3 = fcntl(ep, F_DUPFD_CLOEXEC, 100);
    int ep4 = dup2(ep, 200);
    CHECK(ep2 >= 0 && ep3 >= 100 && ep4 == 200, "duplicating the epoll descriptor");
    send_both();
    int dups[4] = {ep, ep2, ep3, ep4};
    const char *how[4] = {"the original", "dup()", "F_DUPFD_CLOEXEC", "dup2()"};
    for (int i = 0; i < 4; i++) {
        unsigned r = wait_mask(dups[i], how[i], 2, both);
        EXPECT(r == 3, "through %s (descriptor %d): the ordinary socket %s, the member %s", how[i], dups[i],
              r & 2 ? "reported" : "NOT reported", r & 1 ? "reported" : "NOT reported");
    }
    drain(m);
    drain(plain);
    if (failures == 0)
        tu_ok("a set with a member and an ordinary socket: the original and its dup, F_DUPFD_CLOEXEC and dup2 "
          "copies all report both");

    /* a registration made through a duplicate is seen through the others */
    int other = tu_join(&group, 0);
    add(ep3, other, D_OTHER);
    const uint64_t three[3] = {D_MEMBER, D_PLAIN, D_OTHER};
    int before = failures;
    send_both();
    for (int i = 0; i < 4; i++) {
        unsigned r = wait_mask(dups[i], how[i], 3, three);
        EXPECT(r == 7, "a member registered through F_DUPFD_CLOEXEC's descriptor: through %s the set reported "
              "member %s, ordinary socket %s, the new member %s",
              how[i], r & 1 ? "yes" : "no", r & 2 ? "yes" : "no", r & 4 ? "yes" : "no");
    }
    drain(m);
    drain(other);
    drain(plain);
    if (failures == before)
        tu_ok("a member registered through one descriptor of the set is reported through all four");

    /* close the original: the set lives on through its duplicates */
    CHECK(close(ep) == 0, "close the original epoll descriptor");
    before = failures;
    send_both();
    for (int i = 1; i < 4; i++) {
        unsigned r = wait_mask(dups[i], how[i], 3, three);
        EXPECT(r == 7, "original epoll descriptor closed: through %s the set reported member %s, ordinary "
              "socket %s, second member %s",
              how[i], r & 1 ? "yes" : "no", r & 2 ? "yes" : "no", r & 4 ? "yes" : "no");
    }
    drain(m);
    drain(other);
    drain(plain);
    if (failures == before)
        tu_ok("the original epoll descriptor closed: the set works through each duplicate");

    /* the closed number is reused by a new, unrelated set */
    before = failures;
    int fresh = epoll_create1(0);
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    add(fresh, p[0], D_PIPE);
    CHECK(write(p[1], "x", 1) == 1, "write");
    const uint64_t pipe_only[1] = {D_PIPE};
    const uint64_t four[4] = {D_MEMBER, D_PLAIN, D_OTHER, D_PIPE};
    unsigned r = wait_mask(ep2, "old set through dup()", 4, four);
    EXPECT(r == 0 || r == WAIT_FAILED, "a new epoll set at descriptor %d (the closed original's number was %d): the old set, through "
          "dup(), reported %s%s%s%s",
          fresh, ep, r & 1 ? "member " : "", r & 2 ? "ordinary " : "", r & 4 ? "second-member " : "",
          r & 8 ? "the NEW set's pipe" : "");
    send_both();
    r = wait_mask(fresh, "the new set", 1, pipe_only);
    EXPECT(r == 1, "the new set did not report its pipe (0x%x)", r);
    for (int i = 1; i < 4; i++) {
        r = wait_mask(dups[i], how[i], 4, four);
        EXPECT(r == 7, "with a new set at descriptor %d: through %s the old set reported member %s, ordinary "
              "socket %s, second member %s, pipe %s",
              fresh, how[i], r & 1 ? "yes" : "no", r & 2 ? "yes" : "no", r & 4 ? "yes" : "no", r & 8 ? "yes" : "no");
    }
    if (failures == before)
        tu_ok("a new epoll set at descriptor %d (reusing the original's number %s) and the old set through its "
          "duplicates stay apart",
          fresh, fresh == ep ? "indeed" : "not");
    close(fresh);
    close(p[0]);
    close(p[1]);
    close(ep2);
    close(ep3);
    close(ep4);
    close(m);
    close(other);
    close(plain);
    close(g);
    if (failures) {
        fprintf(stderr, "FAIL: %d expectation(s) failed (see above)\n", failures);
        return 1;
    }
    return tu_done();
}
