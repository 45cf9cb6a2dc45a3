//! Classic BPF (cBPF) socket filters: validation and interpretation.
//!
//! A program attached with `SO_ATTACH_FILTER` to a member socket must filter
//! group messages exactly as the kernel filters ordinary `AF_UNIX` datagrams.
//! [`Program::new`] therefore accepts exactly the programs that
//! `setsockopt(SO_ATTACH_FILTER)` accepts on an `AF_UNIX` socket (Linux 6.x,
//! `bpf_check_classic()`, `check_load_and_stores()` and `bpf_convert_filter()`
//! in `net/core/filter.c`), minus the two ancillary loads whose value cannot
//! be reproduced outside the kernel (see [`Program::new`]), and
//! [`Program::run`] returns what the kernel's program returns for a unix
//! datagram whose payload is `packet`.
//!
//! # Kernel behaviour reproduced (measured on Linux 6.18, x86_64)
//!
//! The kernel does not interpret cBPF directly: it converts the program to
//! eBPF (`bpf_convert_filter`) and JITs it. The observable behaviour for an
//! `AF_UNIX` datagram (`unix_dgram_sendmsg` → `sk_filter(other, skb)`, i.e.
//! `sk_filter_trim_cap(.., cap = 1)`) is:
//!
//! * A, X and the scratch memory start at 0 (scratch cells can never be read
//!   before they are written: validation guarantees it).
//! * Packet loads (`ld/ldh/ldb [k]`, `[x + k]`, `ldxb 4*([k]&0xf)`) read the
//!   payload in network byte order. A load that does not fit in the payload
//!   ends the program with return value 0 (drop).
//! * Negative offsets: `SKF_NET_OFF + n` reads payload byte `n`: a unix skb is
//!   allocated without headroom and its network header offset is 0, so the
//!   "network layer" starts at the payload. `SKF_LL_OFF + n` always fails
//!   (the mac header of a unix skb is never set): return 0. Any other negative
//!   offset (below `SKF_LL_OFF`) also fails. For `[x + k]` the offset is
//!   `(x + k) mod 2^32` taken as a signed 32-bit integer, with the same rules.
//!   An absolute offset in `SKF_NET_OFF + [0x100000 - 0x1000, 0x100000)` is
//!   refused at validation unless it is a known ancillary load (below).
//! * Division or modulo by `X == 0` ends the program with return value 0.
//! * Arithmetic is 32-bit and wraps. Shifts by `X` use `X & 31` (as the x86
//!   `shl`/`shr` instructions the JIT emits do): `A << 33 == A << 1`.
//!   Shifts by a constant >= 32 are refused at validation.
//! * Ancillary loads (`ld/ldh/ldb [SKF_AD_OFF + n]`; the load size is
//!   ignored by the kernel) on a unix datagram:
//!   - `SKF_AD_PROTOCOL`, `SKF_AD_PKTTYPE`, `SKF_AD_MARK`, `SKF_AD_QUEUE`,
//!     `SKF_AD_RXHASH`, `SKF_AD_VLAN_TAG`, `SKF_AD_VLAN_TAG_PRESENT`,
//!     `SKF_AD_VLAN_TPID`, `SKF_AD_PAY_OFFSET`: A = 0 (the skb has no
//!     protocol, is `PACKET_HOST`, carries no mark, queue, hash or VLAN tag,
//!     and the flow dissector finds no payload offset for protocol 0).
//!   - `SKF_AD_IFINDEX`, `SKF_AD_HATYPE`: the skb has no device; the kernel's
//!     conversion then *ends the program returning the current A*.
//!   - `SKF_AD_ALU_XOR_X`: A ^= X.
//!   - `SKF_AD_NLATTR`, `SKF_AD_NLATTR_NEST`: A = offset of the netlink
//!     attribute of type X found in the payload starting at offset A (nested:
//!     inside the attribute at offset A), or 0; computed from the payload
//!     exactly as `nla_find()` does. Like the kernel, these return 0 when the
//!     datagram is longer than [`UNIX_DGRAM_LINEAR_MAX`], because the kernel
//!     then builds a non-linear skb and the helpers refuse those.
//!   - `SKF_AD_CPU` and `SKF_AD_RANDOM` are refused (see [`Program::new`]).
//! * The return value k means: 0 drops the datagram; otherwise the receiver
//!   gets the first `min(len, max(k, 1))` bytes (`pskb_trim`): a datagram is
//!   truncated to k bytes and `recv(MSG_TRUNC)` reports the truncated length.
//!   A zero-length datagram is delivered (as a zero-length datagram) for any
//!   k > 0 and dropped for k == 0. See [`Program::accepted_len`].
//!
//! # Limits outside this module
//!
//! The kernel also charges the converted program against the socket's option
//! memory (`net.core.optmem_max`, 131072 by default) and fails with `ENOMEM`
//! when it does not fit; that depends on the socket, not on the program, so
//! it is not checked here. [`Program::ebpf_len`] gives the length of the
//! kernel's converted program and [`Program::kernel_charge`] the bytes the
//! kernel charges for it, for a caller that wants to reproduce that check:
//! attaching succeeds iff `charged + kernel_charge() < optmem_max`, where
//! `charged` still includes the filter being replaced (the kernel charges the
//! new filter before it releases the old one). With the defaults this allows
//! converted programs of up to 16371 eBPF instructions, e.g. about 1250
//! absolute packet loads; `Program::new` does not refuse bigger ones.

use core::fmt;

use crate::Errno;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl SockFilter {
    /// `BPF_STMT(code, k)`.
    pub const fn stmt(code: u16, k: u32) -> SockFilter {
        SockFilter { code, jt: 0, jf: 0, k }
    }

    /// `BPF_JUMP(code, k, jt, jf)`.
    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
        SockFilter { code, jt, jf, k }
    }
}

// Instruction classes.
pub const BPF_LD: u16 = 0x00;
pub const BPF_LDX: u16 = 0x01;
pub const BPF_ST: u16 = 0x02;
pub const BPF_STX: u16 = 0x03;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_MISC: u16 = 0x07;

// Load sizes.
pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_B: u16 = 0x10;

// Load modes.
pub const BPF_IMM: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_IND: u16 = 0x40;
pub const BPF_MEM: u16 = 0x60;
pub const BPF_LEN: u16 = 0x80;
pub const BPF_MSH: u16 = 0xa0;

// ALU operations.
pub const BPF_ADD: u16 = 0x00;
pub const BPF_SUB: u16 = 0x10;
pub const BPF_MUL: u16 = 0x20;
pub const BPF_DIV: u16 = 0x30;
pub const BPF_OR: u16 = 0x40;
pub const BPF_AND: u16 = 0x50;
pub const BPF_LSH: u16 = 0x60;
pub const BPF_RSH: u16 = 0x70;
pub const BPF_NEG: u16 = 0x80;
pub const BPF_MOD: u16 = 0x90;
pub const BPF_XOR: u16 = 0xa0;

// Jump operations.
pub const BPF_JA: u16 = 0x00;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_JSET: u16 = 0x40;

// Operand sources.
pub const BPF_K: u16 = 0x00;
pub const BPF_X: u16 = 0x08;
/// Return-value source A (`BPF_RET | BPF_A`).
pub const BPF_A: u16 = 0x10;

// BPF_MISC operations.
pub const BPF_TAX: u16 = 0x00;
pub const BPF_TXA: u16 = 0x80;

/// Maximum number of instructions in a program.
pub const BPF_MAXINSNS: usize = 4096;
/// Number of scratch memory cells.
pub const BPF_MEMWORDS: usize = 16;

/// Ancillary data area: `k >= SKF_AD_OFF` (as u32) in `ld [k]`.
pub const SKF_AD_OFF: i32 = -0x1000;
pub const SKF_AD_PROTOCOL: i32 = 0;
pub const SKF_AD_PKTTYPE: i32 = 4;
pub const SKF_AD_IFINDEX: i32 = 8;
pub const SKF_AD_NLATTR: i32 = 12;
pub const SKF_AD_NLATTR_NEST: i32 = 16;
pub const SKF_AD_MARK: i32 = 20;
pub const SKF_AD_QUEUE: i32 = 24;
pub const SKF_AD_HATYPE: i32 = 28;
pub const SKF_AD_RXHASH: i32 = 32;
pub const SKF_AD_CPU: i32 = 36;
pub const SKF_AD_ALU_XOR_X: i32 = 40;
pub const SKF_AD_VLAN_TAG: i32 = 44;
pub const SKF_AD_VLAN_TAG_PRESENT: i32 = 48;
pub const SKF_AD_PAY_OFFSET: i32 = 52;
pub const SKF_AD_RANDOM: i32 = 56;
pub const SKF_AD_VLAN_TPID: i32 = 60;
pub const SKF_AD_MAX: i32 = 64;
/// Negative offsets relative to the network header.
pub const SKF_NET_OFF: i32 = -0x100000;
/// Negative offsets relative to the link-layer header.
pub const SKF_LL_OFF: i32 = -0x200000;

/// Longest `AF_UNIX` datagram the kernel stores in a linear skb
/// (`SKB_MAX_ALLOC` = 16 KiB minus `struct skb_shared_info`, with 4 KiB
/// pages and the default `MAX_SKB_FRAGS` of 17). Longer datagrams get paged
/// data, and the kernel's `SKF_AD_NLATTR(_NEST)` helpers return 0 for them.
/// Verified against the kernel by the differential test.
pub const UNIX_DGRAM_LINEAR_MAX: usize = 16064;

/// The `k` of an ancillary load `ld [SKF_AD_OFF + n]`.
pub const fn skf_ad(n: i32) -> u32 {
    SKF_AD_OFF.wrapping_add(n) as u32
}

const fn code_class(code: u16) -> u16 {
    code & 0x07
}
const fn code_size(code: u16) -> u16 {
    code & 0x18
}
const fn code_mode(code: u16) -> u16 {
    code & 0xe0
}
const fn code_op(code: u16) -> u16 {
    code & 0xf0
}
const fn code_src(code: u16) -> u16 {
    code & 0x08
}

/// `chk_code_allowed()`: the exact opcodes the kernel accepts for socket
/// filters (any extra bit makes an opcode unknown).
const ALLOWED_CODES: [u16; 49] = [
    // 32-bit ALU operations.
    BPF_ALU | BPF_ADD | BPF_K,
    BPF_ALU | BPF_ADD | BPF_X,
    BPF_ALU | BPF_SUB | BPF_K,
    BPF_ALU | BPF_SUB | BPF_X,
    BPF_ALU | BPF_MUL | BPF_K,
    BPF_ALU | BPF_MUL | BPF_X,
    BPF_ALU | BPF_DIV | BPF_K,
    BPF_ALU | BPF_DIV | BPF_X,
    BPF_ALU | BPF_MOD | BPF_K,
    BPF_ALU | BPF_MOD | BPF_X,
    BPF_ALU | BPF_AND | BPF_K,
    BPF_ALU | BPF_AND | BPF_X,
    BPF_ALU | BPF_OR | BPF_K,
    BPF_ALU | BPF_OR | BPF_X,
    BPF_ALU | BPF_XOR | BPF_K,
    BPF_ALU | BPF_XOR | BPF_X,
    BPF_ALU | BPF_LSH | BPF_K,
    BPF_ALU | BPF_LSH | BPF_X,
    BPF_ALU | BPF_RSH | BPF_K,
    BPF_ALU | BPF_RSH | BPF_X,
    BPF_ALU | BPF_NEG,
    // Loads.
    BPF_LD | BPF_W | BPF_ABS,
    BPF_LD | BPF_H | BPF_ABS,
    BPF_LD | BPF_B | BPF_ABS,
    BPF_LD | BPF_W | BPF_LEN,
    BPF_LD | BPF_W | BPF_IND,
    BPF_LD | BPF_H | BPF_IND,
    BPF_LD | BPF_B | BPF_IND,
    BPF_LD | BPF_IMM,
    BPF_LD | BPF_MEM,
    BPF_LDX | BPF_W | BPF_LEN,
    BPF_LDX | BPF_B | BPF_MSH,
    BPF_LDX | BPF_IMM,
    BPF_LDX | BPF_MEM,
    // Stores.
    BPF_ST,
    BPF_STX,
    // Misc.
    BPF_MISC | BPF_TAX,
    BPF_MISC | BPF_TXA,
    // Returns.
    BPF_RET | BPF_K,
    BPF_RET | BPF_A,
    // Jumps.
    BPF_JMP | BPF_JA,
    BPF_JMP | BPF_JEQ | BPF_K,
    BPF_JMP | BPF_JEQ | BPF_X,
    BPF_JMP | BPF_JGE | BPF_K,
    BPF_JMP | BPF_JGE | BPF_X,
    BPF_JMP | BPF_JGT | BPF_K,
    BPF_JMP | BPF_JGT | BPF_X,
    BPF_JMP | BPF_JSET | BPF_K,
    BPF_JMP | BPF_JSET | BPF_X,
];

fn code_allowed(code: u16) -> bool {
    ALLOWED_CODES.contains(&code)
}

fn is_cond_jump(code: u16) -> bool {
    code_class(code) == BPF_JMP && code_op(code) != BPF_JA
}

fn is_ld_abs(code: u16) -> bool {
    code == BPF_LD | BPF_W | BPF_ABS || code == BPF_LD | BPF_H | BPF_ABS || code == BPF_LD | BPF_B | BPF_ABS
}

/// `bpf_anc_helper()`: the ancillary number of `ld [k]`, if `k` names one the
/// kernel knows (the load size does not matter).
fn ancillary(insn: &SockFilter) -> Option<i32> {
    if !is_ld_abs(insn.code) {
        return None;
    }
    let n = (insn.k as i32).wrapping_sub(SKF_AD_OFF);
    match n {
        SKF_AD_PROTOCOL
        | SKF_AD_PKTTYPE
        | SKF_AD_IFINDEX
        | SKF_AD_NLATTR
        | SKF_AD_NLATTR_NEST
        | SKF_AD_MARK
        | SKF_AD_QUEUE
        | SKF_AD_HATYPE
        | SKF_AD_RXHASH
        | SKF_AD_CPU
        | SKF_AD_ALU_XOR_X
        | SKF_AD_VLAN_TAG
        | SKF_AD_VLAN_TAG_PRESENT
        | SKF_AD_PAY_OFFSET
        | SKF_AD_RANDOM
        | SKF_AD_VLAN_TPID
            if insn.k >= SKF_AD_OFF as u32 =>
        {
            Some(n)
        }
        _ => None,
    }
}

/// `bpf_check_classic()` followed by `check_load_and_stores()`.
fn check_classic(insns: &[SockFilter]) -> Result<(), Errno> {
    let flen = insns.len();
    if flen == 0 || flen > BPF_MAXINSNS {
        return Err(Errno::EINVAL);
    }
    for (pc, f) in insns.iter().enumerate() {
        if !code_allowed(f.code) {
            return Err(Errno::EINVAL);
        }
        let c = f.code;
        let ok = if c == BPF_ALU | BPF_DIV | BPF_K || c == BPF_ALU | BPF_MOD | BPF_K {
            f.k != 0
        } else if c == BPF_ALU | BPF_LSH | BPF_K || c == BPF_ALU | BPF_RSH | BPF_K {
            f.k < 32
        } else if c == BPF_LD | BPF_MEM || c == BPF_LDX | BPF_MEM || c == BPF_ST || c == BPF_STX {
            (f.k as usize) < BPF_MEMWORDS
        } else if c == BPF_JMP | BPF_JA {
            (f.k as u64) < (flen - pc - 1) as u64
        } else if is_cond_jump(c) {
            pc + f.jt as usize + 1 < flen && pc + f.jf as usize + 1 < flen
        } else if is_ld_abs(c) {
            ancillary(f).is_some() || f.k < SKF_AD_OFF as u32
        } else {
            true
        };
        if !ok {
            return Err(Errno::EINVAL);
        }
    }
    let last = insns[flen - 1].code;
    if last != BPF_RET | BPF_K && last != BPF_RET | BPF_A {
        return Err(Errno::EINVAL);
    }
    check_load_and_stores(insns)
}

/// `check_load_and_stores()`: the kernel's (linear, conservative) proof that
/// no scratch cell is read before it is written. Reproduced as is, including
/// its approximations (the state after a `ret` flows into the next
/// instruction), so that it accepts and refuses exactly the same programs.
fn check_load_and_stores(insns: &[SockFilter]) -> Result<(), Errno> {
    let mut masks = vec![0xffffu16; insns.len()];
    let mut memvalid: u16 = 0;
    for (pc, f) in insns.iter().enumerate() {
        memvalid &= masks.get(pc).copied().unwrap_or(0);
        let c = f.code;
        if c == BPF_ST || c == BPF_STX {
            memvalid |= 1u16.checked_shl(f.k).unwrap_or(0);
        } else if c == BPF_LD | BPF_MEM || c == BPF_LDX | BPF_MEM {
            if memvalid & 1u16.checked_shl(f.k).unwrap_or(0) == 0 {
                return Err(Errno::EINVAL);
            }
        } else if c == BPF_JMP | BPF_JA {
            let t = pc + 1 + f.k as usize;
            let m = masks.get_mut(t).ok_or(Errno::EINVAL)?;
            *m &= memvalid;
            memvalid = !0;
        } else if is_cond_jump(c) {
            for off in [f.jt, f.jf] {
                let m = masks.get_mut(pc + 1 + off as usize).ok_or(Errno::EINVAL)?;
                *m &= memvalid;
            }
            memvalid = !0;
        }
    }
    Ok(())
}

/// Number of eBPF instructions `convert_bpf_ld_abs()` emits.
fn ld_abs_ebpf_len(size: u16, indirect: bool, k: u32) -> usize {
    let offset = k as i32;
    let mut n = 0;
    // x86_64 has efficient unaligned access: a direct fast path for every
    // non-negative absolute offset.
    if !indirect && offset >= 0 {
        n += 1; // tmp = headlen
        if offset != 0 {
            n += 1; // tmp -= offset
        }
        n += 1; // if tmp < size goto slow path
        n += if offset <= i16::MAX as i32 { 1 } else { 3 };
        if size == BPF_H || size == BPF_W {
            n += 1; // byte swap
        }
        n += 1; // goto out
    }
    n += 3; // arguments 1-3
    n += if !indirect { 1 } else { 1 + usize::from(k != 0) };
    n += 1; // call
    n + 3 // if A >= 0 goto out; A = 0; exit
}

/// Number of eBPF instructions `bpf_convert_filter()` emits for `f`, and
/// whether `f` needs the packet-access prologue.
fn ebpf_insn_len(f: &SockFilter) -> (usize, bool) {
    let c = f.code;
    match code_class(c) {
        BPF_ALU => {
            let op = code_op(c);
            if (op == BPF_DIV || op == BPF_MOD) && code_src(c) == BPF_X {
                (5, false)
            } else {
                (1, false)
            }
        }
        BPF_LD if code_mode(c) == BPF_ABS => match ancillary(f) {
            Some(n) => (
                match n {
                    SKF_AD_PROTOCOL | SKF_AD_PKTTYPE | SKF_AD_VLAN_TPID => 2,
                    SKF_AD_IFINDEX | SKF_AD_HATYPE => 4,
                    SKF_AD_VLAN_TAG_PRESENT => 3,
                    SKF_AD_PAY_OFFSET | SKF_AD_NLATTR | SKF_AD_NLATTR_NEST | SKF_AD_CPU | SKF_AD_RANDOM => 4,
                    _ => 1,
                },
                false,
            ),
            None => (ld_abs_ebpf_len(code_size(c), false, f.k), true),
        },
        BPF_LD if code_mode(c) == BPF_IND => (ld_abs_ebpf_len(code_size(c), true, f.k), true),
        BPF_LDX if code_mode(c) == BPF_MSH => (1 + ld_abs_ebpf_len(BPF_B, false, f.k) + 5, true),
        BPF_JMP if code_op(c) == BPF_JA => (1, false),
        BPF_JMP => {
            let pre = usize::from(code_src(c) == BPF_K && (f.k as i32) < 0);
            let op = code_op(c);
            let n = if f.jf == 0 || (f.jt == 0 && op != BPF_JSET) { 1 } else { 2 };
            (pre + n, false)
        }
        BPF_RET if c == BPF_RET | BPF_K => (2, false),
        _ => (1, false),
    }
}

/// The parts of `bpf_convert_filter()` that can refuse a program that
/// passed `bpf_check_classic()`: every eBPF jump offset must fit in 16 bits,
/// in the final pass and in the first pass, where the offsets of the
/// not-yet-placed forward targets are still 0. Returns the converted length.
fn check_conversion(insns: &[SockFilter]) -> Result<usize, Errno> {
    let mut addrs = vec![0usize; insns.len()];
    let mut seen_ld_abs = false;
    let mut lens = vec![0usize; insns.len()];
    for (i, f) in insns.iter().enumerate() {
        let (n, ld) = ebpf_insn_len(f);
        if let Some(l) = lens.get_mut(i) {
            *l = n;
        }
        seen_ld_abs |= ld;
    }
    let prologue = if seen_ld_abs { 7 } else { 3 };
    let mut pos = prologue;
    for i in 0..insns.len() {
        if let Some(a) = addrs.get_mut(i) {
            *a = pos;
        }
        pos += lens.get(i).copied().unwrap_or(0);
    }
    let fits = |off: i64| (i16::MIN as i64..=i16::MAX as i64).contains(&off);
    let addr = |i: usize| addrs.get(i).copied().unwrap_or(0) as i64;
    // A jump emitted `adj` instructions into the block of instruction i.
    let check = |i: usize, target: usize, adj: i64| -> Result<(), Errno> {
        if target >= insns.len() {
            return Err(Errno::EINVAL);
        }
        // First pass: the target's address is still 0.
        let first = -addr(i) - 1 - adj;
        let last = addr(target) - addr(i) - 1 - adj;
        if fits(first) && fits(last) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    };
    for (i, f) in insns.iter().enumerate() {
        let c = f.code;
        if c == BPF_JMP | BPF_JA {
            check(i, i + 1 + f.k as usize, 0)?;
        } else if is_cond_jump(c) {
            let pre = i64::from(code_src(c) == BPF_K && (f.k as i32) < 0);
            let jt = i + 1 + f.jt as usize;
            let jf = i + 1 + f.jf as usize;
            if f.jf == 0 {
                check(i, jt, pre)?;
            } else if f.jt == 0 && code_op(c) != BPF_JSET {
                check(i, jf, pre)?;
            } else {
                check(i, jt, pre)?;
                check(i, jf, pre + 1)?;
            }
        }
    }
    Ok(pos)
}

/// A pre-decoded instruction. Jump targets are absolute indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `A = P[off:4]`, `off` already mapped to a payload offset.
    LdW(u32),
    LdH(u32),
    LdB(u32),
    /// `A = P[X + k : size]`.
    LdIndW(u32),
    LdIndH(u32),
    LdIndB(u32),
    /// `X = 4 * (P[off] & 0xf)`.
    LdxMsh(u32),
    /// A load that can never succeed: return 0.
    Fail,
    LdImm(u32),
    LdxImm(u32),
    LdLen,
    LdxLen,
    LdMem(u8),
    LdxMem(u8),
    St(u8),
    Stx(u8),
    AddK(u32),
    SubK(u32),
    MulK(u32),
    DivK(u32),
    ModK(u32),
    AndK(u32),
    OrK(u32),
    XorK(u32),
    LshK(u32),
    RshK(u32),
    AddX,
    SubX,
    MulX,
    DivX,
    ModX,
    AndX,
    OrX,
    XorX,
    LshX,
    RshX,
    Neg,
    Ja(u16),
    JeqK(u32, u16, u16),
    JgtK(u32, u16, u16),
    JgeK(u32, u16, u16),
    JsetK(u32, u16, u16),
    JeqX(u16, u16),
    JgtX(u16, u16),
    JgeX(u16, u16),
    JsetX(u16, u16),
    RetK(u32),
    RetA,
    Tax,
    Txa,
    NlAttr,
    NlAttrNest,
}

/// Maps a packet-load offset (as the kernel's load helpers see it, a signed
/// 32-bit value) to a payload offset, or None if the load always fails.
#[inline]
fn map_offset(off: i32) -> Option<u32> {
    if off >= 0 {
        Some(off as u32)
    } else if off >= SKF_NET_OFF {
        // The network header of a unix skb is at payload offset 0.
        Some((off - SKF_NET_OFF) as u32)
    } else {
        // SKF_LL_OFF: no mac header on a unix skb; below: invalid.
        None
    }
}

fn decode(insns: &[SockFilter]) -> Result<Box<[Op]>, Errno> {
    let mut ops = Vec::with_capacity(insns.len());
    for (pc, f) in insns.iter().enumerate() {
        let c = f.code;
        let k = f.k;
        let jt = (pc + 1 + f.jt as usize) as u16;
        let jf = (pc + 1 + f.jf as usize) as u16;
        let op = match c {
            _ if is_ld_abs(c) => match ancillary(f) {
                Some(SKF_AD_CPU) | Some(SKF_AD_RANDOM) => return Err(Errno::EINVAL),
                Some(SKF_AD_IFINDEX) | Some(SKF_AD_HATYPE) => Op::RetA,
                Some(SKF_AD_ALU_XOR_X) => Op::XorX,
                Some(SKF_AD_NLATTR) => Op::NlAttr,
                Some(SKF_AD_NLATTR_NEST) => Op::NlAttrNest,
                Some(_) => Op::LdImm(0),
                None => match map_offset(k as i32) {
                    None => Op::Fail,
                    Some(off) => match code_size(c) {
                        BPF_W => Op::LdW(off),
                        BPF_H => Op::LdH(off),
                        _ => Op::LdB(off),
                    },
                },
            },
            _ if c == BPF_LD | BPF_W | BPF_IND => Op::LdIndW(k),
            _ if c == BPF_LD | BPF_H | BPF_IND => Op::LdIndH(k),
            _ if c == BPF_LD | BPF_B | BPF_IND => Op::LdIndB(k),
            _ if c == BPF_LDX | BPF_B | BPF_MSH => match map_offset(k as i32) {
                None => Op::Fail,
                Some(off) => Op::LdxMsh(off),
            },
            _ if c == BPF_LD | BPF_IMM => Op::LdImm(k),
            _ if c == BPF_LDX | BPF_IMM => Op::LdxImm(k),
            _ if c == BPF_LD | BPF_W | BPF_LEN => Op::LdLen,
            _ if c == BPF_LDX | BPF_W | BPF_LEN => Op::LdxLen,
            _ if c == BPF_LD | BPF_MEM => Op::LdMem(k as u8),
            _ if c == BPF_LDX | BPF_MEM => Op::LdxMem(k as u8),
            BPF_ST => Op::St(k as u8),
            BPF_STX => Op::Stx(k as u8),
            _ if c == BPF_ALU | BPF_NEG => Op::Neg,
            _ if code_class(c) == BPF_ALU => {
                let x = code_src(c) == BPF_X;
                match (code_op(c), x) {
                    (BPF_ADD, false) => Op::AddK(k),
                    (BPF_SUB, false) => Op::SubK(k),
                    (BPF_MUL, false) => Op::MulK(k),
                    (BPF_DIV, false) => Op::DivK(k),
                    (BPF_MOD, false) => Op::ModK(k),
                    (BPF_AND, false) => Op::AndK(k),
                    (BPF_OR, false) => Op::OrK(k),
                    (BPF_XOR, false) => Op::XorK(k),
                    (BPF_LSH, false) => Op::LshK(k),
                    (BPF_RSH, false) => Op::RshK(k),
                    (BPF_ADD, true) => Op::AddX,
                    (BPF_SUB, true) => Op::SubX,
                    (BPF_MUL, true) => Op::MulX,
                    (BPF_DIV, true) => Op::DivX,
                    (BPF_MOD, true) => Op::ModX,
                    (BPF_AND, true) => Op::AndX,
                    (BPF_OR, true) => Op::OrX,
                    (BPF_XOR, true) => Op::XorX,
                    (BPF_LSH, true) => Op::LshX,
                    (BPF_RSH, true) => Op::RshX,
                    _ => return Err(Errno::EINVAL),
                }
            }
            _ if c == BPF_JMP | BPF_JA => Op::Ja((pc + 1 + k as usize) as u16),
            _ if code_class(c) == BPF_JMP => {
                let x = code_src(c) == BPF_X;
                match (code_op(c), x) {
                    (BPF_JEQ, false) => Op::JeqK(k, jt, jf),
                    (BPF_JGT, false) => Op::JgtK(k, jt, jf),
                    (BPF_JGE, false) => Op::JgeK(k, jt, jf),
                    (BPF_JSET, false) => Op::JsetK(k, jt, jf),
                    (BPF_JEQ, true) => Op::JeqX(jt, jf),
                    (BPF_JGT, true) => Op::JgtX(jt, jf),
                    (BPF_JGE, true) => Op::JgeX(jt, jf),
                    (BPF_JSET, true) => Op::JsetX(jt, jf),
                    _ => return Err(Errno::EINVAL),
                }
            }
            _ if c == BPF_RET | BPF_K => Op::RetK(k),
            _ if c == BPF_RET | BPF_A => Op::RetA,
            _ if c == BPF_MISC | BPF_TAX => Op::Tax,
            _ if c == BPF_MISC | BPF_TXA => Op::Txa,
            _ => return Err(Errno::EINVAL),
        };
        ops.push(op);
    }
    Ok(ops.into_boxed_slice())
}

/// A validated classic BPF program, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    ops: Box<[Op]>,
    insns: Box<[SockFilter]>,
    ebpf_len: usize,
}

impl Program {
    /// Validates `insns` as `setsockopt(SO_ATTACH_FILTER)` does on an
    /// `AF_UNIX` socket and pre-decodes it.
    ///
    /// Refused with `EINVAL`, as by the kernel: an empty program or one of
    /// more than [`BPF_MAXINSNS`] instructions; an opcode the kernel does not
    /// accept for socket filters (the exact codes of `chk_code_allowed()`:
    /// extra bits make an opcode unknown); division or modulo by the
    /// constant 0; a shift by a constant >= 32; a scratch memory index >= 16;
    /// a jump whose target (`pc + 1 + k`, `pc + 1 + jt`, `pc + 1 + jf`) is
    /// past the end; `ld [k]` with `k >= SKF_AD_OFF` (unsigned) that is not a
    /// known ancillary load; a last instruction that is not a return; a read
    /// of a scratch cell the kernel's `check_load_and_stores()` cannot prove
    /// written on every path; and a program whose eBPF conversion would need
    /// a jump offset beyond 16 bits (only for huge programs, which the kernel
    /// would otherwise refuse with `ENOMEM` from its option-memory limit).
    ///
    /// Also refused with `EINVAL`, although the kernel accepts them: the
    /// ancillary loads `SKF_AD_CPU` (the number of the CPU running the
    /// filter: there is no meaningful equivalent when the filter runs in the
    /// sending process, and the kernel's value is not reproducible) and
    /// `SKF_AD_RANDOM` (a fresh random number from the kernel's per-CPU
    /// generator: its value and distribution cannot be reproduced, and a
    /// program using it would behave differently from run to run anyway).
    pub fn new(insns: &[SockFilter]) -> Result<Program, Errno> {
        check_classic(insns)?;
        let ebpf_len = check_conversion(insns)?;
        let ops = decode(insns)?;
        Ok(Program { ops, insns: insns.into(), ebpf_len })
    }

    /// The instructions as given to [`Program::new`] (what the kernel's
    /// `SO_GET_FILTER` returns).
    pub fn insns(&self) -> &[SockFilter] {
        &self.insns
    }

    /// Length, in eBPF instructions, of the kernel's conversion of this
    /// program (`bpf_convert_filter()` on x86_64).
    pub fn ebpf_len(&self) -> usize {
        self.ebpf_len
    }

    /// Bytes the kernel charges against the socket's option memory for this
    /// program (`bpf_prog_size(ebpf_len)`); attaching fails with `ENOMEM`
    /// unless the socket's charged option memory plus this stays below
    /// `net.core.optmem_max`. The header size is the one measured on Linux
    /// 6.18 x86_64 by the differential test.
    pub fn kernel_charge(&self) -> usize {
        KERNEL_BPF_PROG_HEADER + 8 * self.ebpf_len
    }

    /// Runs the program on a datagram whose payload is `packet`, returning
    /// what the kernel's filter returns (0: drop; k: keep the first k bytes).
    /// Never panics and never allocates.
    pub fn run(&self, packet: &[u8]) -> u32 {
        let ops: &[Op] = &self.ops;
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut mem = [0u32; BPF_MEMWORDS];
        let mut pc: usize = 0;
        loop {
            let Some(&op) = ops.get(pc) else {
                return 0;
            };
            pc += 1;
            match op {
                Op::LdW(off) => match load_w(packet, off) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::LdH(off) => match load_h(packet, off) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::LdB(off) => match load_b(packet, off) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::LdIndW(k) => match map_offset(x.wrapping_add(k) as i32) {
                    Some(off) => match load_w(packet, off) {
                        Some(v) => a = v,
                        None => return 0,
                    },
                    None => return 0,
                },
                Op::LdIndH(k) => match map_offset(x.wrapping_add(k) as i32) {
                    Some(off) => match load_h(packet, off) {
                        Some(v) => a = v,
                        None => return 0,
                    },
                    None => return 0,
                },
                Op::LdIndB(k) => match map_offset(x.wrapping_add(k) as i32) {
                    Some(off) => match load_b(packet, off) {
                        Some(v) => a = v,
                        None => return 0,
                    },
                    None => return 0,
                },
                Op::LdxMsh(off) => match load_b(packet, off) {
                    Some(v) => x = (v & 0xf) << 2,
                    None => return 0,
                },
                Op::Fail => return 0,
                Op::LdImm(k) => a = k,
                Op::LdxImm(k) => x = k,
                Op::LdLen => a = packet.len() as u32,
                Op::LdxLen => x = packet.len() as u32,
                Op::LdMem(i) => a = mem[(i & 15) as usize],
                Op::LdxMem(i) => x = mem[(i & 15) as usize],
                Op::St(i) => mem[(i & 15) as usize] = a,
                Op::Stx(i) => mem[(i & 15) as usize] = x,
                Op::AddK(k) => a = a.wrapping_add(k),
                Op::SubK(k) => a = a.wrapping_sub(k),
                Op::MulK(k) => a = a.wrapping_mul(k),
                Op::DivK(k) => match a.checked_div(k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::ModK(k) => match a.checked_rem(k) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::AndK(k) => a &= k,
                Op::OrK(k) => a |= k,
                Op::XorK(k) => a ^= k,
                Op::LshK(k) => a = a.wrapping_shl(k),
                Op::RshK(k) => a = a.wrapping_shr(k),
                Op::AddX => a = a.wrapping_add(x),
                Op::SubX => a = a.wrapping_sub(x),
                Op::MulX => a = a.wrapping_mul(x),
                Op::DivX => match a.checked_div(x) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::ModX => match a.checked_rem(x) {
                    Some(v) => a = v,
                    None => return 0,
                },
                Op::AndX => a &= x,
                Op::OrX => a |= x,
                Op::XorX => a ^= x,
                // wrapping_shl/shr use the count modulo 32, like x86.
                Op::LshX => a = a.wrapping_shl(x),
                Op::RshX => a = a.wrapping_shr(x),
                Op::Neg => a = a.wrapping_neg(),
                Op::Ja(t) => pc = t as usize,
                Op::JeqK(k, t, f) => pc = if a == k { t } else { f } as usize,
                Op::JgtK(k, t, f) => pc = if a > k { t } else { f } as usize,
                Op::JgeK(k, t, f) => pc = if a >= k { t } else { f } as usize,
                Op::JsetK(k, t, f) => pc = if a & k != 0 { t } else { f } as usize,
                Op::JeqX(t, f) => pc = if a == x { t } else { f } as usize,
                Op::JgtX(t, f) => pc = if a > x { t } else { f } as usize,
                Op::JgeX(t, f) => pc = if a >= x { t } else { f } as usize,
                Op::JsetX(t, f) => pc = if a & x != 0 { t } else { f } as usize,
                Op::RetK(k) => return k,
                Op::RetA => return a,
                Op::Tax => x = a,
                Op::Txa => a = x,
                Op::NlAttr => a = nlattr(packet, a, x),
                Op::NlAttrNest => a = nlattr_nest(packet, a, x),
            }
        }
    }

    /// What a receiver gets: `None` if the datagram is dropped, otherwise
    /// the number of leading payload bytes delivered, `min(len, k)` for the
    /// program's return value k. Measured kernel behaviour: a datagram is
    /// truncated to k bytes when 0 < k < len (and `recv(MSG_TRUNC)` then
    /// reports k); a zero-length datagram is delivered, empty, for any
    /// k > 0, and dropped for k = 0.
    pub fn accepted_len(&self, packet: &[u8]) -> Option<usize> {
        match self.run(packet) {
            0 => None,
            k => Some(packet.len().min(k as usize)),
        }
    }
}

/// `sizeof` the kernel's `struct bpf_prog` header before its instructions
/// (`offsetof(struct bpf_prog, insns)`), as measured on Linux 6.18 x86_64.
pub const KERNEL_BPF_PROG_HEADER: usize = 96;

#[inline]
fn load_w(p: &[u8], off: u32) -> Option<u32> {
    let off = off as usize;
    let b = p.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline]
fn load_h(p: &[u8], off: u32) -> Option<u32> {
    let off = off as usize;
    let b = p.get(off..off.checked_add(2)?)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

#[inline]
fn load_b(p: &[u8], off: u32) -> Option<u32> {
    p.get(off as usize).map(|&b| u32::from(b))
}

/// Netlink attribute header: `nla_len` and `nla_type`, host byte order.
fn nla_at(p: &[u8], off: usize) -> Option<(u16, u16)> {
    let b = p.get(off..off.checked_add(4)?)?;
    Some((u16::from_ne_bytes([b[0], b[1]]), u16::from_ne_bytes([b[2], b[3]])))
}

/// `nla_find(p + start, len, attrtype)`: offset (from the payload start) of
/// the first attribute of that type, or 0.
fn nla_find(p: &[u8], start: usize, len: i64, attrtype: u32) -> u32 {
    const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);
    let mut pos = start;
    let mut rem = len;
    loop {
        // nla_ok()
        if rem < 4 {
            return 0;
        }
        let Some((nla_len, nla_type)) = nla_at(p, pos) else {
            return 0;
        };
        if nla_len < 4 || i64::from(nla_len) > rem {
            return 0;
        }
        if u32::from(nla_type & NLA_TYPE_MASK) == attrtype {
            return pos as u32;
        }
        // nla_next()
        let total = (usize::from(nla_len) + 3) & !3;
        pos += total;
        rem -= total as i64;
    }
}

/// `bpf_skb_get_nlattr(skb, A, X)`.
fn nlattr(p: &[u8], a: u32, x: u32) -> u32 {
    let len = p.len();
    if !(4..=UNIX_DGRAM_LINEAR_MAX).contains(&len) || a as usize > len - 4 {
        return 0;
    }
    nla_find(p, a as usize, (len - a as usize) as i64, x)
}

/// `bpf_skb_get_nlattr_nest(skb, A, X)`.
fn nlattr_nest(p: &[u8], a: u32, x: u32) -> u32 {
    let len = p.len();
    if !(4..=UNIX_DGRAM_LINEAR_MAX).contains(&len) || a as usize > len - 4 {
        return 0;
    }
    let a = a as usize;
    let Some((nla_len, _)) = nla_at(p, a) else {
        return 0;
    };
    // nla_ok(nla, skb->len - a)
    let rem = (len - a) as i64;
    if nla_len < 4 || i64::from(nla_len) > rem {
        return 0;
    }
    nla_find(p, a + 4, i64::from(nla_len) - 4, x)
}

impl fmt::Display for SockFilter {
    /// tcpdump-like disassembly (without the instruction's address).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.code;
        let k = self.k;
        let src = |f: &mut fmt::Formatter<'_>| {
            if code_src(c) == BPF_X {
                write!(f, "x")
            } else {
                write!(f, "#{k:#x}")
            }
        };
        let sz = match code_size(c) {
            BPF_W => "",
            BPF_H => "h",
            BPF_B => "b",
            _ => "?",
        };
        let koff = |k: u32| -> String {
            let s = k as i32;
            if ancillary(self).is_some() {
                let n = s - SKF_AD_OFF;
                let name = match n {
                    SKF_AD_PROTOCOL => "proto",
                    SKF_AD_PKTTYPE => "type",
                    SKF_AD_IFINDEX => "ifidx",
                    SKF_AD_NLATTR => "nla",
                    SKF_AD_NLATTR_NEST => "nlan",
                    SKF_AD_MARK => "mark",
                    SKF_AD_QUEUE => "queue",
                    SKF_AD_HATYPE => "hatype",
                    SKF_AD_RXHASH => "rxhash",
                    SKF_AD_CPU => "cpu",
                    SKF_AD_ALU_XOR_X => "xor_x",
                    SKF_AD_VLAN_TAG => "vlan_tci",
                    SKF_AD_VLAN_TAG_PRESENT => "vlan_avail",
                    SKF_AD_PAY_OFFSET => "poff",
                    SKF_AD_RANDOM => "rand",
                    SKF_AD_VLAN_TPID => "vlan_tpid",
                    _ => "?",
                };
                format!("#{name}")
            } else if (SKF_LL_OFF..0).contains(&s) {
                if s >= SKF_NET_OFF {
                    format!("net+{}", s - SKF_NET_OFF)
                } else {
                    format!("ll+{}", s - SKF_LL_OFF)
                }
            } else if s < 0 {
                format!("{s}")
            } else {
                format!("{k}")
            }
        };
        let jmp = |f: &mut fmt::Formatter<'_>, name: &str| {
            write!(f, "{name} ")?;
            src(f)?;
            write!(f, " jt {} jf {}", self.jt, self.jf)
        };
        match code_class(c) {
            _ if !code_allowed(c) => write!(f, "unknown code={c:#06x} jt={} jf={} k={k:#x}", self.jt, self.jf),
            BPF_LD => match code_mode(c) {
                BPF_IMM => write!(f, "ld #{k:#x}"),
                BPF_ABS => write!(f, "ld{sz} [{}]", koff(k)),
                BPF_IND => write!(f, "ld{sz} [x + {}]", k as i32),
                BPF_MEM => write!(f, "ld M[{k}]"),
                BPF_LEN => write!(f, "ld #len"),
                _ => write!(f, "ld ?"),
            },
            BPF_LDX => match code_mode(c) {
                BPF_IMM => write!(f, "ldx #{k:#x}"),
                BPF_MEM => write!(f, "ldx M[{k}]"),
                BPF_LEN => write!(f, "ldx #len"),
                BPF_MSH => write!(f, "ldxb 4*([{}]&0xf)", koff(k)),
                _ => write!(f, "ldx ?"),
            },
            BPF_ST => write!(f, "st M[{k}]"),
            BPF_STX => write!(f, "stx M[{k}]"),
            BPF_ALU => {
                let name = match code_op(c) {
                    BPF_ADD => "add",
                    BPF_SUB => "sub",
                    BPF_MUL => "mul",
                    BPF_DIV => "div",
                    BPF_MOD => "mod",
                    BPF_AND => "and",
                    BPF_OR => "or",
                    BPF_XOR => "xor",
                    BPF_LSH => "lsh",
                    BPF_RSH => "rsh",
                    BPF_NEG => return write!(f, "neg"),
                    _ => "?",
                };
                write!(f, "{name} ")?;
                src(f)
            }
            BPF_JMP => match code_op(c) {
                BPF_JA => write!(f, "ja +{k}"),
                BPF_JEQ => jmp(f, "jeq"),
                BPF_JGT => jmp(f, "jgt"),
                BPF_JGE => jmp(f, "jge"),
                BPF_JSET => jmp(f, "jset"),
                _ => write!(f, "j?"),
            },
            BPF_RET => {
                if c == BPF_RET | BPF_A {
                    write!(f, "ret a")
                } else {
                    write!(f, "ret #{k:#x}")
                }
            }
            _ => {
                if c == BPF_MISC | BPF_TAX {
                    write!(f, "tax")
                } else {
                    write!(f, "txa")
                }
            }
        }
    }
}

/// Disassembles a program, one numbered instruction per line, each also
/// shown raw as `{code, jt, jf, k}`.
pub fn disassemble(insns: &[SockFilter]) -> String {
    let mut s = String::new();
    for (i, f) in insns.iter().enumerate() {
        s.push_str(&format!(
            "({i:03}) {:<32} {{ {:#06x}, {}, {}, {:#010x} }}\n",
            f.to_string(),
            f.code,
            f.jt,
            f.jf,
            f.k
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(code: u16, k: u32) -> SockFilter {
        SockFilter::stmt(code, k)
    }
    fn j(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
        SockFilter::jump(code, k, jt, jf)
    }
    fn ret(k: u32) -> SockFilter {
        s(BPF_RET | BPF_K, k)
    }
    fn ret_a() -> SockFilter {
        s(BPF_RET | BPF_A, 0)
    }
    fn run(insns: &[SockFilter], pkt: &[u8]) -> u32 {
        Program::new(insns).unwrap_or_else(|e| panic!("refused: {e:?}\n{}", disassemble(insns))).run(pkt)
    }
    fn refused(insns: &[SockFilter]) -> bool {
        Program::new(insns) == Err(Errno::EINVAL)
    }
    /// `A = a; X = x; <op>; ret a`
    fn alu(op: u16, a: u32, x: u32) -> u32 {
        run(&[s(BPF_LD | BPF_IMM, a), s(BPF_LDX | BPF_IMM, x), s(BPF_ALU | op, x), ret_a()], &[])
    }
    const PKT: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];

    #[test]
    fn layout_matches_kernel() {
        assert_eq!(core::mem::size_of::<SockFilter>(), 8);
        assert_eq!(core::mem::align_of::<SockFilter>(), 4);
        let f = SockFilter::jump(0x1234, 0xdead_beef, 0x56, 0x78);
        // SAFETY: SockFilter is repr(C), 8 bytes, no padding.
        let bytes: [u8; 8] = unsafe { core::mem::transmute(f) };
        assert_eq!(bytes[..2], 0x1234u16.to_ne_bytes());
        assert_eq!(bytes[2], 0x56);
        assert_eq!(bytes[3], 0x78);
        assert_eq!(bytes[4..], 0xdead_beefu32.to_ne_bytes());
        assert_eq!(libc::SO_ATTACH_FILTER, 26);
    }

    #[test]
    fn returns() {
        assert_eq!(run(&[ret(0)], &PKT), 0);
        assert_eq!(run(&[ret(0xffff_ffff)], &PKT), 0xffff_ffff);
        assert_eq!(run(&[ret_a()], &PKT), 0);
        assert_eq!(run(&[s(BPF_LD | BPF_IMM, 42), ret_a()], &PKT), 42);
    }

    #[test]
    fn absolute_loads_are_big_endian() {
        let ld = |size, k| run(&[s(BPF_LD | size | BPF_ABS, k), ret_a()], &PKT);
        assert_eq!(ld(BPF_W, 0), 0x1234_5678);
        assert_eq!(ld(BPF_W, 4), 0x9abc_def0);
        assert_eq!(ld(BPF_W, 1), 0x3456_789a);
        assert_eq!(ld(BPF_H, 6), 0xdef0);
        assert_eq!(ld(BPF_B, 7), 0xf0);
        // Out of bounds: the program ends returning 0.
        assert_eq!(ld(BPF_W, 5), 0);
        assert_eq!(ld(BPF_H, 7), 0);
        assert_eq!(ld(BPF_B, 8), 0);
        assert_eq!(ld(BPF_W, 0x7fff_ffff), 0);
        assert_eq!(ld(BPF_B, 0x8000_0000), 0);
        assert_eq!(run(&[s(BPF_LD | BPF_W | BPF_ABS, 6), ret(77)], &PKT), 0, "a failed load drops whatever follows");
        assert_eq!(run(&[s(BPF_LD | BPF_B | BPF_ABS, 0), ret(77)], &[]), 0);
    }

    #[test]
    fn negative_offsets() {
        let ld = |size, k: i32| run(&[s(BPF_LD | size | BPF_ABS, k as u32), ret_a()], &PKT);
        assert_eq!(ld(BPF_B, SKF_NET_OFF), 0x12);
        assert_eq!(ld(BPF_H, SKF_NET_OFF + 2), 0x5678);
        assert_eq!(ld(BPF_W, SKF_NET_OFF + 5), 0);
        assert_eq!(ld(BPF_B, SKF_LL_OFF), 0);
        assert_eq!(ld(BPF_B, SKF_LL_OFF + 1), 0);
        assert_eq!(ld(BPF_B, SKF_LL_OFF - 1), 0);
        assert_eq!(ld(BPF_B, i32::MIN), 0);
        // Just below the ancillary area: SKF_NET_OFF + 0xfefff, out of range.
        assert_eq!(ld(BPF_B, SKF_AD_OFF - 1), 0);
        // In the ancillary area but unknown: refused.
        assert!(refused(&[s(BPF_LD | BPF_B | BPF_ABS, u32::MAX), ret_a()]));
        assert!(refused(&[s(BPF_LD | BPF_B | BPF_ABS, skf_ad(2)), ret_a()]));
        assert!(refused(&[s(BPF_LD | BPF_B | BPF_ABS, skf_ad(SKF_AD_MAX)), ret_a()]));
    }

    #[test]
    fn indirect_loads() {
        let ld = |size, x: u32, k: u32| run(&[s(BPF_LDX | BPF_IMM, x), s(BPF_LD | size | BPF_IND, k), ret_a()], &PKT);
        assert_eq!(ld(BPF_W, 1, 3), 0x9abc_def0);
        assert_eq!(ld(BPF_H, 0, 1), 0x3456);
        assert_eq!(ld(BPF_B, 7, 0), 0xf0);
        assert_eq!(ld(BPF_B, 8, 0), 0);
        // x + k wraps modulo 2^32.
        assert_eq!(ld(BPF_B, 0xffff_ffff, 3), 0x56);
        assert_eq!(ld(BPF_B, 3, 0xffff_ffff), 0x56);
        // ... and a negative sum is a negative offset.
        assert_eq!(ld(BPF_B, 2, 0xffff_ffff), 0x34);
        assert_eq!(ld(BPF_B, 0, 0xffff_ffff), 0);
        assert_eq!(ld(BPF_B, SKF_NET_OFF as u32, 6), 0xde);
        assert_eq!(ld(BPF_B, SKF_LL_OFF as u32, 6), 0);
        // IND loads in the ancillary area are plain (failing) loads.
        assert_eq!(ld(BPF_W, 0, skf_ad(SKF_AD_PROTOCOL)), 0);
    }

    #[test]
    fn msh() {
        let msh = |k: u32| {
            run(
                &[s(BPF_LD | BPF_IMM, 0x55), s(BPF_LDX | BPF_B | BPF_MSH, k), s(BPF_ALU | BPF_ADD | BPF_X, 0), ret_a()],
                &PKT,
            )
        };
        // A is kept; X = 4 * (P[k] & 0xf).
        assert_eq!(msh(0), 0x55 + 4 * 2);
        assert_eq!(msh(7), 0x55);
        assert_eq!(msh(5), 0x55 + 4 * 0xc);
        assert_eq!(msh(8), 0);
        assert_eq!(msh(SKF_NET_OFF as u32 + 3), 0x55 + 4 * 8);
        assert_eq!(msh(SKF_LL_OFF as u32), 0);
    }

    #[test]
    fn immediate_len_and_misc() {
        assert_eq!(run(&[s(BPF_LD | BPF_W | BPF_LEN, 0), ret_a()], &PKT), 8);
        assert_eq!(run(&[s(BPF_LD | BPF_W | BPF_LEN, 0), ret_a()], &[]), 0);
        assert_eq!(run(&[s(BPF_LDX | BPF_W | BPF_LEN, 0), s(BPF_MISC | BPF_TXA, 0), ret_a()], &PKT[..3]), 3);
        assert_eq!(
            run(
                &[
                    s(BPF_LD | BPF_IMM, 9),
                    s(BPF_MISC | BPF_TAX, 0),
                    s(BPF_LD | BPF_IMM, 1),
                    s(BPF_ALU | BPF_ADD | BPF_X, 0),
                    ret_a()
                ],
                &[]
            ),
            10
        );
    }

    #[test]
    fn scratch_memory() {
        let p = [
            s(BPF_LD | BPF_IMM, 11),
            s(BPF_ST, 15),
            s(BPF_LDX | BPF_IMM, 22),
            s(BPF_STX, 0),
            s(BPF_LD | BPF_MEM, 0),
            s(BPF_LDX | BPF_MEM, 15),
            s(BPF_ALU | BPF_MUL | BPF_X, 0),
            ret_a(),
        ];
        assert_eq!(run(&p, &[]), 242);
        // Index >= 16.
        for code in [BPF_ST, BPF_STX] {
            assert!(refused(&[s(code, 16), ret(1)]));
            assert!(!refused(&[s(code, 15), ret(1)]));
        }
        for code in [BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM] {
            assert!(refused(&[s(BPF_ST, 16), s(code, 16), ret(1)]));
            assert!(refused(&[s(code, 0), ret(1)]), "read before write");
            assert!(refused(&[s(BPF_ST, 1), s(code, 0), ret(1)]));
            assert!(!refused(&[s(BPF_STX, 0), s(code, 0), ret(1)]));
        }
    }

    #[test]
    fn load_and_store_check_follows_the_kernel() {
        let ld0 = s(BPF_LD | BPF_MEM, 0);
        // Written on one branch only.
        assert!(refused(&[j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), s(BPF_ST, 0), ld0, ret_a(),]));
        // Written on both branches.
        assert!(!refused(&[
            j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
            s(BPF_ST, 0),
            j(BPF_JMP | BPF_JA, 1, 0, 0),
            s(BPF_STX, 0),
            ld0,
            ret_a(),
        ]));
        // Written before the branch.
        assert!(!refused(&[
            s(BPF_ST, 0),
            j(BPF_JMP | BPF_JSET | BPF_X, 0, 1, 0),
            s(BPF_LD | BPF_IMM, 1),
            ld0,
            ret_a(),
        ]));
        // A jump over the store.
        assert!(refused(&[j(BPF_JMP | BPF_JA, 1, 0, 0), s(BPF_ST, 0), ld0, ret_a(),]));
        // The kernel lets the state after a `ret` flow into the next
        // (unreachable) instruction.
        assert!(!refused(&[s(BPF_ST, 0), ret(1), ld0, ret_a()]));
        // ... and still requires a write on every jump into it.
        assert!(refused(&[j(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0), s(BPF_ST, 0), ret(1), ld0, ret_a(),]));
    }

    #[test]
    fn alu_with_constants_and_x() {
        let ops: [(u16, fn(u32, u32) -> u32); 10] = [
            (BPF_ADD, |a, x| a.wrapping_add(x)),
            (BPF_SUB, |a, x| a.wrapping_sub(x)),
            (BPF_MUL, |a, x| a.wrapping_mul(x)),
            (BPF_DIV, |a, x| a / x),
            (BPF_MOD, |a, x| a % x),
            (BPF_AND, |a, x| a & x),
            (BPF_OR, |a, x| a | x),
            (BPF_XOR, |a, x| a ^ x),
            (BPF_LSH, |a, x| a << x),
            (BPF_RSH, |a, x| a >> x),
        ];
        for (op, f) in ops {
            for (a, x) in [(0x8765_4321u32, 1u32), (0xffff_ffff, 7), (5, 31), (123_456_789, 3)] {
                let want = f(a, x);
                assert_eq!(alu(op | BPF_X, a, x), want, "op {op:#x} x");
                assert_eq!(alu(op | BPF_K, a, x), want, "op {op:#x} k");
            }
        }
        // Wrapping.
        assert_eq!(alu(BPF_ADD | BPF_K, 0xffff_ffff, 2), 1);
        assert_eq!(alu(BPF_SUB | BPF_K, 1, 2), 0xffff_ffff);
        assert_eq!(alu(BPF_MUL | BPF_K, 0x8000_0001, 2), 2);
        assert_eq!(alu(BPF_NEG, 1, 0), 0xffff_ffff);
        assert_eq!(alu(BPF_NEG, 0x8000_0000, 0), 0x8000_0000);
        assert_eq!(alu(BPF_NEG, 0, 0), 0);
    }

    #[test]
    fn shifts_by_x_use_the_low_five_bits() {
        assert_eq!(alu(BPF_LSH | BPF_X, 3, 32), 3);
        assert_eq!(alu(BPF_LSH | BPF_X, 3, 33), 6);
        assert_eq!(alu(BPF_RSH | BPF_X, 0x8000_0000, 63), 1);
        assert_eq!(alu(BPF_RSH | BPF_X, 0x8000_0000, 0xffff_ffff), 1);
        // By a constant >= 32: refused.
        for op in [BPF_LSH, BPF_RSH] {
            assert!(refused(&[s(BPF_ALU | op | BPF_K, 32), ret_a()]));
            assert!(refused(&[s(BPF_ALU | op | BPF_K, u32::MAX), ret_a()]));
            assert!(!refused(&[s(BPF_ALU | op | BPF_K, 31), ret_a()]));
        }
    }

    #[test]
    fn division_by_zero() {
        // By X == 0 at run time: the program returns 0.
        for op in [BPF_DIV, BPF_MOD] {
            assert_eq!(run(&[s(BPF_LD | BPF_IMM, 5), s(BPF_ALU | op | BPF_X, 0), ret(9)], &PKT), 0);
            // By the constant 0: refused.
            assert!(refused(&[s(BPF_ALU | op | BPF_K, 0), ret(9)]));
        }
        assert_eq!(alu(BPF_DIV | BPF_X, 0xffff_ffff, 0xffff_ffff), 1);
        assert_eq!(alu(BPF_MOD | BPF_X, 7, 0xffff_ffff), 7);
    }

    #[test]
    fn jumps() {
        let jmp = |op: u16, a: u32, k: u32| {
            let kv = run(&[s(BPF_LD | BPF_IMM, a), j(BPF_JMP | op | BPF_K, k, 1, 0), ret(10), ret(20)], &[]);
            let xv = run(
                &[s(BPF_LD | BPF_IMM, a), s(BPF_LDX | BPF_IMM, k), j(BPF_JMP | op | BPF_X, 0, 1, 0), ret(10), ret(20)],
                &[],
            );
            assert_eq!(kv, xv, "op {op:#x} a {a} k {k}");
            kv == 20
        };
        assert!(jmp(BPF_JEQ, 5, 5));
        assert!(!jmp(BPF_JEQ, 5, 6));
        assert!(jmp(BPF_JGT, 0xffff_ffff, 0x7fff_ffff), "unsigned");
        assert!(!jmp(BPF_JGT, 5, 5));
        assert!(jmp(BPF_JGE, 5, 5));
        assert!(!jmp(BPF_JGE, 4, 5));
        assert!(jmp(BPF_JSET, 6, 2));
        assert!(!jmp(BPF_JSET, 6, 9));
        // ja
        assert_eq!(run(&[j(BPF_JMP | BPF_JA, 1, 0, 0), ret(1), ret(2)], &[]), 2);
        assert_eq!(run(&[j(BPF_JMP | BPF_JA, 0, 7, 7), ret(1), ret(2)], &[]), 1, "ja ignores jt/jf");
        // Both branches taken into account.
        let p = [
            s(BPF_LD | BPF_W | BPF_LEN, 0),
            j(BPF_JMP | BPF_JGT | BPF_K, 3, 2, 0),
            j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
            ret(100),
            ret(200),
            ret(300),
        ];
        assert_eq!(run(&p, &PKT), 200);
        assert_eq!(run(&p, &[]), 100);
        assert_eq!(run(&p, &PKT[..2]), 300);
    }

    #[test]
    fn jump_ranges() {
        assert!(refused(&[j(BPF_JMP | BPF_JA, 1, 0, 0), ret(1)]));
        assert!(refused(&[j(BPF_JMP | BPF_JA, u32::MAX, 0, 0), ret(1)]));
        assert!(!refused(&[j(BPF_JMP | BPF_JA, 0, 0, 0), ret(1)]));
        for op in [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET] {
            for src in [BPF_K, BPF_X] {
                let c = BPF_JMP | op | src;
                assert!(!refused(&[j(c, 0, 1, 0), ret(1), ret(2)]));
                assert!(refused(&[j(c, 0, 2, 0), ret(1), ret(2)]));
                assert!(refused(&[j(c, 0, 0, 2), ret(1), ret(2)]));
                assert!(refused(&[j(c, 0, 255, 255), ret(1), ret(2)]));
            }
        }
    }

    #[test]
    fn program_shape() {
        assert!(refused(&[]));
        assert!(!refused(&vec![ret(1); BPF_MAXINSNS]));
        assert!(refused(&vec![ret(1); BPF_MAXINSNS + 1]));
        assert!(refused(&[s(BPF_LD | BPF_IMM, 1)]));
        assert!(refused(&[ret(1), s(BPF_MISC | BPF_TAX, 0)]));
        assert!(refused(&[ret(1), j(BPF_JMP | BPF_JA, 0, 0, 0)]));
    }

    #[test]
    fn exact_opcodes_only() {
        let mut allowed = 0;
        for code in 0..=u16::MAX {
            // k = 1 keeps divisions, shifts, jumps and M[1] valid.
            let ok = Program::new(&[s(BPF_ST, 1), s(code, 1), ret_a(), ret_a()]).is_ok();
            if ok {
                allowed += 1;
            }
            assert_eq!(code_allowed(code), ok, "code {code:#06x}");
        }
        // 49 opcodes; `ld [1]` etc. are all valid with k = 1.
        assert_eq!(allowed, 49);
        // Some near misses.
        for code in [
            BPF_RET | BPF_X,
            BPF_RET | BPF_A | BPF_X,
            BPF_ALU | BPF_NEG | BPF_X,
            BPF_LD | BPF_H | BPF_IMM,
            BPF_LD | BPF_B | BPF_LEN,
            BPF_LDX | BPF_W | BPF_ABS,
            BPF_LDX | BPF_W | BPF_MSH,
            BPF_ST | BPF_B,
            BPF_MISC | BPF_TAX | BPF_X,
            BPF_JMP | BPF_JA | BPF_X,
            BPF_JMP | 0x50,
            BPF_ALU | 0xb0,
            0x100 | BPF_RET,
        ] {
            assert!(refused(&[s(code, 1), ret_a()]), "code {code:#06x}");
        }
    }

    #[test]
    fn ancillary_loads() {
        let anc = |n: i32, size: u16| {
            run(
                &[
                    s(BPF_LD | BPF_IMM, 0x1234),
                    s(BPF_LDX | BPF_IMM, 0xff),
                    s(BPF_LD | size | BPF_ABS, skf_ad(n)),
                    s(BPF_ALU | BPF_ADD | BPF_K, 1_000_000),
                    ret_a(),
                ],
                &PKT,
            )
        };
        for size in [BPF_W, BPF_H, BPF_B] {
            for n in [
                SKF_AD_PROTOCOL,
                SKF_AD_PKTTYPE,
                SKF_AD_MARK,
                SKF_AD_QUEUE,
                SKF_AD_RXHASH,
                SKF_AD_VLAN_TAG,
                SKF_AD_VLAN_TAG_PRESENT,
                SKF_AD_PAY_OFFSET,
                SKF_AD_VLAN_TPID,
            ] {
                assert_eq!(anc(n, size), 1_000_000, "ancillary {n}");
            }
            // No device: the program ends, returning A.
            assert_eq!(anc(SKF_AD_IFINDEX, size), 0x1234);
            assert_eq!(anc(SKF_AD_HATYPE, size), 0x1234);
            assert_eq!(anc(SKF_AD_ALU_XOR_X, size), 1_000_000 + (0x1234 ^ 0xff));
            for n in [SKF_AD_CPU, SKF_AD_RANDOM] {
                assert!(refused(&[s(BPF_LD | size | BPF_ABS, skf_ad(n)), ret_a()]));
            }
            for n in [1, 2, 3, 5, SKF_AD_MAX, SKF_AD_MAX + 4, 0xffc, 0xfff] {
                assert!(refused(&[s(BPF_LD | size | BPF_ABS, skf_ad(n)), ret_a()]));
            }
        }
    }

    fn nla(len: u16, ty: u16) -> [u8; 4] {
        let l = len.to_ne_bytes();
        let t = ty.to_ne_bytes();
        [l[0], l[1], t[0], t[1]]
    }

    #[test]
    fn netlink_attributes() {
        // [len 6 type 1 + 2 bytes + 2 pad][len 12 type 2 nested: [len 8 type 7 + 4]][len 4 type 0x8003]
        let mut p = Vec::new();
        p.extend_from_slice(&nla(6, 1));
        p.extend_from_slice(&[0xaa, 0xbb, 0, 0]);
        p.extend_from_slice(&nla(12, 2));
        p.extend_from_slice(&nla(8, 7));
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(&nla(4, 0x8003));
        let find = |n: i32, a: u32, x: u32, pkt: &[u8]| {
            run(
                &[s(BPF_LD | BPF_IMM, a), s(BPF_LDX | BPF_IMM, x), s(BPF_LD | BPF_W | BPF_ABS, skf_ad(n)), ret_a()],
                pkt,
            )
        };
        assert_eq!(find(SKF_AD_NLATTR, 0, 1, &p), 0);
        assert_eq!(find(SKF_AD_NLATTR, 0, 2, &p), 8);
        assert_eq!(find(SKF_AD_NLATTR, 0, 3, &p), 20, "type flags are masked");
        assert_eq!(find(SKF_AD_NLATTR, 0, 7, &p), 0);
        assert_eq!(find(SKF_AD_NLATTR, 8, 3, &p), 20);
        assert_eq!(find(SKF_AD_NLATTR, 21, 3, &p), 0, "A past len - 4");
        assert_eq!(find(SKF_AD_NLATTR, 0, 0x8003, &p), 0);
        assert_eq!(find(SKF_AD_NLATTR_NEST, 8, 7, &p), 12);
        assert_eq!(find(SKF_AD_NLATTR_NEST, 8, 2, &p), 0);
        assert_eq!(find(SKF_AD_NLATTR_NEST, 0, 7, &p), 0);
        // An attribute longer than the rest stops the walk.
        let mut bad = p.clone();
        bad[8..12].copy_from_slice(&nla(200, 2));
        assert_eq!(find(SKF_AD_NLATTR, 0, 2, &bad), 0);
        assert_eq!(find(SKF_AD_NLATTR, 0, 3, &bad), 0);
        assert_eq!(find(SKF_AD_NLATTR, 0, 1, &p[..3]), 0);
        // A non-linear (long) datagram: always 0.
        let mut long = p.clone();
        long.resize(UNIX_DGRAM_LINEAR_MAX, 0);
        assert_eq!(find(SKF_AD_NLATTR, 0, 2, &long), 8);
        long.push(0);
        assert_eq!(find(SKF_AD_NLATTR, 0, 2, &long), 0);
        assert_eq!(find(SKF_AD_NLATTR_NEST, 8, 7, &long), 0);
    }

    #[test]
    fn accepted_len() {
        let p = |k| Program::new(&[ret(k)]).unwrap();
        assert_eq!(p(0).accepted_len(&PKT), None);
        assert_eq!(p(1).accepted_len(&PKT), Some(1));
        assert_eq!(p(3).accepted_len(&PKT), Some(3));
        assert_eq!(p(8).accepted_len(&PKT), Some(8));
        assert_eq!(p(u32::MAX).accepted_len(&PKT), Some(8));
        assert_eq!(p(0).accepted_len(&[]), None);
        assert_eq!(p(1).accepted_len(&[]), Some(0));
    }

    #[test]
    fn ebpf_len_and_conversion_limits() {
        assert_eq!(Program::new(&[ret(0)]).unwrap().ebpf_len(), 5);
        assert_eq!(Program::new(&[ret_a()]).unwrap().ebpf_len(), 4);
        // Prologue 7 (packet access) + ldb [1] 13 + ret a 1.
        assert_eq!(Program::new(&[s(BPF_LD | BPF_B | BPF_ABS, 1), ret_a()]).unwrap().ebpf_len(), 21);
        // 7 + 9 * n + jeq 1 + 2 x ret #k.
        let late_jump = |n: usize| {
            let mut p = vec![s(BPF_LD | BPF_B | BPF_IND, 1); n];
            p.extend([j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), ret(3), ret(4)]);
            Program::new(&p)
        };
        assert_eq!(late_jump(3640).unwrap().ebpf_len(), 7 + 9 * 3640 + 1 + 4);
        assert_eq!(late_jump(3641), Err(Errno::EINVAL));
        let long_jump = |n: usize| {
            let mut p = vec![j(BPF_JMP | BPF_JA, n as u32, 0, 0)];
            p.extend(std::iter::repeat(s(BPF_LD | BPF_B | BPF_IND, 1)).take(n));
            p.push(ret(3));
            Program::new(&p)
        };
        assert!(long_jump(3640).is_ok());
        assert_eq!(long_jump(3641), Err(Errno::EINVAL));
        let p = Program::new(&[ret(0)]).unwrap();
        assert_eq!(p.kernel_charge(), KERNEL_BPF_PROG_HEADER + 40);
        assert_eq!(p.insns(), &[ret(0)]);
    }

    /// Deterministic random programs: whatever validates must run without
    /// panicking on any packet, and disassembly must not panic either.
    #[test]
    fn random_programs_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let codes = ALLOWED_CODES;
        let pkts: Vec<Vec<u8>> =
            [0usize, 1, 3, 4, 17, 64, 300].iter().map(|&n| (0..n).map(|i| (i * 7 + 3) as u8).collect()).collect();
        let mut valid = 0;
        for _ in 0..20_000 {
            let len = 1 + (next() % 12) as usize;
            let mut p: Vec<SockFilter> = (0..len)
                .map(|_| {
                    let r = next();
                    let code = if r % 16 == 0 { r as u16 } else { codes[(r >> 8) as usize % codes.len()] };
                    let k = match (r >> 20) % 4 {
                        0 => (r >> 32) as u32,
                        1 => (r >> 32) as u32 % 20,
                        2 => skf_ad((r >> 32) as i32 % 70),
                        _ => (SKF_NET_OFF as u32).wrapping_add((r >> 32) as u32 % 8),
                    };
                    SockFilter { code, jt: (r >> 40) as u8 % 4, jf: (r >> 48) as u8 % 4, k }
                })
                .collect();
            if next() % 4 != 0 {
                p.push(ret_a());
            }
            let _ = disassemble(&p);
            if let Ok(prog) = Program::new(&p) {
                valid += 1;
                for pkt in &pkts {
                    let k = prog.run(pkt);
                    let n = prog.accepted_len(pkt);
                    assert_eq!(n.is_none(), k == 0);
                }
            }
        }
        assert!(valid > 1000, "only {valid} valid programs");
    }

    #[test]
    fn disassembly() {
        let p = [
            s(BPF_LD | BPF_H | BPF_ABS, 12),
            j(BPF_JMP | BPF_JEQ | BPF_K, 0x800, 0, 1),
            s(BPF_LD | BPF_B | BPF_ABS, skf_ad(SKF_AD_PROTOCOL)),
            s(BPF_LDX | BPF_B | BPF_MSH, 14),
            s(BPF_LD | BPF_W | BPF_IND, 2),
            s(BPF_LD | BPF_B | BPF_ABS, (SKF_NET_OFF + 9) as u32),
            ret(0xffff),
        ];
        let d = disassemble(&p);
        for want in [
            "ldh [12]",
            "jeq #0x800 jt 0 jf 1",
            "ldb [#proto]",
            "ldxb 4*([14]&0xf)",
            "ld [x + 2]",
            "ldb [net+9]",
            "ret #0xffff",
        ] {
            assert!(d.contains(want), "{want:?} missing in\n{d}");
        }
    }
}
