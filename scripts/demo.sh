#!/usr/bin/env bash
# Run the demo under libumcast: one group, 3 receivers, 2 senders; exits
# non-zero if the receivers disagree on the order (or anything fails).
#   scripts/demo.sh                       uses target/release/libumcast.so
#   UMCAST_LIB=/path/libumcast.so scripts/demo.sh
# Works from any directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

if [ -n "${UMCAST_LIB:-}" ]; then
    lib=$UMCAST_LIB
    # a relative path means the current directory, else the repository root
    if [[ $lib != /* ]]; then
        if [ -f "$lib" ]; then lib=$PWD/$lib; else lib=$root/$lib; fi
    fi
else
    lib=$root/target/release/libumcast.so
fi
if [ ! -f "$lib" ]; then
    echo "demo.sh: no library at $lib (build it with: cargo build --release)" >&2
    exit 2
fi
if [ ! -x "$here/build/demo" ] || [ "$here/demo.c" -nt "$here/build/demo" ]; then
    make -s -C "$here" demo
fi

status=0
LD_PRELOAD=$lib timeout -k 5 30 "$here/build/demo" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "demo.sh: the demo timed out" >&2
fi
exit "$status"
