#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB
import CRocksDBShim

extension Database {
    // MARK: Writes

    /// Stores `value` under `key`.
    ///
    /// - parameters:
    ///   - family: the column family; nil for the default one.
    ///   - options: nil for ``defaultWriteOptions``.
    @inlinable
    public func put(_ key: some ContiguousBytes, _ value: some ContiguousBytes, in family: ColumnFamily? = nil, options: WriteOptions? = nil) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in try putRaw(k, v, family, options) }
        }
    }

    /// Stores `value` under `key` (UTF-8).
    public func put(_ key: String, _ value: String, in family: ColumnFamily? = nil, options: WriteOptions? = nil) throws {
        try put(Array(key.utf8), Array(value.utf8), in: family, options: options)
    }

    @usableFromInline
    func putRaw(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ family: ColumnFamily?, _ options: WriteOptions?) throws {
        try put(keyParts: (UnsafeRawBufferPointer(start: nil, count: 0), key),
                valueParts: (UnsafeRawBufferPointer(start: nil, count: 0), value), in: family, options: options)
    }

    /// Stores `keyParts.0 + keyParts.1` -> `valueParts.0 + valueParts.1`, the
    /// parts joined by RocksDB as it encodes the write: a caller that prefixes
    /// keys or values needs no temporary copy. Either part may be empty.
    ///
    /// Every put goes through here: one C call per put, on a write batch the
    /// calling thread reuses (the C API's `rocksdb_put_cf` allocates one per call).
    public func put(keyParts: (UnsafeRawBufferPointer, UnsafeRawBufferPointer),
                    valueParts: (UnsafeRawBufferPointer, UnsafeRawBufferPointer),
                    in family: ColumnFamily? = nil, options: WriteOptions? = nil) throws {
        let writeOptions = options?.pointer ?? defaultWriteOptions.pointer
        try withHandle(family) { db, cf in
            try withStatus {
                sharddb_put_parts_cf(db, writeOptions, cf,
                                     keyParts.0.cPointer, keyParts.0.count, keyParts.1.cPointer, keyParts.1.count,
                                     valueParts.0.cPointer, valueParts.0.count, valueParts.1.cPointer, valueParts.1.count, $0)
            }
        }
    }

    /// Removes `key` (no error when absent).
    @inlinable
    public func delete(_ key: some ContiguousBytes, in family: ColumnFamily? = nil, options: WriteOptions? = nil) throws {
        try key.withUnsafeBytes { k in try deleteRaw(k, family, options) }
    }

    @usableFromInline
    func deleteRaw(_ key: UnsafeRawBufferPointer, _ family: ColumnFamily?, _ options: WriteOptions?) throws {
        let writeOptions = options?.pointer ?? defaultWriteOptions.pointer
        try withHandle(family) { db, cf in
            try withStatus { rocksdb_delete_cf(db, writeOptions, cf, key.cPointer, key.count, $0) }
        }
    }

    /// Removes every key in `[begin, end)`.
    public func deleteRange(from begin: some ContiguousBytes, to end: some ContiguousBytes, in family: ColumnFamily? = nil, options: WriteOptions? = nil) throws {
        let writeOptions = options?.pointer ?? defaultWriteOptions.pointer
        try begin.withUnsafeBytes { b in
            try end.withUnsafeBytes { e in
                try withHandle(family) { db, cf in
                    try withStatus { rocksdb_delete_range_cf(db, writeOptions, cf, b.cPointer, b.count, e.cPointer, e.count, $0) }
                }
            }
        }
    }

    /// Applies every operation of `batch` atomically.
    public func write(_ batch: WriteBatch, options: WriteOptions? = nil) throws {
        let writeOptions = options?.pointer ?? defaultWriteOptions.pointer
        guard batch.databases.allSatisfy({ $0 == ObjectIdentifier(self) }) else {
            throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: the write batch has operations on column families of another database")
        }
        try withHandle { db in
            // Under the shared lock; a drop withdraws the handle under the exclusive lock
            // before RocksDB drops the family, so none is dropped between this check and the write.
            for slot in batch.familySlots.values where slot.handle == nil { throw slot.unusable("") }
            try withStatus { rocksdb_write(db, writeOptions, batch.pointer, $0) }
        }
    }

    // MARK: Reads

    /// The value stored under `key`, copied; nil when absent.
    @inlinable
    public func get(_ key: some ContiguousBytes, in family: ColumnFamily? = nil, options: ReadOptions? = nil) throws -> [UInt8]? {
        try key.withUnsafeBytes { k in
            try withValueRaw(k, family, options) { [UInt8]($0) }
        }
    }

    /// The value stored under `key` (UTF-8), copied; nil when absent.
    public func get(_ key: String, in family: ColumnFamily? = nil, options: ReadOptions? = nil) throws -> [UInt8]? {
        try get(Array(key.utf8), in: family, options: options)
    }

    /// Reads the value stored under `key` without copying it: `body` sees
    /// RocksDB's pinned buffer, which must not escape the closure.
    ///
    /// `body` runs under the database's shared lock: it must not call what waits for
    /// every read to end (``close()``, ``Snapshot/release()``, ``dropColumnFamily(named:)``),
    /// which would wait for it for ever. The same holds for the iterator's `withKey`,
    /// `withValue` and `forEach` bodies.
    ///
    /// - returns: `body`'s result, or nil when the key is absent.
    @inlinable
    public func withValue<R>(forKey key: some ContiguousBytes, in family: ColumnFamily? = nil, options: ReadOptions? = nil,
                             _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        try key.withUnsafeBytes { k in try withValueRaw(k, family, options, body) }
    }

    // Generic entry points are inlinable and specialized in the caller; they
    // delegate to the non-generic `readPinned`, so a point read instantiates no
    // generic metadata and allocates no closure context at run time.
    @inlinable
    func withValueRaw<R>(_ key: UnsafeRawBufferPointer, _ family: ColumnFamily?, _ options: ReadOptions?,
                         _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        var result: R?
        try readPinned(key, family, options) { result = try body($0) }
        return result
    }

    /// Calls `body` with the pinned value of `key` when there is one; the non-generic core of point reads.
    @usableFromInline
    func readPinned(_ key: UnsafeRawBufferPointer, _ family: ColumnFamily?, _ options: ReadOptions?,
                    _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        // (Not `(options ?? defaultReadOptions)`: that retains the shared default
        // options object on every read, a cache line every reading thread writes.)
        let readOptions = options?.pointer ?? defaultReadOptions.pointer
        if let threadPerfLevel { PerfLevel.applyOnce(threadPerfLevel) }
        // Straight-line under the shared lock, no closure (see `handles(_:)`).
        let lock = closeGuard
        // A close asked for inside `body` runs here, once the hold below is let go.
        var closeAfter = false
        defer { if closeAfter { close() } }
        let hold = lock.lockShared()
        defer { lock.unlock(hold) }
        let (db, cf) = try handles(family)
        if let options { try options.checkSnapshot(of: core) }
        // The value stays pinned in a slice this thread reuses (no heap-allocated
        // pinnable slice per read) until the end call below.
        var slice: UnsafeMutableRawPointer?
        var value: UnsafePointer<CChar>?
        var length = 0
        let found = try withStatus {
            sharddb_get_pinned_begin(db, readOptions, cf, key.cPointer, key.count, &slice, &value, &length, $0)
        }
        guard found != 0 else { return }
        defer { sharddb_get_pinned_end(slice) }
        sharddb_body_enter(lock.rwlock)
        defer { closeAfter = sharddb_body_leave(lock.rwlock) != 0 }
        try body(UnsafeRawBufferPointer(start: UnsafeRawPointer(value), count: length))
    }

    /// Values of several keys of one column family in one call (RocksDB's
    /// batched MultiGet); nil where a key is absent.
    public func multiGet<Key: ContiguousBytes>(_ keys: [Key], in family: ColumnFamily? = nil, options: ReadOptions? = nil) throws -> [[UInt8]?] {
        if keys.isEmpty { return [] }
        let readOptions = options?.pointer ?? defaultReadOptions.pointer
        // Copy the keys into one buffer so their pointers stay valid for the call.
        var flat: [UInt8] = []
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(keys.count)
        for key in keys {
            key.withUnsafeBytes { b in
                let start = flat.count
                flat.append(contentsOf: b)
                ranges.append(start..<flat.count)
            }
        }
        return try flat.withUnsafeBufferPointer { base in
            let keyPointers: [UnsafePointer<CChar>?] = ranges.map {
                UnsafeRawPointer(base.baseAddress! + $0.lowerBound).assumingMemoryBound(to: CChar.self)
            }
            let sizes = ranges.map { $0.count }
            var values = [OpaquePointer?](repeating: nil, count: keys.count)
            var errors = [UnsafeMutablePointer<CChar>?](repeating: nil, count: keys.count)
            // Copied and released under the handle: the slices pin RocksDB's memory
            // (blocks, memtables), which must not outlive a concurrent close.
            return try withHandle(family) { db, cf -> [[UInt8]?] in
                try options?.checkSnapshot(of: core)
                keyPointers.withUnsafeBufferPointer { kp in
                    sizes.withUnsafeBufferPointer { sp in
                        rocksdb_batched_multi_get_cf(db, readOptions, cf, keys.count, kp.baseAddress, sp.baseAddress, &values, &errors, false)
                    }
                }
                defer { values.forEach { if let v = $0 { rocksdb_pinnableslice_destroy(v) } } }
                var firstError: RocksDBError?
                for case let error? in errors {
                    if firstError == nil { firstError = RocksDBError(statusMessage: String(cString: error)) }
                    rocksdb_free(error)
                }
                if let firstError { throw firstError }
                return values.map { value in
                    guard let value else { return nil }
                    var length = 0
                    let data = rocksdb_pinnableslice_value(value, &length)
                    return [UInt8](UnsafeRawBufferPointer(start: data, count: length))
                }
            }
        }
    }
}

extension UnsafeRawBufferPointer {
    /// The buffer's start as the C API's `const char*` (a valid pointer even when empty).
    @usableFromInline
    var cPointer: UnsafePointer<CChar> {
        if let base = baseAddress { return base.assumingMemoryBound(to: CChar.self) }
        return emptyCString
    }
}

@usableFromInline
let emptyCString: UnsafePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    p.initialize(to: 0)
    return UnsafePointer(p)
}()
