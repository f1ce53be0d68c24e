#!/bin/sh
# NBD over TLS (NBD_OPT_STARTTLS) on a TCP listener in TLS-required mode,
# with real clients: PSK (qemu's and nbdkit's `username:hexkey` file) and
# X.509 (a CA, a server certificate, client certificates the server checks).
# The right credentials read and write (nbdinfo, nbdcopy both ways + cmp,
# qemu-io patterns); a wrong key, a certificate from another CA, or no TLS
# at all gets nothing: no export listed, described or opened.
. "$(dirname "$0")/lib.sh"
PORT=${NBD_TEST_PORT:-20213}
U="127.0.0.1:$PORT"

# ------------------------------------------------------------------ PSK
mkdir -p "$T/psk" "$T/bad"
echo "alice:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$T/psk/keys.psk"
echo "alice:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$T/bad/keys.psk"
start_server --malloc m0:64M --listen "tcp:$U" --tls-psk "$T/psk/keys.psk" --tls-required \
	--export x:m0
good="nbds://alice@$U/x?tls-psk-file=$T/psk/keys.psk"
nbdinfo "$good" >"$T/info" 2>&1 || fail "nbdinfo with the key: $(cat "$T/info")"
grep -q "with TLS" "$T/info" || fail "nbdinfo did not use TLS"
head -c 32M /dev/urandom >"$T/img"
nbdcopy "$T/img" "$good" || fail "nbdcopy in over TLS"
nbdcopy "$good" "$T/out" || fail "nbdcopy out over TLS"
head -c 32M "$T/out" | cmp - "$T/img" || fail "nbdcopy over TLS: data differs"
qio_psk() {  # DIR CMD...: qemu-io through tls-creds-psk with DIR/keys.psk
	d=$1
	shift
	qemu-io --object "tls-creds-psk,id=t0,endpoint=client,dir=$d,username=alice" \
		--image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=x,tls-creds=t0" \
		"$@"
}
qio_psk "$T/psk" -c "write -P 0x5a 1M 64k" -c "read -P 0x5a 1M 64k" >"$T/q" 2>&1 ||
	fail "qemu-io over TLS: $(cat "$T/q")"
grep -q "read 65536/65536" "$T/q" || fail "qemu-io over TLS: $(cat "$T/q")"
# A wrong key, no TLS: nothing.
if nbdinfo "nbds://alice@$U/x?tls-psk-file=$T/bad/keys.psk" >"$T/n1" 2>&1; then fail "wrong key got in"; fi
if qio_psk "$T/bad" -c "read 0 4k" >"$T/n2" 2>&1; then fail "qemu-io with a wrong key got in"; fi
if nbdinfo "nbd://$U/x" >"$T/n3" 2>&1; then fail "a client without TLS opened the export"; fi
if nbdinfo --list "nbd://$U/" >"$T/n4" 2>&1; then fail "a client without TLS listed exports"; fi
grep -q '"x"\|export="x"' "$T/n4" && fail "the export list leaked without TLS"
if qemu-io -f raw "nbd://$U/x" -c "read 0 4k" >"$T/n5" 2>&1; then fail "qemu-io without TLS got in"; fi
grep -q "TLS is required" "$T/n5" || fail "no TLS-required reply: $(cat "$T/n5")"
grep -q "TLS handshake failed" "$T/server.log" || fail "the wrong key was not logged"
stop_server

# ---------------------------------------------------------------- X.509
x509() {  # DIR NAME: a CA in DIR, plus NAME's key and certificate signed by it
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=test CA $(basename "$1")" -keyout "$1/ca-key.pem" -out "$1/ca-cert.pem" 2>/dev/null
	for n in server client; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
			-keyout "$1/$n-key.pem" -out "$1/$n.csr" 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=%s\n' \
			"$([ $n = server ] && echo serverAuth || echo clientAuth)" >"$1/$n.ext"
		openssl x509 -req -in "$1/$n.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" \
			-CAcreateserial -days 2 -extfile "$1/$n.ext" -out "$1/$n-cert.pem" 2>/dev/null
	done
}
mkdir -p "$T/pki" "$T/other"
x509 "$T/pki" || fail "openssl"
x509 "$T/other" || fail "openssl"
start_server --malloc m0:64M --listen "tcp:$U" --tls-cert "$T/pki/server-cert.pem" \
	--tls-key "$T/pki/server-key.pem" --tls-ca "$T/pki/ca-cert.pem" --tls-required --export x:m0
qio_x509() {  # DIR CMD...: qemu-io through tls-creds-x509 (ca-cert, client-cert, client-key in DIR)
	d=$1
	shift
	qemu-io --object "tls-creds-x509,id=t0,endpoint=client,dir=$d" \
		--image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=x,tls-creds=t0" \
		"$@"
}
qio_x509 "$T/pki" -c "write -P 0xa5 0 64k" -c "read -P 0xa5 0 64k" >"$T/q" 2>&1 ||
	fail "qemu-io over X.509 TLS: $(cat "$T/q")"
grep -q "read 65536/65536" "$T/q" || fail "qemu-io over X.509 TLS: $(cat "$T/q")"
nbdinfo "nbds://$U/x?tls-certificates=$T/pki" >"$T/info" 2>&1 || fail "nbdinfo X.509: $(cat "$T/info")"
# A client certificate from another CA (the client trusts both CAs, so it
# accepts our server and its own certificate): refused by the server.
cat "$T/pki/ca-cert.pem" >>"$T/other/ca-cert.pem"
if qio_x509 "$T/other" -c "read 0 4k" >"$T/n6" 2>&1; then fail "a certificate of another CA got in"; fi
grep -q "not signed by tls_ca_file" "$T/server.log" || fail "the foreign certificate was not refused by the server"
if nbdinfo --list "nbd://$U/" >"$T/n7" 2>&1; then fail "a client without TLS listed exports"; fi
stop_server
echo "ok tls"
