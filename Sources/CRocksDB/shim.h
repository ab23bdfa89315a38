// The RocksDB C API as installed by Debian's librocksdb-dev (7.8.3).
#include <rocksdb/c.h>
