/*
 * umcast.h - multicast AF_UNIX sockets through libumcast.so
 *
 * Run an unmodified program with   LD_PRELOAD=/path/to/libumcast.so ./app
 * and its AF_UNIX SOCK_DGRAM (and, later, SOCK_SEQPACKET) sockets gain the
 * multicast groups of the 2012 "af_unix: add multicast" patch set. This header
 * is the stable ABI: the option level, option names, flags and structures.
 *
 * Quick start (datagram group):
 *
 *     struct unix_mreq mreq;
 *     memset(&mreq, 0, sizeof mreq);
 *     mreq.address.sun_family = AF_UNIX;
 *     strcpy(mreq.address.sun_path + 1, "my-group");      // abstract name
 *
 *     int g = socket(AF_UNIX, SOCK_DGRAM, 0);              // the group socket G
 *     setsockopt(g, SOL_UNIX, UNIX_CREATE_GROUP, &mreq, sizeof mreq);
 *
 *     int m = socket(AF_UNIX, SOCK_DGRAM, 0);              // a member
 *     setsockopt(m, SOL_UNIX, UNIX_JOIN_GROUP, &mreq, sizeof mreq);
 *
 *     // anyone (member or not) sends one message to every member:
 *     sendto(s, buf, len, 0, (struct sockaddr *)&mreq.address, unix_mreq_addrlen(&mreq));
 *     recv(m, buf, sizeof buf, 0);                         // every member gets it
 *
 * Guarantees: a message reaches all of its recipients or none; all members
 * see the messages of one group in the same order; a full member holds
 * senders back (or makes a non-blocking send fail with EAGAIN, in which
 * case nobody got the message) unless it joined with UNIX_MREQ_DROP_WHEN_FULL.
 */
#ifndef UMCAST_H
#define UMCAST_H

#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Option level of the multicast options. Current kernels use 280 for SOL_NFC;
 * the library takes level 280 only on AF_UNIX sockets, where the kernel has no
 * such level, and passes it to the kernel untouched on every other socket.
 */
#ifndef SOL_UNIX
#define SOL_UNIX 280
#endif

/* setsockopt(fd, SOL_UNIX, name, &mreq, sizeof mreq) option names. */
#define UNIX_CREATE_GROUP 1 /* bind fd to mreq.address and make it the group socket G; no flags */
#define UNIX_JOIN_GROUP 2   /* SOCK_DGRAM: fd becomes a member of the group at mreq.address */
#define UNIX_LEAVE_GROUP 3  /* end fd's membership; queued messages stay readable */
#define UNIX_ACCEPT_GROUP 4 /* SOCK_SEQPACKET: make the peer of an accepted fd a member */

/* getsockopt(fd, SOL_UNIX, UNIX_GROUP_STATS, &stats, &len): see below. */
#define UNIX_GROUP_STATS 16

/* unix_mreq.flags */
#define UNIX_MREQ_LOOPBACK 0x01       /* the member also receives what it sends itself */
#define UNIX_MREQ_SEND_TO_PEER 0x02   /* SOCK_SEQPACKET: the member's peer also receives its sends */
#define UNIX_MREQ_DROP_WHEN_FULL 0x04 /* miss messages while full instead of holding senders back */

/*
 * The argument of every option. The length of `address` is implied, since
 * setsockopt carries only one length:
 *   - a path address (sun_path[0] != 0) ends at its first NUL byte;
 *   - an abstract address (sun_path[0] == 0) runs from sun_path[1] to the last
 *     non-NUL byte of sun_path, so abstract group names used through this API
 *     cannot end in NUL bytes. To reach the same group with sendto() or
 *     connect(), pass unix_mreq_addrlen(&mreq) as the address length.
 * Leave unused bytes zero (memset the structure first).
 */
struct unix_mreq {
    struct sockaddr_un address;
    unsigned int flags;
};

/* One membership's counters, as returned by UNIX_GROUP_STATS. */
struct unix_group_stats {
    unsigned long long queued_messages; /* group messages waiting in this member's queue */
    unsigned long long queued_bytes;    /* their payload bytes */
    unsigned long long dropped;         /* messages missed while full (DROP_WHEN_FULL) */
    unsigned long long filtered;        /* messages refused by a socket filter */
    unsigned long long capacity;        /* queue capacity in bytes (from SO_RCVBUF at join) */
    unsigned int flags;                 /* UNIX_MREQ_* of the membership */
    unsigned int reserved;
};

/* The socklen_t to use with sendto()/connect() for mreq->address. */
static inline socklen_t unix_mreq_addrlen(const struct unix_mreq *mreq)
{
    const char *p = mreq->address.sun_path;
    size_t n;
    if (p[0] != '\0') {
        n = strnlen(p, sizeof mreq->address.sun_path);
        if (n < sizeof mreq->address.sun_path)
            n++; /* count the terminating NUL, as SUN_LEN-style callers do */
    } else {
        n = sizeof mreq->address.sun_path;
        while (n > 1 && p[n - 1] == '\0')
            n--;
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

#ifdef __cplusplus
}
#endif

#endif /* UMCAST_H */
