#!/usr/bin/env bash
# Run the C test suite under LD_PRELOAD, one binary at a time.
#
#   UMCAST_LIB=/abs/path/libumcast.so scripts/run-c-tests.sh BUILD_DIR
#
# BUILD_DIR holds one directory per variant (plain/, fortify/, lfs/) of t_*
# binaries. Each runs as `LD_PRELOAD=$UMCAST_LIB timeout -k 5 60 ./t_name` in
# its directory. Prints one PASS/FAIL line per test, the output of each failed
# test, and ends with the line "N passed, M failed". Exits non-zero if any
# test failed or none ran.
#   UMCAST_TESTS="t_a t_b"   run only these tests (names without variant)
#   UMCAST_TEST_TIMEOUT=60   seconds per test
set -u

die() { echo "run-c-tests.sh: $*" >&2; exit 2; }

[ $# -eq 1 ] || die "usage: UMCAST_LIB=/path/libumcast.so $0 BUILD_DIR"
build=$1
[ -n "${UMCAST_LIB:-}" ] || die "UMCAST_LIB is not set (it must name libumcast.so)"
[ -f "$UMCAST_LIB" ] || die "UMCAST_LIB=$UMCAST_LIB is not a file (build it: cargo build --release)"
[ -d "$build" ] || die "no build directory $build (run make first)"
lib=$(realpath "$UMCAST_LIB") # the tests run in their own directory
limit=${UMCAST_TEST_TIMEOUT:-60}
only=" ${UMCAST_TESTS:-} "

passed=0
failed=0
failures=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

describe_exit() { # exit code, elapsed seconds -> reason
    local rc=$1 secs=$2
    if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && awk "BEGIN{exit !($secs >= $limit)}"; }; then
        echo "timed out after ${limit}s (killed by timeout)"
    elif [ "$rc" -gt 128 ]; then
        echo "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
    else
        echo "exit code $rc"
    fi
}

for variant in plain fortify lfs; do
    dir=$build/$variant
    [ -d "$dir" ] || continue
    for bin in "$dir"/t_*; do
        [ -f "$bin" ] && [ -x "$bin" ] || continue
        name=$(basename "$bin")
        if [ "$only" != "  " ] && [[ $only != *" $name "* ]]; then continue; fi
        start=$EPOCHREALTIME
        # (the outer 2>/dev/null silences bash's own "Segmentation fault" notes)
        { (cd "$dir" && LD_PRELOAD=$lib timeout -k 5 "$limit" "./$name") >"$log" 2>&1 </dev/null; } 2>/dev/null
        rc=$?
        secs=$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $start}")
        if [ "$rc" -eq 0 ]; then
            echo "PASS $variant/$name (${secs}s)"
            passed=$((passed + 1))
        else
            reason=$(describe_exit "$rc" "$secs")
            echo "FAIL $variant/$name: $reason (${secs}s)"
            echo "---- output of $variant/$name (last 80 lines) ----"
            tail -n 80 "$log" | sed 's/^/    /'
            echo "---- end of $variant/$name ----"
            failed=$((failed + 1))
            failures+=("$variant/$name")
        fi
    done
done

# Every test's processes are gone: nothing of their groups may remain once
# garbage collection has run (SPEC 7: the shared memory of groups that are
# gone is removed).
umcast_tool=$(dirname "$lib")/umcast
if [ -x "$umcast_tool" ] && [ "$passed" -gt 0 ]; then
    "$umcast_tool" gc --now >/dev/null
    left=$(ls /dev/shm 2>/dev/null | grep '^umcast\.' || true)
    if [ -n "$left" ]; then
        echo "FAIL leftovers: shared memory of finished tests remains after 'umcast gc --now':"
        echo "$left" | sed 's/^/    \/dev\/shm\//'
        failed=$((failed + 1))
        failures+=("leftovers")
    else
        echo "PASS leftovers: nothing of the tests' groups remains in /dev/shm"
        passed=$((passed + 1))
    fi
fi

if [ ${#failures[@]} -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    echo "run-c-tests.sh: no test ran (nothing built in $build, or UMCAST_TESTS matched nothing)"
fi
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
exit 0
