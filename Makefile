# ShardDB — see README.md.
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: all deps build test demo bench-smoke crash-test clean

all: build

# Installs RocksDB (librocksdb-dev 7.8 on Debian), its tools (db_bench, ldb,
# sst_dump), Snappy (libsnappy-dev: the transport compresses bulk chunks; RocksDB
# already depends on it) and pkg-config when missing.
deps:
	@if ! pkg-config --exists rocksdb snappy 2>/dev/null || ! command -v db_bench >/dev/null 2>&1; then \
		echo "installing librocksdb-dev libsnappy-dev rocksdb-tools pkg-config"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq librocksdb-dev libsnappy-dev rocksdb-tools pkg-config >/dev/null; \
	fi

build: deps
	$(SWIFT) build

# Builds everything (library, shardctl, tests) and runs every test target.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The embedded quick start: load an instance, reopen it, verify, move a shard
# live under load, verify every acknowledged write, report.
demo: deps
	$(SWIFT) build --product shardctl
	.build/debug/shardctl demo

# Benchmarks are not tests: this builds the package-benchmark suites and runs
# every shardctl bench workload once at tiny sizes (numbers are ignored).
bench-smoke: deps
	$(SWIFT) build --product shardctl
	Benchmarks/smoke.sh .build/debug/shardctl
	.build/debug/shardctl bench migrate --size-mb 4 --runs 2 --write-rate 500 --baseline-seconds 0.2 --bulk all >/dev/null
	.build/debug/shardctl bench checkpoint --size-mb 4 --write-rate 200 >/dev/null
	.build/debug/shardctl bench ttl --num 2000 --rounds 1 >/dev/null
	cd Benchmarks && $(SWIFT) build

# The kill -9 harness (docs/CRASH_TESTING.md): CYCLES kill/recover/verify cycles of
# `shardctl stress` at random moments and at migration/checkpoint failure points,
# and as many with a simulated power loss (unsynced bytes dropped) after each kill.
# SEED replays a run; CI runs 30 cycles inside `make test`.
CYCLES ?= 1000
SEED ?=

crash-test: deps
	$(SWIFT) build --build-tests
	CRASH_CYCLES=$(CYCLES) POWERLOSS_CYCLES=$(CYCLES) CRASH_SEED=$(SEED) $(SWIFT) test --skip-build --filter 'CrashTests|PowerLossTests|CorruptionTests|DiskFullTests'

clean:
	rm -rf .build
