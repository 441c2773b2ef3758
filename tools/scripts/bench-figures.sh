#!/usr/bin/env bash
# Measures the figures of tools/BENCH.md against a release build of the broker.
# Usage: tools/scripts/bench-figures.sh [WORK_DIR]   (run from the repository root after
#   cargo build --release --bin strata && cargo build --release -p strata-tools --bin strata-bench)
# Every run is bounded (seconds). Each figure starts a fresh broker on an empty data dir.
set -euo pipefail
WORK=${1:-/tmp/strata-bench-figures}
STRATA=${STRATA:-target/release/strata}
BENCH=${BENCH:-target/release/strata-bench}
SECS=${SECS:-5}
ADDR=127.0.0.1:19092
mkdir -p "$WORK"
PID=""

stop_broker() {
    if [[ -n "$PID" ]]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=""
    fi
}
trap stop_broker EXIT

start_broker() {
    stop_broker
    rm -rf "$WORK/data"
    sync
    "$STRATA" --listen "$ADDR" --data-dir "$WORK/data" >"$WORK/broker.out" 2>"$WORK/broker.err" &
    PID=$!
    for _ in $(seq 100); do
        grep -q listening "$WORK/broker.out" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "broker did not start" >&2
    exit 1
}

rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }

common=(--bootstrap "$ADDR" --record-size 1024
        --data-dir "$WORK/data" --json)

start_broker
sleep 1
echo "idle_rss_kib $(rss)" | tee "$WORK/idle_rss.txt"

# end-to-end latency first: for ~15 s after the multi-GB produce runs below the fdatasync
# tail stays high though the VM's disk shows no I/O after `sync` (the virtual disk's host
# still writing back, we think): end-to-end p99.9 16.6 ms right after a 5 GB run, 6.1 ms 15 s later
"$BENCH" end-to-end "${common[@]}" --topic e2e --partitions 8 --batch-bytes 1048576 --acks all --rate 5000 --linger-ms 0 \
    --duration $((SECS * 2)) --broker-pid "$PID" >"$WORK/e2e_acksall.json"

start_broker

# produce, acks=1, vs the baseline's socket->file rate (same duration)
"$BENCH" produce "${common[@]}" --topic acks1 --partitions 8 --batch-bytes 1048576 --acks 1 --duration "$SECS" \
    --compare-baseline --broker-pid "$PID" >"$WORK/produce_acks1.json"
# consume everything just produced, from a new group, vs the baseline's file->socket rate
"$BENCH" consume "${common[@]}" --topic acks1 --compare-baseline --duration "$SECS" \
    --broker-pid "$PID" >"$WORK/consume.json"

start_broker
"$BENCH" produce "${common[@]}" --topic acksall --partitions 8 --batch-bytes 1048576 --acks all --duration "$SECS" \
    --broker-pid "$PID" >"$WORK/produce_acksall.json"


start_broker
"$BENCH" produce "${common[@]}" --topic wide --partitions 1000 --keys 1000 --records 1000 \
    --batch-bytes 16384 >"$WORK/wide.json"
sleep 1
echo "rss_1000_partitions_kib $(rss)" | tee "$WORK/rss_1000.txt"
stop_broker
echo "results in $WORK"
