// Linux calls that Swift's Glibc module does not import: they are declared
// only under _GNU_SOURCE, which the module is not built with.
#ifndef CLINUX_H
#define CLINUX_H

#include <stdint.h>

/// Starts writing back `length` bytes at `offset` of the file open as `fd`,
/// without waiting for them (sync_file_range with SYNC_FILE_RANGE_WRITE): a
/// later fdatasync finds them written or being written. 0, or -1 and errno.
int sharddb_start_writeback(int fd, int64_t offset, int64_t length);

#endif
