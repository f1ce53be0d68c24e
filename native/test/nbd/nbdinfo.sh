#!/bin/sh
# nbdinfo: sizes, flags, block sizes and the export list; several listeners.
. "$(dirname "$0")/lib.sh"
PORT=${NBD_TEST_PORT:-20212}
start_server --malloc m0:64M --null n0:1G:4096 --listen "unix:$T/s.sock" --export a:m0 \
	--export b:n0:ro --listen "tcp:127.0.0.1:$PORT" --export c:m0
nbdinfo --json "$(uri a)" >"$T/a.json" || fail "nbdinfo a"
/usr/bin/python3 - "$T/a.json" <<'PY' || fail "nbdinfo a fields"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == 64 << 20, e
assert e["is_read_only"] is False and e["can_flush"] and e["can_fua"] and e["can_trim"], e
assert e["can_zero"] and e["can_multi_conn"], e
assert e["block_size_minimum"] == 512 and e["block_size_preferred"] == 4096, e
assert e["block_size_maximum"] == 32 << 20, e
assert "base:allocation" in e["contexts"], e
PY
nbdinfo --json "$(uri b)" >"$T/b.json" || fail "nbdinfo b"
/usr/bin/python3 - "$T/b.json" <<'PY' || fail "nbdinfo b fields"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == 1 << 30 and e["is_read_only"] is True, e
assert e["block_size_minimum"] == 4096 and not e["can_trim"] and not e["can_zero"], e
PY
nbdinfo --list --json "$(uri a)" >"$T/l.json" || fail "nbdinfo --list"
/usr/bin/python3 - "$T/l.json" <<'PY' || fail "export list"
import json, sys
names = [e["export-name"] for e in json.load(open(sys.argv[1]))["exports"]]
assert names == ["a", "b"], names
PY
nbdinfo --size "nbd://127.0.0.1:$PORT/c" | grep -qx 67108864 || fail "tcp export size"
nbdinfo --map "$(uri a)" | grep -q "data" || fail "block status map"
stop_server
echo "ok nbdinfo"
