// See include/CRocksDBShim.h for why each function exists.
#include "CRocksDBShim.h"
#include "c_api_mirror.h"

#include <cstdlib>
#include <memory>
#include <rocksdb/cache.h>
#include <rocksdb/memory_allocator.h>

namespace {
// Hands out the block cache's buffers in size classes. A table's blocks end
// wherever an entry crosses block_size, so their uncompressed sizes differ by a
// few bytes (with ShardDB's prefixed keys and headers, 4 KiB blocks spread over
// ~50 sizes); glibc reuses a freed chunk cheaply only for the same size, and a
// cache that evicts one block to load another then paid malloc's splitting and
// coalescing paths on every miss (about 3% of a readrandom, perf). Rounded up
// to an eighth of their power of two (at most 12.5% more, charged to the
// cache), the blocks of a table share a handful of sizes.
class SizeClassAllocator final : public rocksdb::MemoryAllocator {
 public:
  const char *Name() const override { return "ShardDBSizeClassAllocator"; }
  void *Allocate(size_t size) override { return malloc(sharddb_block_size_class(size)); }
  void Deallocate(void *p) override { free(p); }
  size_t UsableSize(void *, size_t size) const override { return sharddb_block_size_class(size); }
};
}  // namespace

extern "C" size_t sharddb_block_size_class(size_t size) {
  if (size < 1024) return size;
  size_t step = (size_t{1} << (63 - __builtin_clzll(size))) >> 3;
  return (size + step - 1) & ~(step - 1);
}

extern "C" rocksdb_cache_t *sharddb_cache_create_lru(size_t capacity) {
  rocksdb::LRUCacheOptions options;
  options.capacity = capacity;
  // No pool reserved for high-priority entries: those are index and filter
  // blocks, which ShardDB keeps in the table readers, not in this cache (the
  // 0.5 NewLRUCache reserves would only cost a pool upkeep per insert). db_bench's
  // default is the same, so the two compare with one cache configuration.
  options.high_pri_pool_ratio = 0.0;
  options.memory_allocator = std::make_shared<SizeClassAllocator>();
  return new rocksdb_cache_t{rocksdb::NewLRUCache(options)};
}
