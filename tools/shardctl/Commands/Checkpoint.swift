import ArgumentParser
import Foundation
import ShardDB

/// `shardctl checkpoint ...`: incremental, verified checkpoints of an instance.
struct Checkpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list, verify, restore and purge incremental checkpoints.",
        discussion: """
            A checkpoint store is a directory (possibly on another disk) holding checkpoints of one \
            instance. Each checkpoint is consistent across all shards and copies only the table files \
            the store does not hold yet. A checkpoint whose files were damaged later (one missing, \
            its meta file unreadable) is listed as damaged; create and purge refuse to run while \
            there is one, deleting nothing, until 'purge --drop-damaged' drops it (one whose only \
            damage is its record does not block them). See docs/CHECKPOINTS.md.
            """,
        subcommands: [Create.self, List.self, Verify.self, Restore.self, Purge.self])

    struct StoreOption: ParsableArguments {
        @Option(help: "The checkpoint store directory.")
        var store: String
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Checkpoint an instance into a store (created if missing) while it may be written.",
            discussion: """
                Refused (exit status 2, nothing changed) while the store holds a checkpoint with \
                damaged files (one missing, its meta file unreadable): RocksDB would delete its \
                remaining files. Inspect it with 'list' and 'verify', then drop it with \
                'purge --drop-damaged'.
                """)

        @OptionGroup var instance: InstanceOptions
        @OptionGroup var storeOption: StoreOption

        @Option(name: .customLong("metadata"), parsing: .singleValue, help: "key=value recorded with the checkpoint (repeatable).")
        var metadata: [String] = []

        @Flag(name: .customLong("allow-foreign-instance"), help: "Use a store that belongs to another instance.")
        var allowForeignInstance = false

        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() throws {
            let pairs = try failing { () throws -> [String: String] in
                var pairs: [String: String] = [:]
                for item in metadata {
                    let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    guard parts.count == 2, !parts[0].isEmpty else {
                        throw ShardDBError(.invalidArgument, "--metadata expects key=value, got '\(item)'")
                    }
                    guard pairs.updateValue(String(parts[1]), forKey: String(parts[0])) == nil else {
                        throw ShardDBError(.invalidArgument, "--metadata gives '\(parts[0])' twice")
                    }
                }
                return pairs
            }
            let progress = ProgressLine()
            let info = try instance.withEngine { engine in
                try engine.checkpoint(to: storeOption.store, metadata: pairs, allowForeignInstance: allowForeignInstance) { p in
                    progress.update("copied \(formatBytes(p.bytesDone)) of at most \(formatBytes(p.bytesTotal)) at \(formatBytes(UInt64(p.bytesPerSecond)))/s")
                }
            }
            progress.finish()
            if json {
                printJSON(CheckpointReport(info))
            } else {
                print("checkpoint \(info.id) of instance \(info.instanceID) at sequence \(info.sequenceNumber): "
                      + "copied \(formatBytes(info.bytesCopied ?? 0)) of \(formatBytes(info.totalBytes)), \(info.fileCount) files")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the checkpoints of a store, oldest first, damaged ones included.",
            discussion: """
                A damaged checkpoint (a file missing, its meta file unreadable) is listed with \
                'damaged: REASON' in the status column, RocksDB's reason naming the file; with --json \
                as {"id": N, "damaged": "REASON"}. Listing them is not an error (exit status 0).
                """)

        @OptionGroup var storeOption: StoreOption
        @Flag(help: "Print the result as JSON.") var json = false

        func run() throws {
            let (infos, damaged) = try failing { () throws -> ([CheckpointInfo], [DamagedCheckpoint]) in
                let store = try CheckpointStore.open(at: storeOption.store)
                defer { store.close() }
                return (try store.checkpoints(), store.damagedCheckpoints)
            }
            if json {
                let entries = infos.map(ListedCheckpoint.readable) + damaged.map(ListedCheckpoint.damaged)
                printJSON(entries.sorted { $0.id < $1.id })
                return
            }
            let header = ["id", "created", "instance", "sequence", "shards", "copied", "total", "files", "metadata", "status"]
            var rows: [(id: Int, cells: [String])] = infos.map { info in
                // Escaped as in TSV: a value cannot break the table or send the terminal control bytes.
                let metadata = info.metadata.sorted { $0.key < $1.key }
                    .map { "\(TSV.escape($0.key.utf8))=\(TSV.escape($0.value.utf8))" }.joined(separator: ",")
                return (info.id, [String(info.id), isoTime(info.createdAt), info.instanceID, String(info.sequenceNumber),
                                  String(info.shards.count), info.bytesCopied.map(formatBytes) ?? "?", formatBytes(info.totalBytes),
                                  String(info.fileCount), metadata, "ok"])
            }
            for damage in damaged {
                let blanks = [String](repeating: "-", count: header.count - 2)
                rows.append((damage.id, [String(damage.id)] + blanks + ["damaged: \(damage.reason)"]))
            }
            printTable(header: header, rows: rows.sorted { $0.id < $1.id }.map(\.cells))
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every file of a checkpoint (or of all) against its size and checksum.",
            discussion: """
                Exit status 2 names the first missing, truncated or corrupted file (or the unreadable \
                meta file); without --id, damaged checkpoints are reported first, with all their ids.
                """)

        @OptionGroup var storeOption: StoreOption
        @Option(parsing: .unconditional, help: "Only this checkpoint.") var id: Int?

        func run() throws {
            let verified = try failing { () throws -> [CheckpointInfo] in
                let store = try CheckpointStore.open(at: storeOption.store)
                defer { store.close() }
                return try store.verify(id: id)
            }
            for info in verified { print("checkpoint \(info.id): ok (\(info.fileCount) files, \(formatBytes(info.totalBytes)))") }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a checkpoint (the latest by default) into a new directory.",
            discussion: """
                The directory must not exist or be empty; it appears only once the restore is complete \
                and opens as a normal instance with the checkpoint's instance id. To bring one shard \
                back into a running instance, restore with --new-instance-id into a temporary directory, \
                then move the shard from it with 'shardctl migrate' (docs/CHECKPOINTS.md): a migration \
                refuses two instances with one id. When the latest checkpoint is damaged, a restore \
                without --id is refused (exit status 2) rather than taking an older one silently: name \
                the older one with --id.
                """)

        @OptionGroup var storeOption: StoreOption
        @Option(parsing: .unconditional, help: "The checkpoint to restore (default: the latest, refused if it is damaged).") var id: Int?
        @Argument(help: "The new instance directory.") var directory: String
        @Flag(name: .customLong("new-instance-id"),
              help: "Give the restored instance a new id, so it can migrate a shard into the instance the checkpoint was taken of (refused, nothing restored, if the checkpoint holds an unfinished migration).")
        var newInstanceID = false
        @Flag(help: "Print the result as JSON.") var json = false

        func run() throws {
            let progress = ProgressLine()
            let info = try failing { () throws -> CheckpointInfo in
                let store = try CheckpointStore.open(at: storeOption.store)
                defer { store.close() }
                return try store.restore(id: id, to: directory, newInstanceID: newInstanceID) { p in
                    progress.update("restored \(formatBytes(p.bytesDone)) of \(formatBytes(p.bytesTotal)) at \(formatBytes(UInt64(p.bytesPerSecond)))/s")
                }
            }
            progress.finish()
            if json {
                printJSON(CheckpointReport(info))
            } else {
                print("restored checkpoint \(info.id) (\(info.shards.count) shards, sequence \(info.sequenceNumber)) to \(directory)"
                    + (newInstanceID ? " as new instance \(info.restoredInstanceID ?? "?")" : ""))
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete all but the newest N checkpoints, and the files only they used.",
            discussion: """
                While the store holds a checkpoint with damaged files (see 'list'), a purge is refused (exit \
                status 2, nothing deleted) unless --drop-damaged is given: RocksDB deletes the damaged \
                checkpoints' remaining files along with the purged ones. Give --keep, --drop-damaged or both.
                """)

        @OptionGroup var storeOption: StoreOption
        @Option(parsing: .unconditional, help: "How many of the newest readable checkpoints to keep (per instance in a shared store), at least 1 (default: all of them).") var keep: Int?
        @Flag(name: .customLong("drop-damaged"),
              help: "Delete every damaged checkpoint too, with its remaining files (gone for good: inspect them with 'list' and 'verify' first).")
        var dropDamaged = false
        @Flag(help: "Print the result as JSON.") var json = false

        func validate() throws {
            guard keep != nil || dropDamaged else { throw ValidationError("give --keep N, --drop-damaged, or both") }
            if let keep, keep < 1 {
                throw ValidationError("--keep must be at least 1, got \(keep) (deleting every checkpoint would make the next one reuse id 1; to empty the store, delete its directory)")
            }
        }

        func run() throws {
            let deleted = try failing { () throws -> [Int] in
                let store = try CheckpointStore.open(at: storeOption.store, exclusive: true)
                defer { store.close() }
                return try store.purge(keep: keep, dropDamaged: dropDamaged)
            }
            if json {
                printJSON(["deleted": deleted])
            } else {
                print(deleted.isEmpty ? "nothing to delete" : "deleted checkpoints \(deleted.map(String.init).joined(separator: ", "))")
            }
        }
    }
}

/// An entry of `checkpoint list --json`: a readable checkpoint as ``CheckpointReport``,
/// a damaged one as `{"id": N, "damaged": "REASON"}`.
enum ListedCheckpoint: Encodable {
    case readable(CheckpointInfo)
    case damaged(DamagedCheckpoint)

    var id: Int {
        switch self {
        case .readable(let info): info.id
        case .damaged(let damage): damage.id
        }
    }

    private struct Damaged: Encodable {
        var id: Int
        var damaged: String
    }

    func encode(to encoder: Encoder) throws {
        switch self {
        case .readable(let info): try CheckpointReport(info).encode(to: encoder)
        case .damaged(let damage): try Damaged(id: damage.id, damaged: damage.reason).encode(to: encoder)
        }
    }
}

/// A checkpoint as `--json` prints it.
struct CheckpointReport: Encodable {
    var id: Int
    var createdAt: String
    var instance: String
    var sequenceNumber: UInt64
    var partitioning: String
    var shards: [Shard]
    var bytesCopied: UInt64?
    var totalBytes: UInt64
    var fileCount: Int
    var metadata: [String: String]
    /// restore only: the restored instance's id.
    var restoredInstance: String?

    struct Shard: Encodable {
        var id: Int
        var range: String
        var state: String
        var defaultTTLSeconds: Int64?
    }

    init(_ info: CheckpointInfo) {
        id = info.id
        createdAt = isoTime(info.createdAt)
        instance = info.instanceID
        sequenceNumber = info.sequenceNumber
        partitioning = "\(info.partitioning)"
        shards = info.shards.map { Shard(id: $0.id, range: "\($0.range)", state: "\($0.state)", defaultTTLSeconds: $0.defaultTTLSeconds) }
        bytesCopied = info.bytesCopied
        totalBytes = info.totalBytes
        fileCount = info.fileCount
        metadata = info.metadata
        restoredInstance = info.restoredInstanceID
    }
}

private func isoTime(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: date)
}

/// Bytes in binary units, e.g. `1.5 MiB`.
func formatBytes(_ bytes: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
}
