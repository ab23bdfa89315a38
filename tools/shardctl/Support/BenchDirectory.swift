import Foundation
import ShardDB

/// The directories `shardctl bench` works in and removes (`--db`, `--dir`): one
/// it made itself carries a marker file, and it removes nothing else, so a
/// mistyped path cannot take an instance or a user's files with it.
enum BenchDirectory {
    static let marker = ".shardctl-bench"

    /// Removes `path` if an earlier bench run made it (or it is an empty
    /// directory); nothing there is fine too.
    ///
    /// - throws: `.invalidArgument` when `path` is a file, or a directory holding
    ///   anything without the marker (an instance, the user's files).
    static func clear(_ path: String, option: String) throws {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else {
            throw ShardDBError(.invalidArgument, "\(option) \(path) is a file; bench needs a directory it may remove")
        }
        let entries: [String]
        do { entries = try files.contentsOfDirectory(atPath: path) } catch {
            throw ShardDBError(.notWritable, "cannot read \(option) \(path): \(ShardDBError.fileSystemReason(error))")
        }
        guard entries.isEmpty || entries.contains(marker) else {
            throw ShardDBError(.invalidArgument,
                "\(option) \(path) holds files shardctl bench did not create (\(entries.sorted().prefix(3).joined(separator: ", "))); "
                + "bench removes what it works in, so give it a new or empty directory")
        }
        do { try files.removeItem(atPath: path) } catch {
            throw ShardDBError(.notWritable, "cannot remove \(option) \(path): \(ShardDBError.fileSystemReason(error))")
        }
    }

    /// Marks `path` (an existing directory) as bench's, for ``clear(_:option:)`` next time.
    static func mark(_ path: String) throws {
        let files = FileManager.default
        do { try files.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw ShardDBError(.notWritable, "cannot create \(path): \(ShardDBError.fileSystemReason(error))")
        }
        guard files.createFile(atPath: path + "/" + marker,
                               contents: Data("made by shardctl bench, which removes this directory when it runs here again\n".utf8)) else {
            throw ShardDBError(.notWritable, "cannot write \(path)/\(marker)")
        }
    }

    /// ``clear(_:option:)`` then a fresh, marked directory.
    static func fresh(_ path: String, option: String) throws {
        try clear(path, option: option)
        try mark(path)
    }
}
