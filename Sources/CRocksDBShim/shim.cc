// See include/CRocksDBShim.h for why each function exists.
#include "CRocksDBShim.h"

#include <cstdlib>
#include <cstring>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/snapshot.h>

// These mirror the C API's private wrapper structs (rocksdb/db/c.cc, 7.8):
// each holds exactly one pointer to the C++ object.
struct rocksdb_snapshot_t { const rocksdb::Snapshot *rep; };
struct rocksdb_iterator_t { rocksdb::Iterator *rep; };
struct rocksdb_t { rocksdb::DB *rep; };

// Whether the calling thread's perf level has been chosen through the shim.
static thread_local bool perf_level_chosen = false;

extern "C" void sharddb_set_perf_level(int level) {
    rocksdb::SetPerfLevel(static_cast<rocksdb::PerfLevel>(level));
    perf_level_chosen = true;
}

extern "C" void sharddb_perf_level_default_once(int level) {
    if (perf_level_chosen) return;
    rocksdb::SetPerfLevel(static_cast<rocksdb::PerfLevel>(level));
    perf_level_chosen = true;
}

extern "C" uint64_t sharddb_snapshot_sequence_number(const rocksdb_snapshot_t *snapshot) {
  return snapshot->rep->GetSequenceNumber();
}

extern "C" size_t sharddb_iter_next_batch(rocksdb_iterator_t *iter, char *buffer,
                                          size_t capacity, size_t max_entries,
                                          size_t *used, size_t *needed) {
  rocksdb::Iterator *it = iter->rep;
  size_t count = 0, offset = 0;
  *needed = 0;
  while (count < max_entries && it->Valid()) {
    rocksdb::Slice k = it->key(), v = it->value();
    size_t size = 8 + k.size() + v.size();
    if (offset + size > capacity) {
      if (count == 0) *needed = size;
      break;
    }
    uint32_t kl = static_cast<uint32_t>(k.size()), vl = static_cast<uint32_t>(v.size());
    std::memcpy(buffer + offset, &kl, 4);
    std::memcpy(buffer + offset + 4, &vl, 4);
    std::memcpy(buffer + offset + 8, k.data(), k.size());
    std::memcpy(buffer + offset + 8 + k.size(), v.data(), v.size());
    offset += size;
    ++count;
    it->Next();
  }
  *used = offset;
  return count;
}

extern "C" void sharddb_db_verify_checksum(rocksdb_t *db, char **errptr) {
  rocksdb::Status s = db->rep->VerifyChecksum();
  if (s.ok()) return;
  if (*errptr != nullptr) free(*errptr);
  *errptr = strdup(s.ToString().c_str());
}
