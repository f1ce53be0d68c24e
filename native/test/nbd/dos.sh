#!/bin/sh
# Memory exhaustion through NBD (dos.py): half-sent 32 MiB writes and unread
# 32 MiB reads against a 128 MiB budget, with short payload and stall
# deadlines, while a good client verifies I/O. The server's peak RSS must
# stay within the budget plus slack, and the good client and the server must
# keep going, and every attacker must be closed by the server within the
# deadline (checked by polling for the hang-up, never by reading replies).
. "$(dirname "$0")/lib.sh"
# Under ASan, freed buffers sit in its quarantine (256 MiB by default) and
# count as RSS: that measures ASan, not the engine's bound.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
start_server --nbd-mem-limit 128M --nbd-stall-timeout-ms 1000 --nbd-payload-timeout-ms 1000 \
	--malloc m0:128M --error m0 --malloc g0:64M \
	--listen "unix:$T/s.sock" --export victim:EE_m0 --export good:g0
# Bound: the 128 MiB budget + the 64 MiB of g0 that the good client's
# writes touch + 64 MiB for everything else that can grow (allocator slack,
# ASan's bookkeeping, thread stacks, 64 KiB receive buffers). Without the
# limits the same attack grew the server by ~700 MiB.
/usr/bin/python3 "$(dirname "$0")/dos.py" "$T/s.sock" victim good --server-pid "$SERVER_PID" \
	--bound $((256 << 20)) --deadline 60 --nw ${DOS_NW:-16} --nr ${DOS_NR:-16} || fail "nbd memory exhaustion"
grep -q "nbd_payload_timeout_ms" "$T/server.log" || fail "no payload-deadline disconnect logged"
stop_server
echo "ok dos"
