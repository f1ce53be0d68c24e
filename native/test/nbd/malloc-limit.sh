#!/bin/sh
# Malloc bdevs are refused beyond the memory the machine can back: a 1 TiB
# one fails with a message naming its size and the limit. TRIM of a large
# written range gives its RAM back (RSS drops) and reads as zeros, while
# another client keeps verifying I/O.
. "$(dirname "$0")/lib.sh"
rc=0
timeout 20 "$SERVE" --malloc huge:1T --listen "unix:$T/h.sock" --export x:huge >"$T/huge.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "a 1 TiB malloc bdev was accepted (exit $rc)"
grep -q "malloc bdev 'huge' needs 1099511627776 bytes" "$T/huge.log" || fail "message: $(cat "$T/huge.log")"
grep -q "malloc_mem_limit" "$T/huge.log" || fail "message names no limit: $(cat "$T/huge.log")"
start_server --malloc m0:256M --malloc g0:16M --listen "unix:$T/s.sock" --export m:m0 --export good:g0
NBD_TEST_DIR=$(cd "$(dirname "$0")" && pwd) /usr/bin/python3 - "$T/s.sock" "$SERVER_PID" <<'PY' || fail "trim test"
import os, struct, sys, threading
sys.path.insert(0, os.environ["NBD_TEST_DIR"])
import hostile as h
h.SOCK = sys.argv[1]
pid = sys.argv[2]
MiB = 1 << 20
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
s, size, _ = h.open_export("m")
s.settimeout(60)
blk = b"\x5a" * (4 * MiB)
for off in range(0, 256 * MiB, 4 * MiB):
    h.request(s, h.CMD_WRITE, off, len(blk), payload=blk)
    assert h.reply(s, True)[0] == 0
before = rss()
# The other client works while the trim runs.
g, _, _ = h.open_export("good")
g.settimeout(60)
done = []
def good():
    n = 0
    while not done:
        d = struct.pack(">Q", n) * 512
        h.request(g, h.CMD_WRITE, (n % 64) * 4096, 4096, payload=d)
        assert h.reply(g, True)[0] == 0
        h.request(g, h.CMD_READ, (n % 64) * 4096, 4096)
        err, got = h.reply(g, True, 4096)
        assert err == 0 and got == d
        n += 1
    done.append(n)
t = threading.Thread(target=good)
t.start()
h.request(s, h.CMD_TRIM, 0, 256 * MiB)
assert h.reply(s, True)[0] == 0
h.request(s, h.CMD_READ, 4 * MiB - 4096, 8192)
err, data = h.reply(s, True, 8192)
assert err == 0 and data == bytes(8192), "trimmed range must read as zeros"
after = rss()
done.append(True)
t.join(60)
print(f"malloc-limit: RSS {before / MiB:.0f} MiB after writing 256 MiB, {after / MiB:.0f} MiB after TRIM; good ops {done[-1]}")
assert before - after >= 200 * MiB, "TRIM did not give the memory back"
assert done[-1] > 0
PY
stop_server
echo "ok malloc-limit"
