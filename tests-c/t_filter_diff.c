/*
 * t_filter_diff: socket filters on group members against the kernel. For
 * every program of a corpus, the same program is attached to an ordinary
 * unix datagram socket K (the kernel filters what reaches it) and to a group
 * member M (the library filters group messages, in the sender); a sender in
 * another process sends each payload once to K and once to the group, and
 * K's and M's receives (MSG_DONTWAIT | MSG_TRUNC, reused sockets) must agree:
 * both dropped, or the same length and bytes.
 *
 * The attach results must agree too: the kernel's errno for programs it
 * refuses; EOPNOTSUPP on M (only) for programs that load SKF_AD_CPU or
 * SKF_AD_RANDOM, which the library cannot run.
 *
 * Corpus: hand-written programs (byte/half/word loads, absolute, indirect
 * and msh, at and past the payload's end, with negative SKF_NET_OFF and
 * SKF_LL_OFF offsets and (x + k) wrapping around; every ALU operation with
 * constants and X, shifts by X >= 32, division and modulo by X == 0; every
 * jump; scratch memory; ret k around every payload length, ret a; the
 * length load (`ld len`, what is often called SKF_AD_LEN: the uapi has no
 * such ancillary number) and every ancillary load a unix datagram can see), a few
 * refused ones; then 2000 generated valid programs and 1000 generated ones
 * with one or two random instructions (most of which the kernel refuses),
 * from a fixed-seed PRNG, so a failure names a reproducible program (and
 * prints it). Payloads: 0, 1, 3, 4, 13, 64, 200
 * and 1500 bytes of PRNG bytes (some laid out as netlink attributes, for
 * SKF_AD_NLATTR), fresh for every program.
 */
#include "testutil.h"

#include <linux/filter.h>

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))
#define NGEN 2000
#define NMUT 1000
#define MAXLEN 64

static const size_t sizes[] = {0, 1, 3, 4, 13, 64, 200, 1500};

/* ------------------------------------------------------------------------ */
/* PRNG (xorshift64*, fixed seed)                                            */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static uint32_t rn(uint32_t n) { return n ? rnd() % n : 0; }

/* ------------------------------------------------------------------------ */
/* Programs                                                                  */

#define S(c, k) BPF_STMT((c), (k))
#define J(c, k, t, f) BPF_JUMP((c), (k), (t), (f))
#define RETA S(BPF_RET | BPF_A, 0)
#define RETK(k) S(BPF_RET | BPF_K, (k))
#define LD(sz, k) S(BPF_LD | (sz) | BPF_ABS, (k))
#define LDI(sz, k) S(BPF_LD | (sz) | BPF_IND, (k))
#define LDX_IMM(k) S(BPF_LDX | BPF_W | BPF_IMM, (k))
#define LD_IMM(k) S(BPF_LD | BPF_W | BPF_IMM, (k))
#define ALU_K(op, k) S(BPF_ALU | (op) | BPF_K, (k))
#define ALU_X(op) S(BPF_ALU | (op) | BPF_X, 0)
#define AD(n) (SKF_AD_OFF + (n))

struct prog {
    const char *name;
    struct sock_filter p[MAXLEN];
    size_t n;
    int unrunnable; /* loads SKF_AD_CPU or SKF_AD_RANDOM: EOPNOTSUPP on a member */
};

#define P(nm, ...) {nm, {__VA_ARGS__}, NELEM(((struct sock_filter[]){__VA_ARGS__})), 0}
#define PU(nm, ...) {nm, {__VA_ARGS__}, NELEM(((struct sock_filter[]){__VA_ARGS__})), 1}

static const struct prog hand[] = {
    /* loads: absolute */
    P("ld [0]; ret a", LD(BPF_W, 0), RETA),
    P("ldh [0]; ret a", LD(BPF_H, 0), RETA),
    P("ldb [0]; ret a", LD(BPF_B, 0), RETA),
    P("ld [0]; ret #0xffff", LD(BPF_W, 0), RETK(0xffff)),
    P("ld [9]; ret #0xffff (fits 13 bytes)", LD(BPF_W, 9), RETK(0xffff)),
    P("ld [10]; ret #0xffff (one past 13)", LD(BPF_W, 10), RETK(0xffff)),
    P("ldh [11]; ret #7", LD(BPF_H, 11), RETK(7)),
    P("ldh [12]; ret #7", LD(BPF_H, 12), RETK(7)),
    P("ldb [12]; ret #7", LD(BPF_B, 12), RETK(7)),
    P("ldb [13]; ret #7", LD(BPF_B, 13), RETK(7)),
    P("ldb [2]; ret a", LD(BPF_B, 2), RETA),
    P("ld [196]; ret a", LD(BPF_W, 196), RETA),
    P("ld [197]; ret #0xffff", LD(BPF_W, 197), RETK(0xffff)),
    P("ld [1496]; ret #0xffff", LD(BPF_W, 1496), RETK(0xffff)),
    P("ld [1497]; ret #0xffff", LD(BPF_W, 1497), RETK(0xffff)),
    P("ldb [1499]; ret a", LD(BPF_B, 1499), RETA),
    P("ldb [0x7fffffff]; ret #1", LD(BPF_B, 0x7fffffff), RETK(1)),
    P("ld [0xffff0000]; ret #1", LD(BPF_W, 0xffff0000u), RETK(1)),
    /* negative offsets */
    P("ldb [NET+0]; ret a", LD(BPF_B, SKF_NET_OFF), RETA),
    P("ld [NET+9]; ret a", LD(BPF_W, SKF_NET_OFF + 9), RETA),
    P("ldh [NET+1498]; ret #0xffff", LD(BPF_H, SKF_NET_OFF + 1498), RETK(0xffff)),
    P("ldh [NET+1499]; ret #0xffff", LD(BPF_H, SKF_NET_OFF + 1499), RETK(0xffff)),
    P("ldb [LL+0]; ret #1", LD(BPF_B, SKF_LL_OFF), RETK(1)),
    P("ld [LL+14]; ret #1", LD(BPF_W, SKF_LL_OFF + 14), RETK(1)),
    P("ldb [LL-1]; ret #1", LD(BPF_B, SKF_LL_OFF - 1), RETK(1)),
    P("ldb [-1]; ret #1", LD(BPF_B, 0xffffffffu), RETK(1)),
    P("ldb [NET-1]; ret #1", LD(BPF_B, SKF_NET_OFF - 1), RETK(1)),
    /* loads: indirect */
    P("ldx #3; ld [x+1]; ret a", LDX_IMM(3), LDI(BPF_W, 1), RETA),
    P("ldx #10; ldh [x+2]; ret a", LDX_IMM(10), LDI(BPF_H, 2), RETA),
    P("ldx #11; ldh [x+2]; ret a", LDX_IMM(11), LDI(BPF_H, 2), RETA),
    P("ldx #1400; ldb [x+99]; ret a", LDX_IMM(1400), LDI(BPF_B, 99), RETA),
    P("ldx #1400; ldb [x+100]; ret #5", LDX_IMM(1400), LDI(BPF_B, 100), RETK(5)),
    P("ldb [0]; tax; ldb [x+0]; ret a", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LDI(BPF_B, 0), RETA),
    P("ldx #-1; ldb [x+1]; ret a", LDX_IMM(0xffffffffu), LDI(BPF_B, 1), RETA),
    P("ldx #-1; ldb [x+0]; ret #3", LDX_IMM(0xffffffffu), LDI(BPF_B, 0), RETK(3)),
    P("ldx #-16; ldb [x+0]; ret #3", LDX_IMM(0xfffffff0u), LDI(BPF_B, 0), RETK(3)),
    P("ldx #NET; ldb [x+2]; ret a", LDX_IMM(SKF_NET_OFF), LDI(BPF_B, 2), RETA),
    P("ldx #LL; ldb [x+2]; ret #3", LDX_IMM(SKF_LL_OFF), LDI(BPF_B, 2), RETK(3)),
    P("ldx #0x80000000; ld [x+0x80000004]; ret a", LDX_IMM(0x80000000u), LDI(BPF_W, 0x80000004u), RETA),
    P("ldx #AD_OFF; ld [x+0]; ret #3 (not ancillary)", LDX_IMM(SKF_AD_OFF), LDI(BPF_W, 0), RETK(3)),
    P("ldx #4; ld [x+0xfffffffc]; ret a", LDX_IMM(4), LDI(BPF_W, 0xfffffffcu), RETA),
    /* msh */
    P("ldxb 4*([0]&0xf); txa; ret a", S(BPF_LDX | BPF_B | BPF_MSH, 0), S(BPF_MISC | BPF_TXA, 0), RETA),
    P("ldxb 4*([12]&0xf); ldb [x+0]; ret a", S(BPF_LDX | BPF_B | BPF_MSH, 12), LDI(BPF_B, 0), RETA),
    P("ldxb 4*([13]&0xf); txa; ret a", S(BPF_LDX | BPF_B | BPF_MSH, 13), S(BPF_MISC | BPF_TXA, 0), RETA),
    P("ldxb 4*([NET+1]&0xf); txa; ret a", S(BPF_LDX | BPF_B | BPF_MSH, SKF_NET_OFF + 1),
      S(BPF_MISC | BPF_TXA, 0), RETA),
    P("ldxb 4*([LL]&0xf); ret #9", S(BPF_LDX | BPF_B | BPF_MSH, SKF_LL_OFF), RETK(9)),
    /* ALU with constants and X */
    P("ldb [0]; add #7; ret a", LD(BPF_B, 0), ALU_K(BPF_ADD, 7), RETA),
    P("ld #2; sub #5; ret a (wraps)", LD_IMM(2), ALU_K(BPF_SUB, 5), RETA),
    P("ldb [1]; mul #3; ret a", LD(BPF_B, 1), ALU_K(BPF_MUL, 3), RETA),
    P("ld [0]; mul #0x10001; ret a", LD(BPF_W, 0), ALU_K(BPF_MUL, 0x10001), RETA),
    P("ldh [0]; div #300; ret a", LD(BPF_H, 0), ALU_K(BPF_DIV, 300), RETA),
    P("ld [0]; div #0x80000001; ret a", LD(BPF_W, 0), ALU_K(BPF_DIV, 0x80000001u), RETA),
    P("ldh [0]; mod #201; ret a", LD(BPF_H, 0), ALU_K(BPF_MOD, 201), RETA),
    P("ld [0]; and #0x1ff; ret a", LD(BPF_W, 0), ALU_K(BPF_AND, 0x1ff), RETA),
    P("ldb [0]; or #0x100; ret a", LD(BPF_B, 0), ALU_K(BPF_OR, 0x100), RETA),
    P("ldh [0]; xor #0xabcd; ret a", LD(BPF_H, 0), ALU_K(BPF_XOR, 0xabcd), RETA),
    P("ldb [0]; lsh #3; ret a", LD(BPF_B, 0), ALU_K(BPF_LSH, 3), RETA),
    P("ld [0]; rsh #23; ret a", LD(BPF_W, 0), ALU_K(BPF_RSH, 23), RETA),
    P("ld [0]; lsh #31; ret a", LD(BPF_W, 0), ALU_K(BPF_LSH, 31), RETA),
    P("ldb [0]; neg; ret a", LD(BPF_B, 0), S(BPF_ALU | BPF_NEG, 0), RETA),
    P("ld #0; neg; ret a", LD_IMM(0), S(BPF_ALU | BPF_NEG, 0), RETA),
    P("ldx #9; ldb [0]; add x; ret a", LDX_IMM(9), LD(BPF_B, 0), ALU_X(BPF_ADD), RETA),
    P("ldx len; ld #5000; sub x; ret a", S(BPF_LDX | BPF_W | BPF_LEN, 0), LD_IMM(5000), ALU_X(BPF_SUB), RETA),
    P("ldx #3; ldb [0]; mul x; ret a", LDX_IMM(3), LD(BPF_B, 0), ALU_X(BPF_MUL), RETA),
    P("ldx #0; ld #10; div x; ret #100 (div by 0)", LDX_IMM(0), LD_IMM(10), ALU_X(BPF_DIV), RETK(100)),
    P("ldx #0; ld #10; mod x; ret #100 (mod by 0)", LDX_IMM(0), LD_IMM(10), ALU_X(BPF_MOD), RETK(100)),
    P("ldb [1]; tax; ld #1000; div x; ret a", LD(BPF_B, 1), S(BPF_MISC | BPF_TAX, 0), LD_IMM(1000), ALU_X(BPF_DIV),
      RETA),
    P("ldb [1]; tax; ldh [2]; mod x; ret a", LD(BPF_B, 1), S(BPF_MISC | BPF_TAX, 0), LD(BPF_H, 2), ALU_X(BPF_MOD),
      RETA),
    P("ldx len; ld #1; div x; add #1; ret a (len 0)", S(BPF_LDX | BPF_W | BPF_LEN, 0), LD_IMM(1), ALU_X(BPF_DIV),
      ALU_K(BPF_ADD, 1), RETA),
    P("ldx #0xff; ld [0]; and x; ret a", LDX_IMM(0xff), LD(BPF_W, 0), ALU_X(BPF_AND), RETA),
    P("ldx #0x40; ldb [0]; or x; ret a", LDX_IMM(0x40), LD(BPF_B, 0), ALU_X(BPF_OR), RETA),
    P("ldx #0x55; ldb [0]; xor x; ret a", LDX_IMM(0x55), LD(BPF_B, 0), ALU_X(BPF_XOR), RETA),
    P("ldx #33; ld #1; lsh x; ret a (shift 33)", LDX_IMM(33), LD_IMM(1), ALU_X(BPF_LSH), RETA),
    P("ldx #32; ld #7; lsh x; ret a (shift 32)", LDX_IMM(32), LD_IMM(7), ALU_X(BPF_LSH), RETA),
    P("ldx #36; ld #0x100; rsh x; ret a (shift 36)", LDX_IMM(36), LD_IMM(0x100), ALU_X(BPF_RSH), RETA),
    P("ldb [0]; tax; ld #0x80000000; rsh x; ret a", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LD_IMM(0x80000000u),
      ALU_X(BPF_RSH), RETA),
    P("ldb [0]; tax; ld #3; lsh x; ret a", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LD_IMM(3), ALU_X(BPF_LSH), RETA),
    /* jumps */
    P("ja 1; ret #0; ret #5", S(BPF_JMP | BPF_JA, 1), RETK(0), RETK(5)),
    P("ldb [0]; jeq #0x41 ? 5 : 0", LD(BPF_B, 0), J(BPF_JMP | BPF_JEQ | BPF_K, 0x41, 0, 1), RETK(5), RETK(0)),
    P("ldb [0]; jgt #0x7f ? 3 : 9", LD(BPF_B, 0), J(BPF_JMP | BPF_JGT | BPF_K, 0x7f, 0, 1), RETK(3), RETK(9)),
    P("ldb [0]; jge #0x80 ? 3 : 9", LD(BPF_B, 0), J(BPF_JMP | BPF_JGE | BPF_K, 0x80, 0, 1), RETK(3), RETK(9)),
    P("ldb [0]; jset #0x01 ? 2 : 0", LD(BPF_B, 0), J(BPF_JMP | BPF_JSET | BPF_K, 1, 0, 1), RETK(2), RETK(0)),
    P("ld len; jgt #13 ? a : 1", S(BPF_LD | BPF_W | BPF_LEN, 0), J(BPF_JMP | BPF_JGT | BPF_K, 13, 0, 1), RETA,
      RETK(1)),
    P("ldb [0]; tax; ldb [1]; jeq x ? 4 : 6", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LD(BPF_B, 1),
      J(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, 1), RETK(4), RETK(6)),
    P("ldb [0]; tax; ldb [1]; jgt x ? 4 : 6", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LD(BPF_B, 1),
      J(BPF_JMP | BPF_JGT | BPF_X, 0, 0, 1), RETK(4), RETK(6)),
    P("ldb [0]; tax; ldb [1]; jge x ? 4 : 6", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LD(BPF_B, 1),
      J(BPF_JMP | BPF_JGE | BPF_X, 0, 0, 1), RETK(4), RETK(6)),
    P("ldb [0]; tax; ldb [1]; jset x ? 4 : 6", LD(BPF_B, 0), S(BPF_MISC | BPF_TAX, 0), LD(BPF_B, 1),
      J(BPF_JMP | BPF_JSET | BPF_X, 0, 0, 1), RETK(4), RETK(6)),
    P("ld #0xffffffff; jgt #0x7fffffff (unsigned) ? 2 : 3", LD_IMM(0xffffffffu),
      J(BPF_JMP | BPF_JGT | BPF_K, 0x7fffffff, 0, 1), RETK(2), RETK(3)),
    P("ldb [0]; jeq #0 ? (jt 0 = jf 0)", LD(BPF_B, 0), J(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 0), RETK(11)),
    /* scratch memory */
    P("ldb [0]; st M[0]; ldb [1]; tax; ld M[0]; add x; ret a", LD(BPF_B, 0), S(BPF_ST, 0), LD(BPF_B, 1),
      S(BPF_MISC | BPF_TAX, 0), S(BPF_LD | BPF_MEM, 0), ALU_X(BPF_ADD), RETA),
    P("ldx len; stx M[15]; ld M[15]; rsh #1; ret a", S(BPF_LDX | BPF_W | BPF_LEN, 0), S(BPF_STX, 15),
      S(BPF_LD | BPF_MEM, 15), ALU_K(BPF_RSH, 1), RETA),
    P("ld #3; st M[7]; ldx M[7]; txa; ret a", LD_IMM(3), S(BPF_ST, 7), S(BPF_LDX | BPF_MEM, 7),
      S(BPF_MISC | BPF_TXA, 0), RETA),
    P("st M[1] on both paths; ld M[1]; ret a", LD(BPF_B, 0), J(BPF_JMP | BPF_JGT | BPF_K, 0x80, 0, 2), LD_IMM(2),
      S(BPF_JMP | BPF_JA, 1), LD_IMM(9), S(BPF_ST, 1), S(BPF_LD | BPF_MEM, 1), RETA),
    /* returns */
    P("ret #0", RETK(0)),
    P("ret #1", RETK(1)),
    P("ret #2", RETK(2)),
    P("ret #3", RETK(3)),
    P("ret #4", RETK(4)),
    P("ret #5", RETK(5)),
    P("ret #12", RETK(12)),
    P("ret #13", RETK(13)),
    P("ret #14", RETK(14)),
    P("ret #63", RETK(63)),
    P("ret #64", RETK(64)),
    P("ret #199", RETK(199)),
    P("ret #200", RETK(200)),
    P("ret #1499", RETK(1499)),
    P("ret #1500", RETK(1500)),
    P("ret #1501", RETK(1501)),
    P("ret #0x7fffffff", RETK(0x7fffffff)),
    P("ret #0x80000000", RETK(0x80000000u)),
    P("ret #0xffffffff", RETK(0xffffffffu)),
    P("ret a (A = 0)", RETA),
    P("ld len; ret a", S(BPF_LD | BPF_W | BPF_LEN, 0), RETA),
    P("ld len; sub #1; ret a", S(BPF_LD | BPF_W | BPF_LEN, 0), ALU_K(BPF_SUB, 1), RETA),
    P("ld len; rsh #1; ret a", S(BPF_LD | BPF_W | BPF_LEN, 0), ALU_K(BPF_RSH, 1), RETA),
    P("ld #0x80000000; ret a", LD_IMM(0x80000000u), RETA),
    P("ret #0 in the middle", LD(BPF_B, 0), J(BPF_JMP | BPF_JSET | BPF_K, 2, 1, 0), RETK(0), RETK(30)),
    /* ancillary loads */
    P("ld len; sub #2; ret a", S(BPF_LD | BPF_W | BPF_LEN, 0), ALU_K(BPF_SUB, 2), RETA),
    P("ldx len; txa; rsh #2; ret a", S(BPF_LDX | BPF_W | BPF_LEN, 0), S(BPF_MISC | BPF_TXA, 0), ALU_K(BPF_RSH, 2),
      RETA),
    P("ld len; jeq #0 ? 1 : 0", S(BPF_LD | BPF_W | BPF_LEN, 0), J(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), RETK(1),
      RETK(0)),
    P("ld len; jge #64 ? len - 60 : 0", S(BPF_LD | BPF_W | BPF_LEN, 0), J(BPF_JMP | BPF_JGE | BPF_K, 64, 0, 2),
      ALU_K(BPF_SUB, 60), RETA, RETK(0)),
    P("ld [AD_PROTOCOL]; add #1; ret a", LD(BPF_W, AD(SKF_AD_PROTOCOL)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_PKTTYPE]; add #1; ret a", LD(BPF_W, AD(SKF_AD_PKTTYPE)), ALU_K(BPF_ADD, 1), RETA),
    P("ld #5; ld [AD_IFINDEX]; add #1; ret a", LD_IMM(5), LD(BPF_W, AD(SKF_AD_IFINDEX)), ALU_K(BPF_ADD, 1), RETA),
    P("ld #6; ld [AD_HATYPE]; add #1; ret a", LD_IMM(6), LD(BPF_W, AD(SKF_AD_HATYPE)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_MARK]; add #1; ret a", LD(BPF_W, AD(SKF_AD_MARK)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_QUEUE]; add #1; ret a", LD(BPF_W, AD(SKF_AD_QUEUE)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_RXHASH]; add #1; ret a", LD(BPF_W, AD(SKF_AD_RXHASH)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_VLAN_TAG]; add #1; ret a", LD(BPF_W, AD(SKF_AD_VLAN_TAG)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_VLAN_TAG_PRESENT]; add #1; ret a", LD(BPF_W, AD(SKF_AD_VLAN_TAG_PRESENT)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_VLAN_TPID]; add #1; ret a", LD(BPF_W, AD(SKF_AD_VLAN_TPID)), ALU_K(BPF_ADD, 1), RETA),
    P("ld [AD_PAY_OFFSET]; add #1; ret a", LD(BPF_W, AD(SKF_AD_PAY_OFFSET)), ALU_K(BPF_ADD, 1), RETA),
    P("ldx #0x0f; ldb [0]; ld [AD_ALU_XOR_X]; ret a", LDX_IMM(0x0f), LD(BPF_B, 0), LD(BPF_W, AD(SKF_AD_ALU_XOR_X)),
      RETA),
    P("ld #0; ldx #1; ld [AD_NLATTR]; add #1; ret a", LD_IMM(0), LDX_IMM(1), LD(BPF_W, AD(SKF_AD_NLATTR)),
      ALU_K(BPF_ADD, 1), RETA),
    P("ld #0; ldx #2; ld [AD_NLATTR]; add #1; ret a", LD_IMM(0), LDX_IMM(2), LD(BPF_W, AD(SKF_AD_NLATTR)),
      ALU_K(BPF_ADD, 1), RETA),
    P("ld #4; ldx #3; ld [AD_NLATTR]; add #1; ret a", LD_IMM(4), LDX_IMM(3), LD(BPF_W, AD(SKF_AD_NLATTR)),
      ALU_K(BPF_ADD, 1), RETA),
    P("ldb [2]; tax; ld #0; ld [AD_NLATTR]; add #1; ret a", LD(BPF_B, 2), S(BPF_MISC | BPF_TAX, 0), LD_IMM(0),
      LD(BPF_W, AD(SKF_AD_NLATTR)), ALU_K(BPF_ADD, 1), RETA),
    P("ld #0; ldx #1; ld [AD_NLATTR_NEST]; add #1; ret a", LD_IMM(0), LDX_IMM(1), LD(BPF_W, AD(SKF_AD_NLATTR_NEST)),
      ALU_K(BPF_ADD, 1), RETA),
    P("ld #0; ldx #0; ld [AD_NLATTR_NEST]; add #1; ret a", LD_IMM(0), LDX_IMM(0), LD(BPF_W, AD(SKF_AD_NLATTR_NEST)),
      ALU_K(BPF_ADD, 1), RETA),
    P("ld #8; ldx #2; ld [AD_NLATTR_NEST]; add #1; ret a", LD_IMM(8), LDX_IMM(2), LD(BPF_W, AD(SKF_AD_NLATTR_NEST)),
      ALU_K(BPF_ADD, 1), RETA),
    P("ld #2000; ldx #1; ld [AD_NLATTR]; add #1; ret a", LD_IMM(2000), LDX_IMM(1), LD(BPF_W, AD(SKF_AD_NLATTR)),
      ALU_K(BPF_ADD, 1), RETA),
    /* accepted by the kernel, not runnable by the library */
    PU("ld [AD_CPU]; ret #1", LD(BPF_W, AD(SKF_AD_CPU)), RETK(1)),
    PU("ld [AD_RANDOM]; ret a", LD(BPF_W, AD(SKF_AD_RANDOM)), RETA),
    /* refused by the kernel */
    P("no ret at the end", LD(BPF_W, 0)),
    P("div #0", ALU_K(BPF_DIV, 0), RETA),
    P("mod #0", ALU_K(BPF_MOD, 0), RETA),
    P("lsh #32", ALU_K(BPF_LSH, 32), RETA),
    P("ja past the end", S(BPF_JMP | BPF_JA, 1), RETK(0)),
    P("jeq past the end", J(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0), RETK(0)),
    P("ld M[0] unwritten", S(BPF_LD | BPF_MEM, 0), RETA),
    P("ldx M[1] written on one path", LD(BPF_B, 0), J(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), S(BPF_ST, 1),
      S(BPF_LDX | BPF_MEM, 1), RETA),
    P("st M[16]", S(BPF_ST, 16), RETK(0)),
    P("ld [AD_OFF + 64]", LD(BPF_W, AD(64)), RETK(0)),
    P("ldh [AD_OFF + 3] (not an ancillary number)", LD(BPF_H, AD(3)), RETK(0)),
    P("ldh len (only the word form exists)", S(BPF_LD | BPF_H | BPF_LEN, 0), RETK(0)),
    P("unknown opcode 0x07 | 0x80", S(0x87, 0), RETK(0)),
    P("ret x", S(BPF_RET | BPF_X, 0), RETK(0)),
};

/* A generated valid program: scratch cells written first, forward jumps only. */
static void generate(struct prog *pr, int idx)
{
    static char names[NGEN][24];
    snprintf(names[idx], sizeof names[idx], "generated #%d", idx);
    pr->name = names[idx];
    pr->unrunnable = 0;
    size_t len = 2 + rn(30), n = 0;
    struct sock_filter *p = pr->p;
    uint16_t written = 0;
    int stores = (int)rn(4);
    for (int i = 0; i < stores && n + 3 < len; i++) {
        unsigned cell = rn(16);
        p[n++] = rn(2) ? (struct sock_filter)LD(BPF_B, rn(16)) : (struct sock_filter)LD_IMM(rn(300));
        p[n++] = (struct sock_filter)S(BPF_ST, cell);
        written |= (uint16_t)(1u << cell);
    }
    static const uint32_t anc[] = {SKF_AD_PROTOCOL, SKF_AD_PKTTYPE,     SKF_AD_IFINDEX,  SKF_AD_NLATTR,
                                   SKF_AD_NLATTR_NEST, SKF_AD_MARK,     SKF_AD_QUEUE,    SKF_AD_HATYPE,
                                   SKF_AD_RXHASH,   SKF_AD_VLAN_TAG,    SKF_AD_VLAN_TAG_PRESENT,
                                   SKF_AD_PAY_OFFSET, SKF_AD_ALU_XOR_X, SKF_AD_VLAN_TPID};
    static const uint16_t szs[] = {BPF_W, BPF_H, BPF_B};
    static const uint16_t alu_ops[] = {BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND,
                                       BPF_LSH, BPF_RSH, BPF_MOD, BPF_XOR};
    static const uint16_t jmp_ops[] = {BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET};
    static const uint32_t rets[] = {0, 1, 2, 3, 4, 5, 12, 13, 14, 63, 64, 65, 199, 200, 201, 1499, 1500, 0xffff,
                                    0xffffffffu};
    while (n + 1 < len) {
        size_t left = len - 2 - n; /* instructions between this one and the final ret */
        uint32_t c = rn(100);
        uint16_t sz = szs[rn(3)];
        if (c < 22) { /* absolute load */
            uint32_t r = rn(100), k;
            if (r < 40)
                k = rn(16);
            else if (r < 65)
                k = rn(70);
            else if (r < 80)
                k = (rn(2) ? 195 : 1494) + rn(8);
            else if (r < 90)
                k = (uint32_t)SKF_NET_OFF + rn(rn(4) ? 16 : 1502);
            else if (r < 93)
                k = (uint32_t)SKF_LL_OFF + rn(20);
            else
                k = SKF_AD_OFF + anc[rn(NELEM(anc))];
            p[n++] = (struct sock_filter)LD(sz, k);
        } else if (c < 34) { /* indirect load */
            uint32_t k = rn(4) ? rn(24) : (rn(2) ? rn(1600) : 0xffffffffu - rn(8));
            p[n++] = (struct sock_filter)LDI(sz, k);
        } else if (c < 40) {
            p[n++] = (struct sock_filter)S(BPF_LDX | BPF_B | BPF_MSH, rn(4) ? rn(16) : rn(210));
        } else if (c < 46) {
            uint32_t k = rn(3) ? rn(40) : rnd();
            p[n++] = rn(2) ? (struct sock_filter)LD_IMM(k) : (struct sock_filter)LDX_IMM(k);
        } else if (c < 49) {
            p[n++] = rn(2) ? (struct sock_filter)S(BPF_LD | BPF_W | BPF_LEN, 0)
                           : (struct sock_filter)S(BPF_LDX | BPF_W | BPF_LEN, 0);
        } else if (c < 53) {
            p[n++] = rn(2) ? (struct sock_filter)S(BPF_MISC | BPF_TAX, 0) : (struct sock_filter)S(BPF_MISC | BPF_TXA, 0);
        } else if (c < 67) { /* ALU with a constant */
            uint16_t op = alu_ops[rn(NELEM(alu_ops))];
            uint32_t k;
            if (op == BPF_LSH || op == BPF_RSH)
                k = rn(32);
            else if (op == BPF_DIV || op == BPF_MOD)
                k = 1 + rn(rn(2) ? 20 : 0x7fffffff);
            else
                k = rn(2) ? rn(300) : rnd();
            p[n++] = (struct sock_filter)ALU_K(op, k);
        } else if (c < 76) { /* ALU with X, or neg */
            if (rn(8) == 0)
                p[n++] = (struct sock_filter)S(BPF_ALU | BPF_NEG, 0);
            else
                p[n++] = (struct sock_filter)ALU_X(alu_ops[rn(NELEM(alu_ops))]);
        } else if (c < 80) { /* scratch memory */
            unsigned cell = rn(16);
            if (rn(2) || !written)
                p[n++] = rn(2) ? (struct sock_filter)S(BPF_ST, cell) : (struct sock_filter)S(BPF_STX, cell);
            else {
                unsigned w;
                do
                    w = rn(16);
                while (!(written & (1u << w)));
                p[n++] = rn(2) ? (struct sock_filter)S(BPF_LD | BPF_MEM, w) : (struct sock_filter)S(BPF_LDX | BPF_MEM, w);
            }
        } else if (c < 95) { /* jumps, forward within the program */
            uint32_t maxoff = left > 255 ? 255 : (uint32_t)left;
            if (rn(6) == 0)
                p[n++] = (struct sock_filter)S(BPF_JMP | BPF_JA, rn(maxoff + 1));
            else {
                uint16_t op = jmp_ops[rn(NELEM(jmp_ops))];
                uint32_t k = rn(2) ? rn(256) : (rn(2) ? rn(20) : rnd());
                int x = rn(4) == 0;
                p[n++] = (struct sock_filter)J(BPF_JMP | op | (x ? BPF_X : BPF_K), x ? 0 : k,
                                               (uint8_t)rn(maxoff + 1), (uint8_t)rn(maxoff + 1));
            }
        } else { /* a return in the middle */
            p[n++] = rn(2) ? (struct sock_filter)RETA : (struct sock_filter)RETK(rets[rn(NELEM(rets))]);
        }
    }
    p[n++] = rn(2) ? (struct sock_filter)RETA : (struct sock_filter)RETK(rets[rn(NELEM(rets))]);
    pr->n = n;
}

/* A generated program with one or two instructions replaced by random ones
 * (any of the 256 8-bit opcodes, random k, jt, jf): the kernel refuses many;
 * the member must answer the same, or EOPNOTSUPP where the kernel accepts a
 * load of SKF_AD_CPU or SKF_AD_RANDOM. */
static void mutate(struct prog *pr, int idx)
{
    static char names[NMUT][24];
    generate(pr, idx % NGEN);
    snprintf(names[idx], sizeof names[idx], "mutated #%d", idx);
    pr->name = names[idx];
    int k = 1 + (int)rn(2);
    for (int i = 0; i < k; i++) {
        struct sock_filter *f = &pr->p[rn((uint32_t)pr->n)];
        switch (rn(4)) {
        case 0: f->code = (uint16_t)rn(256); break;
        case 1: f->k = rn(2) ? rnd() : (uint32_t)SKF_AD_OFF + rn(80); break;
        case 2: f->jt = (uint8_t)rnd(); f->jf = (uint8_t)rnd(); break;
        default:
            f->code = (uint16_t)rn(256);
            f->k = rn(3) ? rn(64) : (uint32_t)SKF_AD_OFF + 4 * rn(20);
            f->jt = (uint8_t)rn(4);
            f->jf = (uint8_t)rn(4);
        }
    }
    pr->unrunnable = 0;
    for (size_t i = 0; i < pr->n; i++) {
        uint16_t c = pr->p[i].code;
        if (BPF_CLASS(c) == BPF_LD && BPF_MODE(c) == BPF_ABS &&
            (pr->p[i].k == (uint32_t)SKF_AD_OFF + SKF_AD_CPU || pr->p[i].k == (uint32_t)SKF_AD_OFF + SKF_AD_RANDOM))
            pr->unrunnable = 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Payloads                                                                  */

static void fill_payload(unsigned char *b, size_t len)
{
    int nla = len >= 8 && rn(3) == 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t r = rn(8);
        b[i] = r == 0 ? 0 : r == 1 ? (unsigned char)rn(16) : (unsigned char)rnd();
    }
    if (!nla)
        return;
    /* netlink attributes: { u16 len, u16 type } + data, 4-byte aligned */
    size_t off = 0;
    while (off + 4 <= len) {
        uint16_t alen = (uint16_t)(4 + rn(rn(4) ? 12 : 40));
        if (rn(10) == 0)
            alen = (uint16_t)rnd();
        uint16_t type = (uint16_t)(rn(4) | (rn(4) == 0 ? 0x8000 : 0));
        memcpy(b + off, &alen, 2);
        memcpy(b + off + 2, &type, 2);
        off += (alen + 3u) & ~3u;
        if (rn(5) == 0)
            off = off > 8 ? off - 8 + 4 : off; /* sometimes nest: the next header inside this one */
    }
}

/* ------------------------------------------------------------------------ */
/* The sender: another process, one command per payload                     */

static struct unix_mreq group;
static struct sockaddr_un kaddr;
static socklen_t kaddrlen;
static int to_sender[2], from_sender[2];

static int sender_main(void *arg)
{
    (void)arg;
    close(to_sender[1]);
    close(from_sender[0]);
    int s = tu_dgram();
    static unsigned char buf[2048];
    for (;;) {
        uint32_t len;
        if (!ta_read_full(to_sender[0], &len, sizeof len))
            return 0;
        CHECK(len <= sizeof buf && (len == 0 || ta_read_full(to_sender[0], buf, len)), "sender: command");
        int32_t r[2];
        r[0] = (int32_t)sendto(s, buf, len, 0, (struct sockaddr *)&kaddr, kaddrlen);
        if (r[0] < 0)
            r[0] = -errno;
        r[1] = (int32_t)tu_sendto_group(s, buf, len, 0, &group);
        if (r[1] < 0)
            r[1] = -errno;
        ta_write_full(from_sender[1], r, sizeof r, "sender: reply");
    }
}

static void send_both(const unsigned char *p, uint32_t len)
{
    ta_write_full(to_sender[1], &len, sizeof len, "to sender");
    if (len)
        ta_write_full(to_sender[1], p, len, "to sender");
    int32_t r[2];
    double deadline = tu_now() + 10;
    size_t got = 0;
    while (got < sizeof r) {
        struct pollfd pf = {.fd = from_sender[0], .events = POLLIN};
        int k = poll(&pf, 1, 200);
        if (k == 0) {
            tu_check_children();
            CHECK(tu_now() < deadline, "the sender did not answer");
            continue;
        }
        ssize_t n = read(from_sender[0], (char *)r + got, sizeof r - got);
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            tu_check_children();
        CHECK(n > 0, "the sender is gone");
        got += (size_t)n;
    }
    CHECK(r[0] == (int32_t)len, "sender: sendto the ordinary socket gave %d (%s)", r[0],
          r[0] < 0 ? tu_errname(-r[0]) : "-");
    CHECK(r[1] == (int32_t)len, "sender: sendto the group gave %d (%s)", r[1], r[1] < 0 ? tu_errname(-r[1]) : "-");
}

/* ------------------------------------------------------------------------ */

static int attach(int fd, const struct prog *pr)
{
    struct sock_fprog f = {.len = (unsigned short)pr->n, .filter = (struct sock_filter *)pr->p};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &f, sizeof f) == 0 ? 0 : errno;
}

static void dump(const struct prog *pr)
{
    fprintf(stderr, "program \"%s\" (%zu instructions, as {code, jt, jf, k}):\n", pr->name, pr->n);
    for (size_t i = 0; i < pr->n; i++)
        fprintf(stderr, "    /* %2zu */ {0x%02x, %u, %u, 0x%08x},\n", i, pr->p[i].code, pr->p[i].jt, pr->p[i].jf,
                pr->p[i].k);
}

static void dump_payload(const unsigned char *b, size_t len)
{
    fprintf(stderr, "payload (%zu bytes):", len);
    for (size_t i = 0; i < len && i < 64; i++)
        fprintf(stderr, "%s%02x", i % 16 ? " " : "\n    ", b[i]);
    fprintf(stderr, "%s\n", len > 64 ? " ..." : "");
}

struct got {
    long ret;
    int err, mflags;
    unsigned char data[2048];
};

static void recv_one(int fd, struct got *g)
{
    struct iovec iov = {g->data, sizeof g->data};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    errno = 0;
    g->ret = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_TRUNC);
    g->err = g->ret < 0 ? errno : 0;
    g->mflags = mh.msg_flags;
}

static const char *describe(const struct got *g, char *buf, size_t cap)
{
    if (g->ret < 0)
        snprintf(buf, cap, "nothing (%s)", tu_errname(g->err));
    else
        snprintf(buf, cap, "%ld bytes (msg_flags 0x%x)", g->ret, g->mflags);
    return buf;
}

static long n_programs, n_refused, n_unrunnable, n_compared, n_dropped, n_truncated, n_whole, n_empty;

static void run_program(int K, int M, const struct prog *pr)
{
    int ek = attach(K, pr), em = attach(M, pr);
    n_programs++;
    if (ek != 0) {
        if (em != ek)
            dump(pr);
        CHECK(em == ek, "\"%s\": the kernel refuses it with %s, the member's SO_ATTACH_FILTER gave %s", pr->name,
              tu_errname(ek), em ? tu_errname(em) : "success");
        n_refused++;
        return;
    }
    if (pr->unrunnable) {
        CHECK(em == EOPNOTSUPP, "\"%s\" (SKF_AD_CPU/RANDOM): the member's SO_ATTACH_FILTER gave %s, expected "
              "EOPNOTSUPP", pr->name, em ? tu_errname(em) : "success");
        n_unrunnable++;
        return;
    }
    if (em != 0)
        dump(pr);
    CHECK(em == 0, "\"%s\": the kernel accepts it, the member's SO_ATTACH_FILTER gave %s", pr->name, tu_errname(em));

    static unsigned char payload[1500];
    static struct got gk, gm;
    for (size_t i = 0; i < NELEM(sizes); i++) {
        size_t len = sizes[i];
        fill_payload(payload, len);
        send_both(payload, (uint32_t)len);
        recv_one(K, &gk);
        recv_one(M, &gm);
        int same = gk.ret == gm.ret && (gk.ret < 0 ? gk.err == gm.err
                                                   : gk.mflags == gm.mflags && memcmp(gk.data, gm.data, (size_t)gk.ret) == 0);
        if (!same) {
            char a[64], b[64];
            dump(pr);
            dump_payload(payload, len);
            CHECK(0, "\"%s\" on %zu bytes: the kernel delivered %s, the library %s%s", pr->name, len,
                  describe(&gk, a, sizeof a), describe(&gm, b, sizeof b),
                  gk.ret >= 0 && gk.ret == gm.ret ? " with other bytes" : "");
        }
        n_compared++;
        if (gk.ret < 0)
            n_dropped++;
        else if ((size_t)gk.ret < len)
            n_truncated++;
        else if (len == 0)
            n_empty++;
        else
            n_whole++;
    }
}

int main(void)
{
    tu_start("t_filter_diff");
    tu_abstract_group(&group, "filter-diff");
    kaddrlen = tu_abstract_addr(&kaddr, "filter-diff-k");
    CHECK(pipe2(to_sender, O_CLOEXEC) == 0 && pipe2(from_sender, O_CLOEXEC) == 0, "pipe");
    tu_spawn("sender", sender_main, NULL);
    close(to_sender[0]);
    close(from_sender[1]);

    int G = tu_create_group(&group);
    int K = tu_dgram();
    CHECK(bind(K, (struct sockaddr *)&kaddr, kaddrlen) == 0, "bind K");
    int M = tu_join(&group, 0);
    double t0 = tu_now();

    for (size_t i = 0; i < NELEM(hand); i++)
        run_program(K, M, &hand[i]);
    long hand_progs = n_programs, hand_cmp = n_compared;
    tu_ok("%ld hand-written programs: %ld refused by the kernel and by the member with the same errno, %ld "
          "(SKF_AD_CPU/RANDOM) EOPNOTSUPP on the member only, %ld payloads delivered alike",
          hand_progs, n_refused, n_unrunnable, hand_cmp);

    static struct prog gen;
    long before_refused = n_refused, before_cmp = n_compared;
    for (int i = 0; i < NGEN; i++) {
        generate(&gen, i);
        run_program(K, M, &gen);
    }
    long gen_refused = n_refused - before_refused;
    CHECK(gen_refused * 20 < NGEN, "the kernel refused %ld of %d generated programs (the generator is broken)",
          gen_refused, NGEN);
    tu_ok("%d generated programs (%ld refused alike by both): %ld payloads delivered alike", NGEN, gen_refused,
          n_compared - before_cmp);

    long before_unrunnable = n_unrunnable;
    before_refused = n_refused;
    before_cmp = n_compared;
    for (int i = 0; i < NMUT; i++) {
        mutate(&gen, i);
        run_program(K, M, &gen);
    }
    tu_ok("%d mutated programs: %ld refused by the kernel and by the member with the same errno, %ld "
          "(SKF_AD_CPU/RANDOM) EOPNOTSUPP on the member only, the rest delivered %ld payloads alike",
          NMUT, n_refused - before_refused, n_unrunnable - before_unrunnable, n_compared - before_cmp);

    CHECK(n_dropped > 100 && n_truncated > 100 && n_whole > 100 && n_empty > 20,
          "too little variety: %ld dropped, %ld truncated, %ld whole, %ld empty", n_dropped, n_truncated, n_whole,
          n_empty);
    struct got g;
    recv_one(K, &g);
    CHECK(g.ret == -1 && g.err == EAGAIN, "K has an extra datagram");
    recv_one(M, &g);
    CHECK(g.ret == -1 && g.err == EAGAIN, "M has an extra message");
    tu_ok("in all %ld programs, %ld payloads delivered alike by the kernel and the library (%ld dropped, %ld "
          "truncated, %ld whole, %ld zero-length), in %.1f s",
          n_programs, n_compared, n_dropped, n_truncated, n_whole, n_empty, tu_now() - t0);

    close(to_sender[1]);
    tu_wait_all();
    close(K);
    close(M);
    close(G);
    return tu_done();
}
