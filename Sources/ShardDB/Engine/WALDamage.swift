import Foundation
import RocksDB

/// Names the write-ahead log file behind a corruption error at open.
///
/// RocksDB's recovery reports a damaged WAL record as a bare `Corruption:` status;
/// the file name only reaches its info log (`LOG` in the instance directory), as
/// `<dir>/<number>.log: dropping <n> bytes; Corruption: ...`.
enum WALDamage {
    static func explain(_ error: RocksDBError, path: String) -> ShardDBError {
        guard error.kind == .corruption else { return ShardDBError.wrap(error, path: path) }
        if error.message.contains("MANIFEST") || error.message.contains(".sst") {
            return ShardDBError.wrap(error, path: path)
        }
        guard let file = damagedLogFile(in: path) else { return ShardDBError.wrap(error, path: path) }
        return ShardDBError(.storage,
            "\(path): write-ahead log \(file) is damaged (\(error.message)); the open was refused so that no acknowledged write is dropped silently. To open it anyway, dropping the log from the damaged record on: shardctl salvage-wal \(path)",
            storage: error)
    }

    /// The WAL file named in the last "dropping" line of RocksDB's info log, if any.
    static func damagedLogFile(in path: String) -> String? {
        droppedRecords(in: path).last?.file
    }

    /// Every "<file>.log: dropping N bytes; <reason>" line of the current info log.
    static func droppedRecords(in path: String) -> [(file: String, bytes: Int, reason: String)] {
        guard let text = try? String(contentsOfFile: path + "/LOG", encoding: .utf8) else { return [] }
        var found: [(String, Int, String)] = []
        for line in text.split(separator: "\n") where line.contains(".log: dropping ") {
            guard let range = line.range(of: ".log: dropping ") else { continue }
            let before = line[..<range.lowerBound]
            let name = before.split(whereSeparator: { $0 == " " || $0 == "/" }).last.map { String($0) + ".log" } ?? "?.log"
            let rest = line[range.upperBound...]
            let bytes = Int(rest.prefix { $0.isNumber }) ?? 0
            let reason = rest.range(of: "; ").map { String(rest[$0.upperBound...]) } ?? ""
            found.append((name, bytes, reason))
        }
        return found
    }
}

/// What salvaging a damaged write-ahead log dropped: the bytes of one log from
/// its first damaged record on.
public struct DroppedWALRecords: Sendable, Equatable, CustomStringConvertible {
    /// The log file, e.g. `000012.log`.
    public var file: String
    public var bytes: Int
    /// RocksDB's reason, e.g. `Corruption: checksum mismatch`.
    public var reason: String

    public var description: String { "\(file): dropped \(bytes) bytes (\(reason))" }
}

extension ShardEngine {
    /// Opens a damaged instance anyway, keeping each write-ahead log up to its
    /// first damaged record and dropping the rest (RocksDB's point-in-time
    /// recovery), then closes it. Afterwards the instance opens normally; the
    /// writes after the damage are lost.
    ///
    /// - returns: what was dropped; empty when no log was damaged.
    /// - throws: as ``open(at:expectedPartitioning:options:)``.
    public static func salvageWriteAheadLog(at path: String, options: ShardEngineOptions = ShardEngineOptions()) throws -> [DroppedWALRecords] {
        var options = options
        options.walRecovery = .salvage
        let engine = try open(at: path, options: options)
        let dropped = WALDamage.droppedRecords(in: path).map { DroppedWALRecords(file: $0.file, bytes: $0.bytes, reason: $0.reason) }
        // RocksDB flushes what it recovered into table files at open and retires the
        // damaged log, so a strict open afterwards does not meet it again.
        engine.close()
        return dropped
    }
}
