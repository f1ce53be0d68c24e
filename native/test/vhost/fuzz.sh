#!/bin/sh
# fb_vhost fuzz (55 kinds of malformed messages and split-ring chains, and
# with --packed 17 kinds of malformed packed-ring chains: loops, wrap
# counters, out-of-range buffers, indirect tables) on
# one controller while fb_vhost verify keeps running I/O on another; both
# must pass and the server must exit cleanly (ASan clean with the -asan
# build).
. "$(dirname "$0")/lib.sh"
start_server --reactors 2 --malloc m0:64M --malloc m1:64M --vhost-dir "$T/vh" --vhost bad:m0 --vhost good:m1
vh --socket "$T/vh/good" verify --queues 2 --qd 8 --ops 200000 >"$T/verify.out" 2>&1 &
GOOD=$!
PIDS="$GOOD"
vh --socket "$T/vh/bad" fuzz || fail "fuzz cases"
vh --socket "$T/vh/bad" fuzz --json | grep -q '"failed":0' || fail "fuzz cases (second round)"
vh --socket "$T/vh/bad" fuzz --packed || fail "fuzz cases (packed rings)"
wait "$GOOD" || { cat "$T/verify.out"; fail "verify on the other controller failed"; }
PIDS=
grep -q "0 mismatches, 0 errors, 0 reconnects: ok" "$T/verify.out" || { cat "$T/verify.out"; fail "verify output"; }
stop_server
echo "ok vhost fuzz + verify on another controller"
