/*
 * tr_dbus.c - (d) D-Bus signals through a dbus-daemon.
 *
 * The classic way to fan one message out to many processes, and the use the
 * 2012 patch set was written for. scripts/bench.sh starts a private daemon
 * (bench/dbus-bench.conf) and passes its address. Every receiver connects,
 * registers, and adds a match rule for the benchmark's signal; the sender
 * emits one broadcast signal per message (payload: an array of bytes) and
 * the daemon copies it to every matching connection.
 *
 * Flow control comes from the daemon: it stops reading from the sender while
 * the sender's messages still queued inside it exceed max_incoming_bytes
 * (a message counts until the last recipient has it), so nothing is dropped
 * and memory stays bounded; the sender additionally flushes libdbus's own
 * outgoing queue whenever it grows past TX_QUEUE_LIMIT.
 */
#include "benchutil.h"
#include "transport.h"

#include <dbus/dbus.h>
#include <sys/socket.h>

#define BENCH_PATH "/org/umcast/Bench"
#define BENCH_IFACE "org.umcast.Bench"
#define BENCH_MEMBER "M"
#define TX_QUEUE_LIMIT (256 * 1024)

static DBusConnection *conn;
static int idle_ms;

static DBusConnection *connect_bus(const char *addr)
{
    DBusError err;
    DBusConnection *c;
    dbus_error_init(&err);
    if (!addr) {
        warnx_("no D-Bus address given (--dbus-address)");
        return NULL;
    }
    /* Private: this process owns the connection and closes it itself. */
    c = dbus_connection_open_private(addr, &err);
    if (!c) {
        warnx_("dbus_connection_open_private(%s): %s", addr, err.message);
        dbus_error_free(&err);
        return NULL;
    }
    dbus_connection_set_exit_on_disconnect(c, FALSE);
    if (!dbus_bus_register(c, &err)) {
        warnx_("dbus_bus_register: %s", err.message);
        dbus_error_free(&err);
        dbus_connection_close(c);
        dbus_connection_unref(c);
        return NULL;
    }
    return c;
}

static void disconnect_bus(void)
{
    if (conn) {
        dbus_connection_flush(conn);
        dbus_connection_close(conn);
        dbus_connection_unref(conn);
        conn = NULL;
    }
}

static int dbus_setup(const struct bench_cfg *cfg)
{
    (void)cfg;
    return 0;
}

static int dbus_rx_open(const struct bench_cfg *cfg, int idx)
{
    DBusError err;
    (void)idx;
    idle_ms = cfg->rx_idle_ms;
    conn = connect_bus(cfg->dbus_addr);
    if (!conn)
        return -1;
    dbus_error_init(&err);
    /* With an error argument this waits for the daemon's reply, so the rule
     * is in force before we tell the driver we are ready. */
    dbus_bus_add_match(conn, "type='signal',interface='" BENCH_IFACE "',member='" BENCH_MEMBER "'", &err);
    if (dbus_error_is_set(&err)) {
        warnx_("dbus_bus_add_match: %s", err.message);
        dbus_error_free(&err);
        return -1;
    }
    return 0;
}

static ssize_t dbus_rx_recv(void *buf, size_t cap)
{
    uint64_t deadline = now_ns() + (uint64_t)idle_ms * 1000000ULL;
    for (;;) {
        DBusMessage *m = dbus_connection_pop_message(conn);
        if (m) {
            DBusMessageIter it, sub;
            const unsigned char *p = NULL;
            int n = 0;
            if (!dbus_message_is_signal(m, BENCH_IFACE, BENCH_MEMBER)) {
                dbus_message_unref(m); /* e.g. NameAcquired after registering */
                continue;
            }
            if (dbus_message_iter_init(m, &it) && dbus_message_iter_get_arg_type(&it) == DBUS_TYPE_ARRAY) {
                dbus_message_iter_recurse(&it, &sub);
                dbus_message_iter_get_fixed_array(&sub, &p, &n);
            }
            /* libdbus has already copied the payload out of the socket; a
             * second full copy would only penalise D-Bus, so copy what the
             * driver reads: the header. */
            if (p && n > 0) {
                size_t want = sizeof(struct msg_hdr);
                if (want > (size_t)n)
                    want = (size_t)n;
                if (want > cap)
                    want = cap;
                memcpy(buf, p, want);
            }
            dbus_message_unref(m);
            return n;
        }
        uint64_t now = now_ns();
        if (now >= deadline) {
            errno = EAGAIN;
            return -1;
        }
        if (!dbus_connection_read_write(conn, (int)((deadline - now) / 1000000ULL) + 1)) {
            errno = ECONNRESET; /* disconnected from the daemon */
            return -1;
        }
    }
}

static int dbus_rx_rcvbuf(void)
{
    int fd = -1, v = -1;
    socklen_t len = sizeof v;
    if (dbus_connection_get_socket(conn, &fd))
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len);
    return v;
}

static int dbus_tx_open(const struct bench_cfg *cfg)
{
    conn = connect_bus(cfg->dbus_addr);
    return conn ? 0 : -1;
}

static int dbus_tx_send(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    DBusMessage *m = dbus_message_new_signal(BENCH_PATH, BENCH_IFACE, BENCH_MEMBER);
    if (!m) {
        errno = ENOMEM;
        return -1;
    }
    if (!dbus_message_append_args(m, DBUS_TYPE_ARRAY, DBUS_TYPE_BYTE, &p, (int)len, DBUS_TYPE_INVALID) ||
        !dbus_connection_send(conn, m, NULL)) {
        dbus_message_unref(m);
        errno = ENOMEM;
        return -1;
    }
    dbus_message_unref(m);
    /* libdbus queues without limit; bound it as an application would. */
    if (dbus_connection_get_outgoing_size(conn) > TX_QUEUE_LIMIT)
        dbus_connection_flush(conn);
    if (!dbus_connection_get_is_connected(conn)) {
        errno = ECONNRESET;
        return -1;
    }
    return 0;
}

static int dbus_tx_flush(void)
{
    dbus_connection_flush(conn);
    return dbus_connection_get_is_connected(conn) ? 0 : -1;
}

const struct transport_ops transport_dbus = {
    .name = "dbus",
    .setup = dbus_setup,
    .rx_open = dbus_rx_open,
    .rx_recv = dbus_rx_recv,
    .rx_rcvbuf = dbus_rx_rcvbuf,
    .rx_close = disconnect_bus,
    .tx_open = dbus_tx_open,
    .tx_send = dbus_tx_send,
    .tx_flush = dbus_tx_flush,
    .tx_close = disconnect_bus,
};
