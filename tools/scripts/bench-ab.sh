#!/usr/bin/env bash
# Produce throughput of two broker binaries, A and B, in alternating runs (issue 14: record
# validation's cost, B = a branch, A = main built in another worktree). Each run starts a
# fresh broker on an empty data dir, produces for SECS seconds with strata-bench (8
# partitions, 1 KiB records, 1 MiB batches, acks=1) and records MiB/s and the broker's
# CPU seconds per GiB produced. Prints one line per run, then per codec the median of the
# per-round ratios B/A.
# Usage: tools/scripts/bench-ab.sh A_BIN B_BIN ROUNDS CODEC...   (CODEC: none gzip snappy lz4 zstd)
#   e.g. tools/scripts/bench-ab.sh target-base/release/strata target/release/strata 7 none lz4 zstd
set -euo pipefail
A=$1 B=$2 ROUNDS=$3
shift 3
BENCH=${BENCH:-target/release/strata-bench}
SECS=${SECS:-5}
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run() { # BIN CODEC -> "MiB/s cpu-s/GiB"
    local data port pid json ticks
    data=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$1" --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
        sleep 0.1
    done
    json=$("$BENCH" produce --bootstrap "127.0.0.1:$port" --topic ab --partitions 8 \
        --record-size 1024 --batch-bytes 1048576 --acks 1 --duration "$SECS" \
        --compression "$2" --json 2>/dev/null)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$data"
    echo "$json" | python3 -c "import json, sys
d = json.load(sys.stdin)
assert d['errors'] == 0, d
print(round(d['mib_per_s'], 1), round($ticks / 100 / (d['record_bytes'] / 2**30), 3))"
}

for round in $(seq "$ROUNDS"); do
    for codec in "$@"; do
        a=$(run "$A" "$codec")
        b=$(run "$B" "$codec")
        echo "round $round $codec A: $a B: $b (MiB/s, broker cpu s/GiB; load $(cut -d' ' -f1 /proc/loadavg))"
        echo "$codec $a $b" >>"$results"
    done
done
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    codec, a, a_cpu, b, b_cpu = line.split()
    rows.setdefault(codec, []).append((float(b) / float(a), float(b_cpu) / float(a_cpu)))
for codec, r in rows.items():
    ratios = sorted(x for x, _ in r)
    cpu = sorted(y for _, y in r)
    print(f"{codec}: throughput B/A median {statistics.median(ratios):.2f} "
          f"(runs {', '.join(f'{x:.2f}' for x in ratios)}); "
          f"broker CPU per GiB B/A median {statistics.median(cpu):.2f}")
EOF
