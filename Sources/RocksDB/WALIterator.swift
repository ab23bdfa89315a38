import CRocksDB

/// A cursor over the write batches of the write-ahead log, from a sequence
/// number on (RocksDB's `GetUpdatesSince` / `TransactionLogIterator`).
///
/// Each ``next()`` returns one batch as it was written: its first sequence
/// number and RocksDB's serialized bytes, which ``WriteBatchDecoder`` parses.
///
/// What RocksDB does, and what callers must check themselves:
/// - The iterator sees the log files that existed when it was created. It can
///   pick up batches appended later to the last of them, but not to newer files
///   (after a memtable flush switches logs): at the end, ``next()`` returns nil;
///   create a new iterator from the next expected sequence to keep tailing.
///   Creating one opens and scans log files, so reuse one while it yields batches.
/// - The first batch is the one holding the requested sequence; it can start
///   before it. When the logs holding that sequence are gone (WAL archiving off:
///   see ``Options/setWALTTLSeconds(_:)``; or the retention expired), RocksDB does
///   not fail: the first batch simply starts later. Writes made without the WAL
///   (`disableWAL`, ingested files) leave the same kind of hole. Compare each
///   batch's sequence with the expected one.
/// - Inside one iterator, RocksDB checks that batches follow each other; a hole
///   it cannot reseek over ends iteration for good with `.notFound`
///   ("NotFound: Gap in sequence numbers", as seen with 7.8.3).
///
/// Keeps its database alive; destroyed on deinit or by ``Database/close()``
/// (later calls throw ``RocksDBError/Kind/closed``). Not `Sendable`.
///
/// ```swift
/// let log = try db.updates(since: 1)
/// while let (sequence, data) = try log.next() {
///     try data.withUnsafeBytes { try WriteBatchDecoder.decode($0) { seq, record in print(seq, record) } }
/// }
/// ```
public final class WALIterator {
    public let database: Database
    /// The sequence number the iterator was created from.
    public let startSequence: UInt64
    let slot: ChildSlot
    /// RocksDB's iterator starts on its first batch; it must be advanced only
    /// after the batch it is on has been taken (GetBatch moves it out).
    private var onUntakenBatch = true
    /// False once the iterator came up empty before its first batch: RocksDB may
    /// then have no log reader, and stepping it dereferences the missing reader
    /// (facebook/rocksdb#14865: an abort or a segfault), so it is never stepped again.
    private var mayStep = true

    init(database: Database, since sequence: UInt64) throws {
        self.database = database
        self.startSequence = sequence
        // Registered under the shared lock so a concurrent close() cannot miss it.
        slot = try database.withHandle { db in
            let pointer = try withStatus { rocksdb_get_updates_since(db, sequence, nil, $0) }
            guard let pointer else {
                throw RocksDBError(kind: .unknown, message: "rocksdb_get_updates_since returned no iterator")
            }
            let slot = ChildSlot(kind: .walIterator, pointer: pointer)
            database.core.register(slot)
            return slot
        }
    }

    deinit { database.core.release(slot) }

    /// The next write batch, or nil at the current end of the log.
    ///
    /// After nil, a later call looks again for batches appended to the last log
    /// file the iterator knows; batches in newer files need a new iterator, and
    /// so does anything after RocksDB's `TryAgain`, or when the iterator found no
    /// batch at all (it then answers nil for good).
    ///
    /// - returns: the batch's first sequence number and its serialized bytes
    ///   (header included: the same sequence, then the count).
    /// - throws: ``RocksDBError``: `.notFound` ("NotFound: Gap in sequence numbers")
    ///   after a hole in the sequence, `.corruption` for a damaged log, `.ioError`, `.closed`.
    ///   RocksDB's `TryAgain` ("Create a new iterator to fetch the new tail"),
    ///   which it reports at the end when the database's last sequence is beyond
    ///   what this iterator saw, is not an error here: it is the end (nil).
    public func next() throws -> (sequence: UInt64, data: [UInt8])? {
        try database.core.lock.withReadLock {
            guard let iterator = slot.pointer else { throw RocksDBError.closed("WAL iterator") }
            let first = onUntakenBatch
            if !first {
                guard mayStep else { return nil }
                rocksdb_wal_iter_next(iterator)
            }
            onUntakenBatch = false
            guard rocksdb_wal_iter_valid(iterator) != 0 else {
                if first { mayStep = false }
                do {
                    try withStatus { rocksdb_wal_iter_status(iterator, $0) }
                } catch let error as RocksDBError where error.kind == .tryAgain {
                    return nil
                }
                return nil
            }
            var sequence: UInt64 = 0
            let batch = rocksdb_wal_iter_get_batch(iterator, &sequence)!
            defer { rocksdb_writebatch_destroy(batch) }
            var size = 0
            let bytes = rocksdb_writebatch_data(batch, &size)
            let data = [UInt8](UnsafeRawBufferPointer(start: bytes, count: size))
            return (sequence, data)
        }
    }
}

extension Database {
    /// The write batches of the write-ahead log from the one holding `sequence` on.
    ///
    /// Needs WAL archiving (``Options/setWALTTLSeconds(_:)`` or
    /// ``Options/setWALSizeLimitMB(_:)``) to reach batches older than the live logs.
    ///
    /// - throws: ``RocksDBError``: `.notFound` ("Requested sequence not yet written
    ///   in the db") when `sequence` is beyond ``latestSequenceNumber()``; `.closed`.
    ///   A sequence whose logs were purged is not an error here: see ``WALIterator``.
    public func updates(since sequence: UInt64) throws -> WALIterator {
        try WALIterator(database: self, since: sequence)
    }
}
