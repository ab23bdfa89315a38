import ArgumentParser
import ShardDB

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an instance's shards: owned ranges, state, sizes, key estimates and TTL metrics.",
        discussion: """
            'expired-dropped' counts entries the expiry compaction filter removed; 'expired-pending' \
            estimates entries that are expired (never returned by reads) but not yet reclaimed from \
            disk (sampled; exact for small shards). 'shardctl compact' reclaims them now.
            """)

    @OptionGroup var instance: InstanceOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try instance.withEngine { engine in
            let shards = try engine.shards()
            let report = InfoReport(
                directory: engine.path, instance: engine.instanceID, partitioning: "\(engine.partitioning)",
                shards: try shards.map { info in
                    ShardReport(
                        id: info.id, range: "\(info.descriptor.range)", state: "\(info.descriptor.state)",
                        defaultTTLSeconds: info.descriptor.defaultTTLSeconds,
                        approximateBytes: info.approximateBytes, estimatedKeys: info.estimatedKeys,
                        expiredDropped: info.expiredDropped,
                        expiredPending: info.descriptor.state == .active ? try engine.estimateExpired(shard: info.id, sampleLimit: 10_000) : 0)
                })
            if json {
                printJSON(report, pretty: true)
                return
            }
            print("instance \(report.instance) at \(report.directory)")
            print("partitioning \(report.partitioning), \(report.shards.count) shards")
            let header = ["shard", "range", "state", "default-ttl", "bytes", "keys~", "expired-dropped", "expired-pending"]
            let rows = report.shards.map { s in
                [String(s.id), s.range, s.state, s.defaultTTLSeconds.map { "\($0)s" } ?? "-", String(s.approximateBytes),
                 String(s.estimatedKeys), String(s.expiredDropped), String(s.expiredPending)]
            }
            printTable(header: header, rows: rows)
        }
    }

    struct InfoReport: Encodable {
        var directory: String
        var instance: String
        var partitioning: String
        var shards: [ShardReport]
    }

    struct ShardReport: Encodable {
        var id: Int
        var range: String
        var state: String
        var defaultTTLSeconds: Int64?
        var approximateBytes: UInt64
        var estimatedKeys: UInt64
        var expiredDropped: Int
        var expiredPending: Int
    }
}

/// Prints left-aligned columns.
func printTable(header: [String], rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }
    print(line(header))
    rows.forEach { print(line($0)) }
}
