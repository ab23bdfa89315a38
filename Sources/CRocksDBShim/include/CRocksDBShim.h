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
/// Returns 0 and leaves `*sequence` alone for a snapshot RocksDB did not take
/// (rocksdb_create_snapshot wraps nullptr when inplace_update_support is on).
int sharddb_snapshot_sequence_number(const rocksdb_snapshot_t *snapshot, uint64_t *sequence);

/// Copies up to `max_entries` entries from a valid iterator into `buffer`,
/// advancing it past each copied entry. Each entry is laid out as
/// [u32 key length][u32 value length][key][value] (native endian). Stops early
/// when the next entry does not fit (at least one entry is copied if
/// `*needed` would fit it; otherwise `*needed` is set to its size and 0 is
/// returned). Batching avoids four C-boundary crossings per entry on scans.
size_t sharddb_iter_next_batch(rocksdb_iterator_t *iter, char *buffer,
                               size_t capacity, size_t max_entries,
                               size_t *used, size_t *needed);

/// Copies entries from the iterator's position into `data`, keys and values
/// back to back (key 0, value 0, key 1, ...), their lengths into `key_lengths`
/// and `value_lengths`, advancing past each copied entry, while fewer than
/// `max_entries` are copied, fewer than `stop_at` bytes are in `data`, and the
/// next entry fits in `capacity`. Returns the entries copied and sets `*used`
/// to their bytes; when the first entry does not fit, returns 0 with `*needed`
/// set to its size. The packed layout a bulk copy sends, in one crossing per
/// batch and one copy per entry.
size_t sharddb_iter_next_packed(rocksdb_iterator_t *iter, char *data, size_t capacity,
                                size_t stop_at, uint32_t *key_lengths, uint32_t *value_lengths,
                                size_t max_entries, size_t *used, size_t *needed);

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

/// DB::Flush of several column families in one call (the 7.8 C API flushes
/// one per call): with atomic_flush their flushes are committed as one, so a
/// crash without the WAL keeps all of them or none. Waits for the flush when
/// wait is non-zero. Errors as in the C API (*errptr, rocksdb_free).
void sharddb_flush_cfs(rocksdb_t *db, rocksdb_column_family_handle_t *const *families, size_t count,
                       unsigned char wait, char **errptr);

/// DB::CompactRange over [begin, end] (NULL: unbounded), forcing the bottommost
/// level when bottommost_force is non-zero, as rocksdb_compact_range_cf_opt
/// does, but with its status: the C call returns void, so a compaction that
/// failed (an I/O error, compactions paused or aborted) looked like success.
/// Errors as in the C API (*errptr, rocksdb_free).
void sharddb_compact_range_cf(rocksdb_t *db, rocksdb_column_family_handle_t *family,
                              const char *begin, size_t begin_length,
                              const char *end, size_t end_length,
                              unsigned char bottommost_force, char **errptr);

/// DeleteFilesInRange over [begin, end): table files (level 1 and below) whose
/// keys all lie in it are dropped. Why: rocksdb_delete_file_in_range_cf passes
/// no include_end, and RocksDB's default (true) makes the interval [begin, end]:
/// a file whose largest key is `end` itself goes too, with `end`'s newest
/// version, which a caller clearing [begin, end) still owns. Either bound may
/// be NULL (unbounded). Errors as in the C API (*errptr, rocksdb_free).
void sharddb_delete_files_in_range_cf(rocksdb_t *db, rocksdb_column_family_handle_t *family,
                                      const char *begin, size_t begin_length,
                                      const char *end, size_t end_length, char **errptr);

/// Put of one entry whose key and value each come in two parts (either part
/// may be empty: NULL with length 0), concatenated by RocksDB as it encodes the
/// write batch (WriteBatch::Put with SliceParts). Same semantics and errors as
/// rocksdb_put_cf. Why: rocksdb_put_cf goes through DB::Put, which builds a
/// fresh WriteBatch per call (a heap allocation for its buffer, freed after the
/// write; db_bench reuses one batch), and a caller that prefixes the key or the
/// value (ShardDB: key group and value header) has to concatenate them into a
/// temporary first. This reuses one batch per thread and takes the parts as they are.
void sharddb_put_parts_cf(rocksdb_t *db, const rocksdb_writeoptions_t *options,
                          rocksdb_column_family_handle_t *family,
                          const char *key_head, size_t key_head_length,
                          const char *key, size_t key_length,
                          const char *value_head, size_t value_head_length,
                          const char *value, size_t value_length, char **errptr);

/// Point read into a pinnable slice the calling thread reuses. Returns 1 when
/// the key was found, with *value and *length set; the value stays valid (pinned
/// in the block cache or memtable) until sharddb_get_pinned_end(*slice), which
/// must then be called exactly once on the same thread. Returns 0 when the key
/// is absent or on an error (*errptr, as rocksdb_get_pinned_cf); then there is
/// nothing to end. A read made while this thread's slice is still held (a
/// nested read) gets a heap-allocated slice instead, so nesting is safe. Why:
/// rocksdb_get_pinned_cf heap-allocates the rocksdb_pinnableslice_t it
/// returns, once per read; db_bench reuses one PinnableSlice.
int sharddb_get_pinned_begin(rocksdb_t *db, const rocksdb_readoptions_t *options,
                             rocksdb_column_family_handle_t *family, const char *key, size_t key_length,
                             void **slice, const char **value, size_t *length, char **errptr);

/// Releases what sharddb_get_pinned_begin pinned.
void sharddb_get_pinned_end(void *slice);

// --- Closures run with a database held (shim.cc). A caller's closure that a
// read runs while it holds the database open (a pinned value, an iterator's
// key) may close that database; the close then waits for the read, which waits
// for the closure: the thread would hang. These record, per thread, which
// database each running closure holds, so a close made inside one is deferred
// until the outermost such closure on that thread returns. Why here: Swift has
// no thread-local storage as cheap as C's (two calls per read that found a value).

/// Before running a closure with `database` held (any pointer naming it).
void sharddb_body_enter(const void *database);

/// After it returned or threw. Returns 1 when a close of `database` was asked
/// for inside it and no outer closure on this thread holds `database`: the
/// caller closes it once it let go of its own hold. 0 otherwise (a request
/// made inside a nested closure passes to the outer one).
int sharddb_body_leave(const void *database);

/// Asks for `database` to be closed when the closure holding it on this thread
/// returns. Returns 1 when one does (the close is deferred), 0 when no closure
/// on this thread holds `database` (the caller closes it now). Closures nested
/// more than 16 deep are not recorded.
int sharddb_body_defer_close(const void *database);

// --- Block cache (block_cache.cc). The 7.8 C API can give an LRU cache only
// a jemalloc allocator (absent from Debian's build), not one of its own.

/// An LRU block cache of `capacity` bytes with no high-priority pool (RocksDB's
/// defaults otherwise) whose block buffers come in size classes (sharddb_block_size_class), so a block
/// evicted from the cache leaves a chunk malloc can hand to the next block
/// read. Destroy with rocksdb_cache_destroy.
rocksdb_cache_t *sharddb_cache_create_lru(size_t capacity);

/// The size a block buffer of `size` bytes is allocated with: sizes from 1 KiB
/// up rounded to an eighth of their power of two; smaller ones unchanged.
size_t sharddb_block_size_class(size_t size);

// --- BackupEngine (backup_engine.cc). The 7.8 C API cannot attach app metadata,
// report the new backup's id, delete one backup, garbage-collect, verify
// checksums (rocksdb_backup_engine_verify_backup checks sizes only), list a
// backup's files or open an engine read-only. Errors come back as in the C API: a malloc'd status string
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
/// Calls `visit` for each backup in `backup_dir` that RocksDB cannot load (GetCorruptedBackups),
/// in id order, with RocksDB's reason: the status of that load, which names the missing file
/// ("Corruption: Pathname in meta file not found on disk: <dir>/shared_checksum/…sst") or
/// the unreadable meta file. A directory without a `meta` folder has no backups: no call.
/// Why a BackupEngineReadOnly, opened and closed here: a read-write engine's first write
/// (create, delete, GarbageCollect) deletes the files of backups it cannot load, the
/// evidence a user needs to inspect or recover them, and the C API opens read-write engines
/// only. A read-only engine cannot delete anything, so a caller can learn of damage
/// before any engine that could destroy it exists, and decide.
void sharddb_backup_engine_corrupt_backups(const char *backup_dir,
                                           void (*visit)(void *context, uint32_t backup_id, const char *reason),
                                           void *context, char **errptr);

// --- Column family table files (column_family_files.cc). The 7.8 C API has no
// Checkpoint::ExportColumnFamily and no DB::CreateColumnFamilyWithImport; a
// whole-shard migration moves a shard's table files with them instead of
// re-reading and re-writing every entry. Errors as in the C API (*errptr).

/// One table file of an export: RocksDB's metadata an import needs back.
typedef struct sharddb_table_file_t {
  const char *directory;   ///< the folder holding the file
  const char *name;        ///< the file's name in it ("000123.sst")
  int level;               ///< the LSM level it sat in
  uint64_t smallest_seqno;
  uint64_t largest_seqno;
  uint64_t size;           ///< bytes
  uint64_t entries;        ///< entries, deletions included
  uint64_t deletions;
  /// Range tombstones in the file, read from its table properties (UINT64_MAX
  /// when they could not be read). An import in 7.8 bounds each file by its
  /// point keys only, so a range tombstone reaching past them is lost
  /// (facebook/rocksdb#11252, fixed in 8.1): a caller must not import such files.
  uint64_t range_deletions;
} sharddb_table_file_t;

/// Checkpoint::ExportColumnFamily: flushes the family, then hard-links (or copies,
/// across file systems) its live table files into `directory`, which must not
/// exist. Calls `visit` for each file; the strings live until it returns.
void sharddb_export_column_family(rocksdb_t *db, rocksdb_column_family_handle_t *family,
                                  const char *directory,
                                  void (*visit)(void *context, const sharddb_table_file_t *file),
                                  void *context, char **errptr);

/// DB::CreateColumnFamilyWithImport: creates the family `name` holding exactly
/// the `count` table files (each at its level, with its sequence numbers; the
/// database's last sequence rises to the files' largest). `move_files` hard-links
/// them in and removes the originals (copies when linking is not supported).
/// Returns the new handle (destroy with rocksdb_column_family_handle_destroy),
/// or NULL with *errptr set; on error the family does not exist.
rocksdb_column_family_handle_t *sharddb_create_column_family_with_import(
    rocksdb_t *db, const rocksdb_options_t *options, const char *name,
    const sharddb_table_file_t *files, size_t count, unsigned char move_files, char **errptr);

/// Creates `count` column families in one call (DB::CreateColumnFamilies): the
/// C API creates one at a time, and RocksDB rewrites (and re-parses) its OPTIONS
/// file, which lists every family, after each, so N families cost O(N^2) -- a
/// 4096-shard instance took over half an hour to create. Fills `handles` (destroy
/// each with rocksdb_column_family_handle_destroy). On error *errptr is set and
/// RocksDB has stopped at the failing family: those created before it are in
/// `handles` (NULL for the rest), for the caller to drop.
void sharddb_create_column_families(rocksdb_t *db, size_t count, const char *const *names,
                                    const rocksdb_options_t *const *options,
                                    rocksdb_column_family_handle_t **handles, char **errptr);

#ifdef __cplusplus
}
#endif

#endif
