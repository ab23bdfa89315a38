import CRocksDB
import CRocksDBShim
import Foundation

/// A table file of an exported column family, with what an import needs back
/// (RocksDB's `LiveFileMetaData`, in part).
public struct TableFile: Sendable, Equatable, Codable {
    /// The folder holding the file.
    public var directory: String
    /// The file's name in `directory` (`000123.sst`).
    public var name: String
    /// The LSM level it sat in; an import puts it back there.
    public var level: Int
    public var smallestSequence: UInt64
    public var largestSequence: UInt64
    /// Bytes.
    public var size: UInt64
    /// Entries, deletions included.
    public var entries: UInt64
    public var deletions: UInt64
    /// Range tombstones in the file (`UInt64.max` when its properties could not be
    /// read). RocksDB 7.8 loses a range tombstone that reaches past a file's point
    /// keys on import (facebook/rocksdb#11252): import only files without them.
    public var rangeDeletions: UInt64

    public var path: String { directory + "/" + name }

    public init(directory: String, name: String, level: Int, smallestSequence: UInt64, largestSequence: UInt64,
                size: UInt64, entries: UInt64 = 0, deletions: UInt64 = 0, rangeDeletions: UInt64 = 0) {
        self.directory = directory
        self.name = name
        self.level = level
        self.smallestSequence = smallestSequence
        self.largestSequence = largestSequence
        self.size = size
        self.entries = entries
        self.deletions = deletions
        self.rangeDeletions = rangeDeletions
    }
}

extension Database {
    /// Exports `family`'s table files (RocksDB's `Checkpoint::ExportColumnFamily`):
    /// flushes it, then hard-links its live table files into `directory` (copies
    /// across file systems). The files hold every write to the family made before
    /// the call, and perhaps some made during it. Writers are not held.
    ///
    /// ```swift
    /// let files = try source.exportColumnFamily(family, to: "/data/export-7")
    /// let copy = try target.createColumnFamily(named: "imported", options: options, importing: files, moveFiles: true)
    /// ```
    ///
    /// - parameters:
    ///   - directory: must not exist; its parent must.
    /// - returns: the files, empty when the family holds nothing. Check their
    ///   ``TableFile/rangeDeletions`` before importing them.
    /// - throws: ``RocksDBError`` (`.invalidArgument` when `directory` exists).
    public func exportColumnFamily(_ family: ColumnFamily, to directory: String) throws -> [TableFile] {
        final class Collector { var files: [TableFile] = [] }
        let collector = Collector()
        try withHandle(family) { db, cf in
            try withStatus { error in
                sharddb_export_column_family(db, cf, directory, { context, file in
                    let collector = Unmanaged<Collector>.fromOpaque(context!).takeUnretainedValue()
                    let f = file!.pointee
                    collector.files.append(TableFile(
                        directory: String(cString: f.directory), name: String(cString: f.name), level: Int(f.level),
                        smallestSequence: f.smallest_seqno, largestSequence: f.largest_seqno, size: f.size,
                        entries: f.entries, deletions: f.deletions, rangeDeletions: f.range_deletions))
                }, Unmanaged.passUnretained(collector).toOpaque(), error)
            }
        }
        return collector.files
    }

    /// Creates the column family `name` holding exactly `files` (RocksDB's
    /// `CreateColumnFamilyWithImport`), each at its level with its sequence
    /// numbers. The database's last sequence number rises to the files' largest
    /// if it was lower, without a write-ahead log record: a changelog reader
    /// reading across that moment meets a gap.
    ///
    /// RocksDB 7.8 bounds each imported file by its point keys: a range tombstone
    /// reaching past them is lost, and a file of range tombstones only is refused
    /// (facebook/rocksdb#11252). Import only files whose ``TableFile/rangeDeletions`` is 0.
    ///
    /// - parameters:
    ///   - moveFiles: hard-link the files in and remove the originals (RocksDB
    ///     copies them when the file system cannot link); otherwise copy them.
    /// - throws: ``RocksDBError``: `.invalidArgument` when the family exists or
    ///   `files` is empty; on any error the family does not exist.
    @discardableResult
    public func createColumnFamily(named name: String, options: Options? = nil, importing files: [TableFile],
                                   moveFiles: Bool) throws -> ColumnFamily {
        guard !files.isEmpty else {
            throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: no table files to import into '\(name)'")
        }
        // RocksDB trusts the metadata: a level past the options' writes a manifest no
        // open accepts again, a negative one aborts the process (7.8, asserts on).
        let levels = Int(rocksdb_options_get_num_levels((options ?? core.databaseOptions).pointer))
        for file in files {
            guard (0..<levels).contains(file.level), file.smallestSequence <= file.largestSequence,
                  !file.name.contains("/") else {
                throw RocksDBError(kind: .invalidArgument, message: "Invalid argument: table file '\(file.name)' at level \(file.level), "
                    + "sequences \(file.smallestSequence)...\(file.largestSequence) (levels 0..<\(levels))")
            }
        }
        // C copies of the strings for the call (a family can have thousands of files).
        let strings = files.flatMap { [strdup($0.directory), strdup($0.name)] }
        defer { strings.forEach { free($0) } }
        let described = files.indices.map { i in
            sharddb_table_file_t(directory: strings[2 * i], name: strings[2 * i + 1], level: Int32(files[i].level),
                                 smallest_seqno: files[i].smallestSequence, largest_seqno: files[i].largestSequence,
                                 size: files[i].size, entries: files[i].entries, deletions: files[i].deletions,
                                 range_deletions: files[i].rangeDeletions)
        }
        return try createColumnFamily(named: name, options: options) { db, options in
            try withStatus {
                sharddb_create_column_family_with_import(db, options.pointer, name, described, described.count,
                                                         moveFiles ? 1 : 0, $0)
            }!
        }
    }
}
