#!/usr/bin/env python3
"""InitProducerId latency as the number of remembered producers grows.

Starts the given broker binary on an empty data dir, sends COUNT InitProducerId v0
requests (no transactional id, one connection, one at a time) and prints the latency of
the first and the last 1,000: a broker that scans every producer it remembers on each
call gets slower as they accumulate. Standard library only.

Usage (from the repository root, after `cargo build --bin strata`):
    tools/scripts/init-producer-id-latency.py [BINARY] [COUNT]
    (defaults: target/debug/strata, 30000)
"""

import socket
import struct
import subprocess
import sys
import tempfile
import time

ADDR = ("127.0.0.1", 19556)


def init_producer_id(sock, correlation_id):
    body = struct.pack(">hhih", 22, 0, correlation_id, 3) + b"ipl" + struct.pack(">hi", -1, 60000)
    sock.sendall(struct.pack(">i", len(body)) + body)
    header = b""
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    length = struct.unpack(">i", header)[0]
    response = b""
    while len(response) < length:
        response += sock.recv(length - len(response))
    _, _, error, producer_id, _ = struct.unpack(">iihqh", response)
    if error != 0:
        sys.exit(f"InitProducerId failed with error {error}")
    return producer_id


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/strata"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen(
            [binary, "--listen", f"{ADDR[0]}:{ADDR[1]}", "--data-dir", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 30
            while True:
                try:
                    sock = socket.create_connection(ADDR)
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("broker did not start")
                    time.sleep(0.1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            latencies = []
            start = time.perf_counter()
            for i in range(count):
                t = time.perf_counter()
                init_producer_id(sock, i)
                latencies.append(time.perf_counter() - t)
            total = time.perf_counter() - start
            first = sorted(latencies[:1000])
            last = sorted(latencies[-1000:])
            print(
                f"{count} calls in {total:.2f} s; first 1000: p50 {first[500] * 1e3:.3f} ms "
                f"p99 {first[990] * 1e3:.3f} ms; last 1000: p50 {last[500] * 1e3:.3f} ms "
                f"p99 {last[990] * 1e3:.3f} ms"
            )
        finally:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()
