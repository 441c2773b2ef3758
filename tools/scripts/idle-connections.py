#!/usr/bin/env python3
"""Broker memory per idle connection.

Starts the given broker binary on an empty data dir and prints the broker's VmRSS idle,
with COUNT connections that never sent a byte, with COUNT connections answered once,
and after they are all closed (what the allocator kept). Standard library only.

Usage (from the repository root, after `cargo build --release --bin strata`):
    tools/scripts/idle-connections.py [BINARY] [COUNT]
    (defaults: target/release/strata, 2000; needs `ulimit -n` above COUNT + 100)
"""

import socket
import struct
import subprocess
import sys
import tempfile
import time

ADDR = ("127.0.0.1", 19555)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def api_versions_frame(correlation_id):
    # Request header v1: api key 18, version 0, correlation id, null client id.
    body = struct.pack(">hhih", 18, 0, correlation_id, -1)
    return struct.pack(">i", len(body)) + body


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        data += chunk
    return data


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/strata"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen(
            [binary, "--listen", f"{ADDR[0]}:{ADDR[1]}", "--data-dir", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    socket.create_connection(ADDR).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                sys.exit("broker did not listen")
            idle = vm_rss_kib(broker.pid)
            # Connections that never send a byte.
            silent = [socket.create_connection(ADDR) for _ in range(count)]
            time.sleep(0.5)
            with_silent = vm_rss_kib(broker.pid)
            for sock in silent:
                sock.close()
            time.sleep(1.0)
            conns = []
            for i in range(count):
                sock = socket.create_connection(ADDR)
                sock.sendall(api_versions_frame(i))
                (length,) = struct.unpack(">i", read_exactly(sock, 4))
                read_exactly(sock, length)
                conns.append(sock)
            time.sleep(0.5)
            loaded = vm_rss_kib(broker.pid)
            for sock in conns:
                sock.close()
            # The broker returns freed memory to the kernel within a second or two of
            # many connections closing (src/server/memory.rs).
            time.sleep(3.0)
            closed = vm_rss_kib(broker.pid)
            print(
                f"{binary}: VmRSS idle {idle} KiB; {count} connections that never sent: "
                f"{with_silent} KiB ({(with_silent - idle) / count:.1f} KiB each); "
                f"{count} connections answered once: {loaded} KiB "
                f"({(loaded - idle) / count:.1f} KiB each); all closed: {closed} KiB "
                f"({closed - idle} KiB above idle)"
            )
        finally:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    main()
