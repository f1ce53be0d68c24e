#!/bin/sh
# Export removal while a client has I/O in flight: the server drains and
# disconnects the client, closes the descriptor, keeps running, exits clean.
. "$(dirname "$0")/lib.sh"
start_server --malloc m0:64M --listen "unix:$T/s.sock" --export d:m0
fio --ioengine=nbd --uri="$(uri d)" --rw=randrw --bs=64k --iodepth=32 --numjobs=2 \
	--size=32M --time_based --runtime=30 --name=busy >"$T/fio.out" 2>&1 &
PIDS=$!
sleep 1
kill -USR1 "$SERVER_PID"
i=0
until grep -q "exports removed" "$T/server.log"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "removal did not finish"; sleep 0.05
done
# The client is gone well before its 30 s runtime.
i=0
while kill -0 "$PIDS" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "client still connected after removal"; sleep 0.05
done
PIDS=
nbdinfo --list "$(uri d)" >/dev/null 2>&1 && fail "listener still open after the last export went"
stop_server
echo "ok export removal under I/O"
