# ShardDB — see README.md.
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: all deps build test demo bench-smoke clean

all: build

# Installs RocksDB (librocksdb-dev 7.8 on Debian), its tools (db_bench, ldb,
# sst_dump) and pkg-config when missing.
deps:
	@if ! pkg-config --exists rocksdb 2>/dev/null || ! command -v db_bench >/dev/null 2>&1; then \
		echo "installing librocksdb-dev rocksdb-tools pkg-config"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq librocksdb-dev rocksdb-tools pkg-config >/dev/null; \
	fi

build: deps
	$(SWIFT) build

# Builds everything (library, shardctl, tests) and runs every test target.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The embedded quick start: load an instance, reopen it, verify, report.
demo: deps
	$(SWIFT) build -c release --product shardctl
	.build/release/shardctl demo

clean:
	rm -rf .build
