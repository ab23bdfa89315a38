// Private to the shim: what every shim file needs of the C API's internals.
#ifndef CROCKSDB_SHIM_C_API_MIRROR_H
#define CROCKSDB_SHIM_C_API_MIRROR_H

#include <cstdlib>
#include <cstring>
#include <memory>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/utilities/backup_engine.h>

// Mirrors of the C API's private wrapper structs (rocksdb/db/c.cc, 7.8): each
// holds the C++ object, or a pointer to it, as its first member (`rep`).
// (c.cc's rocksdb_readoptions_t has two Slices after `rep`, which the shim does not use.)
struct rocksdb_t { rocksdb::DB *rep; };
struct rocksdb_snapshot_t { const rocksdb::Snapshot *rep; };
struct rocksdb_iterator_t { rocksdb::Iterator *rep; };
struct rocksdb_column_family_handle_t { rocksdb::ColumnFamilyHandle *rep; };
struct rocksdb_options_t { rocksdb::Options rep; };
struct rocksdb_writeoptions_t { rocksdb::WriteOptions rep; };
struct rocksdb_readoptions_t { rocksdb::ReadOptions rep; };
struct rocksdb_backup_engine_t { rocksdb::BackupEngine *rep; };
struct rocksdb_cache_t { std::shared_ptr<rocksdb::Cache> rep; };

namespace sharddb_shim {
// As c.cc's SaveError: on an error, a malloc'd copy of the status text in
// *errptr (freed with rocksdb_free), replacing an earlier one; true if an error.
inline bool save_error(char **errptr, const rocksdb::Status &s) {
  if (s.ok()) return false;
  if (*errptr != nullptr) free(*errptr);
  *errptr = strdup(s.ToString().c_str());
  return true;
}
}  // namespace sharddb_shim

#endif
