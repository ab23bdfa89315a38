// CRC-32C (Castagnoli) for the migration transport's chunk checksums: the
// CPU's CRC32 instruction where there is one (SSE 4.2 on x86_64, the CRC
// extension on arm64), a slicing-by-8 table otherwise. Chosen once, at the
// first call.
#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Continues a CRC-32C over `length` bytes. Start with `crc` = 0xFFFFFFFF and
/// invert the result at the end (the usual pre- and post-conditioning).
uint32_t sharddb_crc32c_update(uint32_t crc, const void *bytes, size_t length);

/// 1 when `sharddb_crc32c_update` uses the CPU's CRC32 instruction.
int sharddb_crc32c_is_hardware(void);
/// The table-driven implementation, whatever the CPU has: what tests compare
/// the CPU's instruction with.
uint32_t sharddb_crc32c_update_software(uint32_t crc, const void *bytes, size_t length);

#endif
