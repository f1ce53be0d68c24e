#!/usr/bin/python3
"""A hostile NBD client: sends malformed input of many kinds to an NBD server
and checks that each gets an error reply or a closed connection, and that the
server still answers a well-behaved client afterwards.

usage: hostile.py SOCKET_PATH RW_EXPORT RO_EXPORT [--server-pid PID]

Exit status 0 when every case behaved; the summary lists each case.
Written from the NBD protocol document; raw sockets only, no NBD library.
"""
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = 0x80000001, 0x80000003, 0x80000006, 0x80000009
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WZ, CMD_BS = range(8)
EPERM, EINVAL, ENOSPC = 1, 22, 28
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE, FLAG_FAST_ZERO = 1, 2, 4, 8, 16

SOCK = None
RW = RO = None
TIMEOUT = 5.0


class Closed(Exception):
    pass


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(SOCK)
    return s


def recvn(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise Closed()
        buf += d
    return buf


def greet(s, flags=1):
    magic, opt, hflags = struct.unpack(">QQH", recvn(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT and hflags & 1
    s.sendall(struct.pack(">I", flags))


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def read_rep(s):
    magic, opt, typ, ln = struct.unpack(">QIII", recvn(s, 20))
    assert magic == REPLY_MAGIC, hex(magic)
    return opt, typ, recvn(s, ln)


def read_reps(s):
    """Replies up to the final one (ACK or error)."""
    out = []
    while True:
        opt, typ, data = read_rep(s)
        out.append((typ, data))
        if typ == REP_ACK or typ & 0x80000000:
            return out


def go_data(name, infos=(3,)):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


def open_export(name, structured=True, meta=False):
    """A well-behaved handshake; returns (socket, size, tflags)."""
    s = connect()
    greet(s)
    if structured:
        send_opt(s, OPT_STRUCTURED)
        assert read_reps(s)[-1][0] == REP_ACK
    if meta:
        n = name.encode()
        q = b"base:allocation"
        send_opt(s, OPT_SET_META, struct.pack(">I", len(n)) + n + struct.pack(">II", 1, len(q)) + q)
        assert read_reps(s)[-1][0] == REP_ACK
    send_opt(s, OPT_GO, go_data(name))
    size = tflags = None
    for typ, data in read_reps(s):
        if typ == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
            size, tflags = struct.unpack(">QH", data[2:12])
        assert not typ & 0x80000000, hex(typ)
    return s, size, tflags


def request(s, cmd, offset, length, flags=0, cookie=0x1234, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, offset, length) + payload)


def reply(s, structured, read_len=0):
    """Returns (error, data) for one request's complete reply."""
    if not structured:
        magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
        assert magic == SIMPLE_MAGIC, hex(magic)
        return err, (recvn(s, read_len) if err == 0 and read_len else b"")
    err, data = 0, b""
    while True:
        magic = struct.unpack(">I", recvn(s, 4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", recvn(s, 12))
            return err, data
        assert magic == STRUCT_MAGIC, hex(magic)
        flags, typ, cookie, ln = struct.unpack(">HHQI", recvn(s, 16))
        body = recvn(s, ln)
        if typ == 1:
            data += body[8:]
        elif typ & 0x8000:
            err = struct.unpack(">I", body[:4])[0]
        if flags & 1:
            return err, data


def expect_closed(s, within=TIMEOUT):
    """True when the server closes the connection (reading drains any replies)."""
    s.settimeout(within)
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def server_alive():
    s, size, _ = open_export(RW)
    request(s, CMD_READ, 0, 4096)
    err, data = reply(s, True, 4096)
    request(s, CMD_DISC, 0, 0)
    s.close()
    return err == 0 and len(data) == 4096


# ----------------------------------------------------------------- cases
# Each returns None on success or a string saying what went wrong.

def c_garbage_client_flags():
    s = connect()
    recvn(s, 18)
    s.sendall(b"\xde\xad\xbe\xef" + os.urandom(64))
    return None if expect_closed(s) else "not closed"


def c_request_before_handshake():
    s = connect()
    recvn(s, 18)
    # A transmission request where the client flags belong: unknown flag bits.
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 1, 0, 4096) + b"x" * 4096)
    return None if expect_closed(s) else "not closed"


def c_oldstyle_client():
    # An oldstyle client just waits for NBDMAGIC + cliserv magic + size: it
    # gets the newstyle greeting, and the server never speaks oldstyle.
    s = connect()
    magic, second = struct.unpack(">QQ", recvn(s, 16))
    s.close()
    return None if magic == NBDMAGIC and second == IHAVEOPT else "unexpected greeting"


def c_bad_option_magic():
    s = connect()
    greet(s)
    s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
    return None if expect_closed(s) else "not closed"


def c_unknown_option():
    s = connect()
    greet(s)
    send_opt(s, 0x7777, b"abc")
    typ = read_rep(s)[1]
    send_opt(s, OPT_ABORT)
    s.close()
    return None if typ == ERR_UNSUP else "reply %x" % typ


def c_option_length_huge():
    s = connect()
    greet(s)
    # Announces 4 GiB of option data: the server may refuse it (TOO_BIG) or
    # close; it must not try to buffer it.
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_INFO, 0xFFFFFFF0) + b"z" * 1024)
    try:
        typ = read_rep(s)[1]
    except Closed:
        return None
    s.close()
    return None if typ in (ERR_TOO_BIG, ERR_INVALID) else "reply %x" % typ


def c_go_name_len_lies():
    s = connect()
    greet(s)
    send_opt(s, OPT_GO, struct.pack(">I", 1000) + b"ab" + struct.pack(">H", 0))
    typ = read_reps(s)[-1][0]
    s.close()
    return None if typ == ERR_INVALID else "reply %x" % typ


def c_go_info_count_lies():
    s = connect()
    greet(s)
    n = RW.encode()
    send_opt(s, OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 50) + b"\0\3")
    typ = read_reps(s)[-1][0]
    s.close()
    return None if typ == ERR_INVALID else "reply %x" % typ


def c_go_unknown_export():
    s = connect()
    greet(s)
    send_opt(s, OPT_GO, go_data("no-such-export"))
    typ = read_reps(s)[-1][0]
    # The session continues after an error: a correct GO still works.
    send_opt(s, OPT_GO, go_data(RW))
    ok = read_reps(s)[-1][0] == REP_ACK
    s.close()
    return None if typ == ERR_UNKNOWN and ok else "reply %x / retry ok=%s" % (typ, ok)


def c_export_name_unknown():
    s = connect()
    greet(s)
    send_opt(s, OPT_EXPORT_NAME, b"no-such-export")
    return None if expect_closed(s) else "not closed"


def c_list_with_data():
    s = connect()
    greet(s)
    send_opt(s, OPT_LIST, b"junk")
    typ = read_reps(s)[-1][0]
    s.close()
    return None if typ == ERR_INVALID else "reply %x" % typ


def c_structured_twice_and_data():
    s = connect()
    greet(s)
    send_opt(s, OPT_STRUCTURED, b"x")
    a = read_rep(s)[1]
    send_opt(s, OPT_STRUCTURED)
    b = read_rep(s)[1]
    send_opt(s, OPT_STRUCTURED)
    c = read_rep(s)[1]
    s.close()
    return None if (a, b, c) == (ERR_INVALID, REP_ACK, ERR_INVALID) else "replies %x %x %x" % (a, b, c)


def c_meta_before_structured_and_lying_query():
    s = connect()
    greet(s)
    n = RW.encode()
    send_opt(s, OPT_SET_META, struct.pack(">I", len(n)) + n + struct.pack(">I", 0))
    a = read_reps(s)[-1][0]
    send_opt(s, OPT_STRUCTURED)
    read_reps(s)
    send_opt(s, OPT_SET_META, struct.pack(">I", len(n)) + n + struct.pack(">II", 3, 9999) + b"base:")
    b = read_reps(s)[-1][0]
    s.close()
    return None if (a, b) == (ERR_INVALID, ERR_INVALID) else "replies %x %x" % (a, b)


def c_pipelined_options_unread():
    # Floods options without reading replies: the server must stop reading
    # rather than queue replies without bound.
    s = connect()
    greet(s)
    s.settimeout(0.5)
    sent = 0
    try:
        blob = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0) * 4096
        for _ in range(4096):
            s.sendall(blob)
            sent += len(blob)
    except socket.timeout:
        pass
    s.close()
    return None if sent < 256 << 20 else "server kept reading (%d bytes)" % sent


def c_truncated_option_then_close():
    s = connect()
    greet(s)
    s.sendall(struct.pack(">QI", IHAVEOPT, OPT_GO))
    s.close()
    return None


def c_bad_request_magic():
    s, _, _ = open_export(RW)
    s.sendall(struct.pack(">IHHQQI", 0xCAFEBABE, 0, CMD_READ, 1, 0, 4096))
    return None if expect_closed(s) else "not closed"


def c_truncated_request_header():
    s, _, _ = open_export(RW)
    s.sendall(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_READ, 1))
    s.close()
    return None


def c_unknown_command():
    s, _, _ = open_export(RW)
    request(s, 42, 0, 4096)
    err, _ = reply(s, True)
    alive = False
    request(s, CMD_READ, 0, 512)
    alive = reply(s, True, 512)[0] == 0
    s.close()
    return None if err == EINVAL and alive else "err %d alive %s" % (err, alive)


def c_unknown_flags():
    s, _, _ = open_export(RW)
    request(s, CMD_READ, 0, 4096, flags=0x8000)
    a = reply(s, True)[0]
    request(s, CMD_WZ, 0, 4096, flags=FLAG_FAST_ZERO)  # FAST_ZERO was not advertised
    b = reply(s, True)[0]
    request(s, CMD_WRITE, 0, 512, flags=FLAG_REQ_ONE, payload=b"q" * 512)
    c = reply(s, True)[0]
    s.close()
    return None if (a, b, c) == (EINVAL,) * 3 else "errs %d %d %d" % (a, b, c)


def c_read_out_of_range():
    s, size, _ = open_export(RW)
    request(s, CMD_READ, size, 4096)
    a = reply(s, True)[0]
    request(s, CMD_READ, (1 << 64) - 512, 1024)  # offset + length wraps
    b = reply(s, True)[0]
    request(s, CMD_TRIM, size - 512, 4096)
    c = reply(s, True)[0]
    s.close()
    return None if (a, b, c) == (EINVAL,) * 3 else "errs %d %d %d" % (a, b, c)


def c_write_beyond_end():
    s, size, _ = open_export(RW)
    request(s, CMD_WRITE, size - 512, 4096, payload=b"w" * 4096)
    a = reply(s, True)[0]
    request(s, CMD_WZ, size, 512)
    b = reply(s, True)[0]
    # The refused payload was skipped: the stream is still in sync.
    request(s, CMD_READ, 0, 512)
    c = reply(s, True, 512)[0]
    s.close()
    return None if (a, b, c) == (ENOSPC, ENOSPC, 0) else "errs %d %d %d" % (a, b, c)


def c_misaligned():
    s, _, _ = open_export(RW)
    request(s, CMD_READ, 1, 4096)
    a = reply(s, True)[0]
    request(s, CMD_WRITE, 0, 100, payload=b"m" * 100)
    b = reply(s, True)[0]
    request(s, CMD_READ, 0, 512)
    c = reply(s, True, 512)[0]
    s.close()
    return None if (a, b, c) == (EINVAL, EINVAL, 0) else "errs %d %d %d" % (a, b, c)


def c_huge_read():
    s, _, _ = open_export(RW, structured=False)
    request(s, CMD_READ, 0, 64 << 20)
    err = reply(s, False)[0]
    s.close()
    return None if err == EINVAL else "err %d" % err


def c_huge_write():
    s, _, _ = open_export(RW)
    request(s, CMD_WRITE, 0, 0xFFFFFE00)
    return None if expect_closed(s) else "not closed"


def c_disconnect_mid_write():
    s, _, _ = open_export(RW)
    request(s, CMD_WRITE, 0, 1 << 20, payload=b"p" * 5000)
    s.close()
    return None


def c_block_status_without_meta():
    s, _, _ = open_export(RW)
    request(s, CMD_BS, 0, 4096)
    a = reply(s, True)[0]
    s.close()
    s, size, _ = open_export(RW, meta=True)
    request(s, CMD_BS, 0, size, flags=FLAG_REQ_ONE)
    b = reply(s, True)[0]
    s.close()
    return None if (a, b) == (EINVAL, 0) else "errs %d %d" % (a, b)


def c_write_readonly():
    s, _, tflags = open_export(RO)
    request(s, CMD_WRITE, 0, 4096, payload=b"r" * 4096)
    a = reply(s, True)[0]
    request(s, CMD_TRIM, 0, 4096)
    b = reply(s, True)[0]
    request(s, CMD_WZ, 0, 4096)
    c = reply(s, True)[0]
    s.close()
    ok = (a, b, c) == (EPERM,) * 3 and tflags & 2
    return None if ok else "errs %d %d %d flags %x" % (a, b, c, tflags)


def c_df_without_structured():
    s, _, _ = open_export(RW, structured=False)
    request(s, CMD_READ, 0, 4096, flags=FLAG_DF)
    err = reply(s, False)[0]
    s.close()
    return None if err == EINVAL else "err %d" % err


def c_never_read_replies():
    # Pipelines 1 MiB reads and never reads a reply: the server must stop
    # reading requests (bounded memory), then clean up when we leave.
    s, _, _ = open_export(RW)
    s.settimeout(1.0)
    rss0 = rss()
    sent = 0
    try:
        for i in range(20000):
            request(s, CMD_READ, 0, 1 << 20, cookie=i)
            sent += 1
    except socket.timeout:
        pass
    grown = rss() - rss0
    s.close()
    if sent >= 20000:
        return "server accepted %d unread requests" % sent
    if RSS_PID and grown > (512 << 20):
        return "server RSS grew by %d MiB" % (grown >> 20)
    return None


def c_disc_with_inflight():
    s, _, _ = open_export(RW)
    for i in range(64):
        request(s, CMD_READ, i * 4096, 4096, cookie=i)
    request(s, CMD_DISC, 0, 0)
    n = 0
    try:
        for _ in range(64):
            if reply(s, True, 4096)[0] == 0:
                n += 1
    except Closed:
        pass
    closed = expect_closed(s)
    return None if n == 64 and closed else "%d replies, closed %s" % (n, closed)


def c_zero_length_ops():
    s, _, _ = open_export(RW)
    errs = []
    for cmd in (CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WZ, CMD_FLUSH, CMD_CACHE):
        request(s, cmd, 0, 0)
        errs.append(reply(s, True)[0])
    s.close()
    return None if errs == [0] * 6 else "errs %s" % errs


def greeted(s):
    """The server greeted s (True) or closed it at once: one client past
    its connection cap (False)."""
    try:
        recvn(s, 18)
        return True
    except (Closed, ConnectionResetError):
        return False


def wait_greeting(deadline=20.0):
    """Once a burst is dropped the server frees its slots: a new connection
    is greeted again within the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        s = connect()
        ok = greeted(s)
        s.close()
        if ok:
            return True
        time.sleep(0.05)
    return False


def c_connection_churn():
    # Thousands of connections opened and dropped at every stage. The server
    # may still be freeing earlier ones when a new one comes, so a few may
    # be closed at once by the per-client cap; none may hang.
    n = greets = 0
    for i in range(3000):
        s = connect()
        if i % 3 == 1:
            greets += greeted(s)
        elif i % 3 == 2 and greeted(s):
            greets += 1
            s.sendall(struct.pack(">I", 1) + struct.pack(">QII", IHAVEOPT, OPT_LIST, 0))
        s.close()
        n += 1
    if not wait_greeting():
        return "no greeting after the churn"
    return None if n == 3000 and greets > 0 else "only %d, %d greeted" % (n, greets)


def c_many_open_connections():
    # Many connections held open at once, more than one client may hold
    # (nbd_max_conns_per_client, 256 by default): the server greets some,
    # closes the rest at once, and serves again once all are dropped.
    socks = [connect() for _ in range(500)]
    greets = sum(1 for s in socks if greeted(s))
    for s in socks:
        s.close()
    if not 0 < greets < 500:
        return "%d of 500 greeted (the per-client cap is 256)" % greets
    return None if wait_greeting() else "no greeting after the burst"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("c_")]
RSS_PID = None


def rss():
    if not RSS_PID:
        return 0
    with open("/proc/%d/status" % RSS_PID) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    global SOCK, RW, RO, RSS_PID
    args = sys.argv[1:]
    if "--server-pid" in args:
        i = args.index("--server-pid")
        RSS_PID = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        print(__doc__)
        return 2
    SOCK, RW, RO = args
    failed = 0
    for case in CASES:
        name = case.__name__[2:]
        t0 = time.time()
        try:
            why = case()
        except Exception as ex:  # a case that raises is a failed case
            why = "%s: %s" % (type(ex).__name__, ex)
        try:
            alive = server_alive()
        except Exception as ex:
            alive = False
            why = (why or "") + " / server check failed: %s" % ex
        if not alive and not why:
            why = "server did not answer a good client afterwards"
        status = "ok  " if not why else "FAIL"
        failed += bool(why)
        print("%s %-45s %5.2fs %s" % (status, name, time.time() - t0, why or ""), flush=True)
    print("hostile: %d cases, %d failed" % (len(CASES), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
