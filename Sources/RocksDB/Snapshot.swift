#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB
import CRocksDBShim

/// A consistent point-in-time view of a database. Reads made with a
/// ``ReadOptions`` set to this snapshot see the database as it was when the
/// snapshot was taken. Released on deinit, or by the database's `close()`.
public final class Snapshot: @unchecked Sendable {
    // A snapshot is immutable; RocksDB allows using it from any thread.
    public let database: Database
    let slot: ChildSlot
    /// The sequence number the snapshot reads at: every write with a sequence
    /// number at or below it is visible, none above.
    public let sequenceNumber: UInt64

    init(database: Database) throws {
        self.database = database
        // Registered under the shared lock so a concurrent close() cannot miss it.
        (slot, sequenceNumber) = try database.withHandle { db in
            let pointer = rocksdb_create_snapshot(db)!
            var sequence: UInt64 = 0
            guard sharddb_snapshot_sequence_number(pointer, &sequence) != 0 else {
                // RocksDB takes no snapshot with inplace_update_support on; the C API
                // still returns a wrapper (of nullptr), which release frees.
                rocksdb_release_snapshot(db, pointer)
                throw RocksDBError(kind: .notSupported, message: "Not implemented: snapshots are not supported with inplace_update_support")
            }
            let slot = ChildSlot(kind: .snapshot, pointer: pointer)
            database.core.register(slot)
            return (slot, sequence)
        }
    }

    deinit { database.core.release(slot) }

    /// Releases the snapshot now rather than at deinit. Reads whose options
    /// still name it throw ``RocksDBError/Kind/closed`` afterwards.
    public func release() {
        // Exclusive: other threads may be reading with this snapshot right now.
        database.core.release(slot, exclusive: true)
    }

    func withPointer<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        try database.core.lock.withReadLock {
            guard let pointer = slot.pointer else { throw RocksDBError.closed("snapshot") }
            return try body(pointer)
        }
    }
}

extension Database {
    /// Takes a snapshot of the current state.
    public func snapshot() throws -> Snapshot { try Snapshot(database: self) }
}
