/*
 * tr_udp.c - (c) UDP multicast on the loopback interface.
 *
 * Meant to run inside a private network namespace (scripts/bench.sh uses
 * `unshare -n`) where lo is up, has MULTICAST set and carries a route for
 * 224.0.0.0/4, so the group address and port cannot collide with anything.
 * UDP has no flow control: a receiver whose buffer is full loses messages,
 * which the driver counts. The sender is not paced here (the driver paces
 * the latency runs).
 */
#include "benchutil.h"
#include "transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

#define UDP_GROUP "239.255.77.77"
#define UDP_PORT 47777

static struct sockaddr_in group;
static int rx_fd = -1, tx_fd = -1;

static int udp_setup(const struct bench_cfg *cfg)
{
    (void)cfg;
    memset(&group, 0, sizeof group);
    group.sin_family = AF_INET;
    group.sin_port = htons(UDP_PORT);
    inet_pton(AF_INET, UDP_GROUP, &group.sin_addr);
    return 0;
}

static int udp_rx_open(const struct bench_cfg *cfg, int idx)
{
    struct ip_mreq mr;
    int one = 1;
    (void)idx;
    rx_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (rx_fd < 0)
        return -1;
    /* Every receiver binds the same group:port; SO_REUSEADDR lets each of
     * them get its own copy of every datagram. */
    if (setsockopt(rx_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        return -1;
    if (bind(rx_fd, (struct sockaddr *)&group, sizeof group) < 0) {
        warnx_("bind " UDP_GROUP ":%d:", UDP_PORT);
        return -1;
    }
    memset(&mr, 0, sizeof mr);
    mr.imr_multiaddr = group.sin_addr;
    mr.imr_interface.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(rx_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
        warnx_("IP_ADD_MEMBERSHIP on lo (is lo up with multicast and a 224.0.0.0/4 route?):");
        return -1;
    }
    return set_rcvtimeo(rx_fd, cfg->rx_idle_ms);
}

static ssize_t udp_rx_recv(void *buf, size_t cap)
{
    ssize_t n = recv(rx_fd, buf, cap, MSG_TRUNC);
    if (n < 0 && errno == EWOULDBLOCK)
        errno = EAGAIN;
    return n;
}

static int udp_rx_rcvbuf(void)
{
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(rx_fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
    return v;
}

static void udp_rx_close(void)
{
    close(rx_fd);
}

static int udp_tx_open(const struct bench_cfg *cfg)
{
    struct in_addr lo = { .s_addr = htonl(INADDR_LOOPBACK) };
    unsigned char loop = 1, ttl = 0;
    (void)cfg;
    tx_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (tx_fd < 0)
        return -1;
    /* Send out of lo and loop the datagram back to local members. TTL 0
     * keeps it on this host: the kernel drops the outgoing copy after
     * looping it back, so each member gets exactly one. */
    if (setsockopt(tx_fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) < 0 ||
        setsockopt(tx_fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop) < 0 ||
        setsockopt(tx_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) < 0)
        return -1;
    return 0;
}

static int udp_tx_send(const void *buf, size_t len)
{
    for (;;) {
        ssize_t n = sendto(tx_fd, buf, len, 0, (const struct sockaddr *)&group, sizeof group);
        if (n >= 0)
            return 0;
        /* A momentarily full device queue is not a lost message: retry. */
        if (errno == ENOBUFS || errno == EAGAIN) {
            sched_yield();
            continue;
        }
        return -1;
    }
}

static void udp_tx_close(void)
{
    close(tx_fd);
}

const struct transport_ops transport_udp = {
    .name = "udp",
    .max_size = 65507, /* IPv4: 65535 - 20 (IP) - 8 (UDP) */
    .lossy = 1,
    .setup = udp_setup,
    .rx_open = udp_rx_open,
    .rx_recv = udp_rx_recv,
    .rx_rcvbuf = udp_rx_rcvbuf,
    .rx_close = udp_rx_close,
    .tx_open = udp_tx_open,
    .tx_send = udp_tx_send,
    .tx_close = udp_tx_close,
};
