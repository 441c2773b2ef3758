#!/usr/bin/env bash
# Consume throughput of several broker binaries in alternating runs (issue 15: sealed
# segments read with pread instead of mmap). For each round and binary: a fresh broker on
# an empty data dir with 16 MiB segments (so most data sits in sealed segments), produce
# RECORDS 1 KiB records (acks=1, 8 partitions, 1 MiB batches), then consume them twice
# with new groups. Prints MiB/s of each consume and the broker's CPU seconds per GiB
# consumed (both consumes).
# Usage: BINS="prev/strata target/release/strata" ROUNDS=5 tools/scripts/bench-consume-ab.sh
set -euo pipefail
BENCH=${BENCH:-target/release/strata-bench}
ROUNDS=${ROUNDS:-5}
RECORDS=${RECORDS:-1500000}
run() {
    local data port pid
    data=$(mktemp -d /tmp/cab.XXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$1" --listen "127.0.0.1:$port" --data-dir "$data" --default-segment-bytes 16777216 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
        sleep 0.1
    done
    "$BENCH" produce --bootstrap "127.0.0.1:$port" --topic c --partitions 8 --record-size 1024 \
        --batch-bytes 1048576 --acks 1 --records "$RECORDS" --json >/dev/null 2>&1
    local out="" t0 t1
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    for i in 1 2; do
        r=$("$BENCH" consume --bootstrap "127.0.0.1:$port" --topic c --records "$RECORDS" --json 2>/dev/null \
            | python3 -c "import json,sys; d=json.load(sys.stdin); print(round(d['mib_per_s'],1))")
        out="$out $r"
    done
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out="$out cpu_s_per_GiB=$(python3 -c "print(round(($t1 - $t0) / 100 / (2 * $RECORDS * 1024 / 2**30), 3))")"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
    echo "$out"
}
for round in $(seq "$ROUNDS"); do
    line="round $round"
    for bin in $BINS; do line="$line | $(basename $bin):$(run "$bin")"; done
    echo "$line | load $(cut -d' ' -f1 /proc/loadavg)"
done
