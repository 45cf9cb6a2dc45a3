/*
 * t_watch_loop: a libdbus-style main loop. Like DBusLoop, it keeps a list of
 * watches whose interest is switched on and off between iterations and
 * rebuilds the pollfd array from the enabled watches before every poll():
 *
 *   - a "transport" socket T that is a member of the group and connected to
 *     it has two watches on one descriptor, as a libdbus transport does: a
 *     read watch (POLLIN), disabled while the application's backlog of
 *     received messages is long, and a write watch (POLLOUT), enabled only
 *     while outgoing messages are queued;
 *   - a pipe watch (POLLIN) carrying control bytes from the peer.
 *
 * Disabled watches sometimes stay in the array with events 0 or with the
 * descriptor negated (poll ignores both), the order of entries rotates, and
 * the backlog is worked off between iterations, now slowly, now quickly
 * (poll timeout 0 while some is left).
 *
 * The peer, another process, is a member with a small queue: it answers each
 * message from T with a reply to the group (T receives it; the peer does
 * not get its own). T's sends therefore meet flow control, and the write
 * watch must wake exactly when room appears. Every POLLIN must yield a
 * message and every POLLOUT a successful 1-byte send; revents never holds an
 * interest that was not asked for; no poll times out.
 */
#include "testutil.h"

#define K 5000      /* requests from T, and replies */
#define PAYLOAD 32
#define BACKLOG_MAX 8
#define CTL_EVERY 100 /* the peer writes a control byte every CTL_EVERY replies */

static struct unix_mreq group;
static int ctl[2];
static struct tu_gate joined;

enum { W_READ, W_WRITE, W_CTL, NWATCH };
static const char *wnames[NWATCH] = {"T read watch", "T write watch", "control pipe watch"};

struct watch {
    int fd;
    short flags; /* POLLIN or POLLOUT */
    int enabled;
};

static int peer(void *arg)
{
    (void)arg;
    int p = tu_dgram();
    tu_setint(p, SOL_SOCKET, SO_RCVBUF, 4096);
    tu_join_fd(p, &group, 0);
    tu_set_rcvtimeo(p, 10000);
    tu_gate_arrive(&joined);
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    for (uint32_t i = 0; i < K; i++) {
        ssize_t n = recv(p, buf, sizeof buf, 0);
        CHECK(n == 1, "peer: recv request %u gave %zd", i, n);
        CHECK(buf[0] == (unsigned char)i, "peer: expected request %u, got byte %u", i, buf[0]);
        size_t len = tu_make_msg(buf, sizeof buf, 1, i, PAYLOAD);
        CHECK(tu_sendto_group(p, buf, len, 0, &group) == (ssize_t)len, "peer: reply %u", i);
        if ((i + 1) % CTL_EVERY == 0)
            CHECK(write(ctl[1], "c", 1) == 1, "peer: control byte");
    }
    tu_expect_empty(p, "peer: after the last request (its own replies must not come back)");
    return 0;
}

int main(void)
{
    tu_start("t_watch_loop");
    tu_abstract_group(&group, "watch");
    int g = tu_create_group(&group);
    CHECK(pipe2(ctl, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
    tu_gate_init(&joined);
    tu_spawn("peer", peer, NULL);
    tu_gate_wait(&joined, 1, 10000);

    int t = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(t >= 0, "socket");
    tu_join_fd(t, &group, 0);
    CHECK(connect(t, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0, "connect");

    struct watch w[NWATCH] = {{t, POLLIN, 1}, {t, POLLOUT, 1}, {ctl[0], POLLIN, 1}};
    uint32_t sent = 0, received = 0, backlog = 0, ctl_bytes = 0;
    uint32_t read_off = 0, write_off = 0;
    uint32_t iterations = 0, polls_nonblocking = 0, write_wakeups = 0, read_wakeups = 0, eagain = 0;
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    double t0 = tu_now();

    while (received < K || sent < K || backlog > 0 || ctl_bytes < K / CTL_EVERY) {
        iterations++;
        CHECK(iterations < 1000000, "the loop does not finish");
        /* the application works off its backlog between iterations: slowly (one message every
           fourth iteration, so the read watch gets switched off) and quickly, in turns of 64
           iterations */
        uint32_t work = (iterations / 64) % 2 ? iterations % 4 == 0 : 8;
        backlog = backlog > work ? backlog - work : 0;
        if (received == K && sent == K && backlog == 0 && ctl_bytes == K / CTL_EVERY)
            break;
        /* toggle interests as a libdbus transport would */
        w[W_READ].enabled = backlog < BACKLOG_MAX;
        w[W_WRITE].enabled = sent < K;
        read_off += !w[W_READ].enabled;
        write_off += !w[W_WRITE].enabled;

        /* rebuild the pollfd array from the watch list, rotating, with some disabled entries kept */
        struct pollfd pfd[NWATCH * 2];
        int owner[NWATCH * 2];
        int n = 0;
        for (int j = 0; j < NWATCH; j++) {
            int i = (int)((j + iterations) % NWATCH);
            if (w[i].enabled) {
                pfd[n] = (struct pollfd){.fd = w[i].fd, .events = w[i].flags};
            } else if (iterations % 3 == 0) {
                pfd[n] = (struct pollfd){.fd = w[i].fd, .events = 0};
            } else if (iterations % 3 == 1) {
                pfd[n] = (struct pollfd){.fd = -w[i].fd - 1, .events = w[i].flags};
            } else {
                continue;
            }
            owner[n++] = i;
        }
        int timeout = backlog > 0 ? 0 : 5000;
        polls_nonblocking += timeout == 0;
        int r = poll(pfd, (nfds_t)n, timeout);
        CHECK(r >= 0, "poll");
        if (r == 0 && timeout > 0) {
            fprintf(stderr, "    state: sent %u, received %u, backlog %u, control %u; watches: read %s, write %s\n",
                    sent, received, backlog, ctl_bytes, w[W_READ].enabled ? "on" : "off",
                    w[W_WRITE].enabled ? "on" : "off");
            ssize_t k = recv(t, buf, sizeof buf, MSG_DONTWAIT | MSG_PEEK);
            CHECK(0, "poll timed out after 5 s (lost wake-up?); a message %s waiting for T", k >= 0 ? "was" : "was not");
        }
        int ready = 0;
        for (int k = 0; k < n; k++) {
            short allowed = pfd[k].fd < 0 ? 0 : (short)(pfd[k].events | POLLERR | POLLHUP | POLLNVAL);
            CHECK((pfd[k].revents & ~allowed) == 0, "iteration %u: %s (fd %d, events 0x%x): revents 0x%x",
                  iterations, wnames[owner[k]], pfd[k].fd, pfd[k].events, pfd[k].revents);
            CHECK(!(pfd[k].revents & (POLLERR | POLLHUP | POLLNVAL)), "%s: revents 0x%x", wnames[owner[k]],
                  pfd[k].revents);
            ready += pfd[k].revents != 0;
        }
        CHECK(r == ready, "poll returned %d, %d entries have revents", r, ready);

        /* dispatch */
        for (int k = 0; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            switch (owner[k]) {
            case W_READ:
                read_wakeups++;
                for (int m = 0; m < 4 && backlog < BACKLOG_MAX; m++) {
                    ssize_t got = recv(t, buf, sizeof buf, MSG_DONTWAIT);
                    if (got == -1 && errno == EAGAIN && m > 0)
                        break;
                    CHECK(got >= 0, "T: POLLIN, but MSG_DONTWAIT recv failed (reply %u of %d)", received, K);
                    struct tu_msg_hdr h;
                    CHECK(tu_check_msg(buf, got, &h) == 0, "T: corrupt message");
                    CHECK(h.sender == 1 && h.seq == received, "T: expected reply %u, got (%u,%u)", received,
                          h.sender, h.seq);
                    received++;
                    backlog++;
                }
                break;
            case W_WRITE:
                write_wakeups++;
                for (int m = 0; m < 8 && sent < K; m++) {
                    /* requests are 1 byte: POLLOUT promises room for exactly that */
                    unsigned char req = (unsigned char)sent;
                    size_t len = 1;
                    ssize_t s = send(t, &req, len, MSG_DONTWAIT);
                    if (s == -1 && errno == EAGAIN && m > 0) {
                        eagain++;
                        break;
                    }
                    CHECK(s == (ssize_t)len, "T: POLLOUT, but a %zu-byte MSG_DONTWAIT send failed (request %u)",
                          len, sent);
                    sent++;
                }
                break;
            case W_CTL: {
                char c[16];
                ssize_t got = read(ctl[0], c, sizeof c);
                CHECK(got > 0, "control pipe: POLLIN but read gave %zd", got);
                ctl_bytes += (uint32_t)got;
                break;
            }
            }
        }
    }
    double secs = tu_now() - t0;
    tu_wait_all();
    tu_expect_empty(t, "T after the last reply");
    CHECK(eagain > 0, "T never met flow control (the peer's small queue never filled)");
    CHECK(read_off > 0, "the read watch was never switched off");
    tu_ok("libdbus-style loop: %u requests sent and %u replies received in order in %.2f s, %u iterations "
          "(%u with timeout 0 for the backlog), the pollfd array rebuilt every time; read watch off in %u "
          "iterations, write watch off in %u",
          sent, received, secs, iterations, polls_nonblocking, read_off, write_off);
    tu_ok("read watch woke %u times, write watch %u times (each with a message or with room), EAGAIN after "
          "room ran out %u times; %u control bytes through the pipe watch; no poll timed out",
          read_wakeups, write_wakeups, eagain, ctl_bytes);
    close(t);
    close(g);
    return tu_done();
}
