import Foundation
import XCTest

/// A test of `shardctl` run as a child process on real directories under a
/// fresh temporary root.
class ShardctlTestCase: XCTestCase {
    private(set) var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("\(type(of: self))-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let root { try? FileManager.default.removeItem(at: root) }
    }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// Runs `shardctl` and asserts exit status 0.
    @discardableResult
    func shardctl(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
                  file: StaticString = #filePath, line: UInt = #line) throws -> ShardctlProcess.Result {
        let result = try ShardctlProcess.run(arguments, stdin: stdin.map { Data($0.utf8) }, environment: environment)
        XCTAssertEqual(result.status, 0, "shardctl \(arguments.joined(separator: " ")): \(result.stderr)", file: file, line: line)
        XCTAssertNil(result.signal, file: file, line: line)
        return result
    }

    /// Asserts a ShardDB error: exit status 2 and exactly one stderr line,
    /// `shardctl: error: ...`, mentioning `text`.
    func assertError(_ result: ShardctlProcess.Result, mentioning text: String? = nil, _ message: String = "",
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, 2, "\(message) stderr: \(result.stderr)", file: file, line: line)
        XCTAssertEqual(result.stderrLines.count, 1, "\(message) exactly one stderr line: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("shardctl: error: "), "\(message) stderr: \(result.stderr)", file: file, line: line)
        if let text {
            XCTAssertTrue(result.stderr.contains(text), "\(message) stderr should mention '\(text)': \(result.stderr)", file: file, line: line)
        }
    }

    /// `shardctl info DIR --json`, parsed.
    func info(_ directory: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let result = try shardctl(["info", directory, "--json"], file: file, line: line)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any], file: file, line: line)
    }

    /// The `shards` array of `info --json`.
    func shards(_ directory: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        try XCTUnwrap(try info(directory, file: file, line: line)["shards"] as? [[String: Any]], file: file, line: line)
    }

    /// Parses JSON lines (`scan --json`, `export --format jsonl`).
    func jsonLines(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        try text.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], "\($0)", file: file, line: line)
        }
    }

    /// Every live entry of an instance, by `export --format jsonl`: key bytes to value bytes.
    func exported(_ directory: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[UInt8]: [UInt8]] {
        let records = try jsonLines(try shardctl(["export", directory, "--format", "jsonl"], file: file, line: line).stdout,
                                    file: file, line: line)
        var entries: [[UInt8]: [UInt8]] = [:]
        for record in records {
            let key = try Self.bytes(record, "key"), value = try Self.bytes(record, "value")
            XCTAssertNil(entries[key], "key exported twice", file: file, line: line)
            entries[key] = value
        }
        return entries
    }

    /// The bytes of a JSON record's text field `name`, or of its hex field `nameHex`.
    static func bytes(_ record: [String: Any], _ name: String) throws -> [UInt8] {
        if let text = record[name] as? String { return Array(text.utf8) }
        let hex = try XCTUnwrap(record[name + "Hex"] as? String, "\(record) has neither \(name) nor \(name)Hex")
        return stride(from: 0, to: hex.count, by: 2).map { i in
            let start = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)!
        }
    }

    /// Milliseconds since the Unix epoch.
    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
