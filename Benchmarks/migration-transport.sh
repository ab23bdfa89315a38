#!/usr/bin/env bash
# Cross-process migration (gRPC on loopback, `shardctl serve`) against the
# in-process one, on the same data; and the cutover pause over repeated
# cross-process moves. Prints one JSON object.
#
# Two ways to move the whole shard, each in one process and across three:
# entries (--bulk-transfer entries: read, sent, written; crossOverInProcess
# compares the same work, in ROUNDS rounds of one move each way on fresh
# copies, the order rotating), and table files (the default: hard-linked into a
# target in the same process, streamed to one in another process; and, like for
# like with the stream, copied into the target in one process with
# --copy-table-files, as across file systems: ROUNDS alternating pairs,
# tableFiles.crossOverCopiedInProcess). Across
# processes, entries go direct (the target pulls them from the source: the
# default) and, for comparison, relayed through the coordinator
# (--bulk-route relay: relayOverInProcess).
#
# Across processes the target asks for the entries Snappy-compressed (the
# default; WIRE_COMPRESSION=none turns it off). VALUES picks how compressible
# the values are: text (the default: slices of one 4000-character block, which
# Snappy shrinks about 6-8 times in a 1 MiB chunk), half (as db_bench's
# --compression_ratio 0.5: pieces of 50 random characters written twice), or
# random (64 symbols at random: nothing for Snappy to find).
#
#   SHARDCTL=.build/release/shardctl KEYS=400000 VALUE_BYTES=1000 ROUNDS=5 Benchmarks/migration-transport.sh
set -euo pipefail
SHARDCTL=${SHARDCTL:-.build/release/shardctl}
KEYS=${KEYS:-200000}
VALUE_BYTES=${VALUE_BYTES:-1000}
PAUSE_MOVES=${PAUSE_MOVES:-20}
ROUNDS=${ROUNDS:-3}
VALUES=${VALUES:-text}
WIRE_COMPRESSION=${WIRE_COMPRESSION:-snappy}
case $VALUES in text|half|random) ;; *) echo "VALUES must be text, half or random" >&2; exit 2 ;; esac
WORK=$(mktemp -d)
cleanup() { for f in "$WORK"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "benchmark-secret-$(date +%s%N)" > "$WORK/token"
chmod 600 "$WORK/token"
"$SHARDCTL" init "$WORK/a" --shards 4 >/dev/null
python3 - "$KEYS" "$VALUE_BYTES" "$VALUES" > "$WORK/data.tsv" <<'PY'
import sys, random
n, size, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = random.Random(7)
symbols = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
if kind == "text":
    block = "".join(r.choice(symbols[:36]) for _ in range(size * 4))
    value = lambda i: block[(i * 37) % (size * 3):][:size]
elif kind == "half":
    pieces = []
    for _ in range((1 << 20) // 100 + 1):
        half = "".join(r.choice(symbols) for _ in range(50))
        pieces.append(half + half)
    buffer = "".join(pieces)
    buffer += buffer[:size]
    value = lambda i: buffer[(i * size) % (1 << 20):][:size]
else:
    value = lambda i: "".join(r.choices(symbols, k=size))
for i in range(n):
    print(f"key-{i:09d}\t{value(i)}")
PY
"$SHARDCTL" import "$WORK/a" --batch-size 5000 < "$WORK/data.tsv" >/dev/null
# Settle the source first: the import leaves level-0 files, and the compaction
# they start on open would otherwise run during the move, in the source's
# process. On 2 cores it competes with the three busy processes of the
# cross-process move far more than with the one of the in-process move.
# COMPACT=0 keeps the pending compaction (the older method).
[ "${COMPACT:-1}" = 1 ] && "$SHARDCTL" compact "$WORK/a" >/dev/null
"$SHARDCTL" init "$WORK/empty" --shards 0 --like "$WORK/a" >/dev/null

serve() {  # DIR NAME -> prints the bound address
    "$SHARDCTL" serve "$1" --token-file "$WORK/token" > "$WORK/$2.out" 2>/dev/null &
    echo $! > "$WORK/$2.pid"  # (this runs in a command substitution: a variable would not survive)
    for _ in $(seq 100); do
        if grep -q "listening on" "$WORK/$2.out" 2>/dev/null; then sed -n 's/listening on //p' "$WORK/$2.out"; return; fi
        sleep 0.05
    done
    echo "serve $1 did not start" >&2; exit 1
}
stop() { kill "$(cat "$WORK/$1.pid")"; wait "$(cat "$WORK/$1.pid")" 2>/dev/null || true; rm -f "$WORK/$1.pid"; }

# One move of shard 1 (TRANSFER: entries or table-files) on fresh copies: in one
# process (both directories opened by one shardctl), or across three (two
# servers, the coordinator in a third).
move() {  # WHERE(in|direct|relay) TRANSFER OUT
    local from="$WORK/from" to="$WORK/to"
    rm -rf "$from" "$to"; cp -r "$WORK/a" "$from"; cp -r "$WORK/empty" "$to"
    sync  # the copy's dirty pages are written back before the move, not during it
    if [ "$1" = in ] || [ "$1" = in-copy ]; then
        local copy=()
        [ "$1" = in-copy ] && copy=(--copy-table-files)
        "$SHARDCTL" migrate --from "$from" --to "$to" --shard 1 --bulk-transfer "$2" ${copy[@]+"${copy[@]}"} --json > "$3"
    else
        local src dst
        src=$(serve "$from" src); dst=$(serve "$to" dst)
        "$SHARDCTL" migrate --from "$src" --to "$dst" --shard 1 --bulk-transfer "$2" --bulk-route "$1" \
            --wire-compression "$WIRE_COMPRESSION" --token-file "$WORK/token" --json > "$3"
        stop src; stop dst
    fi
}

# Entries in ROUNDS rounds of one move each way, the order rotating every
# round (the ratios are medians of each round's own ratio: this machine's
# speed drifts between runs).
for r in $(seq 1 "$ROUNDS"); do
    case $((r % 3)) in
        1) order="in direct relay" ;;
        2) order="direct relay in" ;;
        0) order="relay in direct" ;;
    esac
    for where in $order; do
        case $where in in) out=local ;; direct) out=remote ;; relay) out=relay ;; esac
        move "$where" entries "$WORK/$out-$r.json"
    done
done
move in table-files "$WORK/files.json"
# Table files copied in one process against streamed across, in alternating pairs.
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="in-copy direct"; else order="direct in-copy"; fi
    for where in $order; do
        case $where in in-copy) out=files-copy ;; direct) out=remote-files ;; esac
        move "$where" table-files "$WORK/$out-$r.json"
    done
done

# Servers for the pause moves.
cp -r "$WORK/a" "$WORK/a2"; cp -r "$WORK/empty" "$WORK/c"
SRC=$(serve "$WORK/a2" src)
DST=$(serve "$WORK/c" dst)

# Cutover pauses: move slices of shard 0 across, one at a time (each move has
# its own fence, drain and two commits over the network).
: > "$WORK/pauses"
for i in $(seq 0 $((PAUSE_MOVES - 1))); do
    lo=$((i * 1024 / PAUSE_MOVES)); hi=$(((i + 1) * 1024 / PAUSE_MOVES))
    merge=()
    [ "$i" -gt 0 ] && merge=(--merge-into "$(cat "$WORK/shard")")
    "$SHARDCTL" migrate --from "$SRC" --to "$DST" --shard 0 --range "$lo..$hi" ${merge[@]+"${merge[@]}"} --token-file "$WORK/token" --json > "$WORK/move.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["pauseMilliseconds"]); open(sys.argv[2],"w").write(str(r["targetShard"]))' \
        "$WORK/move.json" "$WORK/shard" >> "$WORK/pauses"
done

python3 - "$WORK" "$ROUNDS" "$VALUES" "$WIRE_COMPRESSION" <<'PY'
import json, statistics, sys
work, rounds, values, compression = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
load = lambda name: json.load(open(f"{work}/{name}.json"))
local = [load(f"local-{r}") for r in range(1, rounds + 1)]
remote = [load(f"remote-{r}") for r in range(1, rounds + 1)]
relay = [load(f"relay-{r}") for r in range(1, rounds + 1)]
assert all(r.get("bulkRoute") == "direct" for r in remote), [r.get("bulkRoute") for r in remote]
files = load("files")
files_copy = [load(f"files-copy-{r}") for r in range(1, rounds + 1)]
remote_files = [load(f"remote-files-{r}") for r in range(1, rounds + 1)]
assert all(r.get("bulkTransfer") == "tableFiles" for r in files_copy + remote_files + [files])
pauses = sorted(float(x) for x in open(f"{work}/pauses").read().split())
def rate(r): return r["bytesCopied"] / r["bulkSeconds"] / 1e6
def pct(p): return pauses[min(len(pauses) - 1, max(0, int(round(p / 100 * len(pauses) + 0.4999)) - 1))]
median = statistics.median
def reporting(name):  # this VM's free page reporting (BENCHMARKS.md, "Machine"), when it has one
    try: return int(open(f"/sys/module/page_reporting/parameters/{name}").read())
    except (OSError, ValueError): return None
print(json.dumps({
    "bytesCopied": remote[0]["bytesCopied"], "keysCopied": remote[0]["keysCopied"], "rounds": rounds,
    "values": values, "wireCompression": compression,
    # Medians over the rounds; the ratio is the median of each round's own ratio.
    "inProcess": {"bulkMBps": round(median(map(rate, local)), 1), "perRound": [round(rate(r), 1) for r in local]},
    "crossProcess": {"bulkMBps": round(median(map(rate, remote)), 1), "perRound": [round(rate(r), 1) for r in remote],
                     # The bytes the entries took on the network (compressed), per round.
                     "wireBytes": [r.get("bulkWireBytes") for r in remote]},
    "crossOverInProcess": round(median(rate(b) / rate(a) for a, b in zip(local, remote)), 3),
    "relayed": {"bulkMBps": round(median(map(rate, relay)), 1), "perRound": [round(rate(r), 1) for r in relay],
                # Each leg's bytes (the coordinator forwards chunks as they came).
                "wireBytes": [r.get("bulkWireBytes") for r in relay]},
    "relayOverInProcess": round(median(rate(b) / rate(a) for a, b in zip(local, relay)), 3),
    # The same shard as table files (bytes are the files' sizes): linked in one process
    # (one move), copied in one process (--copy-table-files) and streamed across (ROUNDS pairs).
    "tableFiles": {
        "bytesCopied": files["bytesCopied"],
        "inProcess": {"bulkMBps": round(rate(files), 1), "bulkSeconds": files["bulkSeconds"]},
        "copiedInProcess": {"bulkMBps": round(median(map(rate, files_copy)), 1), "perRound": [round(rate(r), 1) for r in files_copy]},
        "crossProcess": {"bulkMBps": round(median(map(rate, remote_files)), 1), "perRound": [round(rate(r), 1) for r in remote_files],
                         "bulkSeconds": median(r["bulkSeconds"] for r in remote_files),
                         "wireBytes": [r.get("bulkWireBytes") for r in remote_files]},
        "crossOverCopiedInProcess": round(median(rate(b) / rate(a) for a, b in zip(files_copy, remote_files)), 3),
        "crossProcessOverEntriesInProcess": round(median(r["bulkSeconds"] for r in local) / median(r["bulkSeconds"] for r in remote_files), 3),
    },
    "cutoverPauseMs": {"moves": len(pauses), "p50": pct(50), "p99": pct(99), "max": pauses[-1]},
    "freePageReporting": {"order": reporting("page_reporting_order"), "minFreeMs": reporting("min_free_ms")},
}, indent=2))
PY
