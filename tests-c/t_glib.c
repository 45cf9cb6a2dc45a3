/*
 * t_glib: a real event loop. One GLib main loop (which sleeps in poll())
 * serves, at the same time:
 *   - member M1 through g_unix_fd_add(G_IO_IN), with a small queue, so that
 *     the sender below really runs into flow control;
 *   - member M2 through a GIOChannel watch (g_io_add_watch);
 *   - member M3 through a GSource of our own (g_source_add_unix_fd, with
 *     prepare/check/dispatch and g_source_query_unix_fd);
 *   - a non-blocking socket connected to the group through
 *     g_unix_fd_add(G_IO_OUT): it sends until EAGAIN and waits for G_IO_OUT
 *     again, so the loop itself is the sender's flow control.
 * Another process sends to the group too. Each member handler reads one
 * message per dispatch (MSG_DONTWAIT, which must succeed: no spurious
 * G_IO_IN); the loop quits when all three members have every message. The
 * members must agree on the order and see each sender's messages in order;
 * the G_IO_OUT handler must not spin (few dispatches that could not send:
 * the other process competes for the room).
 */
#include "testutil.h"

#include <glib-unix.h>
#include <glib.h>

#define LOOP_MSGS 3000  /* sent by the loop's own G_IO_OUT handler */
#define CHILD_MSGS 3000 /* sent by another process */
#define TOTAL (LOOP_MSGS + CHILD_MSGS)
#define PAYLOAD 40

static struct unix_mreq group;
static GMainLoop *loop;

struct member {
    const char *how;
    int fd;
    uint32_t count;
    uint32_t next[2];
    uint64_t hash;
    uint32_t dispatches;
};

static struct member members[3] = {{.how = "g_unix_fd_add"}, {.how = "GIOChannel watch"}, {.how = "own GSource"}};
static int done_members;

/* One message per dispatch; returns FALSE when this member has everything. */
static gboolean member_read(struct member *m)
{
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD + 64];
    m->dispatches++;
    ssize_t n = recv(m->fd, buf, sizeof buf, MSG_DONTWAIT);
    CHECK(n >= 0, "%s: G_IO_IN dispatched, but MSG_DONTWAIT recv failed (%u of %d received)", m->how, m->count,
          TOTAL);
    struct tu_msg_hdr h;
    CHECK(tu_check_msg(buf, n, &h) == 0, "%s: corrupt message", m->how);
    CHECK(h.sender < 2 && h.seq == m->next[h.sender], "%s: from sender %u expected %u, got %u", m->how, h.sender,
          m->next[h.sender], h.seq);
    m->next[h.sender]++;
    uint32_t key = h.sender << 24 | h.seq;
    m->hash = tu_fnv1a64(m->hash, &key, sizeof key);
    if (++m->count < TOTAL)
        return TRUE;
    if (++done_members == 3)
        g_main_loop_quit(loop);
    return FALSE;
}

static gboolean on_unix_fd(gint fd, GIOCondition cond, gpointer data)
{
    struct member *m = data;
    CHECK(fd == m->fd && cond == G_IO_IN, "g_unix_fd_add: fd %d condition 0x%x", fd, cond);
    return member_read(m) ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static gboolean on_channel(GIOChannel *ch, GIOCondition cond, gpointer data)
{
    struct member *m = data;
    CHECK(g_io_channel_unix_get_fd(ch) == m->fd && cond == G_IO_IN, "GIOChannel: condition 0x%x", cond);
    return member_read(m) ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* A GSource of our own around member M3. */
struct member_source {
    GSource base;
    gpointer tag;
    struct member *m;
};

static gboolean ms_prepare(GSource *s, gint *timeout)
{
    (void)s;
    *timeout = -1;
    return FALSE;
}

static gboolean ms_check(GSource *s)
{
    struct member_source *ms = (struct member_source *)s;
    return (g_source_query_unix_fd(s, ms->tag) & G_IO_IN) != 0;
}

static gboolean ms_dispatch(GSource *s, GSourceFunc cb, gpointer data)
{
    (void)cb;
    (void)data;
    struct member_source *ms = (struct member_source *)s;
    return member_read(ms->m) ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static GSourceFuncs member_source_funcs = {.prepare = ms_prepare, .check = ms_check, .dispatch = ms_dispatch};

/* The loop's own sender: G_IO_OUT on a non-blocking socket connected to the group. */
static struct {
    int fd;
    uint32_t seq;
    uint32_t dispatches, eagain, idle_dispatches;
} out;

static gboolean on_writable(gint fd, GIOCondition cond, gpointer data)
{
    (void)data;
    CHECK(fd == out.fd && cond == G_IO_OUT, "G_IO_OUT handler: condition 0x%x", cond);
    out.dispatches++;
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    uint32_t sent = 0;
    while (out.seq < LOOP_MSGS) {
        size_t len = tu_make_msg(buf, sizeof buf, 0, out.seq, PAYLOAD);
        ssize_t r = send(fd, buf, len, 0);
        if (r == -1 && errno == EAGAIN) {
            out.eagain++;
            break;
        }
        CHECK(r == (ssize_t)len, "loop sender: send %u", out.seq);
        out.seq++;
        sent++;
    }
    if (sent == 0)
        out.idle_dispatches++;
    return out.seq < LOOP_MSGS ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static gboolean on_timeout(gpointer data)
{
    (void)data;
    fprintf(stderr, "FAIL: the GLib loop made no progress for 15 s: members got %u/%u/%u of %d, the loop sent %u "
            "of %d (%u G_IO_OUT dispatches, %u EAGAIN)\n",
            members[0].count, members[1].count, members[2].count, TOTAL, out.seq, LOOP_MSGS, out.dispatches,
            out.eagain);
    exit(1);
}

static int child_sender(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    unsigned char buf[sizeof(struct tu_msg_hdr) + PAYLOAD];
    for (uint32_t seq = 0; seq < CHILD_MSGS; seq++) {
        size_t len = tu_make_msg(buf, sizeof buf, 1, seq, PAYLOAD);
        CHECK(tu_sendto_group(s, buf, len, 0, &group) == (ssize_t)len, "child: send %u", seq);
        if (seq % 64 == 0)
            usleep(200);
    }
    return 0;
}

int main(void)
{
    tu_start("t_glib");
    tu_abstract_group(&group, "glib");
    int g = tu_create_group(&group);
    for (int i = 0; i < 3; i++) {
        members[i].fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(members[i].fd >= 0, "socket");
        if (i == 0)
            tu_setint(members[i].fd, SOL_SOCKET, SO_RCVBUF, 4096); /* small: flow control */
        tu_join_fd(members[i].fd, &group, 0);
        members[i].hash = TU_FNV64_INIT;
    }
    out.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(out.fd >= 0, "socket");
    CHECK(connect(out.fd, (struct sockaddr *)&group.address, unix_mreq_addrlen(&group)) == 0, "connect");

    loop = g_main_loop_new(NULL, FALSE);
    g_unix_fd_add(members[0].fd, G_IO_IN, on_unix_fd, &members[0]);
    GIOChannel *ch = g_io_channel_unix_new(members[1].fd);
    g_io_add_watch(ch, G_IO_IN, on_channel, &members[1]);
    GSource *src = g_source_new(&member_source_funcs, sizeof(struct member_source));
    struct member_source *ms = (struct member_source *)src;
    ms->m = &members[2];
    ms->tag = g_source_add_unix_fd(src, members[2].fd, G_IO_IN);
    g_source_attach(src, NULL);
    g_unix_fd_add(out.fd, G_IO_OUT, on_writable, NULL);
    g_timeout_add_seconds(15, on_timeout, NULL);

    tu_spawn("child sender", child_sender, NULL);
    double t0 = tu_now();
    g_main_loop_run(loop);
    double secs = tu_now() - t0;
    tu_wait_all();

    for (int i = 0; i < 3; i++) {
        CHECK(members[i].count == TOTAL, "%s: %u of %d", members[i].how, members[i].count, TOTAL);
        CHECK(members[i].hash == members[0].hash, "%s saw another order than %s", members[i].how, members[0].how);
        tu_expect_empty(members[i].fd, members[i].how);
    }
    tu_ok("GLib main loop: three members (g_unix_fd_add, GIOChannel, own GSource) each got all %d messages "
          "(%d from the loop's G_IO_OUT sender, %d from another process) in one order, one message per "
          "G_IO_IN dispatch, in %.2f s",
          TOTAL, LOOP_MSGS, CHILD_MSGS, secs);
    CHECK(out.eagain > 0, "the loop's sender never met flow control (M1's queue never filled)");
    /* the other process competes for the same room, so some dispatches find it taken already;
       a spinning G_IO_OUT would give thousands (one per loop iteration while the queue is full) */
    CHECK(out.idle_dispatches <= out.eagain / 2 + 10,
          "G_IO_OUT dispatched %u times with no room for a message (%u dispatches, %u EAGAIN): the "
          "sender spins", out.idle_dispatches, out.dispatches, out.eagain);
    tu_ok("the loop's sender met EAGAIN %u times and was woken by G_IO_OUT each time room appeared (%u "
          "dispatches, %u found the room taken by the other sender)",
          out.eagain, out.dispatches, out.idle_dispatches);
    g_io_channel_unref(ch);
    g_source_unref(src);
    g_main_loop_unref(loop);
    close(g);
    return tu_done();
}
