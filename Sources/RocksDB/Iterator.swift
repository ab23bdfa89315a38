#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRocksDB
import CRocksDBShim

/// An ordered cursor over one column family.
///
/// Owns its read options (a copy of those it was made with, so their bounds and
/// snapshot stay as they were) and keeps its database alive. Not `Sendable`:
/// RocksDB iterators are single-threaded.
/// Destroyed on deinit, or by the database's `close()`; later calls then throw
/// ``RocksDBError/Kind/closed``.
///
/// ```swift
/// let it = try db.makeIterator(in: family, lowerBound: Array("a".utf8), upperBound: Array("b".utf8))
/// it.seekToFirst()
/// while it.isValid { print(it.key, it.value); it.next() }
/// try it.checkStatus()
/// ```
public final class Iterator {
    public let database: Database
    public let readOptions: ReadOptions
    let slot: ChildSlot
    // Valid only while `slot.pointer` is; every use goes through `withPointer`.

    init(database: Database, family: ColumnFamily?, readOptions: ReadOptions, copyOptions: Bool = true) throws {
        self.database = database
        // RocksDB's iterator keeps pointers into its read options (the bounds): a copy of
        // the caller's, so changing or sharing them later does not change this iterator.
        let readOptions = copyOptions ? try readOptions.copy() : readOptions
        self.readOptions = readOptions
        // Registered under the shared lock so a concurrent close() cannot miss it.
        slot = try database.withHandle(family) { db, cf in
            try readOptions.checkSnapshot(of: database.core)
            let slot = ChildSlot(kind: .iterator, pointer: rocksdb_create_iterator_cf(db, readOptions.pointer, cf)!)
            database.core.register(slot)
            return slot
        }
    }

    deinit { database.core.release(slot) }

    @inline(__always)
    func withPointer<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        if let level = database.threadPerfLevel { PerfLevel.applyOnce(level) }
        return try database.core.lock.withReadLock {
            guard let pointer = slot.pointer else { throw RocksDBError.closed("iterator") }
            return try body(pointer)
        }
    }

    /// True when positioned on an entry. False after `close()`.
    public var isValid: Bool { (try? withPointer { rocksdb_iter_valid($0) != 0 }) ?? false }

    public func seekToFirst() { try? withPointer { rocksdb_iter_seek_to_first($0) } }
    public func seekToLast() { try? withPointer { rocksdb_iter_seek_to_last($0) } }

    /// Positions at the first key at or after `target`.
    public func seek(to target: some ContiguousBytes) {
        target.withUnsafeBytes { t in try? withPointer { rocksdb_iter_seek($0, t.cPointer, t.count) } }
    }

    /// Positions at the last key at or before `target`.
    public func seek(forPrev target: some ContiguousBytes) {
        target.withUnsafeBytes { t in try? withPointer { rocksdb_iter_seek_for_prev($0, t.cPointer, t.count) } }
    }

    public func next() { try? withPointer { rocksdb_iter_next($0) } }
    public func previous() { try? withPointer { rocksdb_iter_prev($0) } }

    /// The current key, copied (empty when not valid).
    public var key: [UInt8] { (try? withKey { [UInt8]($0) }) ?? [] }
    /// The current value, copied (empty when not valid).
    public var value: [UInt8] { (try? withValue { [UInt8]($0) }) ?? [] }

    /// Runs `body` with the iterator's pointer under the shared lock, as a caller's
    /// closure: a close of the database asked for inside it runs once it returns.
    private func withPointerForCaller<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        let marker = database.closeGuard.rwlock
        var closeAfter = false
        defer { if closeAfter { database.close() } }
        return try withPointer { p in
            sharddb_body_enter(marker)
            defer { closeAfter = sharddb_body_leave(marker) != 0 }
            return try body(p)
        }
    }

    /// Calls `body` with the current key in RocksDB's buffer (must not escape);
    /// an empty buffer when not valid.
    public func withKey<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try withPointerForCaller { p in
            // RocksDB's key() on an invalid iterator is undefined (an assertion in its debug builds).
            guard rocksdb_iter_valid(p) != 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
            var length = 0
            let data = rocksdb_iter_key(p, &length)
            return try body(UnsafeRawBufferPointer(start: data, count: length))
        }
    }

    /// Calls `body` with the current value in RocksDB's buffer (must not escape);
    /// an empty buffer when not valid.
    public func withValue<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try withPointerForCaller { p in
            guard rocksdb_iter_valid(p) != 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
            var length = 0
            let data = rocksdb_iter_value(p, &length)
            return try body(UnsafeRawBufferPointer(start: data, count: length))
        }
    }

    /// Throws the error that ended iteration, if any (e.g. a corrupted block).
    public func checkStatus() throws {
        try withPointer { p in try withStatus { rocksdb_iter_get_error(p, $0) } }
    }

    /// Visits entries from the current position onwards, copying them into
    /// `buffer` in batches so a scan costs one C call per batch instead of four
    /// per entry. `body` sees each key and value in that buffer (they must not
    /// escape) and returns false to stop. After an early stop the iterator's
    /// position is past the stopping entry (somewhere in its batch): seek again
    /// before reusing it.
    ///
    /// - parameters:
    ///   - firstBatchEntries: entries of the first batch, doubling batch after batch up
    ///     to `maxBatchEntries` (for a caller that will likely stop early: a scan of a
    ///     few entries copies a few, and one that skips many still takes big batches).
    /// - throws: ``RocksDBError`` when iteration fails, or what `body` throws.
    public func forEach(batchBytes: Int = 64 << 10, maxBatchEntries: Int = 1024, firstBatchEntries: Int? = nil,
                        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool) throws {
        // At least one entry per batch: a batch of none reads as the end of the iteration.
        let maxBatchEntries = max(1, maxBatchEntries)
        var batchEntries = max(1, min(firstBatchEntries ?? maxBatchEntries, maxBatchEntries))
        var capacity = batchBytes
        var buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            var used = 0, needed = 0
            let count = try withPointer { p in
                sharddb_iter_next_batch(p, buffer.assumingMemoryBound(to: CChar.self), capacity, batchEntries, &used, &needed)
            }
            if count == 0 {
                if needed > 0 {  // one entry larger than the buffer: grow and retry
                    buffer.deallocate()
                    capacity = needed
                    buffer = .allocate(byteCount: capacity, alignment: 8)
                    continue
                }
                break
            }
            var offset = 0
            for _ in 0..<count {
                let keyLength = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                let valueLength = Int(buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                let key = UnsafeRawBufferPointer(start: buffer + offset + 8, count: keyLength)
                let value = UnsafeRawBufferPointer(start: buffer + offset + 8 + keyLength, count: valueLength)
                offset += 8 + keyLength + valueLength
                if try !body(key, value) { return }
            }
            batchEntries = min(batchEntries * 2, maxBatchEntries)
        }
        try checkStatus()
    }

    /// Entries read from the current position onwards, packed: every key and value
    /// back to back in one buffer (key 0, value 0, key 1, ...), their lengths in
    /// two arrays. Reads until the kept entries hold at least `bytes` (the entry
    /// that reaches it included) or the iteration ends, in batches of one C call
    /// each, copying each entry once, straight into the buffer it is returned in.
    ///
    /// - parameters:
    ///   - bytes: how much to read (of kept entries' keys and values; at least one entry).
    ///   - keep: decides, for each entry read, whether it goes into the result
    ///     (nil: all); the buffers must not escape. An entry dropped still counts
    ///     as read (`lastKey`).
    /// - returns: the packed entries, their lengths, the last key read (kept or
    ///   not; nil when none was), and whether the iteration ended (nothing is left).
    /// - throws: ``RocksDBError`` when iteration fails.
    public func readPacked(bytes: Int, keep: ((UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool)? = nil) throws
        -> (data: Data, keyLengths: [UInt32], valueLengths: [UInt32], lastKey: [UInt8]?, exhausted: Bool) {
        let batchEntries = 4096
        // Each C call copies at most about this much, so the database's lock is
        // taken for a few hundred microseconds at a time, however large the read.
        let batchBytes = 1 << 20
        let goal = min(max(bytes, 1), Int.max / 4)
        // The buffer starts at the goal (up to 64 MiB) and doubles when it runs out.
        var capacity = min(goal, 64 << 20) + 4096
        guard var buffer = malloc(capacity) else { throw Self.noMemory(capacity) }
        var handedOver = false
        defer { if !handedOver { free(buffer) } }
        var used = 0
        /// Doubles the buffer, or more when `needed` bytes past `used` would not fit.
        func grow(toHold needed: Int) throws {
            capacity = max(capacity * 2, used + needed + 4096)
            guard let grown = realloc(buffer, capacity) else { throw Self.noMemory(capacity) }
            buffer = grown
        }
        var keyLengths: [UInt32] = [], valueLengths: [UInt32] = []
        let batchKeys = UnsafeMutablePointer<UInt32>.allocate(capacity: batchEntries)
        let batchValues = UnsafeMutablePointer<UInt32>.allocate(capacity: batchEntries)
        defer { batchKeys.deallocate(); batchValues.deallocate() }
        var lastKey: [UInt8]?
        var exhausted = false
        while used < goal {
            let wanted = min(goal - used, batchBytes)
            if capacity - used < wanted { try grow(toHold: wanted) }
            var added = 0, needed = 0
            let start = buffer + used
            let count = try withPointer { p in
                sharddb_iter_next_packed(p, start.assumingMemoryBound(to: CChar.self), capacity - used,
                                         wanted, batchKeys, batchValues, batchEntries, &added, &needed)
            }
            if count == 0 {
                if needed > 0 {  // one entry larger than the room left: grow and retry
                    try grow(toHold: needed)
                    continue
                }
                exhausted = true
                break
            }
            // The last key read, before any entry of the batch is dropped.
            let lastKeyOffset = added - Int(batchKeys[count - 1]) - Int(batchValues[count - 1])
            lastKey = [UInt8](UnsafeRawBufferPointer(start: start + lastKeyOffset, count: Int(batchKeys[count - 1])))
            if let keep {
                // Compacted in place: kept entries move down over dropped ones.
                var read = 0, written = 0
                for i in 0..<count {
                    let k = Int(batchKeys[i]), v = Int(batchValues[i])
                    let key = UnsafeRawBufferPointer(start: start + read, count: k)
                    let value = UnsafeRawBufferPointer(start: start + read + k, count: v)
                    if keep(key, value) {
                        if written != read { memmove(start + written, start + read, k + v) }
                        keyLengths.append(UInt32(k))
                        valueLengths.append(UInt32(v))
                        written += k + v
                    }
                    read += k + v
                }
                used += written
            } else {
                keyLengths.append(contentsOf: UnsafeBufferPointer(start: batchKeys, count: count))
                valueLengths.append(contentsOf: UnsafeBufferPointer(start: batchValues, count: count))
                used += added
            }
        }
        try checkStatus()
        // Nothing left: no need for the caller to come back for an empty read.
        // (Asked here, not through `isValid`, which reads a closed iterator as ended.)
        if !exhausted { exhausted = try withPointer { rocksdb_iter_valid($0) == 0 } }
        handedOver = true
        return (Data(bytesNoCopy: buffer, count: used, deallocator: .free), keyLengths, valueLengths, lastKey, exhausted)
    }

    private static func noMemory(_ bytes: Int) -> RocksDBError {
        RocksDBError(kind: .ioError, message: "out of memory: no room for \(bytes) bytes of entries")
    }
}

extension Database {
    /// A new iterator over `family` with its own read options.
    ///
    /// - parameters:
    ///   - lowerBound: first key visited (inclusive); nil for none.
    ///   - upperBound: iteration stops before this key (exclusive); nil for none.
    ///   - snapshot: read as of this snapshot; nil for the current state.
    public func makeIterator(in family: ColumnFamily? = nil, lowerBound: [UInt8]? = nil, upperBound: [UInt8]? = nil,
                             snapshot: Snapshot? = nil, fillCache: Bool = true) throws -> Iterator {
        let options = ReadOptions(fillCache: fillCache)
        options.setBounds(lower: lowerBound, upper: upperBound)
        try options.setSnapshot(snapshot)
        return try Iterator(database: self, family: family, readOptions: options, copyOptions: false)
    }

    /// A new iterator reading with a copy of `readOptions`: changing them afterwards
    /// changes only iterators made later.
    public func makeIterator(in family: ColumnFamily? = nil, readOptions: ReadOptions) throws -> Iterator {
        try Iterator(database: self, family: family, readOptions: readOptions)
    }
}
