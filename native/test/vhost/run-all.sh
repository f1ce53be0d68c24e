#!/bin/sh
# Runs every vhost-user-blk test. usage: sh test/vhost/run-all.sh [SERVE [VHOST]]
# (defaults out/fb_nbd_serve and out/fb_vhost).
set -u
D=$(dirname "$0")/../../out
SERVE=$(realpath "${1:-$D/fb_nbd_serve}") || exit 1
VHOST=$(realpath "${2:-$D/fb_vhost}") || exit 1
export SERVE VHOST
cd "$(dirname "$0")"
failed=0
for t in verify fuzz reconnect; do
	if ! sh "./$t.sh"; then
		echo "FAIL $t"
		failed=$((failed + 1))
	fi
done
echo "vhost tests: $failed failed"
[ $failed -eq 0 ]
