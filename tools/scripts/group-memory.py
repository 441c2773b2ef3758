#!/usr/bin/env python3
"""Broker memory held for consumer groups with long identifiers.

Starts the given broker binary on an empty data dir, creates topic `t` (Metadata
auto-creation), then sends COUNT requests that each create one group:

- `commit`: an OffsetCommit v8 of t/0 by a simple consumer (generation -1) whose group
  id is ID_BYTES long;
- `join`: a JoinGroup v6 (twice: the first answers MEMBER_ID_REQUIRED) of a static
  member whose group id, group instance id and client id are ID_BYTES long (the client
  id at most 32767, the header's limit), with one
  protocol of METADATA_BYTES of metadata; members stay until their session (30 min) ends.

It prints the broker's VmRSS before and after, the bytes of identifiers and metadata
sent (each id counted once), the size of the offsets log, and the VmRSS after a clean
restart (what replaying the offsets log builds). Requests are pipelined 32 at a time.
Standard library only.

Usage (from the repository root, after `cargo build --release --bin strata`):
    tools/scripts/group-memory.py [--binary B] [--scenario commit|join] [--count N]
        [--id-bytes N] [--metadata-bytes N] [--extra-args '...']
"""

import argparse
import glob
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ADDR = ("127.0.0.1", 19556)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def uvarint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def compact_bytes(b):
    return uvarint(len(b) + 1) + b


def compact_nullable(b):
    return b"\x00" if b is None else compact_bytes(b)


def header(api_key, version, correlation_id, client_id, flexible):
    h = struct.pack(">hhi", api_key, version, correlation_id)
    h += struct.pack(">h", len(client_id)) + client_id
    return h + (b"\x00" if flexible else b"")


def frame(body):
    return struct.pack(">i", len(body)) + body


def read_exactly(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        data += chunk
    return bytes(data)


def read_frame(sock):
    (length,) = struct.unpack(">i", read_exactly(sock, 4))
    return read_exactly(sock, length)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        shift = value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1)


def offset_commit(correlation_id, group, client_id):
    body = header(8, 8, correlation_id, client_id, True)
    body += compact_bytes(group) + struct.pack(">i", -1) + compact_bytes(b"") + b"\x00"
    partition = struct.pack(">iqi", 0, 1, -1) + compact_nullable(None) + b"\x00"
    body += uvarint(2) + compact_bytes(b"t") + uvarint(2) + partition + b"\x00" + b"\x00"
    return frame(body)


def offset_commit_error(response):
    r = Reader(response)
    r.i32()  # correlation id
    r.uvarint()  # header tags
    r.i32()  # throttle
    r.uvarint()  # topics
    r.compact_string()
    r.uvarint()  # partitions
    r.i32()
    return r.i16()


def join_group(correlation_id, group, member_id, instance, client_id, metadata):
    body = header(11, 6, correlation_id, client_id, True)
    body += compact_bytes(group) + struct.pack(">ii", 1_800_000, 60_000)
    body += compact_bytes(member_id) + compact_nullable(instance) + compact_bytes(b"consumer")
    body += uvarint(2) + compact_bytes(b"range") + compact_bytes(metadata) + b"\x00"
    return frame(body + b"\x00")


def join_answer(response):
    r = Reader(response)
    r.i32()
    r.uvarint()
    r.i32()  # throttle
    error = r.i16()
    r.i32()  # generation
    r.compact_string()  # protocol name
    r.compact_string()  # leader
    return error, r.compact_string()


def metadata_v1(correlation_id, topic):
    body = header(3, 1, correlation_id, b"", False)
    body += struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
    return frame(body)


def pipelined(sock, frames, answer, window=32):
    answers = []
    for start in range(0, len(frames), window):
        batch = frames[start : start + window]
        sock.sendall(b"".join(batch))
        answers.extend(answer(read_frame(sock)) for _ in batch)
    return answers


def start(binary, data, extra):
    broker = subprocess.Popen(
        [binary, "--listen", f"{ADDR[0]}:{ADDR[1]}", "--data-dir", data] + extra,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            socket.create_connection(ADDR).close()
            return broker
        except OSError:
            time.sleep(0.05)
    broker.kill()
    sys.exit("broker did not listen")


def stop(broker):
    broker.send_signal(signal.SIGTERM)
    broker.wait(timeout=60)


def ids(count, length, tag):
    return [(f"{tag}{i:08d}-".encode() * (length // 10 + 1))[:length] for i in range(count)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default="target/release/strata")
    p.add_argument("--scenario", choices=["commit", "join"], default="commit")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--id-bytes", type=int, default=1 << 20)
    p.add_argument("--metadata-bytes", type=int, default=0)
    p.add_argument("--extra-args", default="")
    args = p.parse_args()
    extra = shlex.split(args.extra_args)
    with tempfile.TemporaryDirectory() as data:
        broker = start(args.binary, data, extra)
        try:
            with socket.create_connection(ADDR) as sock:
                for attempt in range(2):
                    sock.sendall(metadata_v1(attempt, b"t"))
                    read_frame(sock)
                    time.sleep(0.2)
            time.sleep(0.5)
            before = vm_rss_kib(broker.pid)
            groups = ids(args.count, args.id_bytes, "g")
            sent = args.count * args.id_bytes
            with socket.create_connection(ADDR) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                if args.scenario == "commit":
                    frames = [offset_commit(i, g, b"c") for i, g in enumerate(groups)]
                    errors = pipelined(sock, frames, offset_commit_error)
                else:
                    instances = ids(args.count, args.id_bytes, "i")
                    # A request header's client id is an INT16-length string.
                    client_len = min(args.id_bytes, 32767)
                    client = (b"client-" * (client_len // 7 + 1))[:client_len]
                    meta = b"m" * args.metadata_bytes
                    sent = args.count * (2 * args.id_bytes + args.metadata_bytes) + client_len
                    frames = [
                        join_group(i, g, b"", inst, client, meta)
                        for i, (g, inst) in enumerate(zip(groups, instances))
                    ]
                    first = pipelined(sock, frames, join_answer)
                    errors = [e for e, _ in first]
                    if all(e == 79 for e in errors):  # MEMBER_ID_REQUIRED: join again
                        frames = [
                            join_group(i, g, m, inst, client, meta)
                            for i, (g, inst, (_, m)) in enumerate(zip(groups, instances, first))
                        ]
                        errors = [e for e, _ in pipelined(sock, frames, join_answer)]
            time.sleep(1.0)
            after = vm_rss_kib(broker.pid)
            codes = sorted(set(errors))
            log_bytes = sum(
                os.path.getsize(f) for f in glob.glob(f"{data}/_strata/offsets/*.log")
            )
            stop(broker)
            broker = start(args.binary, data, extra)
            time.sleep(1.0)
            restarted = vm_rss_kib(broker.pid)
            grown = (after - before) / 1024
            print(
                f"{args.scenario} x{args.count}, ids of {args.id_bytes} B: error codes {codes}; "
                f"VmRSS {before / 1024:.1f} -> {after / 1024:.1f} MiB (+{grown:.1f} MiB for "
                f"{sent / 2**20:.1f} MiB of ids and metadata, {grown * 2**20 / max(sent, 1):.2f}x); "
                f"offsets log {log_bytes / 2**20:.1f} MiB; after restart {restarted / 1024:.1f} MiB"
            )
        finally:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    main()
