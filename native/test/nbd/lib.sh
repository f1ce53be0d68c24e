# Shared helpers for the NBD real-client tests. Source it; needs $SERVE (the
# fb_nbd_serve binary). Every test gets its own mktemp -d directory, and
# every process it starts is killed on exit.
set -eu

: "${SERVE:?set SERVE to the fb_nbd_serve binary}"
T=$(mktemp -d /tmp/fb-nbd-test.XXXXXX)
SERVER_PID=
PIDS=

cleanup() {
	rc=$?
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL: $*" >&2
	[ -f "$T/server.log" ] && tail -20 "$T/server.log" >&2
	exit 1
}

# start_server ARGS...: runs fb_nbd_serve in the background, waits until ready.
start_server() {
	rm -f "$T/ready"
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
		"$SERVE" --ready-file "$T/ready" "$@" 2>"$T/server.log" &
	SERVER_PID=$!
	i=0
	while [ ! -f "$T/ready" ]; do
		kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited: $(cat "$T/server.log")"
		i=$((i + 1))
		[ $i -lt 200 ] || fail "server not ready"
		sleep 0.05
	done
}

# stop_server: SIGTERM, waits, fails on a non-zero exit or a sanitizer report.
stop_server() {
	kill "$SERVER_PID"
	rc=0
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=
	[ $rc -eq 0 ] || fail "server exited with $rc"
	if grep -q "Sanitizer\|runtime error:" "$T/server.log"; then
		fail "sanitizer report in server log"
	fi
}

uri() { echo "nbd+unix:///$1?socket=$T/s.sock"; }

# The bdev that bdev_flags KIND made, to export.
bdev_name() { if [ "$1" = error ]; then echo EE_m0; else echo d0; fi; }

# The base bdevs the integrity tests run on: NAME and fb_nbd_serve flags.
bdev_flags() {
	case "$1" in
	malloc) echo "--malloc d0:$2" ;;
	malloc4k) echo "--malloc d0:$2:4096" ;;
	file)
		truncate -s "$2" "$T/disk.img"
		echo "--file d0:$T/disk.img"
		;;
	error)
		# The error-injection bdev (no injection: pass-through) over malloc;
		# it is named EE_m0, see bdev_name.
		echo "--malloc m0:$2 --error m0"
		;;
	*) fail "unknown bdev kind $1" ;;
	esac
}
