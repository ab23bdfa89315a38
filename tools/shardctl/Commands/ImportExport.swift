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
    @Option(parsing: .unconditional, help: "Seconds to live for every imported entry (a jsonl 'ttl' or 'expiresAt' field overrides it).") var ttl: Int64?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Lines per atomic batch.") var batchSize = 1000
    @Flag(name: .customLong("no-wal"), help: ArgumentHelp(
        "Write without the write-ahead log: faster, for a load that can be run again.",
        discussion: "A crash loses the batches written since the last flush and keeps the ones before it, each whole "
            + "(the shards flush together). The import flushes before it reports success."))
    var noWAL = false
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let defaultTTL = try failing { () throws -> TTL in
            guard batchSize > 0 else { throw ShardDBError(.invalidArgument, "--batch-size must be positive") }
            return try parseTTL(ttl)
        }
        let progress = ProgressLine()
        let imported = try instance.withEngine(adjust: { $0.disableWAL = noWAL }) { engine -> Int in
            var imported = 0
            var lineNumber = 0
            var batch = engine.makeWriteBatch()
            let input = InputLines()
            while true {
                let next: String?
                do { next = try input.next() } catch {
                    throw ShardDBError(.invalidArgument,
                        "line \(lineNumber + 1): \(error) (imported \(imported) entries before; nothing of this batch)")
                }
                guard let line = next else { break }
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
            // Without the log the batches are durable once flushed (closing would flush
            // them too, but could not report a failure).
            if noWAL { try engine.flush() }
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

    /// What is wrong with a jsonl line, naming the field when the decoder does.
    static func describe(_ error: DecodingError, line: String) -> String {
        func field(_ path: [any CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
        if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
           (try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any] {
            // JSON, but a field of the wrong kind: the decoder names no field for a number
            // that is not a whole Int64 (1.5, 1e30).
            return "a field has the wrong type: \"key\", \"value\", \"keyHex\", \"valueHex\" are strings; "
                + "\"ttl\" (seconds), \"expiresAt\", \"writtenAt\" (ms since the epoch) whole numbers"
        }
        switch error {
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            let expected = type == Int64.self ? "a whole number" : type == String.self ? "a string" : "\(type)"
            return context.codingPath.isEmpty ? "not a JSON object with key and value"
                : "\"\(field(context.codingPath))\" must be \(expected)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not a JSON object with key and value (\(context.debugDescription))"
                : "\"\(field(context.codingPath))\": \(context.debugDescription)"
        case .keyNotFound(let key, _):
            return "missing \"\(key.stringValue)\""
        @unknown default:
            return "not a JSON object with key and value"
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
            do { record = try JSONDecoder().decode(JSONRecord.self, from: Data(line.utf8)) } catch let error as DecodingError {
                throw TextFormatError(Self.describe(error, line: line))
            }
            if let name = JSONObjectFields.repeated(in: line) { throw TextFormatError("the field \"\(name)\" appears twice") }
            var entryTTL = try record.ttl.map { try parseTTL($0, name: "\"ttl\"") } ?? defaultTTL
            // As --ttl: no instant past 10,000 years from now (a write time past it would win
            // every last-write-wins merge for ever).
            let latest = Int64(Date().timeIntervalSince1970 * 1000) + TTL.maxSeconds * 1000
            if record.ttl == nil, let expiresAt = record.expiresAt {
                guard expiresAt >= 0 else { throw TextFormatError("\"expiresAt\" must be milliseconds since the epoch (not negative), got \(expiresAt)") }
                guard expiresAt <= latest else { throw TextFormatError("\"expiresAt\" \(expiresAt) is more than 10,000 years from now") }
                entryTTL = .expiresAt(expiresAt)
            }
            if let writtenAt = record.writtenAt, writtenAt > latest {
                throw TextFormatError("\"writtenAt\" \(writtenAt) is more than 10,000 years from now")
            }
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
    @Option(parsing: .unconditional, help: "Only this shard.") var shard: Int?
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

/// Standard input, line by line, as `readLine` but strict: a line that is not
/// UTF-8 is an error (readLine would replace its bytes with U+FFFD, and
/// different keys would collide), and so is a failed read (readLine ends as at
/// the end of input).
final class InputLines {
    private var buffer: UnsafeMutablePointer<CChar>?
    private var capacity = 0

    deinit { free(buffer) }

    /// The next line without its newline; nil at the end of input.
    func next() throws -> String? {
        let count = getline(&buffer, &capacity, stdin)
        guard count >= 0, let buffer else {
            if ferror(stdin) != 0 { throw ShardDBError(.invalidArgument, "cannot read standard input: \(String(cString: strerror(errno)))") }
            return nil
        }
        var length = count
        if length > 0 && buffer[length - 1] == 0x0A { length -= 1 }
        if length > 0 && buffer[length - 1] == 0x0D { length -= 1 }  // as readLine: CRLF too
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self), count: length)
        guard let line = String(validating: bytes, as: UTF8.self) else {
            throw ShardDBError(.invalidArgument, "not valid UTF-8 (write binary bytes escaped, as scan prints them, or as jsonl keyHex/valueHex)")
        }
        return line
    }
}
