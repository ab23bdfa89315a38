import ShardDB
import XCTest

/// The key hash is part of the on-disk format: these values must never change.
final class KeyHashTests: XCTestCase {
    private func murmur3(_ data: [UInt8], seed: UInt32 = 0) -> UInt32 {
        data.withUnsafeBytes { KeyHash.murmur3($0, seed: seed) }
    }

    private func keyGroup(_ key: String, _ keyGroups: Int) -> Int {
        bytes(key).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: keyGroups) }
    }

    func testMurmur3MatchesPublishedVectorsWithSeedZero() {
        XCTAssertEqual(murmur3([]), 0)
        XCTAssertEqual(murmur3(bytes("hello")), 0x248b_fa47)
        XCTAssertEqual(murmur3(bytes("The quick brown fox jumps over the lazy dog")), 0x2e4f_f723)
        XCTAssertEqual(murmur3(bytes("Hello, world!")), 0xc036_3e43)
        XCTAssertEqual(murmur3(bytes("abc")), 0xb3dd_93fa)
        // Every tail length, and bytes with the high bit set.
        XCTAssertEqual(murmur3([0x00]), 0x514e_28b7)
        XCTAssertEqual(murmur3([0x00, 0x00]), 0x30f4_c306)
        XCTAssertEqual(murmur3([0x00, 0x00, 0x00]), 0x85f0_b427)
        XCTAssertEqual(murmur3([0x00, 0x00, 0x00, 0x00]), 0x2362_f9de)
        XCTAssertEqual(murmur3([0x21]), 0x7266_1cf4)
        XCTAssertEqual(murmur3([0x21, 0x43]), 0xa0f7_b07a)
        XCTAssertEqual(murmur3([0x21, 0x43, 0x65]), 0x7e4a_8634)
        XCTAssertEqual(murmur3([0x21, 0x43, 0x65, 0x87]), 0xf55b_516b)
        XCTAssertEqual(murmur3([0xff, 0xff, 0xff, 0xff]), 0x7629_3b50)
    }

    func testMurmur3MatchesPublishedVectorsWithOtherSeeds() {
        XCTAssertEqual(murmur3([], seed: 1), 0x514e_28b7)
        XCTAssertEqual(murmur3([], seed: 0xffff_ffff), 0x81f1_6f39)
        XCTAssertEqual(murmur3([0x21, 0x43, 0x65, 0x87], seed: 0x5082_edee), 0x2362_f9de)
        XCTAssertEqual(murmur3(bytes("a"), seed: 0x9747_b28c), 0x7fa0_9ea6)
        XCTAssertEqual(murmur3(bytes("aa"), seed: 0x9747_b28c), 0x5d21_1726)
        XCTAssertEqual(murmur3(bytes("aaa"), seed: 0x9747_b28c), 0x283e_0130)
        XCTAssertEqual(murmur3(bytes("aaaa"), seed: 0x9747_b28c), 0x5a97_808a)
        XCTAssertEqual(murmur3(bytes("abc"), seed: 0x9747_b28c), 0xc84a_62dd)
        XCTAssertEqual(murmur3(bytes("abcd"), seed: 0x9747_b28c), 0xf047_8627)
        XCTAssertEqual(murmur3(bytes("Hello, world!"), seed: 0x9747_b28c), 0x2488_4cba)
        XCTAssertEqual(murmur3(bytes("ππππππππ"), seed: 0x9747_b28c), 0xd580_63c1)
    }

    func testMurmur3ReadsUnalignedKeys() {
        // The same bytes at every alignment inside a larger buffer hash the same.
        let key = bytes("The quick brown fox jumps over the lazy dog")
        for offset in 0..<8 {
            let padded = [UInt8](repeating: 0xaa, count: offset) + key
            let hash = padded.withUnsafeBytes { KeyHash.murmur3(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            XCTAssertEqual(hash, 0x2e4f_f723, "offset \(offset)")
        }
    }

    /// Frozen values, computed once with an independent implementation:
    /// a change here moves keys between shards of existing instances.
    func testKeyGroupsOfFixedKeysAreFrozen() {
        let k = Partitioning.defaultKeyGroups
        XCTAssertEqual(keyGroup("user:42", k), 885)
        XCTAssertEqual(keyGroup("account:a", k), 1509)
        XCTAssertEqual(keyGroup("account:b", k), 2786)
        XCTAssertEqual(keyGroup("a", k), 2482)
        XCTAssertEqual(keyGroup("zzz", k), 2125)
        XCTAssertEqual(keyGroup("order/2024/0001", k), 1087)
        XCTAssertEqual(keyGroup("hello", k), 2631)
        XCTAssertEqual(keyGroup("hello", 4), 3)
        XCTAssertEqual(keyGroup("hello", 1), 0)
    }

    func testKeyGroupsOfAThousandKeysMatchAFrozenChecksum() {
        var weighted = 0
        var fnv: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<1000 {
            let group = keyGroup("key-\(i)", 4096)
            XCTAssert((0..<4096).contains(group))
            weighted += (i + 1) * group
            for byte in [UInt8(group >> 8), UInt8(group & 0xff)] {
                fnv ^= UInt64(byte)
                fnv &*= 0x100_0000_01b3
            }
        }
        XCTAssertEqual(weighted, 995_338_826)
        XCTAssertEqual(fnv, 0x9318_7cfa_4373_cede)
    }

    func testKeyGroupsStayInRangeForEveryCount() {
        for keyGroups in [1, 2, 3, 7, 128, 4096, Partitioning.maxKeyGroups] {
            for i in 0..<200 { XCTAssert((0..<keyGroups).contains(keyGroup("k\(i)", keyGroups))) }
        }
    }
}
