#!/bin/sh
# nbdcopy a 256 MiB random image into the export and back out; byte-compare.
. "$(dirname "$0")/lib.sh"
head -c 256M /dev/urandom >"$T/in.img"
for kind in malloc file error; do
	start_server $(bdev_flags $kind 256M) --listen "unix:$T/s.sock" --export d:$(bdev_name $kind)
	nbdcopy "$T/in.img" "$(uri d)" || fail "nbdcopy in ($kind)"
	nbdcopy "$(uri d)" "$T/out.img" || fail "nbdcopy out ($kind)"
	cmp "$T/in.img" "$T/out.img" || fail "images differ ($kind)"
	# Multi-connection copy back (nbdcopy uses CAN_MULTI_CONN when offered).
	rm -f "$T/out.img"
	nbdcopy --connections=4 "$(uri d)" "$T/out.img" || fail "nbdcopy out x4 ($kind)"
	cmp "$T/in.img" "$T/out.img" || fail "images differ, 4 connections ($kind)"
	rm -f "$T/out.img"
	stop_server
	echo "ok nbdcopy 256MiB $kind"
done
