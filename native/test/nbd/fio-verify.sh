#!/bin/sh
# fio's nbd engine, random mixed read/write with verify=crc32c, several jobs
# (each job is its own connection: multi-conn), several block sizes.
. "$(dirname "$0")/lib.sh"
fio_verify() {
	fio --ioengine=nbd --uri="$1" --rw=randrw --rwmixread=50 --iodepth=32 \
		--verify=crc32c --verify_state_save=0 --verify_fatal=1 --verify_backlog=256 --group_reporting \
		--name=j4k --bs=4k --numjobs=3 --size=24M --offset_increment=24M \
		--name=j64k --bs=64k --numjobs=1 --size=24M --offset=72M \
		--name=jmix --bsrange=512-128k --numjobs=1 --size=24M --offset=96M \
		--output-format=normal >"$T/fio.out" 2>&1 || { cat "$T/fio.out"; return 1; }
	grep -q "verify:\|bad magic\|crc32c: verify failed" "$T/fio.out" && { cat "$T/fio.out"; return 1; }
	return 0
}
for kind in malloc file error; do
	start_server $(bdev_flags $kind 128M) --listen "unix:$T/s.sock" --export d:$(bdev_name $kind)
	fio_verify "$(uri d)" || fail "fio verify ($kind)"
	stop_server
	echo "ok fio verify $kind"
done
# The same over TCP, with two reactors.
PORT=${NBD_TEST_PORT:-20211}
start_server --reactors 2 --malloc d0:128M --listen "tcp:127.0.0.1:$PORT" --export d:d0
fio_verify "nbd://127.0.0.1:$PORT/d" || fail "fio verify (tcp)"
stop_server
echo "ok fio verify tcp"
