#!/bin/sh
# The hostile client (hostile.py, 30+ kinds of malformed input) runs while a
# good client runs fio verify on another connection; both must pass and the
# server must exit cleanly (ASan clean when SERVE is the -asan build). The
# good client runs as another uid (nobody): on a unix socket a client is a
# uid, and the hostile one opens more connections than one client may hold.
. "$(dirname "$0")/lib.sh"
start_server --malloc m0:256M --listen "unix:$T/s.sock" --export rw:m0 --export ro:m0:ro \
	--export good:m0
chmod 755 "$T"
chmod 666 "$T/s.sock"
setpriv --reuid=65534 --regid=65534 --clear-groups fio --ioengine=nbd --uri="$(uri good)" --rw=randrw --bs=4k --iodepth=16 --numjobs=2 \
	--size=32M --offset=128M --offset_increment=32M --verify=crc32c --verify_state_save=0 --verify_fatal=1 \
	--verify_backlog=128 --time_based --runtime=${HOSTILE_FIO_SECONDS:-20} --name=good \
	>"$T/fio.out" 2>&1 &
FIO=$!
PIDS="$FIO"
/usr/bin/python3 "$(dirname "$0")/hostile.py" "$T/s.sock" rw ro --server-pid "$SERVER_PID" ||
	fail "hostile client cases"
wait "$FIO" || { cat "$T/fio.out"; fail "good fio job failed"; }
PIDS=
grep -q "verify" "$T/fio.out" && grep -qi "err=[^0]" "$T/fio.out" && fail "fio verify errors"
stop_server
echo "ok hostile + fio verify"
