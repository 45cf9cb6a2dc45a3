/*
 * tr_unicast.c - (b) unicast fan-out: one ordinary unix datagram per receiver.
 *
 * What a program does today without groups: every receiver binds its own
 * socket and the sender loops sendto() over the N addresses. The sockets are
 * blocking, so a full receiver holds the sender back and nothing is lost,
 * the same guarantee a libumcast group gives.
 */
#include "benchutil.h"
#include "transport.h"

#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un *addrs; /* one per receiver */
static socklen_t *addrlens;
static int nrecv;
static int rx_fd = -1, tx_fd = -1;

static int unicast_setup(const struct bench_cfg *cfg)
{
    nrecv = cfg->receivers;
    addrs = calloc((size_t)nrecv, sizeof *addrs);
    addrlens = calloc((size_t)nrecv, sizeof *addrlens);
    if (!addrs || !addrlens)
        return -1;
    for (int i = 0; i < nrecv; i++) {
        /* Abstract names: nothing left in the file system if we are killed. */
        int len;
        addrs[i].sun_family = AF_UNIX;
        len = snprintf(addrs[i].sun_path + 1, sizeof addrs[i].sun_path - 1, "umbench-u.%s.%d", cfg->run_id, i);
        addrlens[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    }
    return 0;
}

static int unicast_rx_open(const struct bench_cfg *cfg, int idx)
{
    rx_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (rx_fd < 0)
        return -1;
    if (bind(rx_fd, (struct sockaddr *)&addrs[idx], addrlens[idx]) < 0) {
        warnx_("bind receiver %d:", idx);
        return -1;
    }
    return set_rcvtimeo(rx_fd, cfg->rx_idle_ms);
}

static ssize_t unicast_rx_recv(void *buf, size_t cap)
{
    ssize_t n = recv(rx_fd, buf, cap, MSG_TRUNC);
    if (n < 0 && errno == EWOULDBLOCK)
        errno = EAGAIN;
    return n;
}

static int unicast_rx_rcvbuf(void)
{
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(rx_fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
    return v;
}

static void unicast_rx_close(void)
{
    close(rx_fd);
}

static int unicast_tx_open(const struct bench_cfg *cfg)
{
    (void)cfg;
    tx_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    return tx_fd < 0 ? -1 : 0;
}

static int unicast_tx_send(const void *buf, size_t len)
{
    for (int i = 0; i < nrecv; i++) {
        ssize_t n = sendto(tx_fd, buf, len, 0, (const struct sockaddr *)&addrs[i], addrlens[i]);
        if (n < 0)
            return -1;
    }
    return 0;
}

static void unicast_tx_close(void)
{
    close(tx_fd);
}

const struct transport_ops transport_unicast = {
    .name = "unicast",
    .setup = unicast_setup,
    .rx_open = unicast_rx_open,
    .rx_recv = unicast_rx_recv,
    .rx_rcvbuf = unicast_rx_rcvbuf,
    .rx_close = unicast_rx_close,
    .tx_open = unicast_tx_open,
    .tx_send = unicast_tx_send,
    .tx_close = unicast_tx_close,
};
