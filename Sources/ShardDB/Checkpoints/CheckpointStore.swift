import Foundation
import Synchronization
import Logging
import RocksDB
#if canImport(Glibc)
import Glibc
#endif

/// A directory of checkpoints of one instance, built on RocksDB's BackupEngine
/// (incremental: table files are shared between checkpoints by checksum name).
///
/// Layout (docs/CHECKPOINTS.md):
///
/// ```
/// STORE/sharddb-checkpoint-store.json   the owning instance
/// STORE/LOCK                            flock: exclusive for create/purge, shared otherwise
/// STORE/backups/                        RocksDB's BackupEngine directory
/// STORE/stats/<id>.json                 bytes each checkpoint copied
/// ```
///
/// A checkpoint is listed exactly when RocksDB lists its backup; its record (shard
/// map, sequence number, caller metadata) is the backup's app metadata, committed
/// with it. So a crash never lists a checkpoint that does not restore.
///
/// A checkpoint damaged afterwards (a file deleted, its meta file overwritten) is
/// reported in ``damagedCheckpoints``, never hidden; create and purge refuse to run
/// while there is one, since RocksDB would delete its remaining files, until
/// ``purge(keep:dropDamaged:)`` drops it explicitly.
///
/// ```swift
/// let info = try engine.checkpoint(to: "/backups/state", metadata: ["reason": "nightly"])
/// let store = try CheckpointStore.open(at: "/backups/state")
/// try store.verify()
/// try store.restore(id: info.id, to: "/var/lib/app/restored")
/// store.close()
/// ```
public final class CheckpointStore: @unchecked Sendable {
    static let manifestName = "sharddb-checkpoint-store.json"
    static let lockName = "LOCK"
    static let backupsName = "backups"
    static let statsName = "stats"
    /// Create progress is reported after each this many bytes copied.
    static let progressIntervalBytes: UInt64 = 1 << 20

    /// The store directory.
    public let path: String
    /// The instance the store was created for.
    public let ownerInstanceID: String
    let backups: BackupEngine
    /// The store's lock is held exclusively (``purge(keep:dropDamaged:)`` needs it).
    let isExclusive: Bool
    private let lockDescriptor: Int32
    private let closeLock = NSLock()
    private var closed = false
    private var damaged: [DamagedCheckpoint]
    /// Checkpoints RocksDB loads but whose record does not decode (damaged bytes
    /// that are still valid hex, a newer format in a shared store): reported with
    /// the damaged ones, left out of the listing; their files are intact.
    private var unreadable: [DamagedCheckpoint] = []

    private init(path: String, ownerInstanceID: String, backups: BackupEngine, exclusive: Bool, lockDescriptor: Int32,
                 damaged: [DamagedCheckpoint]) {
        self.path = path
        self.isExclusive = exclusive
        self.ownerInstanceID = ownerInstanceID
        self.backups = backups
        self.lockDescriptor = lockDescriptor
        self.damaged = damaged
    }

    deinit { close() }

    /// Closes the store's BackupEngine and releases its lock. Idempotent.
    public func close() {
        closeLock.lock()
        defer { closeLock.unlock() }
        guard !closed else { return }
        closed = true
        backups.close()
        Glibc.close(lockDescriptor)  // releases the flock
    }

    // MARK: Open

    /// Opens an existing store for reading (list, verify, restore) or purging.
    /// Damaged checkpoints are found here (``damagedCheckpoints``); opening changes nothing.
    ///
    /// - parameters:
    ///   - exclusive: take the store's lock exclusively (purge); otherwise shared.
    /// - throws: ``ShardDBError``: `.checkpointStoreNotFound` (missing, or no store
    ///   manifest), `.checkpointStoreBusy` (a create or purge holds it), `.notWritable`,
    ///   `.corruptedMetadata` (an unreadable manifest), `.storage`.
    public static func open(at path: String, exclusive: Bool = false) throws -> CheckpointStore {
        let manifest = try readManifest(at: path)
        guard let manifest else {
            throw ShardDBError(.checkpointStoreNotFound, "\(path) is not a checkpoint store (no \(manifestName))")
        }
        return try openLocked(at: path, owner: manifest.instanceID, exclusive: exclusive,
                              lockDescriptor: try lock(path, exclusive: exclusive))
    }

    /// Opens the store at `path` for a checkpoint of `instanceID`, creating it if
    /// `path` is missing or an empty directory.
    ///
    /// - throws: ``ShardDBError``: `.foreignCheckpointStore` (another instance's store and
    ///   not `allowForeignInstance`), `.checkpointStoreNotFound` (a non-empty directory
    ///   that is not a store), `.notWritable`, `.checkpointStoreBusy`.
    static func openForCheckpoint(at path: String, instanceID: String, allowForeignInstance: Bool) throws -> CheckpointStore {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        if files.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ShardDBError(.notWritable, "checkpoint store \(path) exists and is not a directory") }
        } else {
            do { try files.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                throw ShardDBError(.notWritable, "cannot create checkpoint store \(path): \(ShardDBError.fileSystemReason(error))")
            }
        }
        guard access(path, W_OK | X_OK) == 0 else { throw ShardDBError(.notWritable, "checkpoint store \(path) is not writable") }
        /// The store's owner: its manifest's, checked against `instanceID`; nil when there is no
        /// manifest yet and the directory is empty (a lock file aside): a new store.
        func owner() throws -> String? {
            if let manifest = try readManifest(at: path) {
                guard manifest.instanceID == instanceID || allowForeignInstance else {
                    throw ShardDBError(.foreignCheckpointStore,
                        "checkpoint store \(path) belongs to instance \(manifest.instanceID), not \(instanceID) (allowForeignInstance mixes them)")
                }
                return manifest.instanceID
            }
            // What a create stopped before its manifest was in place leaves: the lock, and
            // the manifest's temporary copy (DurableFile.write's "<name>.tmp-<pid>").
            let entries = ((try? files.contentsOfDirectory(atPath: path)) ?? [])
                .filter { $0 != lockName && !$0.hasPrefix(manifestName + ".tmp-") }
            guard entries.isEmpty else {
                throw ShardDBError(.checkpointStoreNotFound, "\(path) is not empty and not a checkpoint store; refusing to use it")
            }
            return nil
        }
        // Checked before the lock file is made (a foreign folder gets none), and again under the
        // lock: two instances creating one store at once would otherwise both write a manifest,
        // and the one that lost the lock would have its name on the other's checkpoints.
        _ = try owner()
        let fd = try lock(path, exclusive: true)
        let storeOwner: String
        do {
            if let existing = try owner() {
                storeOwner = existing
            } else {
                try FailurePoints.hit("checkpoint.store.before-manifest")
                let manifest = CheckpointStoreManifest(format: CheckpointStoreManifest.currentFormat, instanceID: instanceID,
                                                       createdAtMilliseconds: Int64(Date().timeIntervalSince1970 * 1000))
                try DurableFile.write(MetadataCoding.encode(manifest), to: path + "/" + manifestName)
                for leftover in ((try? files.contentsOfDirectory(atPath: path)) ?? []) where leftover.hasPrefix(manifestName + ".tmp-") {
                    try? files.removeItem(atPath: path + "/" + leftover)
                }
                storeOwner = instanceID
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        // (openLocked closes the descriptor itself when it fails.)
        return try openLocked(at: path, owner: storeOwner, exclusive: true, lockDescriptor: fd)
    }

    private static func readManifest(at path: String) throws -> CheckpointStoreManifest? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ShardDBError(.checkpointStoreNotFound, "checkpoint store \(path) does not exist")
        }
        guard isDirectory.boolValue else { throw ShardDBError(.checkpointStoreNotFound, "checkpoint store \(path) is not a directory") }
        let file = path + "/" + manifestName
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        do {
            let manifest = try MetadataCoding.decode(CheckpointStoreManifest.self, Array(data), key: manifestName)
            guard manifest.format <= CheckpointStoreManifest.currentFormat else {
                throw ShardDBError(.unsupportedFormat, "\(file): store format \(manifest.format) is newer than this ShardDB")
            }
            return manifest
        } catch let error as MetadataError {
            throw ShardDBError(.corruptedMetadata, "\(file): \(error.message)")
        }
    }

    /// Takes the store's lock (`STORE/LOCK`, made if missing): the descriptor holding it.
    ///
    /// - throws: ``ShardDBError`` `.checkpointStoreBusy`, `.notWritable`, `.storage`.
    private static func lock(_ path: String, exclusive: Bool) throws -> Int32 {
        let lockPath = path + "/" + lockName
        let fd = Glibc.open(lockPath, exclusive ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDONLY | O_CREAT | O_CLOEXEC), 0o644)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            if exclusive || errno == EACCES || errno == EROFS {
                throw ShardDBError(.notWritable, "checkpoint store \(path): cannot open \(lockPath): \(reason)")
            }
            throw ShardDBError(.storage, "checkpoint store \(path): cannot open \(lockPath): \(reason)")
        }
        guard flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 else {
            Glibc.close(fd)
            throw ShardDBError(.checkpointStoreBusy, "checkpoint store \(path) is in use by another checkpoint or purge; retry later")
        }
        return fd
    }

    /// Opens the store whose lock `fd` holds; closes `fd` when it fails.
    private static func openLocked(at path: String, owner: String, exclusive: Bool, lockDescriptor fd: Int32) throws -> CheckpointStore {
        do {
            try checkMetaFiles(path)
            if exclusive {
                try? FileManager.default.createDirectory(atPath: path + "/" + statsName, withIntermediateDirectories: true)
            }
            // Damage is looked for through a read-only engine, before the read-write one
            // exists: that one deletes a damaged checkpoint's files on its first create,
            // delete or garbage collection, and whether to allow that is the caller's call.
            // Under the lock nothing else changes the store while it is open.
            let damaged = try storage(path) { try BackupEngine.corruptBackups(at: path + "/" + backupsName) }
                .map { DamagedCheckpoint(id: Int($0.id), reason: $0.status.detail) }
            var settings = BackupEngine.Settings()
            settings.progressIntervalBytes = progressIntervalBytes
            let backups = try storage(path) { try BackupEngine.open(at: path + "/" + backupsName, settings: settings) }
            let store = CheckpointStore(path: path, ownerInstanceID: owner, backups: backups, exclusive: exclusive, lockDescriptor: fd,
                                        damaged: damaged)
            store.unreadable = try store.backupsWithUnreadableRecords()
            return store
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Refuses a store that lost meta files of its checkpoints: RocksDB would not
    /// list them, and the next create or purge would garbage-collect their files
    /// as unused. Two signs: the `meta` folder gone while checkpoint files remain,
    /// or a checkpoint's statistics (`stats/<id>.json`, written once it committed,
    /// removed before a purge deletes it) without its meta file. Opening
    /// read-write recreates the folder, so this is checked first, under the lock.
    ///
    /// - throws: ``ShardDBError`` `.checkpointCorrupted`.
    private static func checkMetaFiles(_ path: String) throws {
        let backups = path + "/" + backupsName
        let files = FileManager.default
        guard files.fileExists(atPath: backups) else { return }
        let untouched = "nothing was changed (a new checkpoint or a purge would delete their files)"
        guard files.fileExists(atPath: backups + "/meta") else {
            let held = ["private", "shared_checksum", "shared"].filter {
                !((try? files.contentsOfDirectory(atPath: backups + "/" + $0)) ?? []).isEmpty
            }
            guard held.isEmpty else {
                throw ShardDBError(.checkpointCorrupted,
                    "checkpoint store \(path) holds checkpoint files (\(held.map { backupsName + "/" + $0 }.joined(separator: ", ")))"
                    + " but no \(backupsName)/meta folder, which lists the checkpoints; \(untouched)."
                    + " Put meta/ back from a copy of the store, or move the store aside and start a new one")
            }
            return
        }
        let meta = Set(((try? files.contentsOfDirectory(atPath: backups + "/meta")) ?? []).compactMap { Int($0) })
        let stats = ((try? files.contentsOfDirectory(atPath: path + "/" + statsName)) ?? [])
            .compactMap { $0.hasSuffix(".json") ? Int($0.dropLast(5)) : nil }
        let lost = stats.filter { !meta.contains($0) }.sorted()
        guard lost.isEmpty else {
            let ids = lost.map(String.init).joined(separator: ", ")
            throw ShardDBError(.checkpointCorrupted,
                "checkpoint store \(path): the meta files of checkpoints \(ids) (\(backupsName)/meta/<id>) are missing"
                + " while their statistics (\(statsName)/<id>.json) remain; \(untouched)."
                + " Put the meta files back from a copy of the store; if a purge of them was interrupted"
                + " (by an older ShardDB, which removed statistics last), delete \(statsName)/<id>.json to let them go")
        }
    }

    // MARK: List

    /// Every readable checkpoint, oldest first. Damaged ones are in ``damagedCheckpoints``.
    public func checkpoints() throws -> [CheckpointInfo] {
        try readableBackups().map { try info(for: $0) }
    }

    /// Checkpoints that cannot be restored, oldest first, as found when the store
    /// was opened: RocksDB cannot load them (a file missing, the meta file
    /// unreadable), or their record does not decode. ``checkpoints()`` leaves them
    /// out; ``purge(keep:dropDamaged:)`` drops them.
    public var damagedCheckpoints: [DamagedCheckpoint] {
        closeLock.lock()
        defer { closeLock.unlock() }
        return (damaged + unreadable).sorted { $0.id < $1.id }
    }

    /// The damaged checkpoints RocksDB itself cannot load: the next create or garbage
    /// collection would delete their remaining files.
    private var filesDamaged: [DamagedCheckpoint] {
        closeLock.lock()
        defer { closeLock.unlock() }
        return damaged
    }

    /// RocksDB's backups whose record decodes.
    private func readableBackups() throws -> [BackupEngine.BackupInfo] {
        let skipped = Set(damagedCheckpoints.map(\.id))
        return try storage(path) { try backups.backups() }.filter { !skipped.contains(Int($0.id)) }
    }

    /// The backups whose record cannot be read, with the reason.
    private func backupsWithUnreadableRecords() throws -> [DamagedCheckpoint] {
        try storage(path) { try backups.backups() }.compactMap { backup in
            do {
                _ = try info(for: backup)
                return nil
            } catch let error as ShardDBError {
                return DamagedCheckpoint(id: Int(backup.id), reason: error.message)
            }
        }
    }

    /// The checkpoint `id`, or the latest when nil.
    ///
    /// - throws: ``ShardDBError`` `.checkpointNotFound`; `.checkpointCorrupted` when
    ///   checkpoint `id` is damaged, or, for nil, when the latest one is (an older
    ///   one is never taken silently instead): the message names the missing file.
    public func checkpoint(id: Int?) throws -> CheckpointInfo {
        let all = try readableBackups()
        let damaged = damagedCheckpoints
        if let id {
            if let backup = all.first(where: { Int($0.id) == id }) { return try info(for: backup) }
            if let damage = damaged.first(where: { $0.id == id }) {
                throw ShardDBError(.checkpointCorrupted, "checkpoint \(id) in \(path) is damaged: \(damage.reason)")
            }
            throw ShardDBError(.checkpointNotFound, "no checkpoint \(id) in \(path) (have: \(all.map { String($0.id) }.joined(separator: ", ")))")
        }
        // The latest of the store's own instance: in a store shared with
        // `allowForeignInstance`, another instance's newer checkpoint is not "the latest".
        var latest: CheckpointInfo?
        for backup in all.reversed() {
            let info = try info(for: backup)
            if info.instanceID == ownerInstanceID { latest = info; break }
        }
        // A damaged checkpoint newer than it may be the instance's latest (whose it is
        // cannot be read): refuse rather than take an older one silently.
        if let damage = damaged.last, damage.id > latest?.id ?? 0 {
            let readable = all.isEmpty ? "none is readable" : "readable: \(all.map { String($0.id) }.joined(separator: ", "))"
            throw ShardDBError(.checkpointCorrupted,
                "the latest checkpoint, \(damage.id), in \(path) is damaged (\(damage.reason)); an older one is used only when named by its id (\(readable); shardctl checkpoint restore --id N)")
        }
        guard !all.isEmpty else { throw ShardDBError(.checkpointNotFound, "checkpoint store \(path) holds no checkpoint") }
        if let latest { return latest }
        throw ShardDBError(.checkpointNotFound,
            "checkpoint store \(path) holds no checkpoint of its instance \(ownerInstanceID); name another instance's by its id (--id N)")
    }

    /// The error of an operation refused because of damaged checkpoints: every id, the first one's reason.
    /// `consequence` says what was not done; `their` stands for the damaged checkpoints in it.
    private func refusal(_ damaged: [DamagedCheckpoint], _ consequence: String) -> ShardDBError {
        let one = damaged.count == 1
        let which = one ? "checkpoint \(damaged[0].id) (\(damaged[0].reason))"
            : "checkpoints \(damaged.map { String($0.id) }.joined(separator: ", ")) (\(damaged[0].id): \(damaged[0].reason))"
        let text = one ? consequence.replacingOccurrences(of: "their", with: "its") : consequence
        return ShardDBError(.checkpointCorrupted,
            "checkpoint store \(path) holds damaged \(which); \(text). Drop \(one ? "it" : "them") explicitly: shardctl checkpoint purge --store \(path) --drop-damaged")
    }

    private func info(for backup: BackupEngine.BackupInfo) throws -> CheckpointInfo {
        let id = Int(backup.id)
        let bytes = try storage(path) { try backups.appMetadata(ofBackup: backup.id) }
        let record: CheckpointRecord
        let partitioning: Partitioning
        let shards: [ShardDescriptor]
        do {
            record = try MetadataCoding.decode(CheckpointRecord.self, bytes, key: "checkpoint \(id)")
            partitioning = try record.partitioning.decode()
            shards = try record.shards.map { try $0.decode() }
        } catch let error as MetadataError {
            throw ShardDBError(.checkpointCorrupted, "checkpoint \(id) in \(path): unreadable record (\(Self.backupsName)/meta/\(id)): \(error.message)")
        }
        guard record.format <= CheckpointRecord.currentFormat else {
            throw ShardDBError(.unsupportedFormat,
                "checkpoint \(id) in \(path) has format version \(record.format); this ShardDB reads version \(CheckpointRecord.currentFormat)")
        }
        let stats = FileManager.default.contents(atPath: statsPath(id))
            .flatMap { try? MetadataCoding.decode(CheckpointStatsRecord.self, Array($0), key: "stats") }
        return CheckpointInfo(
            id: id, createdAt: Date(timeIntervalSince1970: Double(record.createdAtMilliseconds) / 1000),
            instanceID: record.instanceID, sequenceNumber: record.sequenceNumber, partitioning: partitioning,
            shards: shards, bytesCopied: stats?.bytesCopied, totalBytes: backup.size, fileCount: Int(backup.fileCount),
            metadata: record.metadata)
    }

    func statsPath(_ id: Int) -> String { "\(path)/\(Self.statsName)/\(id).json" }

    // MARK: Verify

    /// Checks every file of checkpoint `id` (every checkpoint when nil) against
    /// its recorded size and checksum.
    ///
    /// - returns: the checkpoints verified.
    /// - throws: ``ShardDBError`` `.checkpointCorrupted` naming the first bad file (for
    ///   all checkpoints: first the damaged ones, every id of them), `.checkpointNotFound`.
    @discardableResult
    public func verify(id: Int? = nil) throws -> [CheckpointInfo] {
        let targets: [CheckpointInfo]
        if let id {
            targets = [try checkpoint(id: id)]
        } else {
            let damaged = damagedCheckpoints
            if let first = damaged.first {
                let all = damaged.count > 1 ? " (damaged: \(damaged.map { String($0.id) }.joined(separator: ", ")))" : ""
                throw ShardDBError(.checkpointCorrupted, "checkpoint \(first.id) in \(path) is damaged: \(first.reason)\(all)")
            }
            targets = try checkpoints()
            guard !targets.isEmpty else {
                throw ShardDBError(.checkpointNotFound, "checkpoint store \(path) holds no checkpoint to verify")
            }
        }
        for target in targets {
            try verifyFiles(target.id)
        }
        return targets
    }

    func verifyFiles(_ id: Int) throws {
        do {
            try backups.verify(backup: UInt32(id), checksums: true)
        } catch let error as RocksDBError {
            throw ShardDBError(.checkpointCorrupted, "checkpoint \(id) in \(path) is corrupted: \(error.message)", storage: error)
        }
    }

    // MARK: Restore

    /// Restores checkpoint `id` (the latest when nil) into `directory`, which must
    /// not exist or be empty. The result is a normal instance with the checkpoint's
    /// content, shard map and instance id, or with `newInstanceID` a new random id
    /// (``CheckpointInfo/restoredInstanceID``): then the copy can be a migration's
    /// source toward the instance the checkpoint was taken of, to bring one shard
    /// or range back (docs/CHECKPOINTS.md). A checkpoint that holds an unfinished
    /// migration keeps its id (`.migrationInProgress`, nothing restored).
    ///
    /// RocksDB copies into a hidden sibling (`.<name>.restoring-<pid>-…`) checking
    /// checksums; the copy is opened once as an instance, then renamed into place.
    /// So `directory` never holds a partial restore. An existing empty directory
    /// is replaced by the restored one in that rename; the restored directory
    /// takes its permission bits (a directory prepared as 0700 stays 0700), but
    /// its owner is this process's, like every file RocksDB copied into it. A mount
    /// point cannot be replaced (and the sibling would be on the parent's file
    /// system), nor can a symbolic link (rename cannot put a directory in its
    /// place): both are refused before anything is copied.
    ///
    /// - throws: ``ShardDBError``: `.targetNotEmpty`, `.checkpointNotFound`,
    ///   `.checkpointCorrupted` (naming the bad file; nothing is left behind),
    ///   `.invalidArgument` (a mount point, a symbolic link, or inside the store), `.notWritable`,
    ///   `.migrationInProgress` (`newInstanceID` with an unfinished migration in the checkpoint).
    @discardableResult
    public func restore(id: Int? = nil, to directory: String, newInstanceID: Bool = false,
                        progress: ((CheckpointProgress) -> Void)? = nil) throws -> CheckpointInfo {
        let target = URL(fileURLWithPath: directory).standardizedFileURL.path
        // Inside the store, the next create or purge would collect the restored files as its own leftovers.
        let store = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        // Resolved through the parent, which exists more often than the target (a
        // missing target stops Foundation's resolution at its first missing part).
        let resolvedTarget = Self.resolvingParent(of: target)
        guard resolvedTarget != store, !resolvedTarget.hasPrefix(store.hasSuffix("/") ? store : store + "/") else {
            throw ShardDBError(.invalidArgument, "restore target \(target) is inside the checkpoint store \(path): restore outside it")
        }
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        var link = stat()
        if lstat(target, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK {
            let destination = (try? FileManager.default.destinationOfSymbolicLink(atPath: target)) ?? "?"
            throw ShardDBError(.invalidArgument,
                "restore target \(target) is a symbolic link (to \(destination)), which the restored instance cannot replace: restore into the directory it points to")
        }
        var replaced: mode_t?  // the permission bits of the empty directory the restore replaces
        if files.fileExists(atPath: target, isDirectory: &isDirectory) {
            let entries = isDirectory.boolValue ? ((try? files.contentsOfDirectory(atPath: target)) ?? ["?"]) : ["?"]
            guard entries.isEmpty else {
                throw ShardDBError(.targetNotEmpty, "restore target \(target) exists and is not an empty directory")
            }
            guard !Self.isMountPoint(resolvedTarget) else {
                throw ShardDBError(.invalidArgument,
                    "restore target \(target) is a mount point, which cannot be replaced: restore into a directory inside it (\(target)/instance)")
            }
            var existing = stat()
            if stat(target, &existing) == 0 { replaced = existing.st_mode & 0o7777 }
        }
        let info = try checkpoint(id: id)
        let parent = (target as NSString).deletingLastPathComponent
        let name = (target as NSString).lastPathComponent
        do { try files.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw ShardDBError(.notWritable, "cannot create \(parent): \(ShardDBError.fileSystemReason(error))")
        }
        guard access(parent, W_OK | X_OK) == 0 else { throw ShardDBError(.notWritable, "\(parent) is not writable") }
        Self.removeAbandonedRestores(in: parent, name: name)
        let temporary = "\(parent)/.\(name).restoring-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        Self.restoringHere.withLock { _ = $0.insert(temporary) }
        defer { Self.restoringHere.withLock { _ = $0.remove(temporary) } }
        var renamed = false
        defer {
            // RocksDB's copy threads may still be finishing a file as removal starts: retry.
            var attempts = 0
            while !renamed && files.fileExists(atPath: temporary) && attempts < 20 {
                try? files.removeItem(atPath: temporary)
                attempts += 1
                if files.fileExists(atPath: temporary) { usleep(5_000) }
            }
        }

        try FailurePoints.hit("checkpoint.restore.before-copy")
        let poller = progress.map { DirectorySizePoller(path: temporary, total: info.totalBytes, report: $0) }
        poller?.start()
        do {
            defer { poller?.stop() }
            try backups.restore(backup: UInt32(info.id), to: temporary)
        } catch let error as RocksDBError {
            // RocksDB's copy error may not name the file; a checksum pass does, and
            // throws if the checkpoint is damaged. If it is whole, the failure was the
            // target's (a full disk, permissions), not the checkpoint's.
            try verifyFiles(info.id)
            let full = error.message.contains("No space left")
            throw ShardDBError(full ? .diskFull : .storage,
                "restoring checkpoint \(info.id) from \(path) into \(target) failed: \(error.message) (the checkpoint's files verify; the failure is on the target's side)",
                storage: error)
        }
        try FailurePoints.hit("checkpoint.restore.before-open")
        // Open once: RocksDB recovers the WAL tail, and the shard map must be the recorded one.
        // Nothing but that recovery may run: a compaction here would run the expiry filter
        // on this process's clock, not the restoring application's, and close() would then
        // record what it dropped, moving the sequence number past the checkpoint's.
        var options = ShardEngineOptions()
        options.logger.logLevel = .warning
        options.expiryCompactionFilter = false
        options.periodicCompactionSeconds = 0
        options.rocksDBOptions = "disable_auto_compactions=true"
        let restored = try ShardEngine.open(at: temporary, options: options)
        var result = info
        do {
            defer { restored.close() }
            // The instance's own metadata is authoritative (the record is read from the
            // routing table just before the backup; they differ only if a shard-map
            // change committed during the checkpoint).
            result.shards = restored.shardDescriptors
            result.restoredInstanceID = newInstanceID ? try restored.assignNewInstanceID() : restored.instanceID
        }
        if let replaced, chmod(temporary, replaced) != 0 {
            throw ShardDBError(.notWritable, "cannot give the restored instance the mode of \(target): \(String(cString: strerror(errno)))")
        }
        DurableFile.syncDirectory(temporary)
        // rename replaces an empty directory in one step (the target is never missing).
        guard rename(temporary, target) == 0 else {
            let reason = String(cString: strerror(errno))
            switch errno {
            case ENOTEMPTY, EEXIST:
                throw ShardDBError(.targetNotEmpty, "restore target \(target) is no longer empty (\(reason)); nothing was restored into it")
            case EBUSY:
                throw ShardDBError(.invalidArgument, "restore target \(target) is in use as a mount point (\(reason)); restore into a directory inside it")
            default:
                throw ShardDBError(.notWritable, "cannot move the restored instance to \(target): \(reason)")
            }
        }
        renamed = true
        DurableFile.syncDirectory(parent)
        try FailurePoints.hit("checkpoint.restore.after-rename")
        if let progress { progress(CheckpointProgress(bytesDone: info.totalBytes, bytesTotal: info.totalBytes, elapsedSeconds: poller?.elapsed ?? 0)) }
        return result
    }

    /// True when something is mounted on `path` (an absolute path without
    /// symbolic links): its device differs from its parent's, it is the root, or
    /// this process's mount table lists it (a bind mount keeps the device).
    static func isMountPoint(_ path: String) -> Bool {
        var own = stat(), parent = stat()
        guard stat(path, &own) == 0, stat(path + "/..", &parent) == 0 else { return false }
        if own.st_dev != parent.st_dev || own.st_ino == parent.st_ino { return true }
        return mountPoints().contains(Array(path.utf8))
    }

    /// `path` with its parent's symbolic links resolved (the parent as
    /// `realpath` gives it, when it exists), then its last component.
    static func resolvingParent(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent, name = (path as NSString).lastPathComponent
        guard let resolved = realpath(parent, nil) else { return URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        defer { free(resolved) }
        let base = String(cString: resolved)
        return name.isEmpty || path == "/" ? base : (base == "/" ? "/" + name : base + "/" + name)
    }

    /// The mount points in `/proc/self/mountinfo` (the fifth field, octal escapes
    /// decoded); empty where it cannot be read. Read as bytes: one path that is
    /// not UTF-8 must not hide the others.
    static func mountPoints() -> Set<[UInt8]> {
        guard let table = FileManager.default.contents(atPath: "/proc/self/mountinfo") else { return [] }
        var points: Set<[UInt8]> = []
        for line in table.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard fields.count > 4 else { continue }
            var decoded: [UInt8] = [], bytes = Array(fields[4])[...]
            while let byte = bytes.popFirst() {
                if byte == UInt8(ascii: "\\"), bytes.count >= 3, let code = UInt8(String(decoding: bytes.prefix(3), as: UTF8.self), radix: 8) {
                    decoded.append(code)
                    bytes = bytes.dropFirst(3)
                } else {
                    decoded.append(byte)
                }
            }
            points.insert(decoded)
        }
        return points
    }

    /// The hidden directories restores of this process are writing now.
    private static let restoringHere = Mutex<Set<String>>([])

    /// Removes hidden restore directories for `name` left by processes that died,
    /// and by an earlier process that had this one's id (a container's first process
    /// is always 1): of this process's own id only those no restore here is writing.
    private static func removeAbandonedRestores(in parent: String, name: String) {
        let prefix = ".\(name).restoring-"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(prefix) {
            let path = parent + "/" + entry
            let pid = entry.dropFirst(prefix.count).split(separator: "-").first.flatMap { Int32($0) } ?? 0
            if pid == getpid() {
                if restoringHere.withLock({ $0.contains(path) }) { continue }
            } else if pid > 0 && (kill(pid, 0) == 0 || errno == EPERM) {
                // Still restoring (EPERM: a process of another user, alive).
                continue
            }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    // MARK: Purge

    /// Deletes all but the newest `keep` readable checkpoints (none when `keep` is nil)
    /// and, with `dropDamaged`, every damaged one, then every file none of the kept
    /// ones uses. Requires the store opened with `exclusive: true`.
    ///
    /// While the store holds damaged checkpoints (``damagedCheckpoints``) a purge
    /// without `dropDamaged` deletes nothing and throws: RocksDB would delete the
    /// damaged checkpoints' remaining files along with the purged ones.
    ///
    /// ```swift
    /// let store = try CheckpointStore.open(at: "/backups/state", exclusive: true)
    /// try store.purge(keep: 7)                     // refused while one is damaged
    /// try store.purge(dropDamaged: true)           // drops only the damaged ones
    /// ```
    ///
    /// - returns: the ids deleted, in increasing order.
    /// - throws: ``ShardDBError`` `.invalidArgument` (`keep` below 1),
    ///   `.checkpointCorrupted` (damaged checkpoints and not `dropDamaged`), `.storage`.
    @discardableResult
    public func purge(keep: Int? = nil, dropDamaged: Bool = false) throws -> [Int] {
        if let keep, keep < 1 {
            // RocksDB numbers a checkpoint one past the newest it holds: with none
            // left, ids would start over at 1 and name other checkpoints than before.
            throw ShardDBError(.invalidArgument, "keep must be at least 1, got \(keep) (deleting every checkpoint would make "
                + "the next one reuse id 1; to empty the store, delete its directory)")
        }
        guard isExclusive else {
            // Under a shared lock a restore or verify in another process could lose files mid-read.
            throw ShardDBError(.invalidArgument, "purging checkpoint store \(path) needs it opened with exclusive: true")
        }
        try FailurePoints.hit("checkpoint.purge.begin")
        let filesDamaged = self.filesDamaged
        guard filesDamaged.isEmpty || dropDamaged else {
            throw refusal(filesDamaged, "purging would delete their remaining files, so nothing was deleted")
        }
        // Checkpoints whose record does not decode are kept unless dropped explicitly (their files are whole).
        let damaged = dropDamaged ? damagedCheckpoints : []
        let all = try readableBackups()
        // `keep` counts per instance: in a store shared with `allowForeignInstance`,
        // one instance's checkpoints never push out another's.
        var kept: [BackupEngine.BackupInfo] = []
        if let keep {
            var byInstance: [String: [BackupEngine.BackupInfo]] = [:]
            for backup in all { byInstance[try info(for: backup).instanceID, default: []].append(backup) }
            kept = byInstance.values.flatMap { $0.dropLast(keep) }.sorted { $0.id < $1.id }
        }
        let victims = damaged.map(\.id) + kept.map { Int($0.id) }
        for victim in victims {
            try FailurePoints.hit("checkpoint.purge.before-delete")
            // Its statistics first: statistics without a meta file mean a lost meta
            // file (checkMetaFiles), never a purge that stopped halfway.
            let stats = statsPath(victim)
            if FileManager.default.fileExists(atPath: stats) {
                do { try FileManager.default.removeItem(atPath: stats) } catch {
                    throw ShardDBError(.notWritable, "cannot remove \(stats): \(ShardDBError.fileSystemReason(error))")
                }
            }
            // RocksDB removes the backup's meta file first (it is no longer listed),
            // then the files no remaining backup refers to.
            try storage(path) { try backups.delete(backup: UInt32(victim)) }
            closeLock.lock()
            self.damaged.removeAll { $0.id == victim }
            self.unreadable.removeAll { $0.id == victim }
            closeLock.unlock()
            try FailurePoints.hit("checkpoint.purge.after-delete")
        }
        try removeOrphanStats()
        try FailurePoints.hit("checkpoint.purge.end")
        return victims.sorted()
    }

    /// Refuses to create a checkpoint while the store holds damaged ones.
    func refuseIfDamaged() throws {
        let damaged = filesDamaged
        guard damaged.isEmpty else { throw refusal(damaged, "a new checkpoint would delete their remaining files, so none was taken") }
    }

    /// Removes `stats/<id>.json` of checkpoints that no longer exist (damaged ones still do).
    func removeOrphanStats() throws {
        let live = Set(try storage(path) { try backups.backups() }.map { Int($0.id) } + damagedCheckpoints.map(\.id))
        let directory = path + "/" + Self.statsName
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let id = entry.hasSuffix(".json") ? Int(entry.dropLast(5)) : nil
            if id.map({ !live.contains($0) }) ?? true { try? FileManager.default.removeItem(atPath: directory + "/" + entry) }
        }
    }
}

/// Reports the growing size of a directory while RocksDB restores into it.
private final class DirectorySizePoller: @unchecked Sendable {
    let path: String
    let total: UInt64
    let report: (CheckpointProgress) -> Void
    private let started = Date()
    private let done = NSCondition()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    init(path: String, total: UInt64, report: @escaping (CheckpointProgress) -> Void) {
        self.path = path
        self.total = total
        self.report = report
    }

    var elapsed: Double { Date().timeIntervalSince(started) }

    func start() {
        let thread = Thread { [self] in
            done.lock()
            while !stopped {
                done.unlock()
                report(CheckpointProgress(bytesDone: min(size(), total), bytesTotal: total, elapsedSeconds: elapsed))
                done.lock()
                if !stopped { _ = done.wait(until: Date().addingTimeInterval(0.2)) }
            }
            done.unlock()
            finished.signal()
        }
        thread.start()
    }

    func stop() {
        done.lock()
        stopped = true
        done.signal()
        done.unlock()
        finished.wait()  // no report after stop() returns
    }

    private func size() -> UInt64 {
        var total: UInt64 = 0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            var info = stat()
            if stat(path + "/" + entry, &info) == 0 { total += UInt64(info.st_size) }
        }
        return total
    }
}
