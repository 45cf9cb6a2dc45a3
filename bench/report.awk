# bench/report.awk - turns the RESULT/SKIP/PP lines that scripts/bench.sh
# collected (from bench/build/fanout and bench/build/pingpong) into the
# markdown report: the fan-out table, the target ratios, the transparency
# cost. Every number in the report comes from this one run.
#
# Input lines:  RESULT key=value ...   one fanout run (mode=tput or lat)
#               SKIP key=value ...     a cell not run, and why
#               PP key=value ...       one pingpong run (preload=0|1)
# Values arrive as strings: compare them numerically with "+ 0".

function num(x) { return x == "" ? 0 : x + 0 }
function fmt_rate(x) {
    if (x == "") return "-"
    x += 0
    if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
    if (x >= 1e4) return sprintf("%.0fk", x / 1e3)
    if (x >= 1e3) return sprintf("%.1fk", x / 1e3)
    return sprintf("%.0f", x)
}
function us(ns_) { return ns_ == "" ? "-" : sprintf("%.1f", ns_ / 1000) }
function kib(b) { return b == "" || b + 0 == 0 ? "-" : sprintf("%.0f", b / 1024) }
function ratio_row(label, a, b, goal,    r) {
    if (a == "" || b == "" || b + 0 == 0) {
        printf "| %s | n/a (no data) | ≥ %s | n/a |\n", label, goal
        return
    }
    r = a / b
    printf "| %s | %.2f (%s ÷ %s msg/s) | ≥ %s | %s |\n", label, r, fmt_rate(a), fmt_rate(b), goal, (r >= goal ? "met" : "**missed**")
}
function get(t, n, s, m, k) { return V[t SUBSEP n SUBSEP s SUBSEP m SUBSEP k] }
{
    kind = $1
    delete f
    for (i = 2; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
    if (kind == "RESULT") {
        id = f["transport"] SUBSEP f["n"] SUBSEP f["size"] SUBSEP f["mode"]
        for (k in f) V[id SUBSEP k] = f[k]
        if (!(f["size"] in seen_size)) { seen_size[f["size"]] = 1; sizes[++nsizes] = f["size"] }
        if (!(f["n"] in seen_n)) { seen_n[f["n"]] = 1; nlist[++nns] = f["n"] }
        if (!(f["transport"] in seen_t)) { seen_t[f["transport"]] = 1; tlist[++nts] = f["transport"] }
    } else if (kind == "SKIP") {
        skip[f["transport"] SUBSEP f["n"] SUBSEP f["size"] SUBSEP (f["mode"] == "" ? "tput" : f["mode"])] = f["reason"]
        if (!(f["size"] in seen_size)) { seen_size[f["size"]] = 1; sizes[++nsizes] = f["size"] }
        if (!(f["n"] in seen_n)) { seen_n[f["n"]] = 1; nlist[++nns] = f["n"] }
        if (!(f["transport"] in seen_t)) { seen_t[f["transport"]] = 1; tlist[++nts] = f["transport"] }
    } else if (kind == "PP") {
        key = f["transport"] SUBSEP f["preload"]
        PPN[key]++
        PP[key, PPN[key]] = f["rtt_per_s"]
    }
}
END {
    print "## Fan-out: 1 sender, N receiver processes"
    print ""
    print "| size | N | transport | msg/s fully delivered | deliveries/s | lost (tput/lat) | misordered (tput/lat) | sender CPU µs/msg | latency rate msg/s | p50 µs | p99 µs | max µs | receiver RSS KiB | shm/member KiB | notes |"
    print "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for (si = 1; si <= nsizes; si++) for (ni = 1; ni <= nns; ni++) for (ti = 1; ti <= nts; ti++) {
        s = sizes[si]; n = nlist[ni]; t = tlist[ti]
        sk = skip[t SUBSEP n SUBSEP s SUBSEP "tput"]
        st = get(t, n, s, "tput", "status")
        if (sk == "" && st == "") continue
        sz = s + 0 >= 1024 ? (s / 1024) " KiB" : s " B"
        if (sk != "") {
            printf "| %s | %s | %s | - | - | - | - | - | - | - | - | - | - | - | skipped: %s |\n", sz, n, t, sk
            continue
        }
        note = ""
        if (st != "ok") note = note "**throughput run: " st "** "
        lst = get(t, n, s, "lat", "status")
        if (lst != "" && lst != "ok") note = note "**latency run: " lst "** "
        if (skip[t SUBSEP n SUBSEP s SUBSEP "lat"] != "") note = note "latency skipped: " skip[t SUBSEP n SUBSEP s SUBSEP "lat"] " "
        d = num(get(t, n, s, "tput", "dup")) + num(get(t, n, s, "lat", "dup"))
        b = num(get(t, n, s, "tput", "bad")) + num(get(t, n, s, "lat", "bad"))
        if (d) note = note d " duplicated "
        if (b) note = note b " malformed "
        dc = get(t, n, s, "tput", "daemon_cpu_ns_per_msg")
        if (t == "dbus" && dc != "") note = note sprintf("daemon CPU %.1f µs/msg ", dc / 1000)
        ar = get(t, n, s, "lat", "achieved_rate"); rr = get(t, n, s, "lat", "rate")
        if (ar != "" && rr + 0 > 0 && ar + 0 < 0.95 * rr) note = note sprintf("sender reached only %.0f msg/s ", ar)
        if (t == "udp" && st == "ok") note = note "unpaced sender "
        fr = get(t, n, s, "tput", "failed")
        if (fr != "") note = note "**failed throughput runs: " fr "** "
        rl = get(t, n, s, "tput", "runs")
        if (split(rl, rv, ",") > 1) {
            lo = ""; hi = ""
            for (k in rv) if (rv[k] != "none") {
                if (lo == "" || rv[k] + 0 < lo + 0) lo = rv[k]
                if (hi == "" || rv[k] + 0 > hi + 0) hi = rv[k]
            }
            if (lo != "") note = note "runs " fmt_rate(lo) "–" fmt_rate(hi) " "
        }
        shm = (t == "umcast") ? kib(get(t, n, s, "tput", "shm_q_per_member")) : "-"
        printf "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", \
            sz, n, t, fmt_rate(get(t, n, s, "tput", "msgs_per_s")), fmt_rate(get(t, n, s, "tput", "deliv_per_s")), \
            (get(t, n, s, "tput", "lost") == "" ? "-" : get(t, n, s, "tput", "lost")), \
            (get(t, n, s, "lat", "lost") == "" ? "-" : get(t, n, s, "lat", "lost")), \
            (get(t, n, s, "tput", "misorder") == "" ? "-" : get(t, n, s, "tput", "misorder")), \
            (get(t, n, s, "lat", "misorder") == "" ? "-" : get(t, n, s, "lat", "misorder")), \
            us(get(t, n, s, "tput", "cpu_ns_per_msg")), (rr == "" ? "-" : rr), \
            us(get(t, n, s, "lat", "p50_ns")), us(get(t, n, s, "lat", "p99_ns")), us(get(t, n, s, "lat", "max_ns")), \
            (get(t, n, s, "tput", "rss_kb") == "" ? "-" : get(t, n, s, "tput", "rss_kb")), shm, note
    }
    print ""
    print "Columns: each throughput cell is the median of several runs (their range is in the notes); *msg/s fully delivered* counts the messages every receiver got, over the time from the first send to the last receiver's last message (so a transport's buffering cannot flatter it); *deliveries/s* counts every copy received. *lost* = sent × N − deliveries. The throughput run sends as fast as the transport lets it (blocking sends for umcast and unicast; D-Bus is held back by the daemon's max_incoming_bytes; UDP has no flow control and simply loses what does not fit). *sender CPU* is the sender process's CPU time (CLOCK_PROCESS_CPUTIME_ID) per message in the throughput run; for D-Bus the daemon's CPU is in the notes. Latency: receive time minus the CLOCK_MONOTONIC send time carried in the payload, over every delivery of a run paced at the rate shown. *receiver RSS* is the largest private RSS (RssAnon + RssFile) of a receiver; *shm/member* is the size of the receiver's libumcast queue file (/dev/shm/umcast.q.*), which the private RSS leaves out."
    print ""

    # ---- targets ----
    print "## Targets (64-byte messages, same run)"
    print ""
    print "| target | value | goal | result |"
    print "|---|---:|---|---|"
    ratio_row("libumcast ÷ unicast fan-out msg/s, N=16", get("umcast", 16, 64, "tput", "msgs_per_s"), get("unicast", 16, 64, "tput", "msgs_per_s"), 10)
    ratio_row("libumcast ÷ unicast fan-out msg/s, N=4", get("umcast", 4, 64, "tput", "msgs_per_s"), get("unicast", 4, 64, "tput", "msgs_per_s"), 3)
    ratio_row("libumcast ÷ unicast fan-out msg/s, N=1", get("umcast", 1, 64, "tput", "msgs_per_s"), get("unicast", 1, 64, "tput", "msgs_per_s"), 1.5)
    ratio_row("libumcast ÷ dbus-daemon msg/s, N=16", get("umcast", 16, 64, "tput", "msgs_per_s"), get("dbus", 16, 64, "tput", "msgs_per_s"), 30)
    a = get("umcast", 4, 64, "lat", "p50_ns"); b = get("unicast", 4, 64, "lat", "p50_ns")
    ra = get("umcast", 4, 64, "lat", "rate"); rb = get("unicast", 4, 64, "lat", "rate")
    if (a != "" && b != "" && ra + 0 == 10000 && rb + 0 == 10000)
        printf "| latency p50 at 10,000 msg/s, N=4: libumcast vs unicast fan-out | %.1f µs vs %.1f µs (p99 %.1f vs %.1f) | libumcast ≤ unicast | %s |\n", a / 1000, b / 1000, \
            get("umcast", 4, 64, "lat", "p99_ns") / 1000, get("unicast", 4, 64, "lat", "p99_ns") / 1000, (a + 0 <= b + 0 ? "met" : "**missed**")
    else
        printf "| latency p50 at 10,000 msg/s, N=4: libumcast vs unicast fan-out | n/a (no run at 10,000 msg/s) | libumcast ≤ unicast | n/a |\n"
    q = ""; rc = ""
    for (ni = 1; ni <= nns && q == ""; ni++) {
        q = get("umcast", nlist[ni], 64, "tput", "shm_q_per_member"); rc = get("umcast", nlist[ni], 64, "tput", "rcvbuf")
        g = get("umcast", nlist[ni], 64, "tput", "shm_g")
        if (q + 0 == 0) q = ""
    }
    if (q != "" && rc + 0 > 0)
        printf "| shared memory per member vs its SO_RCVBUF + 64 KiB | %.1f KiB queue file vs %.1f KiB (%d + 64 KiB); plus a %.1f KiB group segment shared by all members | ≤ | %s |\n", q / 1024, (rc + 65536) / 1024, rc, g / 1024, (q + 0 <= rc + 65536 ? "met" : "**missed**")
    else
        printf "| shared memory per member vs its SO_RCVBUF + 64 KiB | n/a (no queue file seen) | ≤ | n/a |\n"
    for (ti = 1; ti <= nts; ti++) {
        t = tlist[ti]
        d1 = get(t, 1, 64, "tput", "deliv_per_s"); d64 = get(t, 64, 64, "tput", "deliv_per_s")
        if (d1 + 0 > 0 && d64 + 0 > 0)
            printf "| time per delivered message, %s, N=1 → N=64 | %.3f µs → %.3f µs (× %.2f) | reported (no numeric goal) | - |\n", t, 1e6 / d1, 1e6 / d64, d1 / d64
    }
    print ""

    # ---- transparency ----
    print "## Transparency cost: ping-pong on ordinary sockets, without and with LD_PRELOAD=libumcast.so"
    print ""
    print "| ping-pong (64 B) | without: round trips/s | with: round trips/s | difference | goal | result |"
    print "|---|---:|---:|---:|---|---|"
    split("unix tcp", pts, " ")
    for (pi = 1; pi <= 2; pi++) {
        t = pts[pi]
        m0 = median(t SUBSEP 0); m1 = median(t SUBSEP 1)
        label = t == "unix" ? "unix datagram (sendto to a bound path + recv)" : "TCP on 127.0.0.1 (TCP_NODELAY)"
        if (m0 == "" || m1 == "" || m0 + 0 == 0) { printf "| %s | %s | %s | n/a | within 2%% | n/a |\n", label, (m0 == "" ? "-" : m0), (m1 == "" ? "-" : m1); continue }
        dd = (m1 - m0) / m0 * 100
        printf "| %s | %.0f (%s) | %.0f (%s) | %+.1f%% | within 2%% | %s |\n", label, m0, all(t SUBSEP 0), m1, all(t SUBSEP 1), dd, (dd >= -2 && dd <= 2 ? "within" : "**outside**")
    }
    print ""
    print "Both processes pinned to one CPU; median of the alternating runs, each run's value in parentheses. Reported, not asserted: on a shared 2-core machine run-to-run noise alone can exceed 2%."
}
function median(key,    n, i, j, tmp, a) {
    n = PPN[key]
    if (n == 0) return ""
    for (i = 1; i <= n; i++) a[i] = PP[key, i] + 0
    for (i = 2; i <= n; i++) { tmp = a[i]; for (j = i - 1; j >= 1 && a[j] > tmp; j--) a[j + 1] = a[j]; a[j + 1] = tmp }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function all(key,    i, s) {
    s = ""
    for (i = 1; i <= PPN[key]; i++) s = s (i > 1 ? ", " : "") sprintf("%.0f", PP[key, i])
    return s
}
