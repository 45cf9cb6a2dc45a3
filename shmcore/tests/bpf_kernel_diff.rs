//! Differential test of `shmcore::bpf` against the running kernel.
//!
//! For every program of a corpus (hand-written edge cases, every refusal
//! rule, and thousands of random programs from a fixed-seed PRNG):
//! (a) `Program::new` must accept exactly when `setsockopt(SO_ATTACH_FILTER)`
//!     accepts on an `AF_UNIX` `SOCK_DGRAM` socket;
//! (b) for accepted programs, for each payload, what the kernel delivers over
//!     a `socketpair(AF_UNIX, SOCK_DGRAM)` whose receiving end has the filter
//!     (dropped, or n bytes with these contents) must equal what
//!     `Program::accepted_len` says.
//!
//! Known, intended differences: `SKF_AD_CPU` and `SKF_AD_RANDOM` are refused
//! by `Program::new` although the kernel accepts them. Programs the kernel
//! refuses with `ENOMEM` (option-memory limit) must be accepted by
//! `Program::new` and be exactly those whose `kernel_charge()` does not fit
//! below `net.core.optmem_max`.

use std::fmt::Write as _;
use std::time::Instant;

use shmcore::bpf::*;

// ---------------------------------------------------------------------------
// Kernel side.

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

struct Pair {
    tx: i32,
    rx: i32,
    buf: Vec<u8>,
}

impl Pair {
    fn new() -> Pair {
        let mut fds = [0i32; 2];
        // SAFETY: fds points to two writable ints.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
        Pair { tx: fds[0], rx: fds[1], buf: vec![0u8; 65536] }
    }

    /// Detaches any filter, then attaches `insns`; Err(errno) on refusal.
    fn attach(&self, insns: &[SockFilter]) -> Result<(), i32> {
        // The option value is ignored, but setsockopt refuses optlen < 4.
        // Detaching first keeps the old filter out of the option-memory
        // charge (the kernel charges the new one before releasing the old).
        let zero: libc::c_int = 0;
        // SAFETY: zero is a valid int.
        unsafe {
            libc::setsockopt(
                self.rx,
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                &zero as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let prog = SockFprog { len: insns.len() as u16, filter: insns.as_ptr() };
        // SAFETY: prog points to insns.len() valid instructions.
        let r = unsafe {
            libc::setsockopt(
                self.rx,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const SockFprog as *const libc::c_void,
                std::mem::size_of::<SockFprog>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }

    /// Sends `payload` and returns what the receiver gets (None: dropped).
    fn roundtrip(&mut self, payload: &[u8]) -> Option<&[u8]> {
        // SAFETY: payload is a valid buffer.
        let n =
            unsafe { libc::send(self.tx, payload.as_ptr() as *const libc::c_void, payload.len(), libc::MSG_DONTWAIT) };
        assert_eq!(n, payload.len() as isize, "send: {}", std::io::Error::last_os_error());
        // SAFETY: buf is a valid writable buffer.
        let n = unsafe {
            libc::recv(
                self.rx,
                self.buf.as_mut_ptr() as *mut libc::c_void,
                self.buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "recv: {e}");
            return None;
        }
        let n = n as usize;
        assert!(n <= self.buf.len(), "datagram larger than the test buffer");
        Some(&self.buf[..n])
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(self.tx);
            libc::close(self.rx);
        }
    }
}

fn optmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/optmem_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(131072)
}

// ---------------------------------------------------------------------------
// Deterministic PRNG (xorshift64*).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Comparison.

const PAYLOAD_LENS: [usize; 10] = [0, 1, 2, 3, 4, 5, 13, 64, 200, 1500];

fn hex(p: &[u8]) -> String {
    let mut s = String::new();
    for (i, b) in p.iter().enumerate() {
        if i == 64 {
            let _ = write!(s, "... ({} bytes)", p.len());
            break;
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[derive(Default)]
struct Stats {
    programs: usize,
    accepted: usize,
    refused_einval: usize,
    refused_enomem: usize,
    refused_ours_only: usize,
    runs: usize,
    dropped: usize,
    truncated: usize,
    failures: Vec<String>,
}

impl Stats {
    fn fail(&mut self, msg: String) {
        if self.failures.len() < 20 {
            self.failures.push(msg);
        }
    }
}

fn uses_unreproducible_ancillary(insns: &[SockFilter]) -> bool {
    insns.iter().any(|f| {
        (f.code == BPF_LD | BPF_W | BPF_ABS || f.code == BPF_LD | BPF_H | BPF_ABS || f.code == BPF_LD | BPF_B | BPF_ABS)
            && (f.k == skf_ad(SKF_AD_CPU) || f.k == skf_ad(SKF_AD_RANDOM))
    })
}

/// Checks one program against the kernel on `payloads`.
fn check_program(pair: &mut Pair, stats: &mut Stats, name: &str, insns: &[SockFilter], payloads: &[Vec<u8>]) {
    stats.programs += 1;
    let kernel = pair.attach(insns);
    let ours = Program::new(insns);
    let prog = match (kernel, ours) {
        (Ok(()), Ok(p)) => p,
        (Err(libc::EINVAL), Err(e)) if e == shmcore::Errno::EINVAL => {
            stats.refused_einval += 1;
            return;
        }
        (Ok(()), Err(e)) if e == shmcore::Errno::EINVAL && uses_unreproducible_ancillary(insns) => {
            stats.refused_ours_only += 1;
            return;
        }
        (Err(libc::ENOMEM), Ok(p)) => {
            stats.refused_enomem += 1;
            if p.kernel_charge() < optmem_max() {
                stats.fail(format!(
                    "{name}: kernel ENOMEM but kernel_charge() = {} < optmem_max {} \
                     (ebpf_len {})\n{}",
                    p.kernel_charge(),
                    optmem_max(),
                    p.ebpf_len(),
                    short_disasm(insns)
                ));
            }
            return;
        }
        (k, o) => {
            stats.fail(format!(
                "{name}: validation differs: kernel {:?}, Program::new {:?}\n{}",
                k.map_err(|e| std::io::Error::from_raw_os_error(e).to_string()),
                o.map(|_| ()),
                short_disasm(insns)
            ));
            return;
        }
    };
    stats.accepted += 1;
    if prog.kernel_charge() >= optmem_max() {
        stats.fail(format!(
            "{name}: kernel accepted but kernel_charge() = {} >= optmem_max {} (ebpf_len {})",
            prog.kernel_charge(),
            optmem_max(),
            prog.ebpf_len()
        ));
    }
    for payload in payloads {
        stats.runs += 1;
        let ours = prog.accepted_len(payload).map(|n| &payload[..n]);
        match ours {
            None => stats.dropped += 1,
            Some(d) if d.len() < payload.len() => stats.truncated += 1,
            Some(_) => {}
        }
        let kernel = pair.roundtrip(payload);
        if kernel != ours {
            let show = |r: Option<&[u8]>| match r {
                None => "dropped".to_string(),
                Some(d) => format!("{} bytes", d.len()),
            };
            let msg = format!(
                "{name}: result differs on a {}-byte payload: kernel {}, ours {} (run() = {:#x})\n\
                 payload: {}\n{}",
                payload.len(),
                show(kernel),
                show(ours),
                prog.run(payload),
                hex(payload),
                short_disasm(insns)
            );
            stats.fail(msg);
            return;
        }
    }
}

fn short_disasm(insns: &[SockFilter]) -> String {
    if insns.len() <= 64 {
        disassemble(insns)
    } else {
        let mut s = disassemble(&insns[..32]);
        let _ = writeln!(s, "... ({} instructions)", insns.len());
        s
    }
}

fn report(stats: &Stats, what: &str, started: Instant) {
    eprintln!(
        "{what}: {} programs ({} accepted, {} EINVAL both, {} ENOMEM kernel, {} refused by us only), \
         {} payload runs ({} dropped, {} truncated), {:.2?}",
        stats.programs,
        stats.accepted,
        stats.refused_einval,
        stats.refused_enomem,
        stats.refused_ours_only,
        stats.runs,
        stats.dropped,
        stats.truncated,
        started.elapsed()
    );
    if !stats.failures.is_empty() {
        panic!("{} mismatch(es) with the kernel (first ones):\n\n{}", stats.failures.len(), stats.failures.join("\n"));
    }
}

// ---------------------------------------------------------------------------
// Payloads.

fn random_payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    let style = rng.below(4);
    (0..len)
        .map(|_| match style {
            0 => rng.next() as u8,
            1 => rng.below(8) as u8,
            _ => {
                if rng.chance(50) {
                    rng.next() as u8
                } else {
                    rng.below(16) as u8
                }
            }
        })
        .collect()
}

fn payload_set(rng: &mut Rng) -> Vec<Vec<u8>> {
    PAYLOAD_LENS.iter().map(|&n| random_payload(rng, n)).collect()
}

/// A payload of netlink attributes (host byte order), for the NLATTR loads.
fn netlink_payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    while p.len() + 4 <= len {
        let room = len - p.len();
        let body = (rng.below(12) as usize).min(room - 4);
        let nested = rng.chance(30) && body >= 4;
        let ty = rng.below(6) as u16 | if rng.chance(10) { 0x8000 } else { 0 };
        let nla_len = (4 + body) as u16;
        p.extend_from_slice(&nla_len.to_ne_bytes());
        p.extend_from_slice(&ty.to_ne_bytes());
        if nested {
            let inner = body as u16;
            p.extend_from_slice(&inner.to_ne_bytes());
            p.extend_from_slice(&(rng.below(6) as u16).to_ne_bytes());
            for _ in 4..body {
                p.push(rng.below(4) as u8);
            }
        } else {
            for _ in 0..body {
                p.push(rng.below(4) as u8);
            }
        }
        while p.len() % 4 != 0 && p.len() < len {
            p.push(0);
        }
        if rng.chance(5) {
            // Corrupt a length now and then.
            let i = rng.below(p.len() as u64) as usize;
            p[i] = rng.next() as u8;
        }
    }
    while p.len() < len {
        p.push(rng.next() as u8);
    }
    p
}

// ---------------------------------------------------------------------------
// Hand-written corpus.

fn s(code: u16, k: u32) -> SockFilter {
    SockFilter::stmt(code, k)
}
fn j(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter::jump(code, k, jt, jf)
}
fn ret_a() -> SockFilter {
    s(BPF_RET | BPF_A, 0)
}
fn ret(k: u32) -> SockFilter {
    s(BPF_RET | BPF_K, k)
}

/// `... ; A = ((A >> 8*byte) & 0xff) + 1; ret a`: reveals one byte of A
/// through the delivered length of a long payload.
fn reveal(byte: u32) -> Vec<SockFilter> {
    vec![
        s(BPF_ALU | BPF_RSH | BPF_K, 8 * byte),
        s(BPF_ALU | BPF_AND | BPF_K, 0xff),
        s(BPF_ALU | BPF_ADD | BPF_K, 1),
        ret_a(),
    ]
}

/// Variants of `prefix` that reveal each byte of A.
fn revealing(name: &str, prefix: &[SockFilter]) -> Vec<(String, Vec<SockFilter>)> {
    let mut v = vec![(format!("{name} (ret a)"), [prefix, &[ret_a()]].concat())];
    for b in 0..4 {
        v.push((format!("{name} (A byte {b})"), [prefix, &reveal(b)[..]].concat()));
    }
    v
}

fn hand_written() -> Vec<(String, Vec<SockFilter>)> {
    let mut c: Vec<(String, Vec<SockFilter>)> = Vec::new();
    let mut add = |name: &str, p: Vec<SockFilter>| c.push((name.to_string(), p));

    // Returns and truncation.
    for k in [0, 1, 2, 3, 4, 5, 12, 13, 14, 200, 1499, 1500, 1501, 0x7fff_ffff, 0xffff_ffff] {
        add(&format!("ret #{k}"), vec![ret(k)]);
    }
    add("ret a (A=0)", vec![ret_a()]);
    add("ld len; ret a", vec![s(BPF_LD | BPF_W | BPF_LEN, 0), ret_a()]);
    add(
        "ldx len; txa; sub 1; ret a",
        vec![s(BPF_LDX | BPF_W | BPF_LEN, 0), s(BPF_MISC | BPF_TXA, 0), s(BPF_ALU | BPF_SUB | BPF_K, 1), ret_a()],
    );

    // Refusal rules.
    add("empty", vec![]);
    add("4096 insns", vec![ret(1); 4096]);
    add("4097 insns", vec![ret(1); 4097]);
    add("last not ret", vec![s(BPF_LD | BPF_IMM, 1)]);
    add("last is jump", vec![ret(1), j(BPF_JMP | BPF_JA, 0, 0, 0)]);
    for op in [BPF_DIV, BPF_MOD] {
        for k in [0u32, 1, 3] {
            add(&format!("alu op {op:#x} k={k}"), vec![s(BPF_LD | BPF_IMM, 100), s(BPF_ALU | op | BPF_K, k), ret_a()]);
        }
    }
    for op in [BPF_LSH, BPF_RSH] {
        for k in [0u32, 1, 31, 32, 33, 0x8000_0000, 0xffff_ffff] {
            add(
                &format!("shift {op:#x} k={k}"),
                vec![s(BPF_LD | BPF_IMM, 0x8765_4321), s(BPF_ALU | op | BPF_K, k), ret_a()],
            );
        }
    }
    for k in [0u32, 15, 16, 17, 0xffff_ffff] {
        add(&format!("st M[{k}]"), vec![s(BPF_ST, k), ret(1)]);
        add(&format!("stx M[{k}]"), vec![s(BPF_STX, k), ret(1)]);
        add(&format!("st+ld M[{k}]"), vec![s(BPF_ST, k), s(BPF_LD | BPF_MEM, k), ret_a()]);
        add(&format!("stx+ldx M[{k}]"), vec![s(BPF_STX, k), s(BPF_LDX | BPF_MEM, k), ret_a()]);
    }
    add("ld M[0] unwritten", vec![s(BPF_LD | BPF_MEM, 0), ret_a()]);
    add("ldx M[3] unwritten", vec![s(BPF_LDX | BPF_MEM, 3), ret_a()]);
    add("ld M[1] after st M[0]", vec![s(BPF_ST, 0), s(BPF_LD | BPF_MEM, 1), ret_a()]);
    add(
        "mem written on one branch",
        vec![
            s(BPF_LD | BPF_W | BPF_LEN, 0),
            j(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, 1),
            s(BPF_ST, 2),
            s(BPF_LD | BPF_MEM, 2),
            ret_a(),
        ],
    );
    add(
        "mem written on both branches",
        vec![
            s(BPF_LD | BPF_W | BPF_LEN, 0),
            j(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, 2),
            s(BPF_ST, 2),
            j(BPF_JMP | BPF_JA, 1, 0, 0),
            s(BPF_STX, 2),
            s(BPF_LD | BPF_MEM, 2),
            ret_a(),
        ],
    );
    add(
        "mem written before jump",
        vec![
            s(BPF_LD | BPF_W | BPF_LEN, 0),
            s(BPF_ST, 7),
            j(BPF_JMP | BPF_JGT | BPF_K, 5, 1, 0),
            s(BPF_LD | BPF_IMM, 9),
            s(BPF_LDX | BPF_MEM, 7),
            s(BPF_MISC | BPF_TXA, 0),
            ret_a(),
        ],
    );
    add("mem valid after ret quirk", vec![s(BPF_ST, 0), ret(3), s(BPF_LD | BPF_MEM, 0), ret_a()]);
    add(
        "mem after ret reached by jump",
        vec![
            s(BPF_LD | BPF_W | BPF_LEN, 0),
            j(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0),
            s(BPF_ST, 0),
            ret(3),
            s(BPF_LD | BPF_MEM, 0),
            ret_a(),
        ],
    );
    add("mem jump skips store", vec![j(BPF_JMP | BPF_JA, 1, 0, 0), s(BPF_ST, 0), s(BPF_LD | BPF_MEM, 0), ret_a()]);
    add("ja k=0", vec![j(BPF_JMP | BPF_JA, 0, 0, 0), ret(7)]);
    add("ja out of range", vec![j(BPF_JMP | BPF_JA, 1, 0, 0), ret(7)]);
    add("ja huge", vec![j(BPF_JMP | BPF_JA, 0xffff_ffff, 0, 0), ret(7)]);
    add("ja with jt/jf set", vec![j(BPF_JMP | BPF_JA, 1, 9, 9), ret(7), ret(9)]);
    for (jt, jf) in [(0u8, 0u8), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2), (255, 0)] {
        for op in [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET] {
            add(
                &format!("j{op:#x} jt={jt} jf={jf}"),
                vec![s(BPF_LD | BPF_W | BPF_LEN, 0), j(BPF_JMP | op | BPF_K, 4, jt, jf), ret(11), ret(22)],
            );
        }
    }
    // Negative jump constants (the kernel's conversion zero-extends them).
    for k in [0x8000_0000u32, 0xffff_ffff, 0xffff_fffe] {
        for op in [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET] {
            for (jt, jf) in [(0u8, 1u8), (1, 0), (1, 2)] {
                add(
                    &format!("j{op:#x} #{k:#x} jt={jt} jf={jf}"),
                    vec![
                        s(BPF_LD | BPF_IMM, 0xffff_ffff),
                        j(BPF_JMP | op | BPF_K, k, jt, jf),
                        ret(11),
                        ret(22),
                        ret(33),
                    ],
                );
            }
        }
    }

    // Ancillary loads, every number, every size.
    for n in (0..=SKF_AD_MAX + 8).step_by(4).chain([1, 2, 3, 0xfff]) {
        for size in [BPF_W, BPF_H, BPF_B] {
            for pre in [vec![], vec![s(BPF_LD | BPF_IMM, 0x1234_5678), s(BPF_LDX | BPF_IMM, 0x0f0f_0f0f)]] {
                let mut p = pre.clone();
                p.push(s(BPF_LD | size | BPF_ABS, skf_ad(n)));
                for (name, prog) in revealing(&format!("anc {n} size {size:#x} pre {}", pre.len()), &p) {
                    add(&name, prog);
                }
            }
        }
    }
    add("ld [0xffffffff]", vec![s(BPF_LD | BPF_W | BPF_ABS, 0xffff_ffff), ret_a()]);
    add("ld [SKF_AD_OFF - 1]", vec![s(BPF_LD | BPF_B | BPF_ABS, (SKF_AD_OFF - 1) as u32), ret(5)]);
    // IFINDEX ends the program returning A (no device).
    add(
        "ld #7; ld ifindex; ret #100",
        vec![s(BPF_LD | BPF_IMM, 7), s(BPF_LD | BPF_W | BPF_ABS, skf_ad(SKF_AD_IFINDEX)), ret(100)],
    );
    add(
        "ld #9; ld hatype; ret #100",
        vec![s(BPF_LD | BPF_IMM, 9), s(BPF_LD | BPF_H | BPF_ABS, skf_ad(SKF_AD_HATYPE)), ret(100)],
    );
    // Ancillary-looking IND loads are plain loads.
    add("ldx #0; ld [x + SKF_AD_OFF]", vec![s(BPF_LD | BPF_B | BPF_IND, skf_ad(SKF_AD_PROTOCOL)), ret(5)]);

    // Packet loads: absolute, at and around every payload boundary.
    for size in [BPF_W, BPF_H, BPF_B] {
        for k in [
            0u32,
            1,
            2,
            3,
            4,
            9,
            10,
            11,
            12,
            13,
            14,
            60,
            61,
            62,
            63,
            64,
            196,
            197,
            198,
            199,
            200,
            1496,
            1497,
            1498,
            1499,
            1500,
            16060,
            16063,
            16064,
            16065,
            19996,
            19997,
            19999,
            20000,
            32767,
            32768,
            0x7fff_ffff,
            0x8000_0000,
        ] {
            for (name, prog) in revealing(&format!("ld{size:#x} [{k}]"), &[s(BPF_LD | size | BPF_ABS, k)]) {
                add(&name, prog);
            }
        }
        // Negative offsets.
        for base in [SKF_NET_OFF, SKF_LL_OFF] {
            for d in [0i32, 1, 2, 3, 4, 12, 0xffff, 0xf_effe, 0xf_efff] {
                let k = base.wrapping_add(d) as u32;
                add(&format!("ld{size:#x} [{base:#x} + {d}] (ret a)"), vec![s(BPF_LD | size | BPF_ABS, k), ret_a()]);
                for (name, prog) in
                    revealing(&format!("ld{size:#x} [{base:#x} + {d}]"), &[s(BPF_LD | size | BPF_ABS, k)])
                {
                    add(&name, prog);
                }
            }
        }
        for k in [(SKF_LL_OFF - 1) as u32, 0x8000_0001, (SKF_NET_OFF - 1) as u32, (SKF_AD_OFF - 4) as u32] {
            add(&format!("ld{size:#x} [{:#x}]", k), vec![s(BPF_LD | size | BPF_ABS, k), ret(77)]);
        }
        // Indirect.
        for (x, k) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (3, 10),
            (10, 3),
            (60, 0),
            (0, 62),
            (1498, 0),
            (1499, 1),
            (0xffff_ffff, 1),
            (0xffff_ffff, 0),
            (1, 0xffff_ffff),
            (5, 0xffff_fffc),
            (SKF_NET_OFF as u32, 0),
            (0, SKF_NET_OFF as u32),
            (2, SKF_NET_OFF as u32),
            (SKF_NET_OFF as u32, 3),
            (SKF_LL_OFF as u32, 0),
            (0, SKF_LL_OFF as u32),
            (0xffff_f000, 0),
            (0, skf_ad(SKF_AD_PROTOCOL)),
            (0x8000_0000, 0x8000_0000),
            (0x7fff_ffff, 1),
        ] {
            let pre = [s(BPF_LDX | BPF_IMM, x), s(BPF_LD | size | BPF_IND, k)];
            for (name, prog) in revealing(&format!("ld{size:#x} [x={x:#x} + {k:#x}]"), &pre) {
                add(&name, prog);
            }
        }
    }
    // MSH.
    for k in [
        0u32,
        1,
        4,
        12,
        13,
        63,
        64,
        199,
        200,
        1499,
        1500,
        SKF_NET_OFF as u32,
        (SKF_NET_OFF + 5) as u32,
        SKF_LL_OFF as u32,
        0xffff_ffff,
        skf_ad(SKF_AD_PROTOCOL),
    ] {
        let pre = [s(BPF_LD | BPF_IMM, 0xabcd), s(BPF_LDX | BPF_B | BPF_MSH, k), s(BPF_MISC | BPF_TXA, 0)];
        for (name, prog) in revealing(&format!("msh [{k:#x}]"), &pre) {
            add(&name, prog);
        }
        add(
            &format!("msh [{k:#x}] keeps A"),
            vec![s(BPF_LD | BPF_IMM, 0xabcd), s(BPF_LDX | BPF_B | BPF_MSH, k), ret_a()],
        );
    }

    // ALU with X, including division by zero and shifts by X >= 32.
    let ops = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
    for op in ops {
        for (a, x) in [
            (0x8765_4321u32, 0u32),
            (0x8765_4321, 1),
            (0x8765_4321, 7),
            (0x8765_4321, 31),
            (0x8765_4321, 32),
            (0x8765_4321, 33),
            (0x8765_4321, 63),
            (0x8765_4321, 64),
            (0x8765_4321, 0xffff_ffff),
            (0xffff_ffff, 0xffff_ffff),
            (5, 0xffff_fffb),
        ] {
            let pre = [s(BPF_LD | BPF_IMM, a), s(BPF_LDX | BPF_IMM, x), s(BPF_ALU | op | BPF_X, 0)];
            for (name, prog) in revealing(&format!("alu {op:#x} a={a:#x} x={x:#x}"), &pre) {
                add(&name, prog);
            }
        }
        for k in [1u32, 2, 7, 31, 0x8000_0000, 0xffff_ffff] {
            let pre = [s(BPF_LD | BPF_IMM, 0x8765_4321), s(BPF_ALU | op | BPF_K, k)];
            for (name, prog) in revealing(&format!("alu {op:#x} k={k:#x}"), &pre) {
                add(&name, prog);
            }
        }
    }
    for a in [0u32, 1, 0x8000_0000, 0xffff_ffff] {
        for (name, prog) in revealing(&format!("neg {a:#x}"), &[s(BPF_LD | BPF_IMM, a), s(BPF_ALU | BPF_NEG, 0)]) {
            add(&name, prog);
        }
    }
    // Division by X = 0 returns 0 even with a later ret #k.
    add("div x=0 then ret #9", vec![s(BPF_LD | BPF_IMM, 5), s(BPF_ALU | BPF_DIV | BPF_X, 0), ret(9)]);
    add("mod x=0 then ret #9", vec![s(BPF_LD | BPF_IMM, 5), s(BPF_ALU | BPF_MOD | BPF_X, 0), ret(9)]);
    // A failed load returns 0 whatever follows.
    add("failed load then ret #9", vec![s(BPF_LD | BPF_W | BPF_ABS, 100_000), ret(9)]);

    // NLATTR / NLATTR_NEST: A = start offset, X = type.
    for anc in [SKF_AD_NLATTR, SKF_AD_NLATTR_NEST] {
        for a in [0u32, 4, 8, 12, 61, 1496, 1497, 0xffff_ffff] {
            for x in [0u32, 1, 2, 3, 5, 0x4001, 0x8001] {
                let pre = [
                    s(BPF_LD | BPF_IMM, a),
                    s(BPF_LDX | BPF_IMM, x),
                    s(BPF_LD | BPF_W | BPF_ABS, skf_ad(anc)),
                    s(BPF_ALU | BPF_ADD | BPF_K, 1),
                ];
                add(&format!("nla{anc} a={a} x={x:#x}"), [&pre[..], &[ret_a()]].concat());
            }
        }
    }

    // Long programs: conversion limits and the option-memory charge.
    for n in [100usize, 1000, 2000, 4000, 4094] {
        let mut p = vec![s(BPF_LD | BPF_B | BPF_ABS, 1); n];
        p.push(ret_a());
        add(&format!("{n} x ldb [1]"), p);
        let mut p = vec![s(BPF_LD | BPF_W | BPF_ABS, 40000); n];
        p.push(ret_a());
        add(&format!("{n} x ld [40000]"), p);
        let mut p = vec![s(BPF_LD | BPF_IMM, 1); n];
        p.push(ret_a());
        add(&format!("{n} x ld #1"), p);
    }
    // A long forward jump over many packet loads: eBPF offset beyond 16 bits.
    for n in [2000usize, 2400, 2600, 3000, 4090] {
        let mut p = vec![j(BPF_JMP | BPF_JA, n as u32, 0, 0)];
        p.extend(std::iter::repeat(s(BPF_LD | BPF_B | BPF_IND, 1)).take(n));
        p.push(ret(3));
        add(&format!("ja over {n} x ldb [x+1]"), p);
    }
    // The exact limits of the eBPF jump offsets (16 bits). `ldb [x+1]`
    // converts to 9 eBPF instructions, after a 7-instruction prologue.
    for n in [3639usize, 3640, 3641] {
        let loads = vec![s(BPF_LD | BPF_B | BPF_IND, 1); n];
        for (what, jump) in [
            ("jeq #0", j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1)),
            ("jeq #0x80000000", j(BPF_JMP | BPF_JEQ | BPF_K, 0x8000_0000, 0, 1)),
            ("jgt #0 jt 0", j(BPF_JMP | BPF_JGT | BPF_K, 0, 0, 1)),
            ("jset #1 jt 0", j(BPF_JMP | BPF_JSET | BPF_K, 1, 0, 1)),
            ("jset #1 jt 1 jf 0", j(BPF_JMP | BPF_JSET | BPF_K, 1, 1, 0)),
            ("jset #0x80000000 jt 0", j(BPF_JMP | BPF_JSET | BPF_K, 0x8000_0000, 0, 1)),
            ("ja 0", j(BPF_JMP | BPF_JA, 0, 0, 0)),
        ] {
            let mut p = loads.clone();
            p.push(jump);
            p.push(ret(3));
            p.push(ret(4));
            add(&format!("{n} x ldb [x+1] then {what}"), p);
        }
        let mut p = vec![j(BPF_JMP | BPF_JA, n as u32, 0, 0)];
        p.extend(loads.iter().copied());
        p.push(ret(3));
        add(&format!("ja over {n} x ldb [x+1]"), p);
        let mut p = vec![j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 0), j(BPF_JMP | BPF_JGE | BPF_X, 0, 0, 255)];
        p.extend(loads.iter().copied());
        p.push(ret(3));
        add(&format!("jge jf 255 then {n} x ldb [x+1]"), p);
    }
    // Jumps placed late in a long program.
    for n in [2000usize, 2400, 2600, 3000, 4000] {
        let mut p = vec![s(BPF_LD | BPF_B | BPF_IND, 1); n];
        p.push(j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1));
        p.push(ret(3));
        p.push(ret(4));
        add(&format!("{n} x ldb [x+1] then jeq"), p);
        let mut p = vec![s(BPF_LD | BPF_IMM, 1); n];
        p.push(j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1));
        p.push(ret(3));
        p.push(ret(4));
        add(&format!("{n} x ld #1 then jeq"), p);
    }
    c
}

#[test]
fn hand_written_programs_match_kernel() {
    let started = Instant::now();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut pair = Pair::new();
    let mut stats = Stats::default();
    let mut payloads = payload_set(&mut rng);
    // Payloads whose bytes are known small values, to reveal loads.
    payloads.push((0..1500u32).map(|i| (i % 251) as u8).collect());
    payloads.push(netlink_payload(&mut rng, 64));
    payloads.push(netlink_payload(&mut rng, 1500));
    // A datagram the kernel stores in a non-linear skb.
    payloads.push((0..20000u32).map(|i| (i % 253) as u8).collect());
    for (name, prog) in hand_written() {
        check_program(&mut pair, &mut stats, &name, &prog, &payloads);
    }
    report(&stats, "hand-written", started);
}

#[test]
fn every_opcode_matches_kernel() {
    let started = Instant::now();
    let mut pair = Pair::new();
    let mut stats = Stats::default();
    let payloads: Vec<Vec<u8>> = vec![vec![], (0..64u8).collect()];
    for code in 0..=u16::MAX {
        for k in [0u32, 1] {
            let name = format!("opcode {code:#06x} k={k}");
            // As the only instruction (also checks "last must be a return").
            let alone = [s(code, k)];
            // Followed by a return.
            let followed = [s(BPF_LD | BPF_IMM, 9), SockFilter { code, jt: 0, jf: 0, k }, ret_a()];
            // Only run the interesting ones on payloads: most codes are invalid.
            let valid = Program::new(&followed).is_ok();
            check_program(&mut pair, &mut stats, &name, &alone, &[]);
            check_program(&mut pair, &mut stats, &name, &followed, if valid { &payloads[..] } else { &[] });
        }
    }
    report(&stats, "every opcode", started);
}

// ---------------------------------------------------------------------------
// Random programs.

const ALU_OPS: [u16; 10] = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
const JMP_OPS: [u16; 4] = [BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET];
const INTERESTING: [u32; 24] = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    12,
    13,
    14,
    16,
    31,
    32,
    33,
    64,
    200,
    255,
    1500,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];
const ANC_OK: [i32; 14] = [
    SKF_AD_PROTOCOL,
    SKF_AD_PKTTYPE,
    SKF_AD_IFINDEX,
    SKF_AD_NLATTR,
    SKF_AD_NLATTR_NEST,
    SKF_AD_MARK,
    SKF_AD_QUEUE,
    SKF_AD_HATYPE,
    SKF_AD_RXHASH,
    SKF_AD_ALU_XOR_X,
    SKF_AD_VLAN_TAG,
    SKF_AD_VLAN_TAG_PRESENT,
    SKF_AD_PAY_OFFSET,
    SKF_AD_VLAN_TPID,
];

fn rand_const(rng: &mut Rng) -> u32 {
    match rng.below(3) {
        0 => rng.pick(&INTERESTING),
        1 => rng.below(20) as u32,
        _ => rng.next() as u32,
    }
}

fn rand_abs_offset(rng: &mut Rng) -> u32 {
    match rng.below(12) {
        0..=4 => rng.below(16) as u32,
        5 => {
            let len = rng.pick(&PAYLOAD_LENS) as u32;
            len.wrapping_sub(rng.below(6) as u32).wrapping_add(1)
        }
        6 => (SKF_NET_OFF + rng.below(16) as i32) as u32,
        7 => (SKF_LL_OFF + rng.below(4) as i32) as u32,
        8 => skf_ad(rng.pick(&ANC_OK)),
        9 => rng.below(1600) as u32,
        10 => {
            if rng.chance(10) {
                skf_ad(rng.below(80) as i32) // sometimes unknown or CPU/RANDOM
            } else {
                rng.below(8) as u32
            }
        }
        _ => rand_const(rng),
    }
}

fn rand_ind_offset(rng: &mut Rng) -> u32 {
    match rng.below(8) {
        0..=4 => rng.below(16) as u32,
        5 => (rng.below(4) as u32).wrapping_neg(),
        6 => (SKF_NET_OFF + rng.below(8) as i32) as u32,
        _ => rand_const(rng),
    }
}

fn random_program(rng: &mut Rng) -> Vec<SockFilter> {
    let max_body = if rng.chance(10) { 60 } else { 16 };
    let body = 1 + rng.below(max_body) as usize;
    let tail: Vec<SockFilter> = match rng.below(4) {
        0 => vec![ret(rand_const(rng))],
        1 => vec![ret_a()],
        _ => reveal(rng.below(4) as u32),
    };
    let len = body + tail.len();
    let mut p = Vec::with_capacity(len);
    let mut written: u16 = 0;
    for pc in 0..body {
        let remaining = len - pc - 1; // instructions after this one
        let max_jump = |rng: &mut Rng| -> u8 {
            if rng.chance(3) {
                // Sometimes out of range.
                (remaining as u64 + rng.below(3)).min(255) as u8
            } else {
                rng.below(remaining.min(256) as u64) as u8
            }
        };
        let insn = match rng.below(100) {
            0..=17 => {
                let size = rng.pick(&[BPF_W, BPF_H, BPF_B]);
                s(BPF_LD | size | BPF_ABS, rand_abs_offset(rng))
            }
            18..=25 => {
                let size = rng.pick(&[BPF_W, BPF_H, BPF_B]);
                s(BPF_LD | size | BPF_IND, rand_ind_offset(rng))
            }
            26..=28 => s(BPF_LDX | BPF_B | BPF_MSH, rand_abs_offset(rng)),
            29..=31 => s(BPF_LD | BPF_IMM, rand_const(rng)),
            32..=36 => s(BPF_LDX | BPF_IMM, rand_const(rng)),
            37..=38 => s(rng.pick(&[BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN]), 0),
            39..=42 => {
                let k = if rng.chance(3) { 16 } else { rng.below(16) as u32 };
                if k < 16 {
                    written |= 1 << k;
                }
                s(rng.pick(&[BPF_ST, BPF_STX]), k)
            }
            43..=46 => {
                let k = if written != 0 && rng.chance(85) {
                    loop {
                        let k = rng.below(16) as u32;
                        if written & (1 << k) != 0 {
                            break k;
                        }
                    }
                } else {
                    rng.below(17) as u32
                };
                s(rng.pick(&[BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM]), k)
            }
            47..=62 => {
                let op = rng.pick(&ALU_OPS);
                if rng.chance(40) {
                    s(BPF_ALU | op | BPF_X, 0)
                } else {
                    let k = match op {
                        BPF_LSH | BPF_RSH => {
                            if rng.chance(5) {
                                32 + rng.below(3) as u32
                            } else {
                                rng.below(32) as u32
                            }
                        }
                        BPF_DIV | BPF_MOD => {
                            if rng.chance(3) {
                                0
                            } else {
                                1 + rng.below(20) as u32
                            }
                        }
                        _ => rand_const(rng),
                    };
                    s(BPF_ALU | op | BPF_K, k)
                }
            }
            63..=64 => s(BPF_ALU | BPF_NEG, 0),
            65..=67 => s(BPF_MISC | rng.pick(&[BPF_TAX, BPF_TXA]), 0),
            68..=83 => {
                let op = rng.pick(&JMP_OPS);
                let src = if rng.chance(30) { BPF_X } else { BPF_K };
                let jt = max_jump(rng);
                let jf = max_jump(rng);
                j(BPF_JMP | op | src, rand_const(rng), jt, jf)
            }
            84..=87 => {
                // Valid targets: k < remaining; sometimes one too far.
                let k = if rng.chance(3) { remaining as u32 } else { rng.below(remaining as u64) as u32 };
                j(BPF_JMP | BPF_JA, k, 0, 0)
            }
            88..=91 => ret(rand_const(rng)),
            92..=93 => ret_a(),
            94 => {
                // A random, probably invalid, instruction.
                SockFilter {
                    code: rng.next() as u16 & 0xff,
                    jt: rng.next() as u8,
                    jf: rng.next() as u8,
                    k: rand_const(rng),
                }
            }
            _ => s(BPF_ALU | BPF_AND | BPF_K, rng.pick(&[0xff, 0x7ff, 0xf, 0x3])),
        };
        p.push(insn);
    }
    p.extend(tail);
    if rng.chance(2) {
        // Drop the final return.
        p.pop();
    }
    p
}

#[test]
fn random_programs_match_kernel() {
    const PROGRAMS: usize = 40_000;
    let started = Instant::now();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut pair = Pair::new();
    let mut stats = Stats::default();
    for i in 0..PROGRAMS {
        let prog = random_program(&mut rng);
        let mut payloads = payload_set(&mut rng);
        if prog.iter().any(|f| f.k == skf_ad(SKF_AD_NLATTR) || f.k == skf_ad(SKF_AD_NLATTR_NEST)) {
            payloads.push(netlink_payload(&mut rng, 13));
            payloads.push(netlink_payload(&mut rng, 64));
            payloads.push(netlink_payload(&mut rng, 200));
        }
        if i % 16 == 0 {
            let n = rng.pick(&[16064, 16065, 17000, 20000]);
            payloads.push(random_payload(&mut rng, n));
        }
        check_program(&mut pair, &mut stats, &format!("random #{i}"), &prog, &payloads);
    }
    report(&stats, "random", started);
    assert!(
        stats.accepted * 2 > stats.programs,
        "too few valid random programs: {} of {}",
        stats.accepted,
        stats.programs
    );
}

/// The kernel's NLATTR helpers refuse non-linear skbs: find the longest
/// datagram the kernel keeps linear and compare with UNIX_DGRAM_LINEAR_MAX.
#[test]
fn nlattr_linear_limit_matches_kernel() {
    let mut pair = Pair::new();
    // A = 0, X = 1: find attribute type 1; it is the second one, at offset 4.
    let insns = [
        s(BPF_LD | BPF_IMM, 0),
        s(BPF_LDX | BPF_IMM, 1),
        s(BPF_LD | BPF_W | BPF_ABS, skf_ad(SKF_AD_NLATTR)),
        j(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 1),
        ret(0xffff_ffff),
        ret(1),
    ];
    pair.attach(&insns).expect("attach");
    let prog = Program::new(&insns).expect("valid");
    let payload = |len: usize| {
        let mut p = vec![0u8; len];
        p[0..2].copy_from_slice(&4u16.to_ne_bytes());
        p[2..4].copy_from_slice(&2u16.to_ne_bytes());
        p[4..6].copy_from_slice(&4u16.to_ne_bytes());
        p[6..8].copy_from_slice(&1u16.to_ne_bytes());
        p
    };
    let linear = |pair: &mut Pair, len: usize| pair.roundtrip(&payload(len)).map(|d| d.len()) == Some(len);
    let (mut lo, mut hi) = (4096usize, 65536usize);
    assert!(linear(&mut pair, lo));
    assert!(!linear(&mut pair, hi));
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if linear(&mut pair, mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    eprintln!("kernel keeps unix datagrams of up to {lo} bytes linear");
    assert_eq!(lo, UNIX_DGRAM_LINEAR_MAX);
    for len in [lo - 1, lo, lo + 1, 40000] {
        let p = payload(len);
        assert_eq!(pair.roundtrip(&p).map(|d| d.len()), prog.accepted_len(&p), "length {len}");
    }
}

/// Where the kernel's option-memory charge starts refusing: compare with
/// Program::kernel_charge(). Programs of `n x ldb [x+1]` (9 eBPF
/// instructions each) plus `m x ld #1` (1 each) reach every eBPF length.
#[test]
fn kernel_charge_matches_kernel() {
    let pair = Pair::new();
    let optmem = optmem_max();
    let prog_of = |ebpf_len: usize| {
        // 7 (prologue) + 9 n + m + 1 (ret a) = ebpf_len
        let body = ebpf_len - 8;
        let n = body / 9;
        let m = body % 9;
        let mut p = vec![s(BPF_LD | BPF_B | BPF_IND, 1); n];
        p.extend(std::iter::repeat(s(BPF_LD | BPF_IMM, 1)).take(m));
        p.push(ret_a());
        let prog = Program::new(&p).unwrap();
        assert_eq!(prog.ebpf_len(), ebpf_len);
        (p, prog)
    };
    let (mut lo, mut hi) = (100usize, 4000 * 9);
    assert!(pair.attach(&prog_of(lo).0).is_ok());
    if pair.attach(&prog_of(hi).0).is_ok() {
        eprintln!("optmem_max {optmem} too large to measure the charge");
        return;
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        match pair.attach(&prog_of(mid).0) {
            Ok(()) => lo = mid,
            Err(e) => {
                assert_eq!(e, libc::ENOMEM, "ebpf_len {mid}");
                hi = mid
            }
        }
    }
    let last_ok = prog_of(lo).1;
    let first_bad = prog_of(hi).1;
    eprintln!(
        "optmem_max {optmem}: largest accepted ebpf_len {lo} (kernel_charge {}), \
         first refused {hi} (kernel_charge {})",
        last_ok.kernel_charge(),
        first_bad.kernel_charge()
    );
    assert!(last_ok.kernel_charge() < optmem);
    assert!(first_bad.kernel_charge() >= optmem);
}

/// The kernel behaviours the module documentation states, checked on the
/// kernel and on the interpreter.
#[test]
fn documented_edges_hold() {
    let mut pair = Pair::new();
    let p13: Vec<u8> = (1..=13u8).collect();
    let cases: Vec<(&str, Vec<SockFilter>, Vec<u8>, Option<usize>)> = vec![
        ("truncation to k", vec![ret(3)], p13.clone(), Some(3)),
        ("k > len delivers all", vec![ret(100)], p13.clone(), Some(13)),
        ("ret 0 drops", vec![ret(0)], p13.clone(), None),
        ("zero-length, ret 1", vec![ret(1)], vec![], Some(0)),
        ("zero-length, ret 0", vec![ret(0)], vec![], None),
        ("zero-length, ret a (A=0)", vec![ret_a()], vec![], None),
        (
            "SKF_NET_OFF + 4 reads payload byte 4",
            vec![s(BPF_LD | BPF_B | BPF_ABS, (SKF_NET_OFF + 4) as u32), ret_a()],
            p13.clone(),
            Some(5),
        ),
        ("SKF_LL_OFF fails", vec![s(BPF_LD | BPF_B | BPF_ABS, SKF_LL_OFF as u32), ret(9)], p13.clone(), None),
        (
            "x + k wrapping to SKF_NET_OFF + 2",
            vec![s(BPF_LDX | BPF_IMM, SKF_NET_OFF as u32), s(BPF_LD | BPF_B | BPF_IND, 2), ret_a()],
            p13.clone(),
            Some(3),
        ),
        ("out-of-bounds load returns 0", vec![s(BPF_LD | BPF_H | BPF_ABS, 12), ret(9)], p13.clone(), None),
        (
            "lsh by x = 33 shifts by 1",
            vec![s(BPF_LD | BPF_IMM, 3), s(BPF_LDX | BPF_IMM, 33), s(BPF_ALU | BPF_LSH | BPF_X, 0), ret_a()],
            p13.clone(),
            Some(6),
        ),
        (
            "rsh by x = 32 shifts by 0",
            vec![s(BPF_LD | BPF_IMM, 7), s(BPF_LDX | BPF_IMM, 32), s(BPF_ALU | BPF_RSH | BPF_X, 0), ret_a()],
            p13.clone(),
            Some(7),
        ),
        (
            "div by x = 0 returns 0",
            vec![s(BPF_LD | BPF_IMM, 7), s(BPF_ALU | BPF_DIV | BPF_X, 0), ret(9)],
            p13.clone(),
            None,
        ),
        (
            "ifindex ends the program returning A",
            vec![s(BPF_LD | BPF_IMM, 7), s(BPF_LD | BPF_W | BPF_ABS, skf_ad(SKF_AD_IFINDEX)), ret(100)],
            p13.clone(),
            Some(7),
        ),
        (
            "ldb [proto] loads the whole (zero) protocol",
            vec![
                s(BPF_LD | BPF_IMM, 7),
                s(BPF_LD | BPF_B | BPF_ABS, skf_ad(SKF_AD_PROTOCOL)),
                s(BPF_ALU | BPF_ADD | BPF_K, 2),
                ret_a(),
            ],
            p13.clone(),
            Some(2),
        ),
        (
            "xor_x",
            vec![
                s(BPF_LD | BPF_IMM, 6),
                s(BPF_LDX | BPF_IMM, 3),
                s(BPF_LD | BPF_W | BPF_ABS, skf_ad(SKF_AD_ALU_XOR_X)),
                ret_a(),
            ],
            p13.clone(),
            Some(5),
        ),
    ];
    for (name, insns, payload, expected) in cases {
        pair.attach(&insns).unwrap_or_else(|e| panic!("{name}: attach: errno {e}"));
        let kernel = pair.roundtrip(&payload).map(|d| d.len());
        let ours = Program::new(&insns).unwrap().accepted_len(&payload);
        assert_eq!(kernel, expected, "{name}: kernel");
        assert_eq!(ours, expected, "{name}: ours");
    }
    // The eBPF jump-offset limit: refused with EINVAL by both, one
    // instruction after the largest program the kernel converts (and then
    // refuses with ENOMEM).
    for (n, expected) in [(3640usize, libc::ENOMEM), (3641, libc::EINVAL)] {
        let mut p = vec![s(BPF_LD | BPF_B | BPF_IND, 1); n];
        p.push(j(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1));
        p.push(ret(3));
        p.push(ret(4));
        assert_eq!(pair.attach(&p), Err(expected), "{n} loads then jeq");
        assert_eq!(Program::new(&p).err(), (expected == libc::EINVAL).then_some(shmcore::Errno::EINVAL));
    }
    // SKF_AD_CPU and SKF_AD_RANDOM: accepted by the kernel, refused here.
    for anc in [SKF_AD_CPU, SKF_AD_RANDOM] {
        let p = [s(BPF_LD | BPF_W | BPF_ABS, skf_ad(anc)), ret_a()];
        assert_eq!(pair.attach(&p), Ok(()));
        assert_eq!(Program::new(&p), Err(shmcore::Errno::EINVAL));
    }
}

/// Not a kernel comparison: the cost of `run` on a typical filter, printed
/// for the record (the assertion is only a gross sanity bound).
#[test]
fn interpreter_speed() {
    // A tcpdump-style "ip and udp and dst port 53" over an Ethernet-like
    // payload, plus a scratch-memory round trip.
    let insns = [
        s(BPF_LD | BPF_H | BPF_ABS, 12),
        j(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 0, 10),
        s(BPF_LD | BPF_B | BPF_ABS, 23),
        j(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, 8),
        s(BPF_LD | BPF_H | BPF_ABS, 20),
        j(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 6, 0),
        s(BPF_LDX | BPF_B | BPF_MSH, 14),
        s(BPF_LD | BPF_H | BPF_IND, 16),
        s(BPF_ST, 3),
        s(BPF_LD | BPF_MEM, 3),
        j(BPF_JMP | BPF_JEQ | BPF_K, 53, 0, 1),
        ret(0xffff),
        ret(0),
    ];
    let prog = Program::new(&insns).unwrap();
    let mut pkt = vec![0u8; 1500];
    pkt[12] = 0x08;
    pkt[14] = 0x45;
    pkt[23] = 17;
    pkt[36..38].copy_from_slice(&53u16.to_be_bytes());
    assert_eq!(prog.accepted_len(&pkt), Some(1500));
    let n = 2_000_000u32;
    let started = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        pkt[37] = if i % 2 == 0 { 53 } else { 54 };
        sum += u64::from(prog.run(std::hint::black_box(&pkt)));
    }
    let per_run = started.elapsed() / n;
    assert_eq!(sum, u64::from(n / 2) * 0xffff);
    let trivial = Program::new(&[ret(0xffff_ffff)]).unwrap();
    let started = Instant::now();
    for _ in 0..n {
        sum += u64::from(trivial.run(std::hint::black_box(&pkt)));
    }
    let per_trivial = started.elapsed() / n;
    assert_eq!(sum, u64::from(n / 2) * 0xffff + u64::from(n) * 0xffff_ffff);
    eprintln!("interpreter: {per_run:?} per run of a 13-instruction filter, {per_trivial:?} for `ret #k`");
    assert!(per_run.as_micros() < 20);
}
