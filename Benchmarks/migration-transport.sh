#!/usr/bin/env bash
# Cross-process migration (gRPC on loopback, `shardctl serve`) against the
# in-process one, on the same data; and the cutover pause over repeated
# cross-process moves. Prints one JSON object.
#
# Two ways to move the whole shard, each in one process and across three:
# entries (--bulk-transfer entries: read, sent, written; crossOverInProcess
# compares the same work), and table files (the default: hard-linked into a
# target in the same process, streamed to one in another process).
#
#   SHARDCTL=.build-server/debug/shardctl KEYS=200000 VALUE_BYTES=1000 Benchmarks/migration-transport.sh
set -euo pipefail
SHARDCTL=${SHARDCTL:-.build/release/shardctl}
KEYS=${KEYS:-200000}
VALUE_BYTES=${VALUE_BYTES:-1000}
PAUSE_MOVES=${PAUSE_MOVES:-20}
WORK=$(mktemp -d)
cleanup() { for f in "$WORK"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "benchmark-secret-$(date +%s%N)" > "$WORK/token"
"$SHARDCTL" init "$WORK/a" --shards 4 >/dev/null
python3 - "$KEYS" "$VALUE_BYTES" > "$WORK/data.tsv" <<'PY'
import sys, random
n, size = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(7)
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
block = "".join(r.choice(alphabet) for _ in range(size * 4))
for i in range(n):
    o = (i * 37) % (size * 3)
    print(f"key-{i:09d}\t{block[o:o + size]}")
PY
"$SHARDCTL" import "$WORK/a" --batch-size 5000 < "$WORK/data.tsv" >/dev/null
cp -r "$WORK/a" "$WORK/a2"
cp -r "$WORK/a" "$WORK/a3"
cp -r "$WORK/a" "$WORK/a4"
"$SHARDCTL" init "$WORK/b" --shards 0 --like "$WORK/a" >/dev/null
"$SHARDCTL" init "$WORK/b3" --shards 0 --like "$WORK/a" >/dev/null
"$SHARDCTL" init "$WORK/c" --shards 0 --like "$WORK/a" >/dev/null
"$SHARDCTL" init "$WORK/d" --shards 0 --like "$WORK/a" >/dev/null

# In-process: both directories opened by one shardctl.
"$SHARDCTL" migrate --from "$WORK/a" --to "$WORK/b" --shard 1 --bulk-transfer entries --json > "$WORK/local.json"
"$SHARDCTL" migrate --from "$WORK/a3" --to "$WORK/b3" --shard 1 --bulk-transfer table-files --json > "$WORK/files.json"

# Cross-process: two servers, the coordinator in a third process.
serve() {  # DIR -> prints the bound address
    "$SHARDCTL" serve "$1" --token-file "$WORK/token" > "$WORK/$2.out" 2>/dev/null &
    echo $! > "$WORK/$2.pid"  # (this runs in a command substitution: a variable would not survive)
    for _ in $(seq 100); do
        if grep -q "listening on" "$WORK/$2.out" 2>/dev/null; then sed -n 's/listening on //p' "$WORK/$2.out"; return; fi
        sleep 0.05
    done
    echo "serve $1 did not start" >&2; exit 1
}
SRC=$(serve "$WORK/a2" src)
DST=$(serve "$WORK/c" dst)
"$SHARDCTL" migrate --from "$SRC" --to "$DST" --shard 1 --bulk-transfer entries --token-file "$WORK/token" --json > "$WORK/remote.json"
SRC2=$(serve "$WORK/a4" src2)
DST2=$(serve "$WORK/d" dst2)
"$SHARDCTL" migrate --from "$SRC2" --to "$DST2" --shard 1 --bulk-transfer table-files --token-file "$WORK/token" --json > "$WORK/remote-files.json"

# Cutover pauses: move slices of shard 0 across, one at a time (each move has
# its own fence, drain and two commits over the network).
: > "$WORK/pauses"
for i in $(seq 0 $((PAUSE_MOVES - 1))); do
    lo=$((i * 1024 / PAUSE_MOVES)); hi=$(((i + 1) * 1024 / PAUSE_MOVES))
    merge=()
    [ "$i" -gt 0 ] && merge=(--merge-into "$(cat "$WORK/shard")")
    "$SHARDCTL" migrate --from "$SRC" --to "$DST" --shard 0 --range "$lo..$hi" "${merge[@]}" --token-file "$WORK/token" --json > "$WORK/move.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["pauseMilliseconds"]); open(sys.argv[2],"w").write(str(r["targetShard"]))' \
        "$WORK/move.json" "$WORK/shard" >> "$WORK/pauses"
done

python3 - "$WORK/local.json" "$WORK/remote.json" "$WORK/pauses" "$WORK/files.json" "$WORK/remote-files.json" <<'PY'
import json, sys
local, remote = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
files, remote_files = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
pauses = sorted(float(x) for x in open(sys.argv[3]).read().split())
def rate(r): return r["bytesCopied"] / r["bulkSeconds"] / 1e6
def pct(p): return pauses[min(len(pauses) - 1, max(0, int(round(p / 100 * len(pauses) + 0.4999)) - 1))]
print(json.dumps({
    "bytesCopied": remote["bytesCopied"], "keysCopied": remote["keysCopied"],
    "inProcess": {"bulkMBps": round(rate(local), 1), "bulkSeconds": local["bulkSeconds"], "pauseMs": local["pauseMilliseconds"]},
    "crossProcess": {"bulkMBps": round(rate(remote), 1), "bulkSeconds": remote["bulkSeconds"], "pauseMs": remote["pauseMilliseconds"]},
    "crossOverInProcess": round(rate(remote) / rate(local), 3),
    # The same shard as table files (bytes are the files' sizes): linked in one process, streamed across.
    "tableFiles": {
        "bytesCopied": files["bytesCopied"],
        "inProcess": {"bulkMBps": round(rate(files), 1), "bulkSeconds": files["bulkSeconds"], "pauseMs": files["pauseMilliseconds"]},
        "crossProcess": {"bulkMBps": round(rate(remote_files), 1), "bulkSeconds": remote_files["bulkSeconds"],
                         "pauseMs": remote_files["pauseMilliseconds"]},
        "crossOverInProcess": round(rate(remote_files) / rate(files), 3),
        "crossProcessOverEntriesInProcess": round(local["bulkSeconds"] / remote_files["bulkSeconds"], 3),
    },
    "cutoverPauseMs": {"moves": len(pauses), "p50": pct(50), "p99": pct(99), "max": pauses[-1]},
}, indent=2))
PY
