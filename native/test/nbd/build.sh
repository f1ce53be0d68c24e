#!/bin/sh
# Builds out/fb_nbd_serve (and out/fb_nbd_serve-asan with ASAN=1) until the
# Makefile has rules for them. Run from native/.
set -e
cd "$(dirname "$0")/../.."
W="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -Iinclude -O2 -g"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
make -s out/libflexbso.a
cc $W tools/fb_nbd_serve.c -o out/fb_nbd_serve out/libflexbso.a -luring -pthread
if [ "${ASAN:-0}" = 1 ]; then
	make -s out/libflexbso-asan.a
	cc $W $SAN tools/fb_nbd_serve.c -o out/fb_nbd_serve-asan out/libflexbso-asan.a -luring -pthread
fi
