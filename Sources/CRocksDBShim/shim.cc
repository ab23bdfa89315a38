// See include/CRocksDBShim.h for why each function exists.
#include "CRocksDBShim.h"
#include "c_api_mirror.h"

#include <cstdlib>
#include <cstring>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/write_batch.h>
#include <vector>

using sharddb_shim::save_error;

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

extern "C" int sharddb_snapshot_sequence_number(const rocksdb_snapshot_t *snapshot, uint64_t *sequence) {
  if (snapshot->rep == nullptr) return 0;
  *sequence = snapshot->rep->GetSequenceNumber();
  return 1;
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

extern "C" size_t sharddb_iter_next_packed(rocksdb_iterator_t *iter, char *data, size_t capacity,
                                           size_t stop_at, uint32_t *key_lengths, uint32_t *value_lengths,
                                           size_t max_entries, size_t *used, size_t *needed) {
  rocksdb::Iterator *it = iter->rep;
  size_t count = 0, offset = 0;
  *needed = 0;
  while (count < max_entries && offset < stop_at && it->Valid()) {
    rocksdb::Slice k = it->key(), v = it->value();
    size_t size = k.size() + v.size();
    if (offset + size > capacity) {
      if (count == 0) *needed = size;
      break;
    }
    std::memcpy(data + offset, k.data(), k.size());
    std::memcpy(data + offset + k.size(), v.data(), v.size());
    key_lengths[count] = static_cast<uint32_t>(k.size());
    value_lengths[count] = static_cast<uint32_t>(v.size());
    offset += size;
    ++count;
    it->Next();
  }
  *used = offset;
  return count;
}

extern "C" void sharddb_db_verify_checksum(rocksdb_t *db, char **errptr) {
  save_error(errptr, db->rep->VerifyChecksum());
}

// The C API of 7.8 flushes one column family per call. With atomic_flush,
// RocksDB commits the flush of several families as one only when one call
// names them all (DB::Flush with a vector of handles).
extern "C" void sharddb_flush_cfs(rocksdb_t *db, rocksdb_column_family_handle_t *const *families, size_t count,
                                  unsigned char wait, char **errptr) {
  rocksdb::FlushOptions options;
  options.wait = wait != 0;
  std::vector<rocksdb::ColumnFamilyHandle *> handles;
  handles.reserve(count);
  for (size_t i = 0; i < count; i++) handles.push_back(families[i]->rep);
  save_error(errptr, db->rep->Flush(options, handles));
}

extern "C" void sharddb_compact_range_cf(rocksdb_t *db, rocksdb_column_family_handle_t *family,
                                         const char *begin, size_t begin_length,
                                         const char *end, size_t end_length,
                                         unsigned char bottommost_force, char **errptr) {
  rocksdb::CompactRangeOptions options;
  if (bottommost_force) options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  rocksdb::Slice b(begin, begin_length), e(end, end_length);
  save_error(errptr, db->rep->CompactRange(options, family->rep, begin ? &b : nullptr, end ? &e : nullptr));
}

extern "C" void sharddb_delete_files_in_range_cf(rocksdb_t *db, rocksdb_column_family_handle_t *family,
                                                 const char *begin, size_t begin_length,
                                                 const char *end, size_t end_length, char **errptr) {
  rocksdb::Slice b(begin, begin_length), e(end, end_length);
  save_error(errptr, rocksdb::DeleteFilesInRange(db->rep, family->rep, begin ? &b : nullptr, end ? &e : nullptr,
                                                 /*include_end=*/false));
}

namespace {
// The write batch sharddb_put_parts_cf reuses on this thread. `busy` guards
// against a nested call on the same thread (nothing RocksDB calls back during a
// write does that today; a nested call gets a batch of its own).
struct ReusedBatch {
  rocksdb::WriteBatch batch;
  bool busy = false;
};
thread_local ReusedBatch reused_batch;
// A batch that grew past this for one big entry is dropped rather than kept per thread.
constexpr size_t kReusedBatchMaxBytes = 1 << 20;

rocksdb::Status put_parts(rocksdb::WriteBatch &batch, rocksdb_t *db, const rocksdb_writeoptions_t *options,
                          rocksdb_column_family_handle_t *family, const rocksdb::Slice (&key)[2],
                          const rocksdb::Slice (&value)[2]) {
  rocksdb::Status s = batch.Put(family->rep, rocksdb::SliceParts(key, 2), rocksdb::SliceParts(value, 2));
  if (!s.ok()) return s;
  return db->rep->Write(options->rep, &batch);
}
}  // namespace

extern "C" void sharddb_put_parts_cf(rocksdb_t *db, const rocksdb_writeoptions_t *options,
                                     rocksdb_column_family_handle_t *family,
                                     const char *key_head, size_t key_head_length,
                                     const char *key, size_t key_length,
                                     const char *value_head, size_t value_head_length,
                                     const char *value, size_t value_length, char **errptr) {
  const rocksdb::Slice key_parts[2] = {rocksdb::Slice(key_head, key_head_length), rocksdb::Slice(key, key_length)};
  const rocksdb::Slice value_parts[2] = {rocksdb::Slice(value_head, value_head_length), rocksdb::Slice(value, value_length)};
  rocksdb::Status s;
  ReusedBatch &reused = reused_batch;
  if (reused.busy) {
    rocksdb::WriteBatch batch;
    s = put_parts(batch, db, options, family, key_parts, value_parts);
  } else {
    reused.busy = true;
    reused.batch.Clear();
    s = put_parts(reused.batch, db, options, family, key_parts, value_parts);
    if (reused.batch.GetDataSize() > kReusedBatchMaxBytes) reused.batch = rocksdb::WriteBatch();
    reused.busy = false;
  }
  save_error(errptr, s);
}

namespace {
// The pinnable slice sharddb_get_pinned_begin reuses on this thread, and whether
// a read holds it now.
thread_local rocksdb::PinnableSlice reused_slice;
thread_local bool reused_slice_held = false;
}  // namespace

extern "C" int sharddb_get_pinned_begin(rocksdb_t *db, const rocksdb_readoptions_t *options,
                                        rocksdb_column_family_handle_t *family, const char *key, size_t key_length,
                                        void **slice, const char **value, size_t *length, char **errptr) {
  rocksdb::PinnableSlice *target = reused_slice_held ? new rocksdb::PinnableSlice() : &reused_slice;
  if (target == &reused_slice) reused_slice_held = true;
  rocksdb::Status s = db->rep->Get(options->rep, family->rep, rocksdb::Slice(key, key_length), target);
  if (s.ok()) {
    *slice = target;
    *value = target->data();
    *length = target->size();
    return 1;
  }
  sharddb_get_pinned_end(target);
  if (!s.IsNotFound()) save_error(errptr, s);
  return 0;
}

extern "C" void sharddb_get_pinned_end(void *slice) {
  auto *target = static_cast<rocksdb::PinnableSlice *>(slice);
  if (target == &reused_slice) {
    reused_slice.Reset();
    reused_slice_held = false;
  } else {
    delete target;
  }
}

namespace {
constexpr int kMaxHeldBodies = 16;
thread_local const void *held_bodies[kMaxHeldBodies];
thread_local bool held_close_asked[kMaxHeldBodies];
thread_local int held_body_count = 0;
}  // namespace

extern "C" void sharddb_body_enter(const void *database) {
  if (held_body_count < kMaxHeldBodies) {
    held_bodies[held_body_count] = database;
    held_close_asked[held_body_count] = false;
  }
  held_body_count++;
}

extern "C" int sharddb_body_leave(const void *database) {
  const int top = --held_body_count;
  if (top >= kMaxHeldBodies || !held_close_asked[top]) return 0;
  for (int i = top - 1; i >= 0; i--) {
    if (held_bodies[i] == database) {
      held_close_asked[i] = true;
      return 0;
    }
  }
  return 1;
}

extern "C" int sharddb_body_defer_close(const void *database) {
  const int recorded = held_body_count < kMaxHeldBodies ? held_body_count : kMaxHeldBodies;
  for (int i = recorded - 1; i >= 0; i--) {
    if (held_bodies[i] == database) {
      held_close_asked[i] = true;
      return 1;
    }
  }
  return 0;
}
