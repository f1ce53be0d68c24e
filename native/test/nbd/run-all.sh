#!/bin/sh
# Runs every NBD real-client test against SERVE (default out/fb_nbd_serve).
# usage: sh test/nbd/run-all.sh [path/to/fb_nbd_serve]
set -u
SERVE=$(realpath "${1:-$(dirname "$0")/../../out/fb_nbd_serve}") || exit 1
export SERVE
cd "$(dirname "$0")"
failed=0
for t in nbdinfo qemu-io nbdcopy fio-verify hostile dos malloc-limit remove tls; do
	if ! sh "./$t.sh"; then
		echo "FAIL $t"
		failed=$((failed + 1))
	fi
done
echo "nbd tests: $failed failed"
[ $failed -eq 0 ]
