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
            the store does not hold yet. See docs/CHECKPOINTS.md.
            """,
        subcommands: [Create.self, List.self, Verify.self, Restore.self, Purge.self])

    struct StoreOption: ParsableArguments {
        @Option(help: "The checkpoint store directory.")
        var store: String
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Checkpoint an instance into a store (created if missing) while it may be written.")

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
                    pairs[String(parts[0])] = String(parts[1])
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
        static let configuration = CommandConfiguration(abstract: "List the checkpoints of a store, oldest first.")

        @OptionGroup var storeOption: StoreOption
        @Flag(help: "Print the result as JSON.") var json = false

        func run() throws {
            let infos = try failing { () throws -> [CheckpointInfo] in
                let store = try CheckpointStore.open(at: storeOption.store)
                defer { store.close() }
                return try store.checkpoints()
            }
            if json {
                printJSON(infos.map(CheckpointReport.init))
                return
            }
            let header = ["id", "created", "instance", "sequence", "shards", "copied", "total", "files", "metadata"]
            let rows = infos.map { info in
                [String(info.id), isoTime(info.createdAt), info.instanceID, String(info.sequenceNumber), String(info.shards.count),
                 info.bytesCopied.map(formatBytes) ?? "?", formatBytes(info.totalBytes), String(info.fileCount),
                 info.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
            }
            printTable(header: header, rows: rows)
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every file of a checkpoint (or of all) against its size and checksum.",
            discussion: "Exit status 2 names the first missing, truncated or corrupted file.")

        @OptionGroup var storeOption: StoreOption
        @Option(help: "Only this checkpoint.") var id: Int?

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
                and opens as a normal instance. To restore one shard into a running instance, restore \
                into a temporary directory, then move the shard with the migration commands.
                """)

        @OptionGroup var storeOption: StoreOption
        @Option(help: "The checkpoint to restore (default: the latest).") var id: Int?
        @Argument(help: "The new instance directory.") var directory: String
        @Flag(help: "Print the result as JSON.") var json = false

        func run() throws {
            let progress = ProgressLine()
            let info = try failing { () throws -> CheckpointInfo in
                let store = try CheckpointStore.open(at: storeOption.store)
                defer { store.close() }
                return try store.restore(id: id, to: directory) { p in
                    progress.update("restored \(formatBytes(p.bytesDone)) of \(formatBytes(p.bytesTotal)) at \(formatBytes(UInt64(p.bytesPerSecond)))/s")
                }
            }
            progress.finish()
            if json {
                printJSON(CheckpointReport(info))
            } else {
                print("restored checkpoint \(info.id) (\(info.shards.count) shards, sequence \(info.sequenceNumber)) to \(directory)")
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete all but the newest N checkpoints, and the files only they used.")

        @OptionGroup var storeOption: StoreOption
        @Option(help: "How many of the newest checkpoints to keep.") var keep: Int
        @Flag(help: "Print the result as JSON.") var json = false

        func run() throws {
            let deleted = try failing { () throws -> [Int] in
                let store = try CheckpointStore.open(at: storeOption.store, exclusive: true)
                defer { store.close() }
                return try store.purge(keep: keep)
            }
            if json {
                printJSON(["deleted": deleted])
            } else {
                print(deleted.isEmpty ? "nothing to delete" : "deleted checkpoints \(deleted.map(String.init).joined(separator: ", "))")
            }
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
