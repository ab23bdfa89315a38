// Snappy's C API as installed by Debian's libsnappy-dev (a dependency of
// librocksdb-dev): the transport compresses bulk chunks with it.
#include <snappy-c.h>
