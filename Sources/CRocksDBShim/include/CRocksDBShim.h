// Functions the RocksDB 7.8 C API lacks. Each is a few lines of C++ over the
// public C++ API, reached through the C API's opaque handles.
#ifndef CROCKSDB_SHIM_H
#define CROCKSDB_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <rocksdb/c.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The sequence number a snapshot reads at. The 7.8 C API has no
/// rocksdb_snapshot_get_sequence_number (added in later releases); a migration
/// needs the exact sequence of its bulk-copy snapshot to tail the WAL from S+1.
uint64_t sharddb_snapshot_sequence_number(const rocksdb_snapshot_t *snapshot);

/// Copies up to `max_entries` entries from a valid iterator into `buffer`,
/// advancing it past each copied entry. Each entry is laid out as
/// [u32 key length][u32 value length][key][value] (native endian). Stops early
/// when the next entry does not fit (at least one entry is copied if
/// `*needed` would fit it; otherwise `*needed` is set to its size and 0 is
/// returned). Batching avoids four C-boundary crossings per entry on scans.
size_t sharddb_iter_next_batch(rocksdb_iterator_t *iter, char *buffer,
                               size_t capacity, size_t max_entries,
                               size_t *used, size_t *needed);

#ifdef __cplusplus
}
#endif

#endif
