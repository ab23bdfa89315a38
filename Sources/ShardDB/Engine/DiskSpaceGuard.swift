import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Refuses writes before the disk is full, and after RocksDB failed one.
///
/// Debian's librocksdb 7.8 is built with assertions: once a WAL append failed
/// (disk full), the next write to the same log aborts the process
/// (`WritableFileWriter::AssertFalseAndGetStatusForPrevError`), and the C API has
/// no `Resume`. So the engine keeps RocksDB away from a full disk — writes fail
/// with `.diskFull` while free space is under ``ShardEngineOptions/minimumFreeDiskBytes``
/// — and, if a write fails with an I/O error anyway, refuses every later write
/// until the engine is reopened (reopening replays the log; nothing acknowledged is lost).
final class DiskSpaceGuard: @unchecked Sendable {
    let path: String
    let minimumFreeBytes: UInt64
    /// Bytes that may still be written before free space is measured again: an
    /// eighth of the margin above the minimum at the last measurement. Each byte
    /// written costs the disk more than one byte (the log, its archived copy, the
    /// flush, compactions), all behind the caller's back, so the budget is small.
    private let budget = Atomic<Int64>(0)
    private let failed = Atomic<Bool>(false)
    private let failure = Mutex<ShardDBError?>(nil)

    init(path: String, minimumFreeBytes: UInt64) {
        self.path = path
        self.minimumFreeBytes = minimumFreeBytes
    }

    /// Throws `.diskFull`, or `.storage` after an earlier I/O error, before a write of about `bytes`.
    @inline(__always)
    func check(writing bytes: Int) throws {
        try checkNotFailed()
        guard minimumFreeBytes > 0 else { return }
        // Per-record overhead in the WAL and memtable, so deletes count too.
        if budget.wrappingSubtract(Int64(bytes) + 64, ordering: .relaxed).newValue > 0 { return }
        try measure(writing: bytes)
    }

    /// Throws `.storage` after an earlier I/O error (the free-space reserve is not looked at).
    @inline(__always)
    func checkNotFailed() throws {
        if failed.load(ordering: .relaxed) { throw failure.withLock { $0 } ?? ShardDBError(.storage, "\(path): an earlier write failed") }
    }

    /// The write itself must fit above the reserve too (a bulk chunk ingested as a
    /// table file can be tens of megabytes).
    private func measure(writing bytes: Int) throws {
        guard let free = Self.freeBytes(path) else { return }  // cannot tell: let RocksDB decide
        // Saturating: a reserve near UInt64.max must refuse, not wrap around to a small need.
        let (sum, overflow) = minimumFreeBytes.addingReportingOverflow(UInt64(max(0, bytes)))
        guard free >= (overflow ? .max : sum) else {
            budget.store(0, ordering: .relaxed)
            throw ShardDBError(.diskFull,
                "\(path): only \(free) bytes free on its filesystem; a write of \(bytes) bytes would go under the reserve of \(minimumFreeBytes) bytes (ShardEngineOptions.minimumFreeDiskBytes); nothing was written. Free space and retry")
        }
        budget.store(Int64(min((free - minimumFreeBytes) / 8, UInt64(Int64.max))), ordering: .relaxed)
    }

    /// Refuses to open (or create) the database at `path` while its file system has
    /// less than `minimumFreeBytes` free, or ``openingFloorBytes`` when that is less:
    /// opening writes RocksDB's log, manifest and options files, and a failed write
    /// there aborts the process (see above). Between the floor and the reserve an
    /// instance opens for reading, and its writes are refused.
    ///
    /// - throws: `.diskFull`.
    static func checkBeforeOpening(_ path: String, minimumFreeBytes: UInt64) throws {
        let needed = min(minimumFreeBytes, openingFloorBytes)
        guard needed > 0, let free = freeBytes(path) else { return }  // cannot tell: let RocksDB decide
        guard free >= needed else {
            throw ShardDBError(.diskFull,
                "\(path): only \(free) bytes free on its filesystem; opening writes the database's log and manifest and needs \(needed) (the lesser of ShardEngineOptions.minimumFreeDiskBytes and 4 MiB), so it is not opened. Free space and retry")
        }
    }

    /// Bytes an unprivileged writer may still use on `path`'s file system; nil when `statvfs` fails.
    static func freeBytes(_ path: String) -> UInt64? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }

    /// What opening needs free at most: RocksDB writes a few small files (a new
    /// MANIFEST, preallocated to 4 MiB by default, the largest).
    static let openingFloorBytes: UInt64 = 4 << 20

    /// Remembers a write's I/O error: RocksDB must not be written to again (see above).
    func record(_ error: Error) {
        guard let error = error as? ShardDBError, error.code == .storage, error.storage?.kind == .ioError else { return }
        failure.withLock {
            if $0 == nil {
                $0 = ShardDBError(.storage,
                    "\(path): an earlier write failed (\(error.message)); this engine refuses writes until it is closed and reopened (reopening replays the log; acknowledged writes are kept)",
                    storage: error.storage)
            }
        }
        failed.store(true, ordering: .releasing)
    }
}

extension ShardEngine {
    /// Runs a RocksDB write of about `bytes` behind the disk-space guard.
    @inline(__always)
    func guardedWrite<R>(bytes: Int, _ body: () throws -> R) throws -> R {
        try diskSpace.check(writing: bytes)
        do { return try storage(path, body) } catch {
            diskSpace.record(error)
            throw error
        }
    }

    /// Runs a small bookkeeping write (shard records, the migration journal, metrics):
    /// refused after an earlier write failed, as every write is (the next one to the
    /// same log would abort the process), but not held to the free-space reserve, so
    /// a migration can still record its abort on a nearly full disk.
    func bookkeepingWrite<R>(_ body: () throws -> R) throws -> R {
        try diskSpace.checkNotFailed()
        do { return try storage(path, body) } catch {
            diskSpace.record(error)
            throw error
        }
    }
}
