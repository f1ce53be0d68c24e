#!/bin/sh
# Memory exhaustion through NBD (dos.py): half-sent 32 MiB writes and unread
# 32 MiB reads against a 128 MiB budget, with short payload and stall
# deadlines, while a good client verifies I/O. The server's peak RSS must
# stay within the budget plus slack, every attacker must be disconnected,
# and the good client and the server must keep going.
. "$(dirname "$0")/lib.sh"
start_server --nbd-mem-limit 128M --nbd-stall-timeout-ms 1000 --nbd-payload-timeout-ms 1000 \
	--malloc m0:128M --error m0 --malloc g0:64M \
	--listen "unix:$T/s.sock" --export victim:EE_m0 --export good:g0
# Bound: the 128 MiB budget + 64 MiB for everything else that can grow
# (allocator slack, thread stacks, 64 KiB receive buffers of the connections).
/usr/bin/python3 "$(dirname "$0")/dos.py" "$T/s.sock" victim good --server-pid "$SERVER_PID" \
	--bound $((192 << 20)) --nw ${DOS_NW:-16} --nr ${DOS_NR:-16} || fail "nbd memory exhaustion"
grep -q "nbd_payload_timeout_ms" "$T/server.log" || fail "no payload-deadline disconnect logged"
stop_server
echo "ok dos"
