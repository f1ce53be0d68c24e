#!/usr/bin/env python3
"""NBD memory exhaustion against one engine process (issue 12, item 6).

Attackers on export VICTIM (a bdev without zcopy, so reads need buffers):
- NW connections each send a 32 MiB WRITE header and half its payload, then
  stop sending (and never close);
- NR connections each pipeline two 32 MiB READs and never read the replies.
Meanwhile a good client on export GOOD keeps writing and verifying 32 KiB
blocks. Passes when:
- the server's peak RSS (VmHWM) stays under baseline + --bound bytes;
- every attacker connection is closed by the server (payload deadline for
  the writers, stall eviction for the readers) before --deadline s;
- the good client completed verified I/O after the attack started, with no
  mismatch, and after the attackers are gone;
- the server is still alive.

usage: dos.py SOCK VICTIM GOOD --server-pid PID --bound BYTES [--nw N] [--nr N]
"""
import argparse
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile as h  # noqa: E402  (the protocol helpers)

MiB = 1 << 20
BIG = 32 * MiB


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} missing for pid {pid}")


class Good(threading.Thread):
    """Writes a pattern block, reads it back, compares; counts verified ops."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.name_ = name
        self.ops = 0
        self.errors = []
        self.stop = False

    def run(self):
        try:
            s, size, _ = h.open_export(self.name_)
            s.settimeout(120)
            n = 0
            while not self.stop:
                # 32 KiB: header and payload fit one 64 KiB receive, so a
                # loaded machine cannot leave the good client's own payload
                # half-read past the (short) payload deadline of this test.
                off = (n * 32 * 1024) % (4 * MiB)  # 4 MiB of the bdev: its RSS stays small
                data = struct.pack(">Q", n) * (32 * 1024 // 8)
                h.request(s, h.CMD_WRITE, off, len(data), cookie=n, payload=data)
                err, _ = h.reply(s, True)
                if err:
                    self.errors.append(f"write {n}: error {err}")
                    return
                h.request(s, h.CMD_READ, off, len(data), cookie=n)
                err, got = h.reply(s, True, len(data))
                if err or got != data:
                    self.errors.append(f"read {n}: error {err}, data {'ok' if got == data else 'MISMATCH'}")
                    return
                n += 1
                self.ops = n
        except Exception as e:  # noqa: BLE001 (reported by the main thread)
            self.errors.append(f"good client: {e!r}")


class Attacker(threading.Thread):
    """One hostile connection. The socket is published before it sends, so
    the main thread can watch it while a blocked sendall is in progress."""

    def __init__(self, kind):
        super().__init__(daemon=True)
        self.kind = kind
        self.sock = None

    def run(self):
        try:
            s, size, _ = h.open_export(h.RW)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(None)
            self.sock = s
            if self.kind == "w":
                hdr = struct.pack(">IHHQQI", h.REQ_MAGIC, 0, h.CMD_WRITE, 1, 0, BIG)
                s.sendall(hdr)
                s.sendall(b"\xa5" * (BIG // 2))  # blocks until the server reads it (or closes)
            else:
                for i in range(2):
                    s.sendall(struct.pack(">IHHQQI", h.REQ_MAGIC, 0, h.CMD_READ, i, BIG * i, BIG))
        except (OSError, h.Closed):
            pass  # closed by the server while sending: what we want

    def closed(self):
        """True once the server has closed the connection. Polls for the
        hang-up, never reads: unread reply bytes stay in the socket (a peek
        would see them, not the close), and reading them would turn a
        stalled reader into a slow one, which the server rightly keeps."""
        s = self.sock
        if s is None:
            return False
        p = select.poll()
        p.register(s.fileno(), select.POLLRDHUP | select.POLLHUP)
        return any(ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sock")
    ap.add_argument("victim")
    ap.add_argument("good")
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--bound", type=int, required=True, help="allowed RSS growth, bytes")
    ap.add_argument("--nw", type=int, default=16)
    ap.add_argument("--nr", type=int, default=16)
    ap.add_argument("--deadline", type=float, default=120.0)
    a = ap.parse_args()
    h.SOCK, h.RW = a.sock, a.victim
    pid = a.server_pid

    good = Good(a.good)
    good.start()
    t0 = time.monotonic()
    while good.ops < 20 and not good.errors and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert not good.errors, good.errors
    base = vm(pid, "VmRSS")
    ops_before = good.ops

    attackers = [Attacker("w") for _ in range(a.nw)] + [Attacker("r") for _ in range(a.nr)]
    for t in attackers:
        t.start()

    # Wait until every attacker is closed by the server; sample RSS meanwhile.
    peak = base
    end = time.monotonic() + a.deadline
    open_w = open_r = -1
    ok = False
    while time.monotonic() < end:
        peak = max(peak, vm(pid, "VmRSS"))
        if peak - base > a.bound:
            break
        still = [t for t in attackers if not t.closed()]
        open_w = sum(1 for t in still if t.kind == "w")
        open_r = len(still) - open_w
        if not still:
            ok = True
            break
        time.sleep(0.1)
    open_left = max(open_w, 0) + max(open_r, 0)
    hwm = vm(pid, "VmHWM")
    ops_attack = good.ops - ops_before
    # The good client keeps going once the attackers are gone.
    after0 = good.ops
    t1 = time.monotonic()
    while good.ops < after0 + 20 and not good.errors and time.monotonic() - t1 < 30:
        time.sleep(0.05)
    good.stop = True
    good.join(timeout=30)
    alive = h.server_alive() if os.path.exists(f"/proc/{pid}") else False
    print(f"dos: baseline RSS {base / MiB:.0f} MiB, peak RSS growth {(peak - base) / MiB:.0f} MiB "
          f"(sampled), VmHWM {hwm / MiB:.0f} MiB, bound {a.bound / MiB:.0f} MiB; "
          f"attackers still open {open_left}/{a.nw + a.nr} ({open_w} writers, {open_r} readers) after {time.monotonic() - t0:.0f} s; "
          f"good ops during attack {ops_attack}, after {good.ops - after0}; errors {good.errors}")
    fails = []
    if hwm - base > a.bound:
        fails.append(f"peak RSS grew {(hwm - base) / MiB:.0f} MiB > bound {a.bound / MiB:.0f} MiB")
    if peak - base > a.bound or not ok:
        fails.append(f"{open_left} attacker connections still open (or bound exceeded first)")
    if good.errors:
        fails.append(f"good client: {good.errors}")
    if ops_attack == 0 or good.ops - after0 < 20:
        fails.append("good client made no progress")
    if not alive:
        fails.append("server is down")
    for f in fails:
        print("FAIL dos:", f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
