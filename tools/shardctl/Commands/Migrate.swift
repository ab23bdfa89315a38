import ArgumentParser
import Foundation
import ShardDB
import ShardDBServer

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move a shard, or a range at one end of it, from one instance to another.",
        discussion: """
            Both directories are opened here (neither may be open elsewhere). The migration copies a \
            snapshot, tails the source's changelog until caught up, then fences the range for a \
            moment, commits it on the target and records it as moved on the source (docs/MIGRATION.md). \
            Migrations a crash left unfinished between the two instances are settled first (printed as \
            'settled first: ...', 'settled' in --json). A move that fails and cannot be rolled back \
            (a peer down after the fence) says so; its range stays fenced until --resolve.

            --range takes key groups 'LO..HI' (half-open) under hash partitioning, and keys \
            'LO..HI' under range partitioning (an empty HI is unbounded). The range must sit at one \
            end of the shard's range. --merge-into grows an existing, adjacent target shard instead \
            of creating a new one. Make an empty target with 'shardctl init DIR --shards 0 --like SRC'.

            A range that overlaps a target shard is refused unless --on-conflict picks how keys held \
            on both sides are settled: source-wins, target-wins, or last-write-wins (by the write \
            time in the value header, stamped when SHARDDB_STAMP_WRITE_TIME=1 was set for the writes). \
            The range then merges into that shard.

            --from and --to also take HOST:PORT of a live instance ('shardctl serve'), with \
            --token-file, or over TLS with --tls-ca (and --tls-cert/--tls-key for a client certificate): \
            the same protocol then runs across processes (docs/TRANSPORT.md).
            """)

    @Option(help: "The source instance: a directory or HOST:PORT.") var from: String
    @Option(help: "The target instance: a directory or HOST:PORT.") var to: String
    @Option(parsing: .unconditional, help: "The source shard.") var shard: Int?
    @Flag(help: "Only settle migrations between the two (in either direction) that a crash left unfinished.") var resolve = false
    @Option(parsing: .unconditional, help: "Only this part of the shard: LO..HI.") var range: String?
    @Option(name: .customLong("merge-into"), parsing: .unconditional, help: "Merge into this existing target shard.") var mergeInto: Int?
    @Option(name: .customLong("on-conflict"),
            help: "When the range overlaps a target shard: refuse, source-wins, target-wins or last-write-wins (docs/MIGRATION.md).")
    var onConflict: MigrationConflictPolicy = .refuse
    @Flag(help: "Keep the moved data on the source (skip cleanup).") var noCleanup = false
    @Option(name: .customLong("bulk-chunk-bytes"), parsing: .unconditional, help: "Bytes per bulk-copy chunk of entries (raised to at least 4096), and per table-file piece (raised to at least 1 MiB); at most 16 MiB between HOST:PORT instances (larger is lowered to it).") var bulkChunkBytes = Self.defaultBulkChunkBytes
    static let defaultBulkChunkBytes = 4 << 20
    @Option(name: .customLong("bulk-transfer"),
            help: "How the bulk phase copies: auto (a whole shard as its table files when it can, else entries), entries, or table-files (fail if it cannot).")
    var bulkTransfer: BulkTransferArgument = .auto
    @Option(name: .customLong("bulk-route"),
            help: "Between two servers, how entries travel: direct (the target reads them from the source itself, relayed when it cannot) or relay (through this process).")
    var bulkRoute: BulkRoute = .direct
    @Flag(name: .customLong("copy-table-files"),
          help: "Copy a whole shard's table files into a target directory opened here instead of hard-linking them (what a target on another file system, or in another process, gets).")
    var copyTableFiles = false
    @Flag(help: "Print the report as JSON.") var json = false
    @Flag(help: "Log the migration's steps and the engine's events to stderr (swift-log, debug level).") var verbose = false
    @OptionGroup var remote: RemoteOptions
    @OptionGroup var wire: WireOptions

    func validate() throws {
        guard resolve || shard != nil else { throw ValidationError("--shard is required (or --resolve)") }
        if resolve {
            // --resolve settles what a crash left; options of a new migration would be ignored.
            let given = [("--shard", shard != nil), ("--range", range != nil), ("--merge-into", mergeInto != nil),
                         ("--no-cleanup", noCleanup), ("--on-conflict", onConflict != .refuse), ("--copy-table-files", copyTableFiles),
                         ("--bulk-chunk-bytes", bulkChunkBytes != Self.defaultBulkChunkBytes), ("--bulk-transfer", bulkTransfer != .auto),
                         ("--bulk-route", bulkRoute != .direct)]
                .filter(\.1).map(\.0)
            guard given.isEmpty else { throw ValidationError("--resolve takes no options of a new migration (\(given.joined(separator: ", ")))") }
        }
        if let mergeInto, mergeInto < 0 { throw ValidationError("--merge-into must be a shard id (0 or more), got \(mergeInto)") }
        guard bulkChunkBytes > 0 else { throw ValidationError("--bulk-chunk-bytes must be positive (it is raised to at least 4096), got \(bulkChunkBytes)") }
        if copyTableFiles && InstanceAddress(parsing: to) != nil {
            throw ValidationError("--copy-table-files applies to a target directory opened here; a live target (\(to)) always receives copies")
        }
        if copyTableFiles && (range != nil || mergeInto != nil || bulkTransfer == .entries) {
            throw ValidationError("--copy-table-files applies only when a whole shard moves as table files (not with --range, --merge-into or --bulk-transfer entries)")
        }
    }

    func run() async throws {
        let endpoints = try failing { () throws -> [String: InstanceEndpoint] in
            let same = InstanceAddress(parsing: from).map { $0 == InstanceAddress(parsing: to) }
                ?? (URL(fileURLWithPath: from).standardized.path == URL(fileURLWithPath: to).standardized.path)
            guard !same else { throw ShardDBError(.migrationConflict, "--from and --to are the same instance") }
            return try openEndpoints([from, to], remote: remote, verbose: verbose, linkTableFiles: !copyTableFiles,
                                     wireCompression: wire.compression)
        }
        let source = endpoints[from]!, target = endpoints[to]!
        let progress = ProgressLine()
        do {
            if resolve {
                let settled = try await MigrationCoordinator.resolveUnfinished(between: source.endpoint, and: target.endpoint)
                if json {
                    printJSON(["settled": settled], pretty: true)
                } else {
                    print(settled.isEmpty ? "nothing to resolve" : settled.joined(separator: "\n"))
                }
                await source.close()
                await target.close()
                return
            }
            var request = MigrationRequest(shard: shard!, mergeInto: mergeInto)
            if let range { request.range = try parseRange(range, partitioning: try await source.endpoint.describeInstance().partitioning) }
            request.cleanup = !noCleanup
            request.onConflict = onConflict
            request.bulkChunkBytes = max(4096, bulkChunkBytes)
            request.bulkTransfer = bulkTransfer.transfer
            request.bulkRoute = bulkRoute
            var coordinator = MigrationCoordinator(source: source.endpoint, target: target.endpoint)
            // Silent unless --verbose: errors reach the user as one line, not as log output.
            coordinator.logger = shardctlEngineOptions(verbose: verbose).logger
            let report = try await coordinator.migrate(request) { p in
                progress.update("\(p.phase.rawValue): \(p.keysCopied) keys, \(formatBytes(p.bytesCopied)) copied, "
                    + "\(p.changesApplied) changes, lag \(p.lag), \(formatBytes(Int(p.bytesPerSecond)))/s")
            }
            progress.finish()
            if json {
                printJSON(report, pretty: true)
            } else {
                for line in report.settled { print("settled first: \(line)") }
                print("migrated \(report.range) of shard \(report.sourceShard) to shard \(report.targetShard) of \(to)")
                print(String(format: "copied %d keys (%@) as %@ in %.2f s, applied %d changes in %.2f s catch-up; write pause %.2f ms",
                             report.keysCopied, formatBytes(report.bytesCopied),
                             (report.bulkTransfer == .tableFiles ? "table files" : "entries")
                                 + (report.bulkRoute.map { " (\($0.rawValue))" } ?? "")
                                 + (report.bulkWireBytes.map { ", \(formatBytes($0)) on the wire" } ?? ""),
                             report.bulkSeconds, report.changesApplied,
                             report.catchUpSeconds, report.pauseMilliseconds))
            }
            await source.close()
            await target.close()
        } catch {
            progress.finish()
            await source.close()
            await target.close()
            fail("\(error)")
        }
    }
}

/// Parses `LO..HI`: key groups under hash partitioning, keys under range partitioning.
func parseRange(_ text: String, partitioning: Partitioning) throws -> ShardRange {
    guard let separator = text.range(of: "..") else {
        throw ShardDBError(.invalidArgument, "range '\(text)' is not LO..HI")
    }
    let lo = String(text[..<separator.lowerBound]), hi = String(text[separator.upperBound...])
    switch partitioning {
    case .hash(let k):
        guard let l = Int(lo), let h = Int(hi), l >= 0, l < h, h <= k else {
            throw ShardDBError(.invalidArgument, "range '\(text)' must be key groups LO..HI with 0 <= LO < HI <= \(k)")
        }
        return .keyGroups(KeyGroupRange(l, h))
    case .range:
        let lower = Array(lo.utf8), upper = hi.isEmpty ? nil : Array(hi.utf8)
        if let upper, !lower.lexicographicallyPrecedes(upper) {
            throw ShardDBError(.invalidArgument, "range '\(text)': LO must sort before HI")
        }
        return .keys(lower: lower, upper: upper)
    }
}

func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes), unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

extension MigrationConflictPolicy: ExpressibleByArgument {}
extension BulkRoute: ExpressibleByArgument {}

/// `--bulk-transfer` values.
enum BulkTransferArgument: String, ExpressibleByArgument, CaseIterable {
    case auto, entries, tableFiles = "table-files"

    var transfer: BulkTransfer {
        switch self {
        case .auto: .auto
        case .entries: .entries
        case .tableFiles: .tableFiles
        }
    }
}
