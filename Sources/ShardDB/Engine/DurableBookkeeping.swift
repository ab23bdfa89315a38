import Foundation
import Synchronization
import RocksDB

/// Makes bookkeeping records (migration journal entries and progress, shard
/// records) visible to the engine's own readers only once they are durable.
///
/// A RocksDB write with `sync` set fsyncs the write-ahead log inside RocksDB's
/// write queue, so every write of every shard queued behind it waits for the
/// disk: on a virtual disk, 10–20 ms per fsync, which stalled the writers of a
/// migrating instance for about 50 ms per move (BENCHMARKS.md, "Live
/// migration"). ``ShardEngine/durableWrite(_:)`` instead writes the batch
/// unsynced and then syncs the log outside the queue (RocksDB's `SyncWAL`,
/// which lets other writes go on meanwhile): the same durability when it
/// returns, but the record sits in the memtable, readable, before the fsync
/// ends. The gate closes that window: a durable write holds it from the write to
/// the end of the sync, and every read of these records takes it, so no step
/// acts on one of them before its sync returned. (Records written unsynced on
/// purpose — catch-up progress, the source's commit — are what they were:
/// their loss in a crash is repaired by the protocol, docs/MIGRATION.md.)
final class BookkeepingGate: @unchecked Sendable {
    /// Readers share it; a durable write holds it alone (and goes first, so a stream of
    /// readers cannot hold a migration step's write back). Reads under it never nest.
    private let lock = ReadWriteLock(preferWriters: true)
    /// Set when a sync failed after its batch was written: that record is in the
    /// memtable but perhaps not on disk, so no reader may trust what it reads
    /// until the instance is reopened (recovery then decides from the log).
    private var syncFailed = false  // written under the write lock, read under the read lock

    func write(_ body: () throws -> Void, sync: () throws -> Void) throws {
        try lock.withWriteLock {
            try body()
            do { try sync() } catch {
                syncFailed = true
                throw error
            }
        }
    }

    func read<R>(_ body: () throws -> R) throws -> R {
        try lock.withReadLock {
            guard !syncFailed else {
                throw ShardDBError(.storage, "a migration record could not be synced to disk; reopen the instance, "
                    + "whose recovery decides from the write-ahead log what was recorded")
            }
            return try body()
        }
    }
}

extension ShardEngine {
    /// Writes a batch of bookkeeping records durably without holding up the
    /// instance's other writers for the fsync (``BookkeepingGate``).
    ///
    /// - parameters:
    ///   - syncInQueue: sync inside RocksDB's write queue, as a `sync` write does (other
    ///     writers wait): for a batch that also carries data readers see without the gate
    ///     (a merge commit's overlap values), which a failed sync must leave unapplied.
    /// - throws: ``ShardDBError`` `.storage` (the write or the sync failed; after
    ///   a failed sync, reads of bookkeeping records fail until the instance is
    ///   reopened), or the write-failure latch's error.
    func durableWrite(_ batch: WriteBatch, syncInQueue: Bool = false) throws {
        try bookkeepingWrite {
            if syncInQueue {
                try bookkeepingGate.write({
                    try FailurePoints.hit("bookkeeping.sync-in-queue")  // (a failed sync write applies nothing)
                    try database.write(batch, options: WriteOptions(sync: true))
                }, sync: {})
                return
            }
            try bookkeepingGate.write({ try database.write(batch, options: WriteOptions(sync: false)) },
                                      sync: {
                                          try FailurePoints.hit("bookkeeping.sync")
                                          let written = try database.latestSequenceNumber()
                                          try database.flushWAL(sync: true)
                                          noteWALSynced(through: written)
                                      })
        }
    }

    /// Makes every write up to `sequence` durable: one `SyncWAL` (outside RocksDB's
    /// write queue, so other writers go on), unless an earlier sync covered it.
    ///
    /// What a migration endpoint acknowledges to a coordinator in another process
    /// must survive a power loss of this machine: the coordinator goes on from
    /// there and never sends (or asks for) it again. A log tail lost in a power
    /// loss is a suffix of the log, so a sync covers every earlier write too.
    ///
    /// - throws: ``ShardDBError`` `.storage`, or the write-failure latch's error
    ///   (after a failed append, syncing the same log aborts the process in
    ///   RocksDB 7.8: behind the latch, as ``prepareCutover(_:)``'s sync).
    func syncWAL(through sequence: UInt64) throws {
        guard walSyncedThrough.load(ordering: .acquiring) < sequence else { return }
        try bookkeepingWrite {
            let written = try database.latestSequenceNumber()
            try FailurePoints.hit("migration.wal-sync")
            try database.flushWAL(sync: true)
            noteWALSynced(through: written)
        }
    }

    /// Records that the log is synced through `sequence` (it only grows).
    func noteWALSynced(through sequence: UInt64) {
        var current = walSyncedThrough.load(ordering: .relaxed)
        while current < sequence {
            let (exchanged, original) = walSyncedThrough.compareExchange(expected: current, desired: sequence, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }

    /// Reads bookkeeping records once no durable write of them is between its
    /// write and the end of its sync.
    func readBookkeeping<R>(_ body: () throws -> R) throws -> R {
        try bookkeepingGate.read(body)
    }
}
