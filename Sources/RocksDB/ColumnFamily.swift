import CRocksDB

/// A handle to one column family of an open ``Database``.
///
/// Keeps its database alive. After the family is dropped, calls that use it
/// throw ``RocksDBError/Kind/columnFamilyDropped``; after the database is
/// closed, ``RocksDBError/Kind/closed``.
public final class ColumnFamily: @unchecked Sendable {
    /// The family's name.
    public let name: String
    /// RocksDB's internal id of the family, as written in the WAL.
    public let id: UInt32
    /// The database this family belongs to.
    public let database: Database
    let slot: ColumnFamilySlot
    /// `database`'s identity, which every call checks without touching the
    /// database object's reference count (a shared cache line under many readers).
    let databaseIdentity: ObjectIdentifier

    init(database: Database, name: String, id: UInt32, slot: ColumnFamilySlot) {
        self.database = database
        self.databaseIdentity = ObjectIdentifier(database)
        self.name = name
        self.id = id
        self.slot = slot
    }

    /// False once the family was dropped or its database closed.
    public var isOpen: Bool { database.core.lock.withReadLock { slot.handle != nil && database.core.handle != nil } }
}
