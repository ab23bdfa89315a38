import ArgumentParser
import Foundation
import ShardDB

enum TextFormat: String, ExpressibleByArgument, CaseIterable {
    case tsv, jsonl
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load entries from stdin in atomic batches.",
        discussion: """
            tsv: one 'key<TAB>value' per line, escaped as 'scan' prints them. jsonl: one object per \
            line with "key" (or "keyHex"), "value" (or "valueHex") and optionally "ttl" in seconds or \
            "expiresAt" (ms since the epoch, as 'export' writes it), and optionally "writtenAt" (a stamped \
            value's write time, ms since the epoch, as 'export' writes it; kept as it is). \
            Each batch of --batch-size lines is written atomically. A malformed line stops the import \
            with its line number; nothing of its batch is written (earlier batches stay).
            """)

    @OptionGroup var instance: InstanceOptions
    @Option(help: "Input format.") var format: TextFormat = .tsv
    @Option(help: "Seconds to live for every imported entry (a jsonl 'ttl' field overrides it).") var ttl: Int64?
    @Option(name: .customLong("batch-size"), help: "Lines per atomic batch.") var batchSize = 1000
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let defaultTTL = try failing { () throws -> TTL in
            guard batchSize > 0 else { throw ShardDBError(.invalidArgument, "--batch-size must be positive") }
            return try parseTTL(ttl)
        }
        let progress = ProgressLine()
        let imported = try instance.withEngine { engine -> Int in
            var imported = 0
            var lineNumber = 0
            var batch = engine.makeWriteBatch()
            while let line = readLine(strippingNewline: true) {
                lineNumber += 1
                if line.isEmpty { continue }
                do {
                    let (key, value, entryTTL, writtenAt) = try parse(line, defaultTTL: defaultTTL)
                    try batch.put(key, value, ttl: entryTTL, writtenAtMilliseconds: writtenAt)
                } catch {
                    throw ShardDBError(.invalidArgument,
                        "line \(lineNumber): \(error) (imported \(imported) entries before; nothing of this batch)")
                }
                if batch.count >= batchSize {
                    try write(batch, to: engine, after: imported)
                    imported += batch.count
                    batch = engine.makeWriteBatch()
                    progress.update("imported \(imported) entries")
                }
            }
            if batch.count > 0 {
                try write(batch, to: engine, after: imported)
                imported += batch.count
            }
            progress.finish()
            return imported
        }
        if json { printJSON(["imported": imported]) } else { print("imported \(imported) entries") }
    }

    /// Writes one batch; a failure says how many entries the earlier batches stored.
    private func write(_ batch: ShardWriteBatch, to engine: ShardEngine, after imported: Int) throws {
        do { try engine.write(batch) } catch let error as ShardDBError {
            throw ShardDBError(error.code, "\(error.message) (imported \(imported) entries before this batch)",
                               owner: error.owner, storage: error.storage)
        }
    }

    private func parse(_ line: String, defaultTTL: TTL) throws -> ([UInt8], [UInt8], TTL, Int64?) {
        switch format {
        case .tsv:
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 2 else { throw TextFormatError("expected 2 tab-separated fields, found \(fields.count)") }
            return (try TSV.unescape(fields[0]), try TSV.unescape(fields[1]), defaultTTL, nil)
        case .jsonl:
            let record: JSONRecord
            do { record = try JSONDecoder().decode(JSONRecord.self, from: Data(line.utf8)) } catch {
                throw TextFormatError("not a JSON object with key and value")
            }
            var entryTTL = try record.ttl.map { try parseTTL($0) } ?? defaultTTL
            if record.ttl == nil, let expiresAt = record.expiresAt { entryTTL = .expiresAt(expiresAt) }
            return (try record.decodedKey(), try record.decodedValue(), entryTTL, record.writtenAt)
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write live entries to stdout in an 'import' format.",
        discussion: """
            jsonl records carry the absolute expiry ("expiresAt", ms since the epoch) of entries with a TTL, \
            and the write time ("writtenAt", ms since the epoch) of values stamped with one \
            (SHARDDB_STAMP_WRITE_TIME=1); 'import' restores both.
            """)

    @OptionGroup var instance: InstanceOptions
    @Option(help: "Only this shard.") var shard: Int?
    @Option(help: "Output format.") var format: TextFormat = .tsv

    func run() throws {
        try instance.withEngine { engine in
            let out = BufferedOutput()
            defer { out.flush() }
            try engine.scan(ScanRequest(shard: shard)) { entry in
                switch format {
                case .tsv: out.write(TSV.escape(entry.key) + "\t" + TSV.escape(entry.value) + "\n")
                case .jsonl:
                    out.writeJSON(JSONRecord(key: [UInt8](entry.key), value: [UInt8](entry.value),
                                             expiresAt: entry.expiresAtMilliseconds,
                                             writtenAt: entry.writtenAtMilliseconds, shard: nil))
                }
                return true
            }
        }
    }
}
