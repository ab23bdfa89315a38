#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import CRocksDB
import CRocksDBShim

/// An open RocksDB database.
///
/// Thread-safe: RocksDB's `DB` supports concurrent reads and writes from any
/// thread, and this wrapper guards its own state with a reader-writer lock, so
/// `Database` is `Sendable`.
///
/// Lifetimes: every ``ColumnFamily``, ``Snapshot``, ``Iterator`` and
/// ``WALIterator`` keeps its database alive. ``close()`` is explicit and
/// idempotent; it destroys live iterators (WAL iterators too), then snapshots,
/// then column family handles, then the database itself. Handles used afterwards throw ``RocksDBError/Kind/closed``.
///
/// ```swift
/// let options = Options()
/// options.createIfMissing = true
/// let db = try Database.open(at: "/tmp/db", options: options)
/// try db.put("hello", "world")
/// let value = try db.get("hello")   // [UInt8]("world".utf8)
/// try db.close()
/// ```
public final class Database: @unchecked Sendable {
    let core: DatabaseCore
    /// `core.lock` for the calls every read and write makes (no reference count per call).
    let closeGuard: FastDatabaseLock
    /// The path the database was opened at.
    public let path: String
    /// Shared by reads and writes that pass no options of their own.
    let defaultReadOptions: ReadOptions
    public let defaultWriteOptions: WriteOptions
    /// The perf level applied to each thread on its first use of this database
    /// (nil: RocksDB's default); see ``PerfLevel``.
    public let threadPerfLevel: PerfLevel?

    private init(core: DatabaseCore, path: String, threadPerfLevel: PerfLevel?) {
        self.core = core
        self.closeGuard = core.lock.fast
        self.path = path
        self.threadPerfLevel = threadPerfLevel
        self.defaultReadOptions = ReadOptions()
        self.defaultWriteOptions = WriteOptions()
    }

    deinit { core.close() }

    /// Names of the column families of the database at `path`.
    ///
    /// - throws: ``RocksDBError`` (`ioError` when there is no database there).
    public static func listColumnFamilies(at path: String, options: Options = Options()) throws -> [String] {
        var count = 0
        let names = try withStatus { rocksdb_list_column_families(options.pointer, path, &count, $0) }
        guard let names else { return [] }
        defer { rocksdb_list_column_families_destroy(names, count) }
        return (0..<count).map { String(cString: names[$0]!) }
    }

    /// Opens (or, with `options.createIfMissing`, creates) the database at `path`.
    ///
    /// - parameters:
    ///   - options: database options, also used for every column family not given options of its own.
    ///   - columnFamilies: options per column family name. Every existing column family must be
    ///     opened (RocksDB's rule); when nil, all existing ones are opened with `options`.
    ///   - threadPerfLevel: applied to each thread the first time it reads or writes
    ///     through this database, unless the thread's level was already chosen, by the
    ///     thread itself or by an earlier database's level (``PerfLevel``); nil leaves the
    ///     thread as it is (RocksDB's default is ``PerfLevel/enableCount``).
    /// - throws: ``RocksDBError``; ``RocksDBError/isLockHeld`` tells that another process has it open.
    public static func open(
        at path: String, options: Options, columnFamilies: [String: Options]? = nil,
        threadPerfLevel: PerfLevel? = nil
    ) throws -> Database {
        var families = columnFamilies ?? [:]
        if columnFamilies == nil {
            let existing = (try? listColumnFamilies(at: path, options: options)) ?? []
            for name in existing { families[name] = options }
        }
        if families["default"] == nil { families["default"] = options }
        let names = families.keys.sorted { $0 == "default" ? true : ($1 == "default" ? false : $0 < $1) }
        let familyOptions = names.map { families[$0]! }

        var handles = [OpaquePointer?](repeating: nil, count: names.count)
        let cNames: [UnsafeMutablePointer<CChar>?] = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        let constNames: [UnsafePointer<CChar>?] = cNames.map { UnsafePointer($0) }
        let db: OpaquePointer? = try constNames.withUnsafeBufferPointer { namePointers in
            try familyOptions.map { Optional($0.pointer) }.withUnsafeBufferPointer { optionPointers in
                try withStatus {
                    rocksdb_open_column_families(
                        options.pointer, canonicalPath(path), Int32(names.count),
                        namePointers.baseAddress, optionPointers.baseAddress, &handles, $0)
                }
            }
        }
        guard let db else { throw RocksDBError(kind: .unknown, message: "open returned no database") }
        var slots: [String: ColumnFamilySlot] = [:]
        for (index, name) in names.enumerated() {
            slots[name] = ColumnFamilySlot(handle: handles[index]!)
        }
        var retained = [options]
        retained.append(contentsOf: familyOptions)
        let core = DatabaseCore(handle: db, columnFamilies: slots, options: retained)
        return Database(core: core, path: path, threadPerfLevel: threadPerfLevel)
    }

    /// `path` with symbolic links, `.` and `..` resolved (the directory's parent
    /// when the directory does not exist yet). RocksDB refuses a second open of
    /// a database in one process by the name of its LOCK file, so `a` and `./a`
    /// would otherwise be two live databases on one directory.
    static func canonicalPath(_ path: String) -> String {
        func resolved(_ path: String) -> String? {
            guard let real = realpath(path, nil) else { return nil }
            defer { free(real) }
            return String(cString: real)
        }
        if let real = resolved(path) { return real }
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return resolved(".").map { $0 + "/" + trimmed } ?? path }
        let parent = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
        guard let real = resolved(parent) else { return path }
        return (real == "/" ? "" : real) + "/" + trimmed[trimmed.index(after: slash)...]
    }

    /// Closes the database: destroys live iterators, snapshots and column family
    /// handles, then the database. Idempotent; safe while other threads hold
    /// handles (their later calls throw ``RocksDBError/Kind/closed``).
    ///
    /// Called inside a closure that a read of this database runs on the same
    /// thread (``withValue(forKey:in:options:_:)``, ``Iterator/withKey(_:)``,
    /// ``Iterator/withValue(_:)``), which holds the database open, the close
    /// happens when the outermost such closure returns, instead of waiting for
    /// it for ever.
    public func close() {
        if sharddb_body_defer_close(closeGuard.rwlock) != 0 { return }
        core.close()
    }

    /// True until ``close()``.
    public var isOpen: Bool { core.lock.withReadLock { core.handle != nil } }

    // MARK: Column families

    /// The default column family.
    public var defaultColumnFamily: ColumnFamily {
        get throws { try columnFamily(named: "default") }
    }

    /// The open column family named `name`.
    ///
    /// - throws: ``RocksDBError`` `.notFound` when there is none, `.closed` after `close()`.
    public func columnFamily(named name: String) throws -> ColumnFamily {
        try core.lock.withReadLock {
            guard core.handle != nil else { throw RocksDBError.closed("database \(path)") }
            guard let slot = core.registry.withLock({ core.columnFamilies[name] }), let handle = slot.handle else {
                throw RocksDBError(kind: .notFound, message: "NotFound: column family '\(name)'")
            }
            return ColumnFamily(database: self, name: name, id: rocksdb_column_family_handle_get_id(handle), slot: slot)
        }
    }

    /// Names of the open column families.
    public var columnFamilyNames: [String] {
        core.registry.withLock { core.columnFamilies.keys.sorted() }
    }

    /// Creates a column family.
    ///
    /// - throws: ``RocksDBError`` `.invalidArgument` when it exists.
    @discardableResult
    public func createColumnFamily(named name: String, options: Options? = nil) throws -> ColumnFamily {
        try createColumnFamily(named: name, options: options) { db, options in
            try withStatus { rocksdb_create_column_family(db, options.pointer, name, $0) }!
        }
    }

    /// Creates column families in one call: RocksDB rewrites its OPTIONS file (every
    /// family's options) after each creation, so creating many one by one costs
    /// quadratic time. On error, the families created before it are dropped again.
    public func createColumnFamilies(_ families: [(name: String, options: Options?)]) throws -> [ColumnFamily] {
        guard !families.isEmpty else { return [] }
        let resolved = families.map { ($0.name, $0.options ?? core.databaseOptions) }
        // The ids are read under the lock too: a close() or drop after it could destroy the handles.
        let created: [(String, ColumnFamilySlot, UInt32)] = try core.lock.withReadLock {
            guard let db = core.handle else { throw RocksDBError.closed("database \(path)") }
            for (name, _) in resolved where core.registry.withLock({ core.columnFamilies[name] }) != nil {
                throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: column family '\(name)' already exists")
            }
            guard Set(resolved.map(\.0)).count == resolved.count else {
                throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: a column family name is given twice")
            }
            let names = resolved.map { strdup($0.0) }
            defer { names.forEach { free($0) } }
            var handles = [OpaquePointer?](repeating: nil, count: resolved.count)
            let options: [OpaquePointer?] = resolved.map { Optional($0.1.pointer) }
            let cNames: [UnsafePointer<CChar>?] = names.map { UnsafePointer($0) }
            do {
                try withExtendedLifetime(resolved) {
                    try withStatus { sharddb_create_column_families(db, resolved.count, cNames, options, &handles, $0) }
                }
            } catch {
                // RocksDB stops at the first failure; take back what it created before.
                for case let handle? in handles {
                    try? withStatus { rocksdb_drop_column_family(db, handle, $0) }
                    rocksdb_column_family_handle_destroy(handle)
                }
                throw error
            }
            let created = resolved.indices.map { i in (resolved[i].0, resolved[i].1, ColumnFamilySlot(handle: handles[i]!)) }
            // Registered before the lock is released, so a close() that follows destroys them.
            core.registry.withLock {
                for (name, options, slot) in created {
                    core.columnFamilies[name] = slot
                    core.options.append(options)
                }
            }
            return created.map { name, _, slot in (name, slot, rocksdb_column_family_handle_get_id(slot.handle!)) }
        }
        return created.map { name, slot, id in ColumnFamily(database: self, name: name, id: id, slot: slot) }
    }

    /// Creates a column family through `create` (which returns the new C handle) and registers it.
    func createColumnFamily(named name: String, options: Options?,
                            _ create: (OpaquePointer, Options) throws -> OpaquePointer) throws -> ColumnFamily {
        let options = options ?? core.databaseOptions
        let (slot, id): (ColumnFamilySlot, UInt32) = try core.lock.withReadLock {
            guard let db = core.handle else { throw RocksDBError.closed("database \(path)") }
            if core.registry.withLock({ core.columnFamilies[name] }) != nil {
                throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: column family '\(name)' already exists")
            }
            let handle = try create(db, options)
            let slot = ColumnFamilySlot(handle: handle)
            core.registry.withLock {
                core.columnFamilies[name] = slot
                core.options.append(options)
            }
            // Read under the lock: a close() or drop after it could destroy the handle.
            return (slot, rocksdb_column_family_handle_get_id(handle))
        }
        return ColumnFamily(database: self, name: name, id: id, slot: slot)
    }

    /// Drops a column family and its data. Calls with handles to it throw
    /// `.columnFamilyDropped` afterwards (from the moment the drop starts; `.closed`
    /// once the database is closed).
    public func dropColumnFamily(named name: String) throws {
        // First, for an instant exclusively, the family's handle is taken out of use: a
        // write to it once RocksDB has dropped it would fail in the memtable after the
        // WAL took it, which RocksDB treats as a fatal error (every later write of the
        // database refused until it is reopened). Iterators already open keep working.
        let slot: ColumnFamilySlot = try core.lock.withWriteLock {
            guard core.handle != nil else { throw RocksDBError.closed("database \(path)") }
            guard let slot = core.registry.withLock({ core.columnFamilies[name] }), let handle = slot.handle else {
                throw RocksDBError(kind: .notFound, message: "NotFound: column family '\(name)'")
            }
            slot.dropping = handle
            slot.handle = nil
            slot.dropped = true
            return slot
        }
        do {
            // The drop itself (a durable manifest write) under the shared lock, so calls on
            // other families go on meanwhile.
            try core.lock.withReadLock {
                guard let db = core.handle, let handle = slot.dropping else { throw RocksDBError.closed("database \(path)") }
                try withStatus { rocksdb_drop_column_family(db, handle, $0) }
            }
        } catch {
            core.lock.withWriteLock {
                // Not dropped (the default family, an I/O error): back in use, unless close() ran.
                if core.handle != nil, let handle = slot.dropping { slot.handle = handle }
                slot.dropping = nil
                slot.dropped = false
            }
            throw error
        }
        core.lock.withWriteLock {
            // Unless close() destroyed it in between (it was still registered).
            if let handle = slot.dropping { rocksdb_column_family_handle_destroy(handle) }
            slot.dropping = nil
            core.registry.withLock {
                if core.columnFamilies[name] === slot { core.columnFamilies.removeValue(forKey: name) }
            }
        }
    }

    // MARK: Internal access

    /// Runs `body` with the database pointer under the shared lock.
    @usableFromInline
    func withHandle<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        if let threadPerfLevel { PerfLevel.applyOnce(threadPerfLevel) }
        let lock = closeGuard
        let hold = lock.lockShared()
        defer { lock.unlock(hold) }
        guard let handle = core.handle else { throw RocksDBError.closed("database \(path)") }
        return try body(handle)
    }

    /// Runs `body` with the database and column family pointers under the shared lock.
    @usableFromInline
    func withHandle<R>(_ family: ColumnFamily?, _ body: (OpaquePointer, OpaquePointer) throws -> R) throws -> R {
        if let threadPerfLevel { PerfLevel.applyOnce(threadPerfLevel) }
        let lock = closeGuard
        let hold = lock.lockShared()
        defer { lock.unlock(hold) }
        let (handle, familyHandle) = try handles(family)
        return try body(handle, familyHandle)
    }

    /// The database and column family pointers; the caller holds the shared lock.
    /// Straight-line on purpose: a closure capturing `self` here made every point
    /// read and put retain and release the database object twice (atomic writes
    /// to one line every thread shares, about 2% of a cached read at 2 threads).
    @inline(__always)
    func handles(_ family: ColumnFamily?) throws -> (OpaquePointer, OpaquePointer) {
        guard let handle = core.handle else { throw RocksDBError.closed("database \(path)") }
        guard let family else {
            guard let h = core.defaultFamilyHandle else { throw RocksDBError.closed("database \(path)") }
            return (handle, h)
        }
        guard family.databaseIdentity == ObjectIdentifier(self) else {
            throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: column family '\(family.name)' belongs to another database")
        }
        guard let h = family.slot.handle else { throw family.slot.unusable("'\(family.name)'") }
        return (handle, h)
    }
}

/// The C handle of a column family; nil once the family is dropped or the database closed.
final class ColumnFamilySlot: @unchecked Sendable {
    // Written only under the database's exclusive lock.
    var handle: OpaquePointer?
    /// The handle while ``Database/dropColumnFamily(named:)`` drops the family (``handle`` is nil then).
    var dropping: OpaquePointer?
    /// True from the start of a drop that did not fail.
    var dropped = false
    init(handle: OpaquePointer) { self.handle = handle }

    func withHandle<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        guard let handle else { throw unusable("") }
        return try body(handle)
    }

    /// Why the handle is nil: the family was dropped, or the database closed.
    func unusable(_ name: String) -> RocksDBError {
        let family = name.isEmpty ? "column family" : "column family \(name)"
        return dropped ? RocksDBError.dropped(name) : RocksDBError.closed(family)
    }
}

/// The C handle of an iterator, WAL iterator or snapshot, registered with its
/// database so `close()` can destroy it first.
final class ChildSlot: @unchecked Sendable {
    enum Kind { case iterator, walIterator, snapshot }
    let kind: Kind
    // Written only under the database's exclusive lock, or by the owner's deinit under the shared lock
    // (the owner is the only other user).
    var pointer: OpaquePointer?
    init(kind: Kind, pointer: OpaquePointer) { self.kind = kind; self.pointer = pointer }
}

/// The state behind a ``Database``: its C handle, column family handles, live
/// children and the options it must outlive.
final class DatabaseCore: @unchecked Sendable {
    let lock = DatabaseLock()
    /// Guards `columnFamilies`, `children` and `options` (mutated under the shared lock).
    let registry = PThreadMutex()
    var handle: OpaquePointer?
    var columnFamilies: [String: ColumnFamilySlot]
    var children: [ObjectIdentifier: ChildSlot] = [:]
    var options: [Options]
    /// The database's own options (`options[0]`), kept apart so readers need no lock:
    /// `options` grows under `registry`, and reading it unlocked could see its buffer freed.
    let databaseOptions: Options
    let defaultFamilyHandle: OpaquePointer?

    init(handle: OpaquePointer, columnFamilies: [String: ColumnFamilySlot], options: [Options]) {
        self.handle = handle
        self.columnFamilies = columnFamilies
        self.options = options
        self.databaseOptions = options[0]
        self.defaultFamilyHandle = columnFamilies["default"]?.handle
    }

    func register(_ slot: ChildSlot) {
        registry.withLock { children[ObjectIdentifier(slot)] = slot }
    }

    /// Destroys a child's C object unless `close()` already did. `exclusive` when
    /// other threads may still use it (an explicit ``Snapshot/release()``).
    func release(_ slot: ChildSlot, exclusive: Bool = false) {
        if exclusive { lock.withWriteLock { releaseLocked(slot) } } else { lock.withReadLock { releaseLocked(slot) } }
    }

    private func releaseLocked(_ slot: ChildSlot) {
        registry.withLock { _ = children.removeValue(forKey: ObjectIdentifier(slot)) }
        guard let pointer = slot.pointer, let db = handle else { return }
        switch slot.kind {
        case .iterator: rocksdb_iter_destroy(pointer)
        case .walIterator: rocksdb_wal_iter_destroy(pointer)
        case .snapshot: rocksdb_release_snapshot(db, pointer)
        }
        slot.pointer = nil
    }

    func close() {
        lock.withWriteLock {
            guard let db = handle else { return }
            let live = registry.withLock { Array(children.values) }
            for slot in live where slot.kind == .iterator {
                if let p = slot.pointer { rocksdb_iter_destroy(p) }
                slot.pointer = nil
            }
            for slot in live where slot.kind == .walIterator {
                if let p = slot.pointer { rocksdb_wal_iter_destroy(p) }
                slot.pointer = nil
            }
            for slot in live where slot.kind == .snapshot {
                if let p = slot.pointer { rocksdb_release_snapshot(db, p) }
                slot.pointer = nil
            }
            for slot in registry.withLock({ Array(columnFamilies.values) }) {
                if let h = slot.handle { rocksdb_column_family_handle_destroy(h) }
                if let h = slot.dropping { rocksdb_column_family_handle_destroy(h) }
                slot.handle = nil
                slot.dropping = nil
            }
            rocksdb_close(db)
            handle = nil
            registry.withLock { children.removeAll() }
            // `options` are released with this core, after the database is gone.
        }
    }
}
