/*
 * demo: one multicast group, 3 receiver processes, 2 sender processes.
 *
 * Run under libumcast (scripts/demo.sh does it):
 *     LD_PRELOAD=target/release/libumcast.so scripts/build/demo
 *
 * Each sender sends 5 short text messages to the group; each receiver prints
 * what it gets. At the end the parent prints every receiver's sequence and
 * checks that all three saw the same messages in the same order (exit 0), or
 * says how they differ (exit 1). A 20 s alarm keeps it from ever hanging.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "umcast.h"

#define RECEIVERS 3
#define SENDERS 2
#define PER_SENDER 5
#define TOTAL (SENDERS * PER_SENDER)
#define MSG_MAX 64

static const char *receiver_names[RECEIVERS] = {"alice", "bob", "carol"};

/* What each receiver saw, shared with the parent. */
struct seen {
    int count[RECEIVERS];
    char msg[RECEIVERS][TOTAL][MSG_MAX];
};

static void die(const char *what)
{
    fprintf(stderr, "demo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "demo: timed out (20 s): is libumcast preloaded?\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    kill(0, SIGKILL); /* the whole demo: we are our own process group */
    _exit(1);
}

static void receiver(int id, const struct unix_mreq *group, int ready_fd, struct seen *seen)
{
    int m = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (m < 0)
        die("socket");
    if (setsockopt(m, SOL_UNIX, UNIX_JOIN_GROUP, group, sizeof *group) != 0)
        die("JOIN_GROUP (is libumcast preloaded?)");
    struct timeval tv = {10, 0}; /* never wait forever for a lost message */
    setsockopt(m, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (write(ready_fd, "r", 1) != 1) /* joined: the senders may start */
        die("write");
    for (int i = 0; i < TOTAL; i++) {
        char buf[MSG_MAX];
        ssize_t n = recv(m, buf, sizeof buf - 1, 0);
        if (n < 0)
            die("recv");
        buf[n] = 0;
        printf("%-6s got  \"%s\"\n", receiver_names[id], buf);
        strcpy(seen->msg[id][i], buf);
        seen->count[id] = i + 1;
    }
    exit(0);
}

static void sender(int id, const struct unix_mreq *group)
{
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s < 0)
        die("socket");
    srand((unsigned)getpid());
    for (int i = 1; i <= PER_SENDER; i++) {
        char buf[MSG_MAX];
        int n = snprintf(buf, sizeof buf, "sender %d: message %d", id, i);
        if (sendto(s, buf, (size_t)n, 0, (const struct sockaddr *)&group->address,
                   unix_mreq_addrlen(group)) != n)
            die("sendto");
        usleep(1000 + (useconds_t)(rand() % 4000)); /* let the two senders interleave */
    }
    exit(0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    setpgid(0, 0);
    signal(SIGALRM, on_alarm);
    alarm(20);

    struct seen *seen = mmap(NULL, sizeof *seen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (seen == MAP_FAILED)
        die("mmap");

    /* The group: an abstract name with our pid in it. */
    struct unix_mreq group;
    memset(&group, 0, sizeof group);
    group.address.sun_family = AF_UNIX;
    snprintf(group.address.sun_path + 1, sizeof group.address.sun_path - 1, "umcast-demo-%d", (int)getpid());
    int g = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (g < 0 || setsockopt(g, SOL_UNIX, UNIX_CREATE_GROUP, &group, sizeof group) != 0)
        die("CREATE_GROUP (is libumcast preloaded?)");
    printf("group \"@%s\" created; %d receivers join, then %d senders send %d messages each\n",
           group.address.sun_path + 1, RECEIVERS, SENDERS, PER_SENDER);

    int ready[2];
    if (pipe(ready) != 0)
        die("pipe");
    for (int i = 0; i < RECEIVERS; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            receiver(i, &group, ready[1], seen);
        }
    }
    for (int i = 0; i < RECEIVERS; i++) { /* nobody sends before everyone joined */
        char c;
        if (read(ready[0], &c, 1) != 1)
            die("a receiver failed to join");
    }
    for (int i = 1; i <= SENDERS; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            sender(i, &group);
        }
    }

    int failed = 0, status;
    while (wait(&status) > 0)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    alarm(0);

    printf("\n");
    int agree = !failed;
    for (int r = 0; r < RECEIVERS; r++) {
        printf("%-6s order:", receiver_names[r]);
        for (int i = 0; i < seen->count[r]; i++) {
            int s, k;
            if (sscanf(seen->msg[r][i], "sender %d: message %d", &s, &k) == 2)
                printf(" s%d.%d", s, k);
            else
                printf(" ?");
        }
        printf("  (%d messages)\n", seen->count[r]);
        if (seen->count[r] != TOTAL)
            agree = 0;
        for (int i = 0; i < seen->count[r] && i < seen->count[0]; i++)
            if (strcmp(seen->msg[r][i], seen->msg[0][i]) != 0)
                agree = 0;
    }
    close(g);
    if (!agree) {
        printf("the receivers DISAGREE (or a process failed): this is a bug in libumcast\n");
        return 1;
    }
    printf("all %d receivers saw the same %d messages in the same order\n", RECEIVERS, TOTAL);
    return 0;
}
