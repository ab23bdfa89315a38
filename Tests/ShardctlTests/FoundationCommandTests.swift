import Foundation
import ShardDB
import XCTest

/// The foundation commands (init, info, put/get/delete, scan, import/export,
/// compact, demo) run as child processes on real directories.
final class FoundationCommandTests: ShardctlTestCase {
    func testInitVariants() throws {
        let plain = path("default")
        let created = try shardctl(["init", plain])
        XCTAssertTrue(created.stdout.hasPrefix("created \(plain): instance "), created.stdout)
        XCTAssertTrue(created.stdout.contains("4 shards, hash(4096 key groups)"), created.stdout)
        let defaults = try info(plain)
        XCTAssertEqual(defaults["partitioning"] as? String, "hash(4096 key groups)")
        XCTAssertEqual((defaults["shards"] as? [[String: Any]])?.compactMap { $0["range"] as? String },
                       ["kg[0,1024)", "kg[1024,2048)", "kg[2048,3072)", "kg[3072,4096)"])

        let hashed = try shardctl(["init", path("hashed"), "--shards", "3", "--key-groups", "16", "--json"])
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: hashed.stdoutData) as? [String: Any])
        XCTAssertEqual(result["shards"] as? Int, 3)
        XCTAssertEqual(result["partitioning"] as? String, "hash(16 key groups)")
        XCTAssertEqual(result["directory"] as? String, path("hashed"))
        XCTAssertEqual((result["instance"] as? String)?.isEmpty, false)
        let ranges = try shards(path("hashed")).compactMap { $0["range"] as? String }
        XCTAssertEqual(ranges.count, 3)
        XCTAssertTrue(ranges.first!.hasPrefix("kg[0,") && ranges.last!.hasSuffix(",16)"), "\(ranges)")

        try shardctl(["init", path("ranged"), "--split-points", "g,n", "--default-ttl", "60"])
        let ranged = try info(path("ranged"))
        XCTAssertEqual(ranged["partitioning"] as? String, "range(2 split points)")
        let rangedShards = try XCTUnwrap(ranged["shards"] as? [[String: Any]])
        XCTAssertEqual(rangedShards.compactMap { $0["range"] as? String }, ["keys[,g)", "keys[g,n)", "keys[n,∞)"])
        XCTAssertEqual(rangedShards.compactMap { $0["defaultTTLSeconds"] as? Int }, [60, 60, 60])

        // An empty instance, and one partitioned like another.
        try shardctl(["init", path("empty"), "--shards", "0"])
        XCTAssertEqual(try shards(path("empty")).count, 0)
        XCTAssertEqual(try info(path("empty"))["partitioning"] as? String, "hash(4096 key groups)")
        let like = try shardctl(["init", path("like"), "--shards", "0", "--like", path("ranged"), "--json"])
        XCTAssertTrue(like.stdout.contains("\"partitioning\":\"range(2 split points)\""), like.stdout)
        XCTAssertTrue(like.stdout.contains("\"shards\":0"), like.stdout)
        XCTAssertEqual(try shards(path("like")).count, 0)
        try shardctl(["init", path("like-hashed"), "--like", path("hashed")])
        XCTAssertEqual(try info(path("like-hashed"))["partitioning"] as? String, "hash(16 key groups)")
    }

    func testInfoShowsTTLsAndExpiryMetrics() throws {
        let dir = path("instance")
        try shardctl(["init", dir, "--shards", "2", "--default-ttl", "3600"])
        // An entry whose absolute expiry has passed: stored, never read, pending reclaim.
        try shardctl(["import", dir, "--format", "jsonl"],
                     stdin: #"{"key":"gone","value":"x","expiresAt":1000}"# + "\n" + #"{"key":"kept","value":"y"}"# + "\n")
        let table = try shardctl(["info", dir]).stdout
        XCTAssertTrue(table.contains("partitioning hash(4096 key groups), 2 shards"), table)
        let header = try XCTUnwrap(table.split(separator: "\n").first { $0.hasPrefix("shard ") })
        for column in ["range", "state", "default-ttl", "bytes", "keys~", "expired-dropped", "expired-pending"] {
            XCTAssertTrue(header.contains(column), "\(column) missing from \(header)")
        }
        XCTAssertTrue(table.contains("3600s"), table)

        var shardInfos = try shards(dir)
        XCTAssertEqual(shardInfos.compactMap { $0["defaultTTLSeconds"] as? Int }, [3600, 3600])
        XCTAssertEqual(shardInfos.compactMap { $0["expiredPending"] as? Int }.reduce(0, +), 1)
        XCTAssertEqual(shardInfos.compactMap { $0["expiredDropped"] as? Int }.reduce(0, +), 0)
        for shard in shardInfos {
            XCTAssertEqual(shard["state"] as? String, "active")
            XCTAssertNotNil(shard["approximateBytes"] as? Int)
            XCTAssertNotNil(shard["estimatedKeys"] as? Int)
        }
        XCTAssertEqual(try ShardctlProcess.run(["get", dir, "gone"]).status, 1, "an expired entry is never read")

        let compacted = try shardctl(["compact", dir, "--json"])
        XCTAssertEqual(compacted.stdout.trimmingCharacters(in: .whitespacesAndNewlines), #"{"expiredDropped":1}"#)
        shardInfos = try shards(dir)
        XCTAssertEqual(shardInfos.compactMap { $0["expiredPending"] as? Int }.reduce(0, +), 0)
        XCTAssertEqual(shardInfos.compactMap { $0["expiredDropped"] as? Int }.reduce(0, +), 1)
        XCTAssertEqual(try shardctl(["compact", dir, "--shard", "1"]).stdout, "dropped 0 expired entries\n")
        // The entry written without --ttl took the shard's default TTL.
        let kept = try jsonLines(try shardctl(["scan", dir, "--json"]).stdout)
        XCTAssertEqual(kept.count, 1)
        let expiresAt = try XCTUnwrap(kept[0]["expiresAt"] as? Int64)
        XCTAssertEqual(Double(expiresAt - Self.nowMilliseconds) / 1000, 3600, accuracy: 120)
    }

    func testDeleteRange() throws {
        // Range partitioning: [f, r) spans the three shards [.., g), [g, n), [n, ..).
        let ranged = path("ranged")
        try shardctl(["init", ranged, "--split-points", "g,n"])
        try shardctl(["import", ranged], stdin: "abcdefghijklmnopqrstuvwxyz".map { "\($0)\t1\n" }.joined())
        try shardctl(["delete-range", ranged, "f", "r"])
        let left = try shardctl(["scan", ranged]).stdout.split(separator: "\n").map { String($0.prefix(1)) }
        XCTAssertEqual(left.joined(), "abcderstuvwxyz")

        // Hash partitioning: inside the key group of a key.
        let hashed = path("hashed")
        try shardctl(["init", hashed, "--key-groups", "4"])
        try shardctl(["import", hashed], stdin: (0..<40).map { "k\(String(format: "%02d", $0))\tv\n" }.joined())
        let before = try shardctl(["scan", hashed]).stdoutLines.count
        try shardctl(["delete-range", hashed, "k00", "k99", "--key-group-of", "k07"])
        XCTAssertEqual(try ShardctlProcess.run(["get", hashed, "k07"]).status, 1)
        let after = try shardctl(["scan", hashed]).stdoutLines.count
        XCTAssertLessThan(after, before)
        XCTAssertGreaterThan(after, 0, "only one of the 4 key groups is emptied")
    }

    func testPutGetDelete() throws {
        let dir = path("instance")
        try shardctl(["init", dir])
        try shardctl(["put", dir, "user:1", "Ada Lovelace"])
        XCTAssertEqual(try shardctl(["get", dir, "user:1"]).stdout, "Ada Lovelace\n")
        let json = try shardctl(["get", dir, "user:1", "--json"])
        XCTAssertEqual(json.stdout, #"{"key":"user:1","value":"Ada Lovelace"}"# + "\n")

        let missing = try ShardctlProcess.run(["get", dir, "user:2"])
        XCTAssertEqual(missing.status, 1, "get exits 1 when the key is missing")
        XCTAssertEqual(missing.stdout, "")
        XCTAssertEqual(missing.stderr, "")

        try shardctl(["put", dir, "session", "token", "--ttl", "100"])
        XCTAssertEqual(try shardctl(["get", dir, "session"]).stdout, "token\n")
        let scanned = try jsonLines(try shardctl(["scan", dir, "--json"]).stdout)
        let session = try XCTUnwrap(scanned.first { $0["key"] as? String == "session" })
        let expiresAt = try XCTUnwrap(session["expiresAt"] as? Int64)
        XCTAssertEqual(Double(expiresAt - Self.nowMilliseconds) / 1000, 100, accuracy: 60)
        XCTAssertNil(scanned.first { $0["key"] as? String == "user:1" }?["expiresAt"], "no TTL unless asked")

        try shardctl(["put", dir, "user:1", "Grace Hopper"])
        XCTAssertEqual(try shardctl(["get", dir, "user:1"]).stdout, "Grace Hopper\n")
        try shardctl(["delete", dir, "user:1"])
        XCTAssertEqual(try ShardctlProcess.run(["get", dir, "user:1"]).status, 1)
        try shardctl(["delete", dir, "never-there"])
        XCTAssertEqual(try exported(dir), [Array("session".utf8): Array("token".utf8)])
    }

    /// A reader that went away (`shardctl get ... | head -c 5`) ends shardctl
    /// quietly with status 141, as SIGPIPE ends a C tool: no trap, no backtrace.
    func testClosedStandardOutputEndsQuietly() throws {
        let dir = path("instance")
        try shardctl(["init", dir])
        try shardctl(["put", dir, "k", String(repeating: "v", count: 1000)])
        for arguments in [["get", dir, "k"], ["get", dir, "k", "--json"], ["scan", dir]] {
            let process = Process()
            process.executableURL = try ShardctlProcess.executable
            process.arguments = arguments
            let output = Pipe(), errors = Pipe()
            try output.fileHandleForReading.close()  // no reader: the first write fails (EPIPE)
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationReason, .exit, "\(arguments): \(stderr)")
            XCTAssertEqual(process.terminationStatus, 141, "\(arguments): \(stderr)")
            XCTAssertFalse(stderr.contains("Fatal error"), stderr)
        }
        XCTAssertEqual(try shardctl(["get", dir, "k"]).stdout.count, 1001, "nothing stored changed")
    }

    func testScanFilters() throws {
        let dir = path("ranged")
        try shardctl(["init", dir, "--split-points", "g,n"])
        let keys = ["a", "b", "g", "h", "ha", "hx", "n", "z"]
        try shardctl(["import", dir], stdin: keys.map { "\($0)\tv-\($0)\n" }.joined())
        func scanned(_ options: [String]) throws -> [String] {
            try shardctl(["scan", dir] + options).stdout.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
        }
        XCTAssertEqual(try scanned([]), keys, "range partitioning scans in key order across shards")
        XCTAssertEqual(try scanned(["--shard", "1"]), ["g", "h", "ha", "hx"])
        XCTAssertEqual(try scanned(["--prefix", "h"]), ["h", "ha", "hx"])
        XCTAssertEqual(try scanned(["--start", "b", "--end", "ha"]), ["b", "g", "h"])
        XCTAssertEqual(try scanned(["--start", "hb"]), ["hx", "n", "z"])
        XCTAssertEqual(try scanned(["--limit", "3"]), ["a", "b", "g"])
        XCTAssertEqual(try scanned(["--prefix", "h", "--limit", "2"]), ["h", "ha"])
        XCTAssertEqual(try scanned(["--shard", "2", "--limit", "0"]), [])
        XCTAssertEqual(try shardctl(["scan", dir, "--prefix", "b"]).stdout, "b\tv-b\n")

        let lines = try jsonLines(try shardctl(["scan", dir, "--json", "--end", "h"]).stdout)
        XCTAssertEqual(lines.compactMap { $0["key"] as? String }, ["a", "b", "g"])
        XCTAssertEqual(lines.compactMap { $0["value"] as? String }, ["v-a", "v-b", "v-g"])
        XCTAssertEqual(lines.compactMap { $0["shard"] as? Int }, [0, 0, 1])

        // Hash partitioning: --shard yields exactly that shard's keys, and the shards partition the keys.
        let hashed = path("hashed")
        try shardctl(["init", hashed, "--shards", "3"])
        let many = (0..<60).map { "key-\($0)" }
        try shardctl(["import", hashed], stdin: many.map { "\($0)\tx\n" }.joined())
        var seen: [String] = []
        for shard in 0..<3 {
            let entries = try jsonLines(try shardctl(["scan", hashed, "--shard", "\(shard)", "--json"]).stdout)
            XCTAssertFalse(entries.isEmpty)
            XCTAssertTrue(entries.allSatisfy { $0["shard"] as? Int == shard })
            seen += entries.compactMap { $0["key"] as? String }
        }
        XCTAssertEqual(seen.sorted(), many.sorted())
    }

    /// Keys and values with tabs, newlines, backslashes and bytes that are not UTF-8
    /// survive tsv and jsonl round trips; jsonl keeps absolute expiries.
    func testImportExportRoundTrips() throws {
        let tricky: [([UInt8], [UInt8])] = [
            (Array("tab\tkey".utf8), Array("new\nline".utf8)),
            (Array("back\\slash\\n".utf8), Array("cr\r\n and \\t".utf8)),
            ([0xFF, 0x00, 0x80, 0x09], [0xC3, 0x28, 0x0A]),  // not UTF-8
            (Array("üñïcødé ✓".utf8), [0x01, 0x7F, 0x1B]),
            (Array("plain".utf8), []),
            (Array("quote\"and{json}".utf8), Array("\u{2028}".utf8)),
        ]
        let input = tricky.map { key, value in
            #"{"keyHex":"\#(Self.hex(key))","valueHex":"\#(Self.hex(value))"}"#
        }.joined(separator: "\n") + "\n"
        let source = path("source")
        try shardctl(["init", source, "--shards", "3"])
        let imported = try shardctl(["import", source, "--format", "jsonl", "--json"], stdin: input)
        XCTAssertEqual(imported.stdout, #"{"imported":6}"# + "\n")
        let expected = Dictionary(uniqueKeysWithValues: tricky)
        XCTAssertEqual(try exported(source), expected)

        // Text fields where the bytes are UTF-8, hex fields otherwise.
        let records = try jsonLines(try shardctl(["export", source, "--format", "jsonl"]).stdout)
        XCTAssertTrue(records.contains { $0["key"] as? String == "tab\tkey" && $0["value"] as? String == "new\nline" })
        XCTAssertTrue(records.contains { $0["keyHex"] as? String == "ff008009" && $0["valueHex"] as? String == "c3280a" })

        // tsv: one line per entry, escaped; importing it back gives the same bytes.
        let tsv = try shardctl(["export", source]).stdout
        XCTAssertEqual(tsv.split(separator: "\n").count, tricky.count)
        XCTAssertTrue(tsv.contains("tab\\tkey\tnew\\nline\n"), tsv)
        XCTAssertTrue(tsv.contains("back\\\\slash\\\\n\tcr\\r\\n and \\\\t\n"), tsv)
        XCTAssertTrue(tsv.contains("\\xff\\x00\\x80\\t\t\\xc3(\\n\n"), tsv)
        let fromTSV = path("from-tsv")
        try shardctl(["init", fromTSV, "--shards", "2"])
        XCTAssertEqual(try shardctl(["import", fromTSV], stdin: tsv).stdout, "imported 6 entries\n")
        XCTAssertEqual(try exported(fromTSV), expected)
        XCTAssertEqual(try shardctl(["export", fromTSV]).stdout.split(separator: "\n").sorted(), tsv.split(separator: "\n").sorted())

        // Without the log: the same entries, there once the import returned (it flushes).
        let unlogged = path("no-wal")
        try shardctl(["init", unlogged, "--shards", "2"])
        XCTAssertEqual(try shardctl(["import", unlogged, "--no-wal"], stdin: tsv).stdout, "imported 6 entries\n")
        XCTAssertEqual(try exported(unlogged), expected)

        // jsonl: export | import into another instance gives the same records.
        let jsonl = try shardctl(["export", source, "--format", "jsonl"]).stdout
        let fromJSONL = path("from-jsonl")
        try shardctl(["init", fromJSONL, "--shards", "5"])
        try shardctl(["import", fromJSONL, "--format", "jsonl"], stdin: jsonl)
        XCTAssertEqual(try exported(fromJSONL), expected)

        // A name repeated inside a nested object, or inside a string, is not a repeated field
        // (a repeated top-level field is refused: BadInputCommandTests).
        let nested = path("nested")
        try shardctl(["init", nested, "--shards", "1"])
        try shardctl(["import", nested, "--format", "jsonl"],
                     stdin: #"{"key":"k","note":{"key":"inner","value":[{"key":1}]},"value":"v \",\"key\":\"x"}"# + "\n")
        XCTAssertEqual(try exported(nested), [Array("k".utf8): Array(#"v ","key":"x"#.utf8)])

        // --shard exports one shard.
        let perShard = try (0..<3).map { try jsonLines(try shardctl(["export", source, "--shard", "\($0)", "--format", "jsonl"]).stdout).count }
        XCTAssertEqual(perShard.reduce(0, +), tricky.count)
    }

    func testTTLsTravelThroughJSONLExportAndImport() throws {
        let source = path("source"), copy = path("copy")
        try shardctl(["init", source])
        try shardctl(["init", copy])
        let far = Self.nowMilliseconds + 86_400_000
        let input = [
            #"{"key":"absolute","value":"a","expiresAt":\#(far)}"#,
            #"{"key":"relative","value":"r","ttl":600}"#,
            #"{"key":"expired","value":"e","expiresAt":1000}"#,
            #"{"key":"forever","value":"f"}"#,
        ].joined(separator: "\n") + "\n"
        try shardctl(["import", source, "--format", "jsonl"], stdin: input)
        let bulk = (0..<5).map { "bulk-\($0)\tb\n" }.joined()
        try shardctl(["import", source, "--ttl", "300"], stdin: bulk)

        let exportedText = try shardctl(["export", source, "--format", "jsonl"]).stdout
        let records = Dictionary(uniqueKeysWithValues: try jsonLines(exportedText).map { ($0["key"] as! String, $0) })
        XCTAssertEqual(Set(records.keys), Set(["absolute", "relative", "forever"] + (0..<5).map { "bulk-\($0)" }),
                       "expired entries are never exported")
        XCTAssertEqual(records["absolute"]?["expiresAt"] as? Int64, far)
        XCTAssertEqual(Double((records["relative"]?["expiresAt"] as? Int64 ?? 0) - Self.nowMilliseconds) / 1000, 600, accuracy: 60)
        XCTAssertEqual(Double((records["bulk-0"]?["expiresAt"] as? Int64 ?? 0) - Self.nowMilliseconds) / 1000, 300, accuracy: 60)
        XCTAssertNil(records["forever"]?["expiresAt"])

        try shardctl(["import", copy, "--format", "jsonl"], stdin: exportedText)
        let again = try shardctl(["export", copy, "--format", "jsonl"]).stdout
        XCTAssertEqual(again.split(separator: "\n").sorted(), exportedText.split(separator: "\n").sorted(),
                       "import honours the exported absolute expiries")
    }

    /// Write times (for last-write-wins merges) survive export and import: the
    /// importing instance keeps the exported stamp, it does not stamp anew.
    func testWriteTimesTravelThroughJSONLExportAndImport() throws {
        let source = path("source"), copy = path("copy")
        let input = [
            #"{"key":"stamped","value":"s","writtenAt":1700000000123}"#,
            #"{"key":"plain","value":"p"}"#,
        ].joined(separator: "\n") + "\n"
        try shardctl(["init", source])
        try shardctl(["init", copy])
        try shardctl(["import", source, "--format", "jsonl"], stdin: input)
        let exported = try shardctl(["export", source, "--format", "jsonl"]).stdout
        let records = Dictionary(uniqueKeysWithValues: try jsonLines(exported).map { ($0["key"] as! String, $0) })
        XCTAssertEqual(records["stamped"]?["writtenAt"] as? Int64, 1_700_000_000_123)
        XCTAssertNil(records["plain"]?["writtenAt"])

        try shardctl(["import", copy, "--format", "jsonl"], stdin: exported)
        let engine = try ShardEngine.open(at: copy)
        defer { engine.close() }
        var times: [String: Int64?] = [:]
        try engine.scan { entry in
            times[String(decoding: entry.key, as: UTF8.self)] = entry.writtenAtMilliseconds
            return true
        }
        XCTAssertEqual(times["stamped"], 1_700_000_000_123)
        XCTAssertEqual(times["plain"], .some(nil))
    }

    func testDemo() throws {
        let demo = try shardctl(["demo", "--keys", "300", "--shards", "2"])
        XCTAssertTrue(demo.stdout.contains("demo OK"), demo.stdout)
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
