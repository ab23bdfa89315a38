import ArgumentParser
import Foundation
import ShardDB

struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List live entries, as TSV lines (key<TAB>value) or JSON lines.",
        discussion: """
            Order: by key across shards under range partitioning; shard by shard (by key group, \
            then key) under hash partitioning. TSV escapes tab, newline, carriage return and \
            backslash as \\t \\n \\r \\\\, and other control or non-UTF-8 bytes as \\xHH.
            """)

    @OptionGroup var instance: InstanceOptions
    @Option(parsing: .unconditional, help: "Only this shard.") var shard: Int?
    @Option(parsing: .unconditional, help: "Only keys starting with this prefix.") var prefix: String?
    @Option(parsing: .unconditional, help: "Only keys at or after this key.") var start: String?
    @Option(parsing: .unconditional, help: "Only keys before this key.") var end: String?
    @Option(parsing: .unconditional, help: "At most this many entries.") var limit: Int?
    @Flag(help: "Print one JSON object per entry.") var json = false

    func run() throws {
        try failing {
            if let limit, limit < 0 { throw ShardDBError(.invalidArgument, "--limit must not be negative") }
            // No key sorts before the empty one: such a scan would list nothing, as if the instance were empty.
            if end == "" { throw ShardDBError(.invalidArgument, "--end must not be empty (no key comes before it)") }
            if let start, let end, !Array(start.utf8).lexicographicallyPrecedes(Array(end.utf8)) {
                throw ShardDBError(.invalidArgument, "--start '\(start)' must come before --end '\(end)' (the range is [start, end))")
            }
        }
        let request = ScanRequest(shard: shard, prefix: prefix.map { Array($0.utf8) }, start: start.map { Array($0.utf8) },
                                  end: end.map { Array($0.utf8) }, limit: limit)
        try instance.withEngine { engine in
            let out = BufferedOutput()
            defer { out.flush() }
            try engine.scan(request) { entry in
                if json {
                    out.writeJSON(JSONRecord(key: [UInt8](entry.key), value: [UInt8](entry.value),
                                             expiresAt: entry.expiresAtMilliseconds, shard: entry.shard))
                } else {
                    out.write(TSV.escape(entry.key) + "\t" + TSV.escape(entry.value) + "\n")
                }
                return true
            }
        }
    }
}

/// Buffers stdout writes into large chunks.
final class BufferedOutput {
    private var buffer = Data()
    private let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    func writeJSON<T: Encodable>(_ value: T) {
        if let data = try? encoder.encode(value) { buffer.append(data) }
        buffer.append(0x0A)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        writeStandardOutput(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}
