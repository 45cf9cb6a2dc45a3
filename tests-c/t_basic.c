/*
 * t_basic: the header's quick start, across processes. A group G, two members
 * in two child processes, a non-member sender in a third: one sendto reaches
 * both members; G and the sender receive nothing. The first thing to pass.
 */
#include "testutil.h"

static struct unix_mreq group;
static struct tu_gate joined;
static struct tu_gate sent;

static int member(void *arg)
{
    const char *name = arg;
    int m = tu_join(&group, 0);
    tu_set_rcvtimeo(m, 10000);
    tu_gate_arrive(&joined);
    tu_expect_str(m, "hello, group", name);
    tu_expect_str(m, "second", name);
    tu_gate_pass(&sent);
    tu_expect_empty(m, name);
    return 0;
}

static int sender(void *arg)
{
    (void)arg;
    int s = tu_dgram();
    CHECK(tu_sendto_group(s, "hello, group", 12, 0, &group) == 12, "sendto group");
    CHECK(tu_sendto_group(s, "second", 6, 0, &group) == 6, "sendto group");
    tu_expect_empty(s, "the sender");
    return 0;
}

int main(void)
{
    tu_start("t_basic");
    tu_abstract_group(&group, "basic");
    tu_gate_init(&joined);
    tu_gate_init(&sent);
    int g = tu_create_group(&group);

    tu_spawn("member A", member, "member A");
    tu_spawn("member B", member, "member B");
    tu_gate_wait(&joined, 2, 10000);
    tu_ok("two members joined in two processes");

    pid_t s = tu_spawn("sender", sender, NULL);
    tu_wait_child(s);
    tu_gate_open(&sent, 2);
    tu_wait_all();
    tu_ok("both members got both messages, in order, and nothing else");

    tu_expect_empty(g, "group socket G");
    tu_ok("G received nothing");
    close(g);
    return tu_done();
}
