#!/usr/bin/env python3
"""An unrelated client's latency while other clients do heavy work (issue 15).

Measures ApiVersions round trips on one connection (the probe) against a running broker:
first idle, then while WORKERS other connections each create TOPICS topics of PARTITIONS
partitions (every partition: directories, files and fsyncs), then while they produce
1 MiB batches to a topic with 1 MiB segments (a roll and its fsyncs every batch) and
fetch it back from offset 0. Prints p50 / p99 / max of each phase in ms, and exits
non-zero if a heavy request failed.

No dependencies: the three requests are encoded here (ApiVersions v0, CreateTopics v2,
Produce v3 with an uncompressed RecordBatch v2, Fetch v4).

Usage: tools/scripts/latency-during-admin.py HOST:PORT [WORKERS] [TOPICS] [PARTITIONS]
"""

import socket
import struct
import sys
import threading
import time
import zlib

ADDR = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
TOPICS = int(sys.argv[3]) if len(sys.argv) > 3 else 4
PARTITIONS = int(sys.argv[4]) if len(sys.argv) > 4 else 150
HOST, PORT = ADDR.rsplit(":", 1)
RUN = f"{int(time.time() * 1000) % 10_000_000}"
failures = []


def connect():
    s = socket.create_connection((HOST, int(PORT)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def call(sock, api, version, corr, body):
    header = struct.pack(">hhi", api, version, corr) + string("latency-probe")
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    response = recv_exact(sock, size)
    if struct.unpack(">i", response[:4])[0] != corr:
        raise RuntimeError("correlation id mismatch")
    return response[4:]


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise RuntimeError("connection closed")
        out += chunk
    return bytes(out)


def varint(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record_batch(count, value_size):
    records = bytearray()
    value = b"x" * value_size
    for i in range(count):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(value)) + value + varint(0)
        records += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, count - 1, 0, 0, -1, -1, -1, count) + bytes(records)
    crc = crc32c(after_crc)
    head = struct.pack(">qiiB", 0, len(after_crc) + 9, 0, 2)
    return head + struct.pack(">I", crc) + after_crc


_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def create_topics(sock, corr, names, partitions, configs=()):
    body = struct.pack(">i", len(names))
    for name in names:
        body += string(name) + struct.pack(">ihi", partitions, 1, 0)
        body += struct.pack(">i", len(configs))
        for k, v in configs:
            body += string(k) + string(v)
    body += struct.pack(">i?", 60_000, False)
    response = call(sock, 19, 2, corr, body)
    # throttle_time_ms, then [name, error_code, error_message]
    (count,) = struct.unpack(">i", response[4:8])
    pos = 8
    for _ in range(count):
        (n,) = struct.unpack(">h", response[pos : pos + 2])
        pos += 2 + n
        (code,) = struct.unpack(">h", response[pos : pos + 2])
        pos += 2
        (m,) = struct.unpack(">h", response[pos : pos + 2])
        pos += 2 + max(m, 0)
        if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
            failures.append(f"CreateTopics error {code}")


def produce(sock, corr, topic, batch):
    body = struct.pack(">hhii", -1, -1, 30_000, 1) + string(topic)
    body += struct.pack(">ii", 1, 0) + struct.pack(">i", len(batch)) + batch
    response = call(sock, 0, 3, corr, body)
    # [topic [partition error_code ...]]
    pos = 4
    (n,) = struct.unpack(">h", response[pos : pos + 2])
    pos += 2 + n + 4 + 4
    (code,) = struct.unpack(">h", response[pos : pos + 2])
    if code != 0:
        failures.append(f"Produce error {code}")


def fetch(sock, corr, topic, offset):
    body = struct.pack(">iiiiB", -1, 0, 1, 4 << 20, 0) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">iiqi", 1, 0, offset, 4 << 20)
    call(sock, 1, 4, corr, body)


def probe(stop, samples):
    sock = connect()
    corr = 0
    while not stop.is_set():
        corr += 1
        start = time.perf_counter()
        call(sock, 18, 0, corr, b"")
        samples.append((time.perf_counter() - start) * 1000)
        time.sleep(0.001)
    sock.close()


def phase(name, heavy):
    stop = threading.Event()
    samples = []
    prober = threading.Thread(target=probe, args=(stop, samples))
    prober.start()
    if heavy is None:
        time.sleep(2)
    else:
        threads = [threading.Thread(target=heavy, args=(w,)) for w in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stop.set()
    prober.join()
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    print(f"{name:<28} n={len(samples):>6}  p50 {p(0.5):7.2f} ms  p99 {p(0.99):7.2f} ms  max {samples[-1]:7.2f} ms")


def creating(worker):
    sock = connect()
    for t in range(TOPICS):
        create_topics(sock, t + 1, [f"lat-{RUN}-{worker}-{t}"], PARTITIONS)
    sock.close()


BATCH = record_batch(1024, 1000)


def rolling(worker):
    topic = f"lat-roll-{RUN}-{worker}"
    sock = connect()
    create_topics(sock, 1, [topic], 1, [("segment.bytes", str(1 << 20))])
    for i in range(60):
        produce(sock, 2 + i, topic, BATCH)
    for i in range(20):
        fetch(sock, 100 + i, topic, 0)
    sock.close()


phase("idle", None)
phase(f"{WORKERS}x create {TOPICS}x{PARTITIONS}p", creating)
phase(f"{WORKERS}x produce+roll, fetch", rolling)
if failures:
    print("failures:", failures[:5], file=sys.stderr)
    sys.exit(1)
