#include "CCRC32C.h"

#include <string.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

// Slicing-by-8 tables, reflected polynomial 0x82F63B78.
static uint32_t tables[8][256];

static void make_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        tables[0][i] = c;
    }
    for (int i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++) tables[s][i] = (tables[s - 1][i] >> 8) ^ tables[0][tables[s - 1][i] & 0xFF];
}

static uint32_t update_software(uint32_t crc, const uint8_t *p, size_t n) {
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);  // little-endian hosts only (x86_64, arm64)
        uint32_t low = (uint32_t)word ^ crc, high = (uint32_t)(word >> 32);
        crc = tables[7][low & 0xFF] ^ tables[6][(low >> 8) & 0xFF] ^ tables[5][(low >> 16) & 0xFF] ^ tables[4][low >> 24]
            ^ tables[3][high & 0xFF] ^ tables[2][(high >> 8) & 0xFF] ^ tables[1][(high >> 16) & 0xFF] ^ tables[0][high >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

// The CRC instruction takes three cycles, but the CPU starts one every cycle:
// one dependent chain uses a third of it. Long inputs are therefore cut into
// three lanes of LANE bytes computed side by side, each from a zero register,
// and joined: the register after A then B is shift(register after A, |B|) xor
// (B's register from zero), where shift appends |B| zero bytes. That is linear
// in the register, so for |B| = LANE it is four table lookups (lane_shift).
#define LANE 4096
static uint32_t lane_shift[4][256];

static inline uint32_t shift_lane(uint32_t c) {
    return lane_shift[0][c & 0xFF] ^ lane_shift[1][(c >> 8) & 0xFF] ^ lane_shift[2][(c >> 16) & 0xFF] ^ lane_shift[3][c >> 24];
}

static void make_lane_shift(void) {
    static const uint8_t zeros[LANE];
    uint32_t basis[32];  // the image of each register bit
    for (int i = 0; i < 32; i++) basis[i] = update_software(1u << i, zeros, LANE);
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if (b & (1 << j)) v ^= basis[8 * k + j];
            lane_shift[k][b] = v;
        }
}

#if defined(__x86_64__)
#define CRC_WORD(c, w) __builtin_ia32_crc32di((c), (w))
#define CRC_BYTE(c, b) __builtin_ia32_crc32qi((c), (b))
#define CRC_TARGET __attribute__((target("sse4.2")))
static int cpu_has_crc(void) { return __builtin_cpu_supports("sse4.2"); }
#elif defined(__aarch64__) && defined(__linux__)
#define CRC_WORD(c, w) __builtin_arm_crc32cd((uint32_t)(c), (w))
#define CRC_BYTE(c, b) __builtin_arm_crc32cb((c), (b))
#define CRC_TARGET __attribute__((target("crc")))
static int cpu_has_crc(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#endif

#ifdef CRC_TARGET
CRC_TARGET
static uint32_t update_hardware(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n >= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        for (const uint8_t *end = p + LANE; p < end; p += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p, 8);
            memcpy(&w1, p + LANE, 8);
            memcpy(&w2, p + 2 * LANE, 8);
            c = CRC_WORD(c, w0);
            c1 = CRC_WORD(c1, w1);
            c2 = CRC_WORD(c2, w2);
        }
        c = shift_lane((uint32_t)c) ^ (uint32_t)c1;
        c = shift_lane((uint32_t)c) ^ (uint32_t)c2;
        p += 2 * LANE;
        n -= 3 * LANE;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = CRC_WORD(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = CRC_BYTE(c32, *p++);
    return c32;
}
#else
static uint32_t update_hardware(uint32_t crc, const uint8_t *p, size_t n) { return update_software(crc, p, n); }
static int cpu_has_crc(void) { return 0; }
#endif

// 0: not chosen yet, 1: hardware, 2: software. Racing first calls choose the same.
static volatile int choice = 0;

static int choose(void) {
    int c = choice;
    if (c == 0) {
        make_tables();
        make_lane_shift();
        c = cpu_has_crc() ? 1 : 2;
        __atomic_store_n(&choice, c, __ATOMIC_RELEASE);
    }
    return c;
}

uint32_t sharddb_crc32c_update(uint32_t crc, const void *bytes, size_t length) {
    if (length == 0) return crc;
    return choose() == 1 ? update_hardware(crc, bytes, length) : update_software(crc, bytes, length);
}

int sharddb_crc32c_is_hardware(void) { return choose() == 1; }

uint32_t sharddb_crc32c_update_software(uint32_t crc, const void *bytes, size_t length) {
    choose();  // builds the tables
    return update_software(crc, bytes, length);
}
