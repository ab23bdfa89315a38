/// The stable hash that assigns keys to key groups: MurmurHash3 x86 32-bit,
/// seed 0, over the key's bytes (the same function Flink uses for its key
/// groups, though Flink hashes Java's `hashCode`).
///
/// Swift's `Hasher` is randomized per process and must never decide where a
/// key lives. This function is fixed by the on-disk format (docs/FORMAT.md):
/// changing it would move every key.
public enum KeyHash {
    /// MurmurHash3_x86_32 of `bytes` with seed 0.
    @inlinable
    public static func murmur3(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        let c1: UInt32 = 0xcc9e_2d51
        let c2: UInt32 = 0x1b87_3593
        var h = seed
        let count = bytes.count
        let blocks = count / 4
        for i in 0..<blocks {
            var k = bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self).littleEndian
            k &*= c1
            k = (k << 15) | (k >> 17)
            k &*= c2
            h ^= k
            h = (h << 13) | (h >> 19)
            h = h &* 5 &+ 0xe654_6b64
        }
        var k: UInt32 = 0
        let tail = blocks * 4
        switch count & 3 {
        case 3:
            k ^= UInt32(bytes[tail + 2]) << 16
            fallthrough
        case 2:
            k ^= UInt32(bytes[tail + 1]) << 8
            fallthrough
        case 1:
            k ^= UInt32(bytes[tail])
            k &*= c1
            k = (k << 15) | (k >> 17)
            k &*= c2
            h ^= k
        default:
            break
        }
        h ^= UInt32(truncatingIfNeeded: count)
        h ^= h >> 16
        h &*= 0x85eb_ca6b
        h ^= h >> 13
        h &*= 0xc2b2_ae35
        h ^= h >> 16
        return h
    }

    /// The key group of `key` among `keyGroups`.
    @inlinable
    public static func keyGroup(of key: UnsafeRawBufferPointer, keyGroups: Int) -> Int {
        Int(murmur3(key) % UInt32(keyGroups))
    }
}
