// The RocksDB C API (Debian's librocksdb-dev 7.8.3), imported by the raw
// reference benchmarks only.
#include <rocksdb/c.h>
