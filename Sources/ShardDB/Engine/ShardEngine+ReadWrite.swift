import Foundation
import RocksDB

extension ShardEngine {
    // MARK: Writes

    /// Stores `value` under `key` in the shard that owns the key.
    ///
    /// - parameters:
    ///   - ttl: how long the value lives; by default the shard's default TTL (none unless set).
    /// - throws: ``ShardDBError``: `.invalidKey`, `.invalidValue`, `.invalidTTL`,
    ///   `.keyNotOwned` (with the owner when known), `.migrationInProgress` (a migration's
    ///   fence on the key outlasted ``ShardEngineOptions/fenceWaitSeconds``), `.diskFull`,
    ///   `.closed`, `.storage`.
    @inlinable
    public func put(_ key: some ContiguousBytes, _ value: some ContiguousBytes, ttl: TTL = .shardDefault) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try putRaw(k, v, ttl: ttl) } }
    }

    /// Stores a UTF-8 `value` under a UTF-8 `key`.
    public func put(_ key: String, _ value: String, ttl: TTL = .shardDefault) throws {
        var key = key, value = value
        try key.withUTF8 { k in try value.withUTF8 { v in try putRaw(UnsafeRawBufferPointer(k), UnsafeRawBufferPointer(v), ttl: ttl) } }
    }

    @usableFromInline
    func putRaw(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, ttl: TTL) throws {
        try Self.validate(key: key)
        try Self.validate(value: value)
        try routedWrite(key) { shard, keyGroup in
            let header = try valueHeader(ttl: ttl, shard: shard)
            // The key's prefix and the value's header go to RocksDB as parts of their
            // own, so neither the key nor the value is copied on the way.
            try withUnsafeTemporaryAllocation(byteCount: 2 + ValueHeader.maxEncodedSize, alignment: 1) { scratch in
                let prefix = KeyEncoding.writePrefix(keyGroup, into: scratch)
                let headerBytes = UnsafeMutableRawBufferPointer(rebasing: scratch[prefix.count ..< prefix.count + header.encodedSize])
                header.encode(into: headerBytes)
                try guardedWrite(bytes: prefix.count + key.count + headerBytes.count + value.count) {
                    try database.put(keyParts: (prefix, key), valueParts: (UnsafeRawBufferPointer(headerBytes), value),
                                     in: shard.family, options: writeOptions)
                }
            }
        }
    }

    /// Removes `key` (no error when absent).
    ///
    /// - throws: ``ShardDBError``: `.invalidKey`, `.keyNotOwned`, `.migrationInProgress` (as ``put(_:_:ttl:)``),
    ///   `.diskFull`, `.closed`, `.storage`.
    @inlinable
    public func delete(_ key: some ContiguousBytes) throws {
        try key.withUnsafeBytes { k in try deleteRaw(k) }
    }

    public func delete(_ key: String) throws {
        var key = key
        try key.withUTF8 { try deleteRaw(UnsafeRawBufferPointer($0)) }
    }

    @usableFromInline
    func deleteRaw(_ key: UnsafeRawBufferPointer) throws {
        try Self.validate(key: key)
        try routedWrite(key) { shard, keyGroup in
            try KeyEncoding.withStoredKey(key, keyGroup: keyGroup) { storedKey in
                try guardedWrite(bytes: storedKey.count) { try database.delete(storedKey, in: shard.family, options: writeOptions) }
            }
        }
    }

    /// Removes every key `k` with `lower <= k < upper` (byte order), atomically.
    ///
    /// - Range partitioning: the range may span shards; one atomic batch holds a
    ///   RocksDB range deletion for each shard's part. Every part must be owned here.
    /// - Hash partitioning: a key range is spread over every key group (and, after
    ///   migrations, over instances), so the range is deleted inside one key group,
    ///   `keyGroup` (see ``keyGroup(of:)``); without it the call is refused.
    ///
    /// ```swift
    /// try engine.deleteRange(from: "log:2024-01", to: "log:2024-02")            // range partitioning
    /// try engine.deleteRange(from: "a", to: "b", keyGroup: engine.keyGroup(of: "user:42")!)  // hash
    /// ```
    ///
    /// - throws: ``ShardDBError``: `.invalidKey` (empty or oversized bound),
    ///   `.invalidArgument` (`lower >= upper`; a missing, out-of-range or unexpected
    ///   `keyGroup`), `.keyNotOwned` when any part of the range is not owned here
    ///   (naming the owner of a moved part; nothing is deleted), `.migrationInProgress`
    ///   when a cutover holding part of it does not finish in time, `.diskFull`, `.closed`, `.storage`.
    public func deleteRange(from lower: some ContiguousBytes, to upper: some ContiguousBytes, keyGroup: Int? = nil) throws {
        let lower = lower.withUnsafeBytes { [UInt8]($0) }, upper = upper.withUnsafeBytes { [UInt8]($0) }
        try Self.validateRange(lower, upper, keyGroup: keyGroup, partitioning: partitioning)
        while true {
            do {
                return try writeGate.withReadLock {
                    let pieces = try table.locateRange(lower: lower, upper: upper, keyGroup: keyGroup)
                    let batch = WriteBatch()
                    for piece in pieces {
                        try storage(path) { try batch.deleteRange(from: piece.storedLower, to: piece.storedUpper, in: piece.shard.family) }
                    }
                    try guardedWrite(bytes: 2 * (lower.count + upper.count + 2) * pieces.count) {
                        try database.write(batch, options: writeOptions)
                    }
                }
            } catch let hit as FenceHit {
                try waitOut(hit.fence)
            }
        }
    }

    public func deleteRange(from lower: String, to upper: String, keyGroup: Int? = nil) throws {
        try deleteRange(from: Array(lower.utf8), to: Array(upper.utf8), keyGroup: keyGroup)
    }

    /// The key group of `key` under hash partitioning; nil under range partitioning.
    public func keyGroup(of key: some ContiguousBytes) -> Int? {
        guard case .hash(let k) = partitioning else { return nil }
        return key.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: k) }
    }

    public func keyGroup(of key: String) -> Int? { keyGroup(of: Array(key.utf8)) }

    /// Checks a range delete's arguments (see ``deleteRange(from:to:keyGroup:)``).
    static func validateRange(_ lower: [UInt8], _ upper: [UInt8], keyGroup: Int?, partitioning: Partitioning) throws {
        try lower.withUnsafeBytes { try validate(key: $0) }
        try upper.withUnsafeBytes { try validate(key: $0) }
        guard lower.lexicographicallyPrecedes(upper) else {
            throw ShardDBError(.invalidArgument, "range delete: the lower bound must sort before the upper bound ('\(ByteText.display(lower))' >= '\(ByteText.display(upper))')")
        }
        switch (partitioning, keyGroup) {
        case (.hash(let k), nil):
            throw ShardDBError(.invalidArgument,
                "range delete under hash partitioning needs a key group: a key range is spread over all \(k) key groups")
        case let (.hash(k), kg?) where kg < 0 || kg >= k:
            throw ShardDBError(.invalidArgument, "key group \(kg) is outside [0, \(k))")
        case (.range, _?):
            throw ShardDBError(.invalidArgument, "a key group applies only to hash partitioning")
        default:
            break
        }
    }

    // MARK: Reads

    /// The value stored under `key`, copied; nil when absent or expired.
    ///
    /// - throws: ``ShardDBError``: `.invalidKey`, `.keyNotOwned`, `.migrationInProgress` (a migration's
    ///   fence on the key outlasted ``ShardEngineOptions/fenceWaitSeconds``), `.corruptedValue`, `.closed`, `.storage`.
    @inlinable
    public func get(_ key: some ContiguousBytes) throws -> [UInt8]? {
        try key.withUnsafeBytes { k in try withValueRaw(k) { [UInt8]($0) } }
    }

    public func get(_ key: String) throws -> [UInt8]? {
        var key = key
        return try key.withUTF8 { try withValueRaw(UnsafeRawBufferPointer($0)) { [UInt8]($0) } }
    }

    /// The value under `key` decoded as UTF-8; nil when absent or expired.
    public func getString(_ key: String) throws -> String? {
        try get(key).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Reads the value under `key` without copying it: `body` sees RocksDB's
    /// pinned buffer (header stripped), which must not escape the closure.
    /// `body` runs while the engine is held open. It may close the engine:
    /// ``isOpen`` is false at once, and the database closes when `body` returns
    /// (calls `body` makes after the close may still be served until then).
    ///
    /// - returns: `body`'s result; nil when the key is absent or expired.
    /// - throws: ``ShardDBError`` as ``get(_:)``, or what `body` throws, unchanged.
    @inlinable
    public func withValue<R>(forKey key: some ContiguousBytes, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try key.withUnsafeBytes { k in try withValueRaw(k, body) }
    }

    // Inlinable so it is specialized in the caller: the read itself is the
    // non-generic `readValue`, so a point read instantiates no generic metadata
    // at run time (which cost about 5% of a cached read when this was generic).
    @inlinable
    func withValueRaw<R>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        var result: R?
        try readValue(key) { result = try body($0) }
        return result
    }

    /// Calls `body` with the live value of `key` (header stripped), if any.
    @usableFromInline
    func readValue(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try Self.validate(key: key)
        try CallerError.unwrapping {
            // (Found: whether anything was stored; a miss is looked at again if the map changed.)
            _ = try routedRead(key, isMiss: { (found: Bool) in !found }) { shard, keyGroup -> Bool in
                try FailurePoints.hit("read.routed")  // (tests: a move between the lookup and the read)
                return try KeyEncoding.withStoredKey(key, keyGroup: keyGroup) { storedKey in
                    try storage(path) {
                        try database.withValue(forKey: storedKey, in: shard.family) { stored in
                            let (header, payload) = try decodeStored(stored, key: key)
                            // The clock is read only for values that can expire.
                            if let expiry = header.expiresAtMilliseconds, clock.nowMilliseconds() >= expiry { return }
                            try CallerError.marking { try body(payload) }
                        } != nil
                    }
                }
            }
        }
    }

    /// Values of several keys in one call per shard; nil where a key is absent or expired.
    ///
    /// - throws: as ``get(_:)``; nothing is returned if any key is invalid or not owned.
    public func multiGet<Key: ContiguousBytes>(_ keys: [Key]) throws -> [[UInt8]?] {
        while true {
            // A shard dropped between the lookups and the reads (a migration's cleanup):
            // looked up again, the keys it held name their new owner.
            let generation = tableGeneration
            do {
                let results = try multiGetOnce(keys)
                // A miss after the map changed may be a key a partial move's cleanup
                // deleted here: looked up again, it names its owner (as ``get(_:)``).
                if results.contains(where: { $0 == nil }) && tableGeneration != generation { continue }
                return results
            } catch let error as ShardDBError where error.storage?.kind == .columnFamilyDropped {
                guard tableGeneration != generation else { throw error }
            }
        }
    }

    private func multiGetOnce<Key: ContiguousBytes>(_ keys: [Key]) throws -> [[UInt8]?] {
        // Group the stored keys by shard, remembering each key's position.
        var groups: [Int: (shard: Shard, positions: [Int], keys: [[UInt8]])] = [:]
        for (position, key) in keys.enumerated() {
            try key.withUnsafeBytes { k in
                try Self.validate(key: k)
                let (shard, keyGroup) = try routedRead(k) { ($0, $1) }
                let stored = KeyEncoding.withStoredKey(k, keyGroup: keyGroup) { [UInt8]($0) }
                groups[shard.id, default: (shard, [], [])].positions.append(position)
                groups[shard.id]!.keys.append(stored)
            }
        }
        var results = [[UInt8]?](repeating: nil, count: keys.count)
        let now = clock.nowMilliseconds()
        for (_, group) in groups {
            let values = try storage(path) { try database.multiGet(group.keys, in: group.shard.family) }
            for (index, value) in values.enumerated() {
                guard let value else { continue }
                let position = group.positions[index]
                try value.withUnsafeBytes { stored in
                    let (header, payload) = try keys[position].withUnsafeBytes { try decodeStored(stored, key: $0) }
                    if !header.isExpired(at: now) { results[position] = [UInt8](payload) }
                }
            }
        }
        return results
    }

    // MARK: Validation and encoding

    @inline(__always)
    static func validate(key: UnsafeRawBufferPointer) throws {
        guard !key.isEmpty else { throw ShardDBError(.invalidKey, "keys must not be empty") }
        guard key.count <= maxKeySize else {
            throw ShardDBError(.invalidKey, "key of \(key.count) bytes exceeds the limit of \(maxKeySize) bytes")
        }
    }

    @inline(__always)
    static func validate(value: UnsafeRawBufferPointer) throws {
        guard value.count <= maxValueSize else {
            throw ShardDBError(.invalidValue, "value of \(value.count) bytes exceeds the limit of \(maxValueSize) bytes")
        }
    }

    /// The absolute expiry of a write made now with `ttl` to `shard`; reads the clock only when needed.
    @inline(__always)
    func expiry(for ttl: TTL, shard: Shard) throws -> Int64? {
        switch ttl {
        case .never: return nil
        case .shardDefault where shard.descriptor.defaultTTLSeconds == nil: return nil
        default: return try ttl.expiry(now: clock.nowMilliseconds(), shardDefaultSeconds: shard.descriptor.defaultTTLSeconds)
        }
    }

    /// The header of a value written now with `ttl` to `shard`: its expiry, and
    /// its write time when ``ShardEngineOptions/stampWriteTime`` is on.
    @inline(__always)
    func valueHeader(ttl: TTL, shard: Shard) throws -> ValueHeader {
        ValueHeader(expiresAtMilliseconds: try expiry(for: ttl, shard: shard),
                    writtenAtMilliseconds: stampWriteTime ? clock.nowMilliseconds() : nil)
    }

    /// Calls `body` with header + value in one temporary buffer.
    @inline(__always)
    func withStoredValue<R>(_ header: ValueHeader, _ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let headerSize = header.encodedSize
        return try withUnsafeTemporaryAllocation(byteCount: headerSize + value.count, alignment: 1) { buffer in
            header.encode(into: buffer)
            if value.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: buffer[headerSize...]).copyMemory(from: value)
            }
            return try body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// Decodes a stored value, naming the key when its header is corrupt.
    @inline(__always)
    func decodeStored(_ stored: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) throws -> (ValueHeader, UnsafeRawBufferPointer) {
        if let parsed = ValueHeader.parse(stored) { return parsed }
        throw ShardDBError(.corruptedValue, "key '\(ByteText.display([UInt8](key)))': \(ValueHeader.describeCorruption(stored))")
    }
}
