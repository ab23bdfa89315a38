#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRocksDB
import CRocksDBShim

/// RocksDB's BackupEngine over one backup directory: incremental backups of a
/// live ``Database`` that share table files (named by checksum), each with
/// optional application metadata, verified by checksum, restorable into a
/// fresh directory.
///
/// A backup becomes visible only when RocksDB renames its meta file into
/// place, so an interrupted create leaves no backup, only files that
/// ``garbageCollect()`` (or the next create) removes. Deleting a backup removes
/// its meta file first, then only files no other backup refers to.
///
/// Not for concurrent use by two engines on one directory (RocksDB's rule);
/// calls on one `BackupEngine` are serialized. ``close()`` is idempotent; calls
/// afterwards throw ``RocksDBError/Kind/closed``.
///
/// ```swift
/// let backups = try BackupEngine.open(at: "/backups/db")
/// let id = try backups.createBackup(of: db, appMetadata: Array("nightly".utf8))
/// try backups.verify(backup: id)
/// try backups.restore(backup: id, to: "/tmp/restored")
/// backups.close()
/// ```
public final class BackupEngine: @unchecked Sendable {
    /// How the engine copies and shares files (`rocksdb_backup_engine_options_t`).
    public struct Settings: Sendable, Equatable {
        /// Share table files between backups (incremental backups). Files are named
        /// by checksum and size, so distinct files with one number never collide.
        public var shareTableFiles = true
        /// fsync copied files and the meta file, so a backup survives a power failure.
        public var sync = true
        /// Back up live WAL files too. Needed for a consistent backup of a database
        /// with several column families: the WAL holds writes not yet in table files.
        public var backupLogFiles = true
        /// Threads copying files in create and restore.
        public var maxBackgroundOperations = 1
        /// The create progress callback fires after each this many bytes copied.
        public var progressIntervalBytes: UInt64 = 4 << 20

        public init() {}
    }

    /// One backup, as `rocksdb_backup_engine_get_backup_info` reports it.
    public struct BackupInfo: Sendable, Equatable {
        public var id: UInt32
        /// Creation time, seconds since the Unix epoch.
        public var timestamp: Int64
        /// Bytes of all files of the backup (shared ones included).
        public var size: UInt64
        public var fileCount: UInt32
    }

    /// A backup RocksDB could not load when it opened the directory.
    public struct CorruptBackup: Sendable, Equatable {
        public var id: UInt32
        /// RocksDB's status of the load: `.corruption` naming the missing file or the
        /// unreadable meta file (`.notSupported` for a meta file of a newer format).
        public var status: RocksDBError
    }

    /// One file of a backup.
    public struct BackupFile: Sendable, Hashable {
        /// Path relative to the backup directory, e.g. `shared_checksum/000012_s…sst`.
        public var relativePath: String
        public var size: UInt64
    }

    /// The backup directory.
    public let path: String
    public let settings: Settings
    private let lock = PThreadMutex()
    private var handle: OpaquePointer?

    private init(path: String, settings: Settings, handle: OpaquePointer) {
        self.path = path
        self.settings = settings
        self.handle = handle
    }

    deinit { close() }

    /// Opens (creating if missing) the backup directory at `path`.
    ///
    /// - throws: ``RocksDBError`` (`ioError` when the directory cannot be created or read).
    public static func open(at path: String, settings: Settings = Settings()) throws -> BackupEngine {
        let options = rocksdb_backup_engine_options_create(path)!
        defer { rocksdb_backup_engine_options_destroy(options) }
        rocksdb_backup_engine_options_set_share_table_files(options, settings.shareTableFiles ? 1 : 0)
        rocksdb_backup_engine_options_set_sync(options, settings.sync ? 1 : 0)
        rocksdb_backup_engine_options_set_backup_log_files(options, settings.backupLogFiles ? 1 : 0)
        rocksdb_backup_engine_options_set_max_background_operations(options, Int32(settings.maxBackgroundOperations))
        rocksdb_backup_engine_options_set_callback_trigger_interval_size(options, settings.progressIntervalBytes)
        let env = rocksdb_create_default_env()!
        defer { rocksdb_env_destroy(env) }  // the default env is a singleton; this frees only the C wrapper
        let handle = try withStatus { rocksdb_backup_engine_open_opts(options, env, $0) }
        guard let handle else { throw RocksDBError(kind: .unknown, message: "backup engine open returned nothing") }
        return BackupEngine(path: path, settings: settings, handle: handle)
    }

    /// Closes the engine. Idempotent.
    public func close() {
        lock.withLock {
            if let handle { rocksdb_backup_engine_close(handle) }
            handle = nil
        }
    }

    public var isOpen: Bool { lock.withLock { handle != nil } }

    private func withHandle<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        try lock.withLock {
            guard let handle else { throw RocksDBError.closed("backup engine \(path)") }
            return try body(handle)
        }
    }

    // MARK: Create

    /// Backs up `database` and returns the new backup's id.
    ///
    /// The backup is one point in the database's write sequence for every column
    /// family: RocksDB disables file deletions, (optionally) flushes, lists the
    /// live table files, the MANIFEST and the live WAL files (the last one up to
    /// its size at that moment), then copies what the directory lacks. Writes
    /// continue meanwhile.
    ///
    /// - parameters:
    ///   - flushBeforeBackup: flush memtables first, so less WAL is copied.
    ///   - appMetadata: stored in the backup's meta file, committed with it.
    ///   - progress: called from the copying thread with the number of bytes copied
    ///     so far (in steps of ``Settings/progressIntervalBytes``); must not block long.
    /// - throws: ``RocksDBError``.
    @discardableResult
    public func createBackup(of database: Database, flushBeforeBackup: Bool = true, appMetadata: [UInt8] = [],
                             progress: ((UInt64) -> Void)? = nil) throws -> UInt32 {
        let box = ProgressBox(interval: settings.progressIntervalBytes, report: progress)
        let context = Unmanaged.passRetained(box)
        defer { context.release() }
        return try withHandle { be in
            try database.withHandle { db in
                try appMetadata.withUnsafeBufferPointer { metadata in
                    try metadata.withMemoryRebound(to: CChar.self) { chars in
                        try withStatus {
                            sharddb_backup_engine_create_backup(
                                be, db, flushBeforeBackup ? 1 : 0, chars.baseAddress, chars.count,
                                progress == nil ? nil : { ProgressBox.fire($0) },
                                progress == nil ? nil : context.toOpaque(), $0)
                        }
                    }
                }
            }
        }
    }

    // MARK: Read

    /// Every readable backup, oldest first. Backups RocksDB could not load (a missing
    /// file, an unreadable meta file) are left out; ``corruptBackups(at:)`` names them.
    public func backups() throws -> [BackupInfo] {
        try withHandle { be in
            guard let info = rocksdb_backup_engine_get_backup_info(be) else { return [] }
            defer { rocksdb_backup_engine_info_destroy(info) }
            return (0..<rocksdb_backup_engine_info_count(info)).map { i in
                BackupInfo(id: rocksdb_backup_engine_info_backup_id(info, i),
                           timestamp: rocksdb_backup_engine_info_timestamp(info, i),
                           size: rocksdb_backup_engine_info_size(info, i),
                           fileCount: rocksdb_backup_engine_info_number_files(info, i))
            }.sorted { $0.id < $1.id }
        }
    }

    /// Backups in the directory at `path` that RocksDB cannot load — a file their
    /// meta file lists is missing, or the meta file is unreadable — in id order.
    /// ``backups()`` leaves them out, and an engine opened read-write deletes their
    /// files on its first create, delete or ``garbageCollect()``.
    ///
    /// Looks through a read-only RocksDB engine, opened and closed for this call,
    /// which cannot delete anything: call it before ``open(at:settings:)`` to learn of
    /// damage while its evidence is still there. A directory without backups has none.
    ///
    /// ```swift
    /// for backup in try BackupEngine.corruptBackups(at: "/backups/db") {
    ///     print(backup.id, backup.status.message)   // "Corruption: Pathname in meta file not found on disk: …"
    /// }
    /// ```
    ///
    /// - throws: ``RocksDBError`` when the directory cannot be read.
    public static func corruptBackups(at path: String) throws -> [CorruptBackup] {
        final class Collector { var backups: [CorruptBackup] = [] }
        let collector = Collector()
        try withStatus { error in
            sharddb_backup_engine_corrupt_backups(path, { context, id, reason in
                let collector = Unmanaged<Collector>.fromOpaque(context!).takeUnretainedValue()
                collector.backups.append(CorruptBackup(id: id, status: RocksDBError(statusMessage: String(cString: reason!))))
            }, Unmanaged.passUnretained(collector).toOpaque(), error)
        }
        return collector.backups
    }

    /// The application metadata stored with backup `id`.
    ///
    /// - throws: ``RocksDBError`` `.notFound` when there is no such backup.
    public func appMetadata(ofBackup id: UInt32) throws -> [UInt8] {
        try withHandle { be in
            var length = 0
            let bytes = try withStatus { sharddb_backup_engine_app_metadata(be, id, &length, $0) }
            guard let bytes else { return [] }
            defer { rocksdb_free(bytes) }
            return bytes.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
        }
    }

    /// The files of backup `id`, paths relative to the backup directory.
    public func files(ofBackup id: UInt32) throws -> [BackupFile] {
        final class Collector { var files: [BackupFile] = [] }
        let collector = Collector()
        try withHandle { be in
            try withStatus { error in
                sharddb_backup_engine_backup_files(be, id, { context, _, name, size in
                    // `name` is relative to the backup directory (RocksDB's `directory` is the
                    // backup's private folder, not the base of `name`).
                    let collector = Unmanaged<Collector>.fromOpaque(context!).takeUnretainedValue()
                    collector.files.append(BackupFile(relativePath: String(cString: name!), size: size))
                }, Unmanaged.passUnretained(collector).toOpaque(), error)
            }
        }
        return collector.files
    }

    /// Checks that every file of backup `id` exists with its recorded size and,
    /// with `checksums`, its recorded checksum.
    ///
    /// - throws: ``RocksDBError`` (`.notFound` for an unknown id; `.corruption` or
    ///   `.ioError` naming the bad file otherwise).
    public func verify(backup id: UInt32, checksums: Bool = true) throws {
        try withHandle { be in try withStatus { sharddb_backup_engine_verify_backup(be, id, checksums ? 1 : 0, $0) } }
    }

    // MARK: Restore

    /// Restores backup `id` (nil: the latest) into `directory` (created if missing;
    /// RocksDB replaces database files already there). Checksums are checked while copying.
    ///
    /// - parameters:
    ///   - walDirectory: where the WAL goes; nil for `directory`.
    ///   - keepLogFiles: keep WAL files already in `walDirectory`.
    /// - throws: ``RocksDBError`` (`.corruption` for a file whose checksum differs).
    public func restore(backup id: UInt32?, to directory: String, walDirectory: String? = nil, keepLogFiles: Bool = false) throws {
        let options = rocksdb_restore_options_create()!
        defer { rocksdb_restore_options_destroy(options) }
        rocksdb_restore_options_set_keep_log_files(options, keepLogFiles ? 1 : 0)
        try withHandle { be in
            try withStatus {
                if let id {
                    rocksdb_backup_engine_restore_db_from_backup(be, directory, walDirectory ?? directory, options, id, $0)
                } else {
                    rocksdb_backup_engine_restore_db_from_latest_backup(be, directory, walDirectory ?? directory, options, $0)
                }
            }
        }
    }

    // MARK: Delete

    /// Deletes backup `id`, then every file no remaining backup refers to.
    public func delete(backup id: UInt32) throws {
        try withHandle { be in try withStatus { sharddb_backup_engine_delete_backup(be, id, $0) } }
    }

    /// Deletes all but the newest `count` backups.
    public func purgeOldBackups(keeping count: Int) throws {
        try withHandle { be in try withStatus { rocksdb_backup_engine_purge_old_backups(be, UInt32(clamping: max(0, count)), $0) } }
    }

    /// Removes files left by interrupted creates and deletes.
    public func garbageCollect() throws {
        try withHandle { be in try withStatus { sharddb_backup_engine_garbage_collect(be, $0) } }
    }
}

/// Counts progress callbacks (one per interval of bytes copied) into a byte count.
private final class ProgressBox {
    let interval: UInt64
    let report: ((UInt64) -> Void)?
    private let lock = PThreadMutex()
    private var calls: UInt64 = 0

    init(interval: UInt64, report: ((UInt64) -> Void)?) {
        self.interval = interval
        self.report = report
    }

    static func fire(_ context: UnsafeMutableRawPointer?) {
        guard let context else { return }
        let box = Unmanaged<ProgressBox>.fromOpaque(context).takeUnretainedValue()
        // Called from RocksDB's copying threads, possibly several at once.
        let copied = box.lock.withLock { () -> UInt64 in
            box.calls += 1
            return box.calls * box.interval
        }
        box.report?(copied)
    }
}
