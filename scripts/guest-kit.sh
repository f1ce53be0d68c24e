#!/bin/sh
# Guest kit: a small Linux guest that runs fio on a vhost-user-blk disk.
#
#   scripts/guest-kit.sh build
#       Builds (once; cached) a kernel and a busybox initramfs with fio:
#       linux-image-cloud-amd64 and busybox-static are fetched with
#       `apt-get download` and unpacked with dpkg-deb (nothing is
#       installed); fio and its libraries come from the host's fio package.
#       Prints the cache directory.
#   scripts/guest-kit.sh run --socket PATH [--queues N] [--runtime S]
#            [--size-mb M] [--mem-mb M] [--timeout S] [--console FILE] [--packed]
#       Boots the guest with QEMU (memory-backend-memfd share=on,
#       vhost-user-blk-pci on PATH with reconnect=1, so a restarted back-end
#       is picked up again; --packed: packed virtqueues), runs fio verify (crc32c, randrw 4 KiB, 2 jobs on
#       disjoint halves of --size-mb) on the disk and prints fio's JSON on
#       stdout. Exit 0 when fio ran and reported no error, 1 when it
#       reported errors, 2 when the guest did not get that far.
#   scripts/guest-kit.sh accel
#       Prints "kvm" when /dev/kvm runs an ordinary guest (a probe boot),
#       else "tcg". FLEXBSO_GUEST_ACCEL=tcg|kvm overrides the probe.
#
# Cache: $FLEXBSO_GUEST_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/flexbso/guest-kit.
# The guest prints "FBSO-FIO-START" when fio starts (a hook for tests that
# restart the back-end mid-run), "FBSO-INIT features BITS" (the virtio
# features the guest driver negotiated, bit 0 first) and the JSON between FBSO-FIO-JSON-BEGIN and
# FBSO-FIO-JSON-END on its serial console.
set -eu

CACHE=${FLEXBSO_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flexbso/guest-kit}
KIT_VERSION=1 # bump when the initramfs layout changes

die() {
	echo "guest-kit: $*" >&2
	exit 2
}

# The versioned image package the metapackage points at, e.g. linux-image-6.1.0-57-cloud-amd64.
kernel_pkg() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'
}

fetch_deb() { # fetch_deb PKG DIR: downloads PKG's .deb into DIR (apt-get download, unprivileged-safe)
	(cd "$2" && apt-get download "$1" >/dev/null 2>&1) || die "apt-get download $1 failed (is the Debian mirror reachable? try apt-get update)"
	ls "$2"/"$1"_*.deb >/dev/null 2>&1 || die "apt-get download $1 left no .deb in $2"
}

build() {
	command -v dpkg-deb >/dev/null || die "dpkg-deb is missing"
	command -v fio >/dev/null || die "fio is missing on the host (apt-get install fio): the guest takes the host's fio and its libraries"
	pkg=$(kernel_pkg)
	[ -n "$pkg" ] || die "apt-cache knows no linux-image-cloud-amd64 (run apt-get update)"
	out="$CACHE/$pkg-v$KIT_VERSION"
	if [ -f "$out/initramfs.cpio.gz" ] && [ -f "$out/vmlinuz" ]; then
		echo "$out"
		return 0
	fi
	mkdir -p "$CACHE"
	tmp=$(mktemp -d "$CACHE/build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	fetch_deb "$pkg" "$tmp"
	fetch_deb busybox-static "$tmp"
	dpkg-deb -x "$tmp/$pkg"_*.deb "$tmp/k"
	dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/bb"
	kver=$(ls "$tmp/k/lib/modules" | head -1)
	[ -n "$kver" ] || die "$pkg has no modules directory"
	r="$tmp/root"
	mkdir -p "$r/bin" "$r/sbin" "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/mods" "$r/lib64" "$r/etc"
	cp "$tmp/bb/bin/busybox" "$r/bin/busybox"
	# virtio_blk and virtio_pci are modules in the cloud kernel; load order matters.
	for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
		f=$(find "$tmp/k/lib/modules/$kver" -name "$m.ko*" | head -1)
		[ -n "$f" ] || continue # built in
		case "$f" in
		*.ko.xz) xz -dc "$f" >"$r/mods/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$r/mods/$m.ko" ;;
		*) cp "$f" "$r/mods/$m.ko" ;;
		esac
		echo "$m" >>"$r/mods/order"
	done
	# fio and every library it links, at the same paths.
	cp "$(command -v fio)" "$r/bin/fio"
	ldd "$(command -v fio)" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u | while read -r lib; do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
	cat >"$r/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
for m in $(cat /mods/order); do insmod /mods/$m.ko || echo "FBSO-INIT insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || { echo "FBSO-INIT no /dev/vda"; poweroff -f; }
echo "FBSO-INIT disk $(cat /sys/block/vda/size) sectors, queues $(ls /sys/block/vda/mq | wc -l)"
. /job.sh
echo "FBSO-FIO-START"
/bin/fio --output-format=json --output=/tmp/fio.json $FIO_ARGS >/tmp/fio.log 2>&1
echo "FBSO-FIO-RC $?"
echo "FBSO-FIO-JSON-BEGIN"
cat /tmp/fio.json
echo "FBSO-FIO-JSON-END"
tail -5 /tmp/fio.log
sync
poweroff -f
INIT
	chmod +x "$r/init"
	(cd "$r" && find . | "$tmp/bb/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 >"$tmp/initramfs.cpio.gz")
	mkdir -p "$out"
	cp "$tmp/k/boot/vmlinuz-$kver" "$out/vmlinuz"
	mv "$tmp/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
	cp "$tmp/bb/bin/busybox" "$out/busybox"
	echo "$kver" >"$out/kernel-version"
	echo "$out"
}

# A second cpio with /job.sh, appended to the base one (Linux unpacks both).
job_initrd() { # job_initrd KIT OUT FIO_ARGS
	jd=$(mktemp -d)
	printf 'FIO_ARGS="%s"\n' "$3" >"$jd/job.sh"
	echo 'echo "FBSO-INIT features $(cat /sys/block/vda/device/features 2>/dev/null)"' >>"$jd/job.sh"
	(cd "$jd" && echo job.sh | "$1/busybox" cpio -o -H newc 2>/dev/null | gzip -1 >"$jd/job.cpio.gz")
	cat "$1/initramfs.cpio.gz" "$jd/job.cpio.gz" >"$2"
	rm -rf "$jd"
}

accel() {
	if [ -n "${FLEXBSO_GUEST_ACCEL:-}" ]; then
		echo "$FLEXBSO_GUEST_ACCEL"
		return 0
	fi
	if [ ! -w /dev/kvm ]; then
		echo tcg
		return 0
	fi
	kit=$(build)
	d=$(mktemp -d)
	job_initrd "$kit" "$d/initrd" "--version"
	# An ordinary guest under KVM reaches /init and powers off; a kvm that
	# only runs special guests (kvm-pvm) dies early and QEMU pauses: time out.
	timeout 60 qemu-system-x86_64 -accel kvm -cpu host -m 256 -display none -no-reboot \
		-serial "file:$d/console" -kernel "$kit/vmlinuz" -initrd "$d/initrd" \
		-append "console=ttyS0 panic=-1 quiet" >/dev/null 2>&1 || true
	if grep -q "FBSO-INIT no /dev/vda" "$d/console" 2>/dev/null; then echo kvm; else echo tcg; fi
	rm -rf "$d"
}

run() {
	socket= queues=2 runtime=20 size_mb=64 mem_mb=768 tmo=600 console= packed=
	while [ $# -gt 0 ]; do
		case "$1" in
		--socket) socket=$2; shift 2 ;;
		--queues) queues=$2; shift 2 ;;
		--runtime) runtime=$2; shift 2 ;;
		--size-mb) size_mb=$2; shift 2 ;;
		--mem-mb) mem_mb=$2; shift 2 ;;
		--timeout) tmo=$2; shift 2 ;;
		--console) console=$2; shift 2 ;;
		--packed) packed=",packed=on"; shift ;;
		*) die "unknown argument $1" ;;
		esac
	done
	[ -n "$socket" ] || die "--socket PATH is required"
	command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"
	kit=$(build)
	acc=$(accel)
	d=$(mktemp -d)
	[ -n "$console" ] || console="$d/console"
	: >"$console"
	half=$((size_mb / 2))
	job_initrd "$kit" "$d/initrd" "--name=verify --filename=/dev/vda --direct=1 --ioengine=io_uring --rw=randrw --bs=4k --iodepth=8 --numjobs=2 --size=${half}M --offset_increment=${half}M --verify=crc32c --verify_fatal=1 --verify_backlog=64 --time_based --runtime=$runtime --group_reporting=0"
	if [ "$acc" = kvm ]; then cpu="-accel kvm -cpu host"; else cpu="-accel tcg,thread=multi -cpu max"; fi
	# shellcheck disable=SC2086
	timeout "$tmo" qemu-system-x86_64 $cpu -smp 2 -m "$mem_mb" -display none -no-reboot \
		-object "memory-backend-memfd,id=mem,size=${mem_mb}M,share=on" -numa node,memdev=mem \
		-chardev "socket,id=vu,path=$socket,reconnect=1" \
		-device "vhost-user-blk-pci,chardev=vu,num-queues=$queues$packed" \
		-serial "file:$console" -kernel "$kit/vmlinuz" -initrd "$d/initrd" \
		-append "console=ttyS0 panic=-1 quiet" >"$d/qemu.log" 2>&1 || true
	if ! grep -q "FBSO-FIO-JSON-END" "$console"; then
		echo "guest-kit: the guest did not finish fio (accel $acc); console and QEMU log follow" >&2
		tail -30 "$console" >&2
		cat "$d/qemu.log" >&2
		rm -rf "$d"
		exit 2
	fi
	sed -n '/FBSO-FIO-JSON-BEGIN/,/FBSO-FIO-JSON-END/p' "$console" | sed '1d;$d' | tr -d '\r' | sed -n '/^{/,$p'
	rc=$(sed -n 's/^FBSO-FIO-RC \([0-9]*\).*/\1/p' "$console" | head -1)
	rm -rf "$d"
	[ "${rc:-1}" = 0 ] || exit 1
}

case "${1:-}" in
build) build ;;
accel) accel ;;
run) shift; run "$@" ;;
*) echo "usage: $0 build | accel | run --socket PATH [--queues N] [--runtime S] [--size-mb M] [--mem-mb M] [--timeout S] [--console FILE] [--packed]" >&2; exit 2 ;;
esac
