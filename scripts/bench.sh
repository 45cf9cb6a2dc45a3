#!/usr/bin/env bash
# scripts/bench.sh - the libumcast benchmark (`make bench`).
#
#   UMCAST_LIB=/abs/path/libumcast.so scripts/bench.sh
#
# Builds bench/ and runs, one at a time, the same workload (1 sender, N
# receiver processes, fixed-size messages) over four transports:
#   umcast   a libumcast group (sender and receivers under LD_PRELOAD)
#   unicast  one ordinary unix datagram per receiver (blocking, so no loss)
#   udp      UDP multicast on lo, in a private network namespace (unshare -n)
#   dbus     D-Bus signals through a private dbus-daemon (bench/dbus-bench.conf)
# for N in {1,4,16,64} and sizes {64 B, 1 KiB, 64 KiB}: throughput runs
# (send as fast as possible for a fixed time; the median of 3 is reported),
# then a latency run paced at min(10,000 msg/s, half that throughput). Then ping-pong round
# trips on ordinary unix and TCP sockets with and without the library. Last,
# wake-up latency (bench/wakeup.c): one sender, 1 or 4 receivers asleep in
# epoll_wait, one 64-byte message at a time, libumcast group vs. ordinary unix
# datagrams, with the scheduler placing the processes and pinned apart.
#
# Prints a markdown report (table, target ratios, transparency cost, wake-up) and
# writes it to bench-results/bench-<date>.md and bench-results/latest.md.
# Raw RESULT lines go to bench-results/bench-<date>.raw.
#
# Knobs (environment), for development or a longer run:
#   BENCH_SIZES="64 1024 65536"  BENCH_NS="1 4 16 64"
#   BENCH_TRANSPORTS="umcast unicast udp dbus"
#   BENCH_DURATION=0.5      seconds of sending per throughput run
#   BENCH_REPEATS=3         throughput runs per cell (the median is reported)
#   BENCH_LAT_DURATION=0.5  seconds per latency cell
#   BENCH_PP_DURATION=0.5   seconds per ping-pong run; BENCH_PP_REPEATS=5 per side
#   BENCH_WAKEUP_NS="1 4"   receivers per wake-up run (set it empty to skip the section)
#   BENCH_WAKEUP_DURATION=2 seconds measured per wake-up run
#   BENCH_WAKEUP_PLACEMENTS="free pinned"
#   BENCH_OUT=bench-results
#
# Nothing may hang: every program runs under `timeout` (which kills its whole
# process group) and has its own alarm; the dbus-daemon and the temporary
# directory are removed on exit, also on Ctrl-C. The UDP namespace belongs to
# the one process that runs in it and disappears with it.
set -u

die() { echo "bench.sh: $*" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
[ -n "${UMCAST_LIB:-}" ] || die "UMCAST_LIB is not set (it must name libumcast.so; run 'make bench')"
[ -f "$UMCAST_LIB" ] || die "UMCAST_LIB=$UMCAST_LIB is not a file (build it: cargo build --release)"
lib=$(realpath "$UMCAST_LIB")

sizes=${BENCH_SIZES:-64 1024 65536}
ns=${BENCH_NS:-1 4 16 64}
transports=${BENCH_TRANSPORTS:-umcast unicast udp dbus}
duration=${BENCH_DURATION:-0.5}
repeats=${BENCH_REPEATS:-3}
lat_duration=${BENCH_LAT_DURATION:-0.5}
pp_duration=${BENCH_PP_DURATION:-0.5}
pp_repeats=${BENCH_PP_REPEATS:-5}
wake_ns=${BENCH_WAKEUP_NS-1 4}
wake_duration=${BENCH_WAKEUP_DURATION:-2}
wake_placements=${BENCH_WAKEUP_PLACEMENTS:-free pinned}
out=${BENCH_OUT:-$root/bench-results}
lat_rate_max=10000
# Seconds a single fanout run may take (its own alarm); `timeout` gets more.
run_limit=60

make -s -C "$root/bench" >&2 || die "building bench/ failed"
fanout=$root/bench/build/fanout
pingpong=$root/bench/build/pingpong
wakeup=$root/bench/build/wakeup

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp -d /tmp/umbench.XXXXXX)
raw=$tmp/results
: >"$raw"
current=    # pid of the `timeout` running now
dbus_pid=
dbus_addr=

cleanup() {
    [ -n "$current" ] && kill -TERM "$current" 2>/dev/null
    if [ -n "$dbus_pid" ]; then
        kill -TERM "$dbus_pid" 2>/dev/null
        wait "$dbus_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

# Runs "$@" under a time limit, in the background so that the INT/TERM trap
# can stop it; its stdout goes to $tmp/out, stderr to the terminal.
run_limited() {
    local limit=$1
    shift
    timeout -k 5 "$limit" "$@" >"$tmp/out" &
    current=$!
    wait "$current"
    local rc=$?
    current=
    return $rc
}

# field LINE KEY -> the value of KEY=... in a RESULT line
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# ---- what can run here ----------------------------------------------------
notes=()
have_udp=1
if ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
    have_udp=0; notes+=("udp: skipped, unshare or ip(8) is missing")
elif ! unshare -n -- sh -c 'ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo' 2>"$tmp/ns.err"; then
    have_udp=0; notes+=("udp: skipped, no private network namespace here ($(head -1 "$tmp/ns.err"))")
fi
have_dbus=1
if ! "$fanout" --list-transports | grep -qx dbus; then
    have_dbus=0; notes+=("dbus: skipped, bench/ was built without libdbus (install libdbus-1-dev)")
elif ! command -v dbus-daemon >/dev/null; then
    have_dbus=0; notes+=("dbus: skipped, dbus-daemon is not installed (Debian package dbus-daemon)")
fi

start_dbus() {
    local addrfile=$tmp/dbus.addr
    dbus-daemon --nofork --config-file="$root/bench/dbus-bench.conf" --address="unix:path=$tmp/bus" \
        --print-address=3 3>"$addrfile" 2>"$tmp/dbus.log" &
    dbus_pid=$!
    for _ in $(seq 50); do
        dbus_addr=$(head -n1 "$addrfile" 2>/dev/null)
        [ -n "$dbus_addr" ] && return 0
        kill -0 "$dbus_pid" 2>/dev/null || break
        sleep 0.1
    done
    notes+=("dbus: skipped, dbus-daemon did not start: $(tail -n1 "$tmp/dbus.log")")
    have_dbus=0
    return 1
}
[ "$have_dbus" = 1 ] && [[ " $transports " == *" dbus "* ]] && start_dbus

# ---- the fan-out matrix ----------------------------------------------------
# One fanout run; echoes its RESULT line (or a stand-in saying why there is
# none).
fanout_run() { # transport n size mode duration [rate]
    local t=$1 n=$2 size=$3 mode=$4 dur=$5 rate=${6:-}
    local args=(--transport "$t" --receivers "$n" --size "$size" --duration "$dur" --timeout "$run_limit")
    local prefix=() line rc
    [ "$mode" = lat ] && args+=(--rate "$rate")
    case $t in
    umcast) prefix=(env LD_PRELOAD="$lib") ;;
    udp) prefix=(unshare -n -- sh -c 'ip link set lo up && ip link set lo multicast on &&
                    ip route add 224.0.0.0/4 dev lo && exec "$@"' sh) ;;
    dbus) args+=(--dbus-address "$dbus_addr" --daemon-pid "$dbus_pid") ;;
    esac
    run_limited $((run_limit + 20)) "${prefix[@]}" "$fanout" "${args[@]}"
    rc=$?
    line=$(grep '^RESULT' "$tmp/out" | tail -n1)
    if [ -z "$line" ]; then
        local why="exit-$rc"
        [ $rc = 124 ] || [ $rc = 137 ] && why=killed-by-timeout
        line="RESULT transport=$t n=$n size=$size mode=$mode status=$why"
        echo "bench.sh: fanout $t N=$n size=$size $mode: no result ($why)" >&2
    fi
    echo "$line"
}

# The throughput cell: $repeats runs; appends every run to $raw (as mode=run)
# and echoes the median run by msg/s fully delivered, with the values of all
# runs (runs=...) and the status of any that did not complete (failed=...).
# The machine is shared: one run can land on a burst of someone else's work.
fanout_tput() { # transport n size duration
    local i line mps vals= failed= pick
    local -a lines=() ok=()
    for i in $(seq "$repeats"); do
        line=$(fanout_run "$1" "$2" "$3" tput "$4")
        echo "${line/ mode=tput / mode=run }" >>"$raw"
        lines+=("$line")
        mps=$(field "$line" msgs_per_s)
        vals+="${vals:+,}${mps:-none}"
        if [ "$(field "$line" status)" = ok ]; then
            ok+=("$mps $((${#lines[@]} - 1))")
        else
            failed+="${failed:+,}$(field "$line" status)"
        fi
    done
    if [ ${#ok[@]} -gt 0 ]; then
        pick=$(printf '%s\n' "${ok[@]}" | sort -g | sed -n "$(((${#ok[@]} + 1) / 2))p" | cut -d' ' -f2)
        line=${lines[$pick]}
    fi
    line+=" runs=$vals"
    [ -n "$failed" ] && line+=" failed=$failed"
    echo "$line" >>"$raw"
    echo "$line"
}

cells=0
for size in $sizes; do for n in $ns; do for t in $transports; do cells=$((cells + 1)); done; done; done
cell=0
for size in $sizes; do
    for n in $ns; do
        for t in $transports; do
            cell=$((cell + 1))
            if [ "$t" = udp ] && [ "$have_udp" = 0 ]; then continue; fi
            if [ "$t" = dbus ] && [ "$have_dbus" = 0 ]; then continue; fi
            if [ "$t" = udp ] && [ "$size" -gt 65507 ]; then
                echo "SKIP transport=udp n=$n size=$size reason=larger-than-one-datagram" >>"$raw"
                continue
            fi
            # D-Bus is one to two orders of magnitude slower and its daemon
            # does all the copying: shorter runs keep `make bench` short.
            dur=$duration
            if [ "$t" = dbus ] && { [ "$n" -ge 64 ] || [ "$size" -ge 65536 ]; }; then
                dur=$(awk -v d="$duration" 'BEGIN { printf "%.2f", d * 0.6 }')
            fi
            line=$(fanout_tput "$t" "$n" "$size" "$dur")
            mps=$(field "$line" msgs_per_s)
            printf '[%2d/%d] %-7s N=%-2s %5s B  %12s msg/s fully delivered  (%s)\n' \
                "$cell" "$cells" "$t" "$n" "$size" "${mps:-?}" "$(field "$line" status)" >&2
            # Latency at a rate this transport sustains here: at most
            # 10,000 msg/s, at most half its measured throughput.
            [ -n "$mps" ] || continue
            rate=$(awk -v m="$mps" -v cap="$lat_rate_max" 'BEGIN { r = int(m / 2); if (r > cap) r = cap; print r }')
            if [ "$rate" -lt 10 ]; then
                echo "SKIP transport=$t n=$n size=$size mode=lat reason=throughput-too-low" >>"$raw"
                continue
            fi
            fanout_run "$t" "$n" "$size" lat "$lat_duration" "$rate" >>"$raw"
        done
    done
done

# ---- transparency: ping-pong with and without the library -----------------
# The runs alternate (plain, preloaded, plain, ...) so that a change in the
# machine's load hits both sides alike; the median of each side is reported.
# Both processes are pinned to one CPU (the last): unpinned, the placement
# of two processes alone swings the result by several times.
pp_cpu=$(($(nproc) - 1))
for t in unix tcp; do
    for rep in $(seq "$pp_repeats"); do
        for pre in 0 1; do
            if [ "$pre" = 1 ]; then
                run_limited 60 env LD_PRELOAD="$lib" "$pingpong" --transport "$t" --duration "$pp_duration" --timeout 40 --cpu "$pp_cpu"
            else
                run_limited 60 "$pingpong" --transport "$t" --duration "$pp_duration" --timeout 40 --cpu "$pp_cpu"
            fi
            line=$(grep '^RESULT' "$tmp/out" | tail -n1)
            [ -n "$line" ] || line="RESULT transport=$t preload=$pre status=failed"
            echo "PP${line#RESULT}" >>"$raw"
            printf 'ping-pong %-4s %-12s %s round trips/s\n' "$t" \
                "$([ "$pre" = 1 ] && echo with-lib || echo without)" "$(field "$line" rtt_per_s)" >&2
        done
    done
done

# ---- wake-up latency ----------------------------------------------------------
# bench/wakeup: per sample, the sender stamps CLOCK_MONOTONIC into a 64-byte
# message and sends it; each receiver, asleep in epoll_wait (level-triggered,
# blocking socket, registered once), wakes, recv(MSG_DONTWAIT)s it, takes the
# time, stores the difference in shared memory and acknowledges through a
# pipe; the sender waits for every acknowledgement, then sleeps 200 µs so the
# receivers are back asleep. umcast: one sendto() to a libumcast group, both
# sides under LD_PRELOAD. unix: no library, one sendto() per receiver's bound
# (abstract) address. It runs after the ping-pong, so it cannot disturb it.
# Placements: "free" leaves the processes to the scheduler; "pinned" puts the
# sender on the first allowed CPU and every receiver on the last, so each
# wake-up has to wake another, idle CPU. Within a placement the runs go
# unix, umcast (N=1), umcast, unix (N=4), ... so a drift in the machine's load
# hits both transports alike.
wake_limit=$(awk -v d="$wake_duration" 'BEGIN { printf "%d", d + 15 }')
allowed_cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status |
    awk -F, '{ for (i = 1; i <= NF; i++) { n = split($i, r, "-"); for (c = r[1]; c <= r[n]; c++) printf "%d ", c } }')
first_cpu=$(awk '{ print $1 }' <<<"$allowed_cpus")
last_cpu=$(awk '{ print $NF }' <<<"$allowed_cpus")
wake_runs=0
for pl in $wake_placements; do
    case $pl in
    free) pin_args=() ;;
    pinned)
        if [ -z "$first_cpu" ] || [ "$first_cpu" = "$last_cpu" ]; then
            notes+=("wake-up, pinned: skipped, only one CPU is allowed here")
            continue
        fi
        pin_args=(--cpu-sender "$first_cpu" --cpu-receivers "$last_cpu") ;;
    *) die "BENCH_WAKEUP_PLACEMENTS: unknown placement '$pl' (free, pinned)" ;;
    esac
    flip=0
    for n in $wake_ns; do
        order="unix umcast"
        [ "$flip" = 1 ] && order="umcast unix"
        flip=$((1 - flip))
        for t in $order; do
            prefix=()
            [ "$t" = umcast ] && prefix=(env LD_PRELOAD="$lib")
            run_limited $((wake_limit + 20)) "${prefix[@]}" "$wakeup" --transport "$t" --receivers "$n" \
                --duration "$wake_duration" --timeout "$wake_limit" "${pin_args[@]}"
            rc=$?
            line=$(grep '^RESULT' "$tmp/out" | tail -n1)
            if [ -z "$line" ]; then
                why="exit-$rc"
                [ $rc = 124 ] || [ $rc = 137 ] && why=killed-by-timeout
                line="RESULT wakeup=1 transport=$t n=$n status=$why"
            fi
            echo "WAKE placement=$pl${line#RESULT wakeup=1}" >>"$raw"
            wake_runs=$((wake_runs + 1))
            printf 'wake-up %-6s %-6s N=%s  p50 %s ns  p99 %s ns  (%s samples, %s)\n' "$pl" "$t" "$n" \
                "$(field "$line" p50_ns)" "$(field "$line" p99_ns)" "$(field "$line" samples)" "$(field "$line" status)" >&2
        done
    done
done

if [ -n "$dbus_pid" ]; then
    kill -TERM "$dbus_pid" 2>/dev/null
    wait "$dbus_pid" 2>/dev/null
    dbus_pid=
fi

# ---- leftovers --------------------------------------------------------------
# Every fanout run has ended, so no libumcast group of ours should exist any
# more. Group segments are named after the group's address, and all of ours
# start with "umbench." (hex 756d62656e63682e): any such segment still in
# /dev/shm was leaked by the library. Report it, then remove it (it is ours).
# Queue files (umcast.q.*) are named by random ids and cannot be told apart
# from other users' on a shared machine, so they are not checked here.
leaked=$(find /dev/shm -maxdepth 1 -name 'umcast.g.*756d62656e63682e*' 2>/dev/null)
if [ -n "$leaked" ]; then
    notes+=("**libumcast left $(wc -l <<<"$leaked") group segment(s) of this run's groups in /dev/shm after every process had exited** (removed by the harness)")
    rm -f $leaked
fi

# The wake-up section of the report, from the WAKE lines of $raw.
wake_report() {
    awk -v first_cpu="$first_cpu" -v last_cpu="$last_cpu" '
    function us(x) { return x == "" ? "-" : sprintf("%.1f", x / 1000) }
    function r(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2f", a / b) }
    $1 == "WAKE" {
        delete f
        for (i = 2; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
        k = f["placement"] SUBSEP f["n"] SUBSEP f["transport"]
        for (x in f) V[k SUBSEP x] = f[x]
        if (!(f["placement"] in seenp)) { seenp[f["placement"]] = 1; pl[++npl] = f["placement"] }
        if (!(f["n"] in seenn)) { seenn[f["n"]] = 1; nl[++nnl] = f["n"] }
    }
    function g(p, n, t, x) { return V[p SUBSEP n SUBSEP t SUBSEP x] }
    function label(p) { return p == "pinned" ? "pinned: sender CPU " first_cpu ", receivers CPU " last_cpu : "free (not pinned)" }
    END {
        if (npl == 0) exit
        print "## Wake-up latency: send until the receiver returns from epoll_wait with the message in hand"
        print ""
        print "| placement | N | transport | samples | p50 µs | p99 µs | max µs | last of N: p50 / p99 / max µs | woke on the sender'"'"'s CPU | notes |"
        print "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"
        for (a = 1; a <= npl; a++) for (b = 1; b <= nnl; b++) for (c = 1; c <= 2; c++) {
            p = pl[a]; n = nl[b]; t = (c == 1 ? "umcast" : "unix")
            st = g(p, n, t, "status")
            if (st == "") continue
            note = ""
            if (st != "ok") note = note "**" st "** "
            if (g(p, n, t, "spurious") + 0) note = note g(p, n, t, "spurious") " empty wake-ups "
            if (g(p, n, t, "bad") + 0) note = note g(p, n, t, "bad") " malformed "
            d = g(p, n, t, "deliveries")
            same = d + 0 > 0 ? sprintf("%.0f%%", 100 * g(p, n, t, "same_cpu") / d) : "-"
            last = n + 0 > 1 ? us(g(p, n, t, "last_p50_ns")) " / " us(g(p, n, t, "last_p99_ns")) " / " us(g(p, n, t, "last_max_ns")) : "(= all)"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label(p), n, (t == "umcast" ? "umcast (group)" : "unix (sendto each)"), \
                (g(p, n, t, "samples") == "" ? "-" : g(p, n, t, "samples")), us(g(p, n, t, "p50_ns")), us(g(p, n, t, "p99_ns")), \
                us(g(p, n, t, "max_ns")), last, same, note
        }
        print ""
        print "| placement | N | umcast ÷ unix: p50 | p99 | max | last of N: p50 | p99 |"
        print "|---|---:|---:|---:|---:|---:|---:|"
        for (a = 1; a <= npl; a++) for (b = 1; b <= nnl; b++) {
            p = pl[a]; n = nl[b]
            if (g(p, n, "umcast", "status") != "ok" || g(p, n, "unix", "status") != "ok") {
                printf "| %s | %s | n/a (a run failed) | | | | |\n", label(p), n
                continue
            }
            printf "| %s | %s | %s | %s | %s | %s | %s |\n", label(p), n, \
                r(g(p, n, "umcast", "p50_ns"), g(p, n, "unix", "p50_ns")), r(g(p, n, "umcast", "p99_ns"), g(p, n, "unix", "p99_ns")), \
                r(g(p, n, "umcast", "max_ns"), g(p, n, "unix", "max_ns")), \
                (n + 0 > 1 ? r(g(p, n, "umcast", "last_p50_ns"), g(p, n, "unix", "last_p50_ns")) : "-"), \
                (n + 0 > 1 ? r(g(p, n, "umcast", "last_p99_ns"), g(p, n, "unix", "last_p99_ns")) : "-")
        }
        print ""
        print "One sender process and N receiver processes; each receiver sleeps in epoll_wait (level-triggered, blocking socket, one registration), then reads with recv(MSG_DONTWAIT). Latency = the receiver'"'"'s CLOCK_MONOTONIC right after recv returned − the send time carried in the 64-byte message, over every delivery (samples × N); *last of N* is, per message, the slowest of the N receivers (the time until all have it). After each message the sender waits for every receiver'"'"'s acknowledgement (a pipe) and sleeps 200 µs, so every message finds the receivers asleep; 200 warm-up messages are not counted. *umcast*: one sendto() to a libumcast group, both processes under LD_PRELOAD. *unix*: no library, one sendto() per receiver to its bound address, every copy carrying the one time taken before the first. *free*: the scheduler places the processes; a receiver it wakes on the sender'"'"'s CPU runs once the sender blocks or is preempted (*woke on the sender'"'"'s CPU* counts those deliveries). *pinned*: the receivers run on another CPU than the sender, which must be woken from idle unless others'"'"' work keeps it busy (several receivers there run one after another). Ratios below 1 favour libumcast. Max is one sample on a shared machine: mostly noise."
        print ""
    }' "$raw"
}

# ---- the report ------------------------------------------------------------
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
report=$out/bench-$stamp.md
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ", work tree modified")
knobs="BENCH_SIZES=\"$sizes\" BENCH_NS=\"$ns\" BENCH_TRANSPORTS=\"$transports\" BENCH_DURATION=$duration BENCH_REPEATS=$repeats BENCH_LAT_DURATION=$lat_duration BENCH_PP_DURATION=$pp_duration BENCH_PP_REPEATS=$pp_repeats BENCH_WAKEUP_NS=\"$wake_ns\" BENCH_WAKEUP_DURATION=$wake_duration BENCH_WAKEUP_PLACEMENTS=\"$wake_placements\""

{
    echo "# libumcast benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo "- machine: $(nproc) CPUs ($cpu), kernel $(uname -r), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; load average (1/5/15 min) at the start: $load_start, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared)"
    echo "- command: \`make bench\` = \`UMCAST_LIB=$lib scripts/bench.sh\` with $knobs"
    echo "- library: $lib (built $(date -r "$lib" '+%Y-%m-%d %H:%M'), tree at $rev$dirty)"
    echo "- unix datagram defaults: net.core.rmem_default=$(cat /proc/sys/net/core/rmem_default), net.unix.max_dgram_qlen=$(cat /proc/sys/net/unix/max_dgram_qlen)"
    for note in "${notes[@]}"; do echo "- $note"; done
    echo
    awk -f "$root/bench/report.awk" "$raw"
    if [ "$wake_runs" -gt 0 ]; then
        echo
        wake_report
    fi
} >"$report"

cp "$raw" "$out/bench-$stamp.raw"
cp "$report" "$out/latest.md"
cat "$report"
echo >&2
echo "bench.sh: report written to $report (and $out/latest.md)" >&2
