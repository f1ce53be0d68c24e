#!/bin/sh
# Back-end crash and restart under I/O, as QEMU's reconnect= sees it:
# fb_vhost verify --reconnect shares an inflight region with the server;
# the server is SIGKILLed twice mid-run (file bdev: the data survives) and
# started again; fb_vhost connects again and sets the same rings up from
# their used index. Requests left in flight must be taken again from the
# inflight region: the run ends with every request completed, 0 mismatches
# and 0 errors. Split rings, then packed rings (the spec's packed layout).
. "$(dirname "$0")/lib.sh"
# $1: extra fb_vhost flags (--packed); $2: what to call the run
crash_run() {
	truncate -s 64M "$T/img"
	: >"$T/servers.log"
	serve
	vh --socket "$T/vh/c0" verify --reconnect $1 --qd 16 --ops 300000 --json >"$T/verify.out" 2>&1 &
	V=$!
	PIDS="$V"
	for round in 1 2; do
		sleep 1.5
		kill -9 "$SERVER_PID"
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=
		cat "$T/server.log" >>"$T/servers.log"
		serve
	done
	cat "$T/server.log" >>"$T/servers.log"
	wait "$V" || { cat "$T/verify.out"; fail "$2: verify across back-end restarts failed"; }
	PIDS=
	grep -q '"reconnects":2,"ok":true' "$T/verify.out" || { cat "$T/verify.out"; fail "$2: expected 2 reconnects and ok"; }
	grep -q '"mismatches":0,"errors":0' "$T/verify.out" || { cat "$T/verify.out"; fail "$2: mismatches or errors"; }
	grep "resubmitting\|inflight" "$T/servers.log" || echo "($2: no request was in flight at either kill)"
	stop_server
	echo "ok vhost reconnect ($2): 2 back-end crashes under verify I/O, nothing lost"
}
serve() { start_server --reactors 2 --file f0:"$T/img" --vhost-dir "$T/vh" --vhost c0:f0; }
crash_run "" "split ring"
# Packed: used descriptors overwrite the slots of chains still in flight,
# so only the region's copies can bring them back.
crash_run --packed "packed ring"
