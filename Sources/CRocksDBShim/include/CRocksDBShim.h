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

/// Sets RocksDB's perf level (rocksdb::SetPerfLevel, a per-thread setting) on
/// the calling thread and remembers that the thread's level has been chosen.
/// Same as the C API's rocksdb_set_perf_level plus that memory, which
/// sharddb_perf_level_default_once needs.
void sharddb_set_perf_level(int level);

/// Sets the calling thread's perf level to `level` unless this thread's level
/// was already chosen (by an earlier call of this or of sharddb_set_perf_level).
/// Why: RocksDB's default level, kEnableCount, updates the thread's perf context
/// on every key comparison of every read and write, through a thread-local of a
/// shared library (__tls_get_addr each time); with 1M keys that is about 13% of a
/// put's instructions (measured with callgrind on db_bench --perf_level=2 vs 1;
/// db_bench itself runs with kDisable). The C API can only set the level, and
/// only per thread, so a wrapper that wants a different default has to apply
/// it on each thread that uses the database: this makes that one thread-local
/// read after the first call on a thread.
void sharddb_perf_level_default_once(int level);

/// DB::VerifyChecksum: reads every live table file of every column family and
/// checks each block's checksum (the 7.8 C API has no verify call). The error
/// names the damaged file. Errors as in the C API (*errptr, rocksdb_free).
void sharddb_db_verify_checksum(rocksdb_t *db, char **errptr);

// --- BackupEngine (backup_engine.cc). The 7.8 C API cannot attach app metadata,
// report the new backup's id, delete one backup, garbage-collect, verify
// checksums (rocksdb_backup_engine_verify_backup checks sizes only) or list a
// backup's files. Errors come back as in the C API: a malloc'd status string
// in *errptr, freed with rocksdb_free.

/// CreateNewBackupWithMetadata; returns the new backup's id. `progress` (may be
/// NULL) is called from the copying thread every callback_trigger_interval_size
/// bytes copied; it must not unwind.
uint32_t sharddb_backup_engine_create_backup(rocksdb_backup_engine_t *be, rocksdb_t *db,
                                             unsigned char flush_before_backup,
                                             const char *app_metadata, size_t app_metadata_len,
                                             void (*progress)(void *context), void *context,
                                             char **errptr);
/// DeleteBackup: the backup's meta file first, then files no other backup uses.
void sharddb_backup_engine_delete_backup(rocksdb_backup_engine_t *be, uint32_t backup_id, char **errptr);
/// GarbageCollect: removes what interrupted creates and deletes left behind.
void sharddb_backup_engine_garbage_collect(rocksdb_backup_engine_t *be, char **errptr);
/// VerifyBackup: sizes, and with verify_with_checksum every file's checksum.
void sharddb_backup_engine_verify_backup(rocksdb_backup_engine_t *be, uint32_t backup_id,
                                         unsigned char verify_with_checksum, char **errptr);
/// The backup's app metadata (malloc'd, NUL-terminated, *length bytes); NULL on error.
char *sharddb_backup_engine_app_metadata(rocksdb_backup_engine_t *be, uint32_t backup_id,
                                         size_t *length, char **errptr);
/// Calls `visit` for every file of the backup: RocksDB's FileStorageInfo directory
/// (the backup's private folder), the file's path relative to the backup directory
/// (e.g. "shared_checksum/000012_s…sst"), its size.
void sharddb_backup_engine_backup_files(rocksdb_backup_engine_t *be, uint32_t backup_id,
                                        void (*visit)(void *context, const char *directory,
                                                      const char *relative_name, uint64_t size),
                                        void *context, char **errptr);
/// Ids of backups whose meta file could not be read (up to `capacity` in `ids`); returns how many there are.
size_t sharddb_backup_engine_corrupted_backups(rocksdb_backup_engine_t *be, uint32_t *ids, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif
