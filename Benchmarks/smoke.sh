#!/usr/bin/env bash
# A smoke pass of `shardctl bench` at tiny sizes: every db_bench workload and
# YCSB A-F must run and print parseable JSON. Benchmarks are not tests; this only
# checks that they still work (CI runs it; numbers are ignored).
#
#   Benchmarks/smoke.sh [path/to/shardctl]     (default: builds and uses .build/debug/shardctl)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
shardctl="${1:-}"
if [ -z "$shardctl" ]; then
    (cd "$root" && swift build --product shardctl >&2)
    shardctl="$root/.build/debug/shardctl"
fi
dir="$(mktemp -d "${TMPDIR:-/tmp}/sharddb-bench-smoke.XXXXXX")"
trap 'rm -rf "$dir"' EXIT

check() {  # check <name> <expected result count> <shardctl bench args...>
    local name="$1" expected="$2"; shift 2
    local out
    if ! out="$("$shardctl" bench "$@" --json 2>"$dir/stderr")"; then
        echo "smoke: FAIL $name: $(head -1 "$dir/stderr")" >&2
        exit 1
    fi
    if ! echo "$out" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
results = doc["results"]
assert len(results) >= int(sys.argv[1]), "expected %s results, got %d" % (sys.argv[1], len(results))
for r in results:
    if r["name"] in ("waitforcompaction", "compact"):  # waits or compacts, measures nothing
        assert r["ops"] == 0 and r["seconds"] >= 0, r
        continue
    assert r["ops"] > 0 and r["opsPerSecond"] > 0, r
    assert all(k in r["latencyMicros"] for k in ("p50", "p99", "p999")), r
' "$expected"; then
        echo "smoke: FAIL $name: unexpected output: $out" >&2
        exit 1
    fi
    echo "smoke: ok   $name"
}

check "db_bench workloads, 1 thread" 8 --num 2000 --benchmarks fillseq,fillrandom,overwrite,readrandom,readseq,readwhilewriting,readrandomwriterandom,updaterandom --db "$dir/a"
check "db_bench workloads, 2 threads" 4 --num 2000 --threads 2 --benchmarks fillrandom,readrandom,readseq,readwhilewriting --db "$dir/b"
check "seekrandom (range partitioning)" 2 --num 2000 --benchmarks fillrandom,seekrandom --db "$dir/c"
check "use_existing_db" 1 --num 2000 --benchmarks readrandom --use_existing_db --db "$dir/b"
check "waitforcompaction before a read" 2 --num 2000 --benchmarks waitforcompaction,readrandom --use_existing_db --db "$dir/b"
check "compact before a read" 2 --num 2000 --benchmarks compact,readrandom --use_existing_db --db "$dir/b"
check "options mapping" 2 --num 2000 --benchmarks fillrandom,readrandom --compression_type none --bloom_bits 10 \
    --cache_size 0 --write_buffer_size 1048576 --disable_wal --shards 4 --db "$dir/d"
for w in a b c d e f; do
    check "ycsb-$w" 3 --workload "ycsb-$w" --recordcount 1000 --operationcount 1000 --threads 2 --db "$dir/ycsb-$w"
done
echo "smoke: all bench workloads ran"
