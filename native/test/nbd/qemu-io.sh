#!/bin/sh
# qemu-io writes patterns through the export and reads them back with -P.
. "$(dirname "$0")/lib.sh"
for kind in malloc malloc4k file error; do
	start_server $(bdev_flags $kind 64M) --listen "unix:$T/s.sock" --export d:$(bdev_name $kind)
	out=$(qemu-io -f raw \
		-c 'write -P 0xa1 0 1M' -c 'write -P 0xb2 1M 4k' -c 'write -P 0xc3 3M 64k' \
		-c 'aio_write -P 0xd4 8M 128k' -c 'aio_write -P 0xe5 9M 128k' -c 'aio_flush' \
		-c 'write -z 2M 512k' -c 'write -f -P 0x66 16M 4k' -c 'discard 20M 1M' -c 'flush' \
		-c 'read -P 0xa1 0 1M' -c 'read -P 0xb2 1M 4k' -c 'read -P 0xc3 3M 64k' \
		-c 'read -P 0xd4 8M 128k' -c 'read -P 0xe5 9M 128k' -c 'read -P 0 2M 512k' \
		-c 'read -P 0x66 16M 4k' -c 'write -P 0x77 63M 1M' -c 'read -P 0x77 63M 1M' \
		"$(uri d)" 2>&1) || fail "qemu-io ($kind): $out"
	echo "$out" | grep -qi "pattern verification failed\|error" && fail "qemu-io ($kind): $out"
	# A second client sees what the first one wrote.
	out=$(qemu-io -f raw -r -c 'read -P 0xa1 0 1M' -c 'read -P 0x66 16M 4k' "$(uri d)" 2>&1) ||
		fail "qemu-io reread ($kind): $out"
	echo "$out" | grep -qi "pattern verification failed" && fail "qemu-io reread ($kind): $out"
	stop_server
	echo "ok qemu-io $kind"
done
