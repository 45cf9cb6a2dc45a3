/*
 * transport.h - the one interface the fan-out driver (fanout.c) runs every
 * transport through, so that all of them do exactly the same workload: one
 * sender, N receiver processes, the same payloads, the same clocks.
 *
 * Call order. In the driver process, before forking: setup(). In each
 * receiver process (forked, so it inherits what setup() chose): rx_open(),
 * rx_recv() until the end marker, rx_close(). In the driver, once every
 * receiver is ready: tx_open(), tx_send() per message, tx_flush(),
 * tx_close(); after the receivers have exited: teardown().
 *
 * Each transport keeps its state in file-static variables: after fork() every
 * process has its own copy, which is exactly the ownership we want.
 */
#ifndef BENCH_TRANSPORT_H
#define BENCH_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every payload starts with this header; the rest is filler up to the
 * message size. The send timestamp is CLOCK_MONOTONIC, taken just before the
 * send call, so latency covers the whole path to the receiver's recv return. */
#define BENCH_MAGIC 0x68636e6562756d75ULL /* "umubench" */
enum { MSG_DATA = 1, MSG_END = 2 };
struct msg_hdr {
    uint64_t magic;
    uint64_t seq;     /* 0, 1, 2, ... per run (MSG_END: number of data messages sent) */
    uint64_t sent_ns; /* CLOCK_MONOTONIC at send */
    uint32_t kind;    /* MSG_DATA or MSG_END */
    uint32_t size;    /* total payload size, header included */
};

struct bench_cfg {
    const char *transport;
    int receivers;         /* N */
    size_t size;           /* payload bytes per message */
    const char *run_id;    /* unique per run: names groups and sockets */
    const char *dbus_addr; /* D-Bus only: the private daemon's address */
    int rx_idle_ms;        /* receive timeout: lossy transports end on it, others report a stall */
};

struct transport_ops {
    const char *name;
    /* Largest payload this transport can carry in one message (0: no limit). */
    size_t max_size;
    /* Messages can be lost (UDP): receivers may never see the end marker,
     * so an idle timeout is a normal end, and the end marker is repeated. */
    int lossy;
    int (*setup)(const struct bench_cfg *cfg);
    int (*rx_open)(const struct bench_cfg *cfg, int idx);
    /* Waits for one message and copies at least its header into buf (cap
     * bytes). Returns the message's full length; -1 with errno EAGAIN after
     * cfg->rx_idle_ms without a message; -1 with another errno on failure. */
    ssize_t (*rx_recv)(void *buf, size_t cap);
    /* The receiving socket's SO_RCVBUF (-1 when not a socket option). */
    int (*rx_rcvbuf)(void);
    void (*rx_close)(void);
    int (*tx_open)(const struct bench_cfg *cfg);
    /* Delivers one message to every receiver; 0, or -1 with errno. */
    int (*tx_send)(const void *buf, size_t len);
    int (*tx_flush)(void); /* may be NULL */
    void (*tx_close)(void);
    void (*teardown)(void); /* may be NULL */
};

extern const struct transport_ops transport_umcast;
extern const struct transport_ops transport_unicast;
extern const struct transport_ops transport_udp;
#ifndef BENCH_NO_DBUS
extern const struct transport_ops transport_dbus;
#endif

/* Shared by the socket transports: sets SO_RCVTIMEO from cfg->rx_idle_ms. */
int set_rcvtimeo(int fd, int ms);

#endif /* BENCH_TRANSPORT_H */
