#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB

/// Operations applied atomically by ``Database/write(_:options:)``, possibly
/// across column families.
///
/// Not `Sendable`: build a batch on one thread. Column family handles are
/// resolved when an operation is added, so the family must be open then.
public final class WriteBatch {
    let pointer: OpaquePointer

    public init() { pointer = rocksdb_writebatch_create() }

    /// A batch holding RocksDB's serialized write-batch bytes (as read from the WAL).
    ///
    /// The bytes are not checked: a malformed batch, or one naming a column family
    /// id the database it is written to lacks, fails in RocksDB after the WAL took
    /// it, and RocksDB then refuses every later write of that database until it is
    /// reopened. Check foreign bytes with ``WriteBatchDecoder/decode(_:_:)`` first.
    public init(data: UnsafeRawBufferPointer) {
        pointer = rocksdb_writebatch_create_from(data.cPointer, data.count)
    }

    deinit { rocksdb_writebatch_destroy(pointer) }

    /// Number of operations.
    public var count: Int { Int(rocksdb_writebatch_count(pointer)) }

    /// Size of the serialized batch in bytes.
    public var byteSize: Int {
        var size = 0
        _ = rocksdb_writebatch_data(pointer, &size)
        return size
    }

    /// Removes every operation.
    public func clear() {
        rocksdb_writebatch_clear(pointer)
        familySlots.removeAll()
        databases.removeAll()
    }

    /// The column families the batch writes to. A batch naming a family dropped
    /// since would fail in RocksDB after part of it reached the memtables, and
    /// RocksDB then refuses every later write (a background error); ``Database/write(_:options:)``
    /// checks these first.
    private(set) var familySlots: [ObjectIdentifier: ColumnFamilySlot] = [:]
    /// The databases those families belong to: a batch records only a family's
    /// numeric id, which in another database names another family (or none).
    private(set) var databases: Set<ObjectIdentifier> = []

    private func withFamily(_ family: ColumnFamily, _ body: (OpaquePointer) -> Void) throws {
        try family.database.withHandle(family) { _, cf in body(cf) }
        familySlots[ObjectIdentifier(family.slot)] = family.slot
        databases.insert(family.databaseIdentity)
    }

    /// Calls `body` with RocksDB's serialized form of the batch.
    public func withData<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var size = 0
        let data = rocksdb_writebatch_data(pointer, &size)
        return try body(UnsafeRawBufferPointer(start: data, count: size))
    }

    @inlinable
    public func put(_ key: some ContiguousBytes, _ value: some ContiguousBytes, in family: ColumnFamily? = nil) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try putRaw(k, v, family) } }
    }

    @usableFromInline
    func putRaw(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ family: ColumnFamily?) throws {
        if let family {
            try withFamily(family) { cf in
                rocksdb_writebatch_put_cf(pointer, cf, key.cPointer, key.count, value.cPointer, value.count)
            }
        } else {
            rocksdb_writebatch_put(pointer, key.cPointer, key.count, value.cPointer, value.count)
        }
    }

    @inlinable
    public func delete(_ key: some ContiguousBytes, in family: ColumnFamily? = nil) throws {
        try key.withUnsafeBytes { k in try deleteRaw(k, family) }
    }

    @usableFromInline
    func deleteRaw(_ key: UnsafeRawBufferPointer, _ family: ColumnFamily?) throws {
        if let family {
            try withFamily(family) { cf in
                rocksdb_writebatch_delete_cf(pointer, cf, key.cPointer, key.count)
            }
        } else {
            rocksdb_writebatch_delete(pointer, key.cPointer, key.count)
        }
    }

    /// RocksDB's SingleDelete: removes a key written exactly once since its last delete.
    public func singleDelete(_ key: some ContiguousBytes, in family: ColumnFamily? = nil) throws {
        try key.withUnsafeBytes { k in
            if let family {
                try withFamily(family) { cf in
                    rocksdb_writebatch_singledelete_cf(pointer, cf, k.cPointer, k.count)
                }
            } else {
                rocksdb_writebatch_singledelete(pointer, k.cPointer, k.count)
            }
        }
    }

    /// Removes every key in `[begin, end)`.
    public func deleteRange(from begin: some ContiguousBytes, to end: some ContiguousBytes, in family: ColumnFamily? = nil) throws {
        try begin.withUnsafeBytes { b in
            try end.withUnsafeBytes { e in
                if let family {
                    try withFamily(family) { cf in
                        rocksdb_writebatch_delete_range_cf(pointer, cf, b.cPointer, b.count, e.cPointer, e.count)
                    }
                } else {
                    rocksdb_writebatch_delete_range(pointer, b.cPointer, b.count, e.cPointer, e.count)
                }
            }
        }
    }

    /// Adds a record to the WAL only (no key is written); changelog readers see it.
    public func putLogData(_ blob: some ContiguousBytes) {
        blob.withUnsafeBytes { b in rocksdb_writebatch_put_log_data(pointer, b.cPointer, b.count) }
    }
}
