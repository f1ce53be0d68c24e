#!/bin/sh
# fb_vhost verify against our export: malloc (inline completions), file
# (io_uring completions) and error-over-malloc; 1 and 2 queues, 4 KiB and
# 64 KiB blocks, with and without EVENT_IDX, split and packed rings (the
# packed runs wrap the ring many times); a read-only controller refuses
# writes. Fails on any mismatch, error status or sanitizer report.
. "$(dirname "$0")/lib.sh"
truncate -s 64M "$T/img"
start_server --reactors 2 --malloc m0:64M --malloc m4k:64M:4096 --file f0:"$T/img" --malloc e0:64M --error e0 \
	--vhost-dir "$T/vh" --vhost c0:m0 --vhost c4k:m4k --vhost cf:f0 --vhost ce:EE_e0 --vhost ro:m0:ro
for c in c0 c4k cf ce; do
	vh --socket "$T/vh/$c" verify --queues 2 --qd 16 --bs 4K --ops 20000 || fail "verify $c 4K"
	vh --socket "$T/vh/$c" verify --queues 1 --qd 4 --bs 64K --ops 2000 --no-event-idx || fail "verify $c 64K"
	vh --socket "$T/vh/$c" verify --packed --queues 2 --qd 16 --bs 4K --ops 20000 || fail "verify $c 4K packed"
	vh --socket "$T/vh/$c" verify --packed --queues 1 --qd 42 --bs 64K --ops 2000 --no-event-idx ||
		fail "verify $c 64K packed"
done
vh --socket "$T/vh/c0" perf --packed --rw randrw --bs 16K --qd 8 --queues 2 --seconds 1 || fail "perf randrw packed"
vh --socket "$T/vh/c0" perf --rw randrw --bs 16K --qd 8 --queues 2 --seconds 1 || fail "perf randrw"
if vh --socket "$T/vh/ro" verify --queues 1 --qd 1 --ops 10 2>/dev/null; then
	fail "writes to a read-only controller succeeded"
fi
[ "$(stat -c %a "$T/vh/c0")" = 600 ] || fail "socket mode is $(stat -c %a "$T/vh/c0"), want 600"
stop_server
echo "ok vhost verify (malloc 512/4096, file, error bdev, read-only; split and packed rings)"
