/*
 * tr_umcast.c - (a) a libumcast datagram group.
 *
 * The driver runs under LD_PRELOAD=libumcast.so, so these are ordinary
 * AF_UNIX SOCK_DGRAM calls plus the SOL_UNIX options of umcast.h: the driver
 * creates the group socket G, every receiver joins, and the sender (a
 * separate unbound socket: any unix datagram socket may send to a group)
 * makes one blocking sendto() per message, which reaches every member and
 * waits while a member's queue is full, so nothing is lost.
 */
#include "benchutil.h"
#include "transport.h"
#include "umcast.h"

#include <sys/socket.h>
#include <sys/un.h>

static struct unix_mreq mreq; /* the group's abstract address */
static int group_fd = -1;     /* G: kept open by the driver for the whole run */
static int rx_fd = -1, tx_fd = -1;

static int umcast_setup(const struct bench_cfg *cfg)
{
    memset(&mreq, 0, sizeof mreq);
    mreq.address.sun_family = AF_UNIX;
    /* Abstract name: nothing to clean up in the file system afterwards. */
    snprintf(mreq.address.sun_path + 1, sizeof mreq.address.sun_path - 1, "umbench.%s", cfg->run_id);
    group_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (group_fd < 0)
        return -1;
    if (setsockopt(group_fd, SOL_UNIX, UNIX_CREATE_GROUP, &mreq, sizeof mreq) < 0) {
        warnx_("UNIX_CREATE_GROUP failed (is LD_PRELOAD=libumcast.so set?):");
        return -1;
    }
    return 0;
}

static int umcast_rx_open(const struct bench_cfg *cfg, int idx)
{
    (void)idx;
    rx_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (rx_fd < 0)
        return -1;
    /* The member's default SO_RCVBUF sizes its queue (as the kernel's
     * per-socket limit would); we leave it at the default on purpose. */
    if (setsockopt(rx_fd, SOL_UNIX, UNIX_JOIN_GROUP, &mreq, sizeof mreq) < 0) {
        warnx_("UNIX_JOIN_GROUP:");
        return -1;
    }
    return set_rcvtimeo(rx_fd, cfg->rx_idle_ms);
}

static ssize_t umcast_rx_recv(void *buf, size_t cap)
{
    ssize_t n = recv(rx_fd, buf, cap, MSG_TRUNC);
    if (n < 0 && errno == EWOULDBLOCK)
        errno = EAGAIN;
    return n;
}

static int umcast_rx_rcvbuf(void)
{
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(rx_fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
    return v;
}

static void umcast_rx_close(void)
{
    close(rx_fd);
}

static int umcast_tx_open(const struct bench_cfg *cfg)
{
    (void)cfg;
    tx_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    return tx_fd < 0 ? -1 : 0;
}

static int umcast_tx_send(const void *buf, size_t len)
{
    ssize_t n = sendto(tx_fd, buf, len, 0, (const struct sockaddr *)&mreq.address, unix_mreq_addrlen(&mreq));
    if (n < 0)
        return -1;
    if ((size_t)n != len) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

static void umcast_tx_close(void)
{
    close(tx_fd);
}

static void umcast_teardown(void)
{
    close(group_fd);
}

const struct transport_ops transport_umcast = {
    .name = "umcast",
    .setup = umcast_setup,
    .rx_open = umcast_rx_open,
    .rx_recv = umcast_rx_recv,
    .rx_rcvbuf = umcast_rx_rcvbuf,
    .rx_close = umcast_rx_close,
    .tx_open = umcast_tx_open,
    .tx_send = umcast_tx_send,
    .tx_close = umcast_tx_close,
    .teardown = umcast_teardown,
};
