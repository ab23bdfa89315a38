import Foundation
import XCTest

/// `shardctl bench` run as a child process at tiny sizes: the JSON report, and
/// bad input (exit status 2, one line on stderr).
final class BenchCommandTests: XCTestCase {
    private var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("BenchCommandTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    private func report(_ arguments: [String]) throws -> (settings: [String: Any], results: [[String: Any]]) {
        let result = try BenchCLI.run(["bench"] + arguments + ["--db", root.appendingPathComponent("db").path, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let document = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        return (try XCTUnwrap(document["settings"] as? [String: Any]), try XCTUnwrap(document["results"] as? [[String: Any]]))
    }

    private func assertMeasured(_ result: [String: Any], file: StaticString = #filePath, line: UInt = #line) throws {
        let ops = try XCTUnwrap(result["ops"] as? Int, file: file, line: line)
        XCTAssertGreaterThan(ops, 0, "\(result)", file: file, line: line)
        XCTAssertGreaterThan(try XCTUnwrap(result["opsPerSecond"] as? Double, file: file, line: line), 0, file: file, line: line)
        XCTAssertNotNil(result["mbPerSecond"] as? Double, file: file, line: line)
        XCTAssertNotNil(result["seconds"] as? Double, file: file, line: line)
        let latency = try XCTUnwrap(result["latencyMicros"] as? [String: Any], file: file, line: line)
        for field in ["p50", "p99", "p999", "max"] {
            XCTAssertNotNil(latency[field] as? Double, "latency \(field) missing in \(latency)", file: file, line: line)
        }
        let p50 = latency["p50"] as? Double ?? 0, p99 = latency["p99"] as? Double ?? 0
        XCTAssertLessThanOrEqual(p50, p99, file: file, line: line)
    }

    func testDbBenchWorkloadsReportJSON() throws {
        let (settings, results) = try report(["--num", "2000", "--threads", "2",
                                              "--benchmarks", "fillseq,fillrandom,overwrite,readrandom,readseq,readwhilewriting"])
        XCTAssertEqual(results.map { $0["name"] as? String }, ["fillseq", "fillrandom", "overwrite", "readrandom", "readseq", "readwhilewriting"])
        for result in results { try assertMeasured(result) }
        // As db_bench: each thread writes --num keys.
        XCTAssertEqual(results[1]["ops"] as? Int, 4000)
        XCTAssertEqual(results[3]["ops"] as? Int, 4000)
        XCTAssertNotNil(results[3]["found"] as? Int)
        XCTAssertNotNil(results[5]["backgroundWrites"] as? Int)
        XCTAssertEqual(settings["threads"] as? Int, 2)
        XCTAssertEqual(settings["shards"] as? Int, 1)
        XCTAssertEqual(settings["keySize"] as? Int, 16)
    }

    /// db_bench's waitforcompaction and compact between workloads (after a fill of
    /// many 64 KiB memtables): a row of its own with no operations, and the
    /// workload after it reads everything the fill wrote.
    func testWaitForCompactionAndCompactSettleBetweenWorkloads() throws {
        for settle in ["waitforcompaction", "compact"] {
            let (_, results) = try report(["--num", "3000", "--write_buffer_size", "65536",
                                           "--benchmarks", "fillrandom,\(settle),readrandom"])
            XCTAssertEqual(results.map { $0["name"] as? String }, ["fillrandom", settle, "readrandom"])
            XCTAssertEqual(results[1]["ops"] as? Int, 0, settle)
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(results[1]["seconds"] as? Double), 0, settle)
            try assertMeasured(results[2])
            XCTAssertEqual(results[2]["found"] as? Int, 3000, settle)
        }
    }

    /// `--histogram false`, as db_bench without --histogram: the same operations
    /// counted, no latencies reported, and --duration still ends the run.
    func testUntimedOperationsReportNoLatencies() throws {
        let (settings, results) = try report(["--num", "3000", "--threads", "2", "--histogram=false",
                                              "--benchmarks", "fillrandom,readrandom,readwhilewriting,readseq"])
        XCTAssertEqual(settings["histogram"] as? Bool, false)
        XCTAssertEqual(results.prefix(3).map { $0["ops"] as? Int }, [6000, 6000, 6000])
        // readseq: one pass per thread over the distinct keys the random fill left.
        let passes = try XCTUnwrap(results[3]["ops"] as? Int)
        XCTAssertTrue(passes > 0 && passes <= 6000 && passes % 2 == 0, "\(results[3])")
        XCTAssertEqual(results[1]["found"] as? Int, 6000)
        for result in results {
            XCTAssertNil(result["latencyMicros"], "\(result)")
            XCTAssertGreaterThan(try XCTUnwrap(result["opsPerSecond"] as? Double), 0)
        }
        let byDuration = try BenchCLI.run(["bench", "--db", root.appendingPathComponent("by-duration").path, "--num", "1000000",
                                      "--histogram", "0", "--duration", "1", "--benchmarks", "fillrandom", "--json"])
        XCTAssertEqual(byDuration.status, 0, byDuration.stderr)
        let document = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(byDuration.stdout.utf8)) as? [String: Any])
        let result = try XCTUnwrap((document["results"] as? [[String: Any]])?.first)
        XCTAssertLessThan(try XCTUnwrap(result["ops"] as? Int), 1_000_000, "--duration 1 ends the fill early")
        XCTAssertLessThan(try XCTUnwrap(result["seconds"] as? Double), 5)
    }

    /// As db_bench's --duration: the seconds decide, not --num / --reads, so a
    /// short count runs on (over the same keys) until the time is up.
    func testDurationOutlastsTheCount() throws {
        let (_, results) = try report(["--num", "500", "--duration", "1", "--histogram", "0",
                                       "--benchmarks", "fillrandom,readrandom"])
        XCTAssertEqual(results.map { $0["name"] as? String }, ["fillrandom", "readrandom"])
        for result in results {
            XCTAssertGreaterThan(try XCTUnwrap(result["ops"] as? Int), 500, "\(result)")
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(result["seconds"] as? Double), 1.0, "\(result)")
        }
        XCTAssertEqual(results[1]["found"] as? Int, results[1]["ops"] as? Int, "every read looks up one of the 500 keys written")
    }

    func testOptionsMapAndExistingDatabaseIsReused() throws {
        let (settings, _) = try report(["--num", "1000", "--benchmarks", "fillrandom", "--compression_type", "none",
                                        "--bloom_bits", "10", "--cache_size", "0", "--write_buffer_size", "1048576",
                                        "--key_size", "20", "--value_size", "50", "--disable_wal", "--shards", "2"])
        XCTAssertEqual(settings["compression"] as? String, "none")
        XCTAssertEqual(settings["bloomBits"] as? Int, 10)
        XCTAssertEqual(settings["disableWAL"] as? Bool, true)
        XCTAssertEqual(settings["shards"] as? Int, 2)
        let (_, reads) = try report(["--num", "1000", "--key_size", "20", "--benchmarks", "readrandom", "--use_existing_db"])
        let found = try XCTUnwrap(reads.first?["found"] as? Int)
        XCTAssertGreaterThan(found, 0, "the second run reads what the first wrote")
    }

    /// As in db_bench, a thread's keys depend only on `--seed` and its index, so a
    /// readrandom after a fillrandom (another process) reads only keys the fill
    /// wrote: the two tools then do the same work (BENCHMARKS.md).
    func testReadRandomAfterFillRandomFindsEveryKey() throws {
        _ = try report(["--num", "3000", "--threads", "2", "--seed", "17", "--benchmarks", "fillrandom"])
        let (_, reads) = try report(["--num", "3000", "--threads", "2", "--seed", "17", "--benchmarks", "readrandom",
                                     "--use_existing_db"])
        XCTAssertEqual(reads.first?["ops"] as? Int, 6000)
        XCTAssertEqual(reads.first?["found"] as? Int, 6000, "every read looks up a key the fill wrote")
    }

    func testSeekRandomAndYCSBWorkloads() throws {
        let (_, seeks) = try report(["--num", "1000", "--benchmarks", "fillrandom,seekrandom"])
        try assertMeasured(seeks[1])
        for workload in ["ycsb-a", "ycsb-d", "ycsb-e", "ycsb-f"] {
            try? FileManager.default.removeItem(at: root.appendingPathComponent("db"))
            let (settings, results) = try report(["--workload", workload, "--recordcount", "500", "--operationcount", "500"])
            XCTAssertEqual(results.first?["name"] as? String, "\(workload) load")
            XCTAssertEqual(results.first?["ops"] as? Int, 500)
            XCTAssertEqual(results.dropFirst().first?["ops"] as? Int, 500, "\(workload) run")
            for result in results.prefix(2) { try assertMeasured(result) }
            XCTAssertEqual(settings["valueSize"] as? Int, 1000, "YCSB records are 1 KB")
        }
    }

    /// Keys shorter than 8 bytes hold the index's low-order bytes, as db_bench's do
    /// (they held the high-order ones, all zero: every key was the same); fillseq
    /// writes in key order, so it defaults to range partitioning.
    func testShortKeysStayDistinctAndFillseqIsOrdered() throws {
        let (settings, _) = try report(["--num", "1000", "--key_size", "4", "--benchmarks", "fillseq"])
        XCTAssertTrue((settings["partitioning"] as? String)?.hasPrefix("range") ?? false, "\(settings)")
        let exported = try BenchCLI.run(["export", root.appendingPathComponent("db").path, "--format", "jsonl"])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        XCTAssertEqual(exported.stdout.split(separator: "\n").count, 1000, "one key per index")
    }

    /// YCSB-D's "latest" reads choose among keys whose inserts finished: with two
    /// threads inserting, every read finds its key.
    func testYCSBLatestReadsOnlyFinishedInserts() throws {
        let (_, results) = try report(["--workload", "ycsb-d", "--recordcount", "300", "--operationcount", "6000", "--threads", "2"])
        let reads = try XCTUnwrap(results.first { ($0["name"] as? String)?.hasSuffix("read") == true }, "\(results.map { $0["name"] ?? "" })")
        XCTAssertEqual(reads["found"] as? Int, reads["ops"] as? Int, "\(reads)")
    }

    /// The db_bench flags reach RocksDB: its own OPTIONS file records them.
    func testFlagsReachRocksDBsOptions() throws {
        _ = try report(["--num", "500", "--benchmarks", "fillrandom", "--compression_type", "none",
                        "--write_buffer_size", "1048576", "--bloom_bits", "10", "--block_size", "8192"])
        let db = root.appendingPathComponent("db").path
        let optionsFile = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: db).filter { $0.hasPrefix("OPTIONS-") }.max())
        let text = try String(contentsOfFile: db + "/" + optionsFile, encoding: .utf8)
        // The shard's column family section (the metadata family keeps its own settings).
        let shardSection = try XCTUnwrap(text.components(separatedBy: "[CFOptions \"shard-").dropFirst().first, text)
        // (RocksDB 7.8 writes the filter's name without its bits per key.)
        for expected in ["compression=kNoCompression", "write_buffer_size=1048576", "block_size=8192", "filter_policy=bloomfilter"] {
            XCTAssertTrue(shardSection.contains(expected), "\(expected) not in the shard's options")
        }
    }

    /// YCSB's operation mixes: each run's rows split the operations in the workload's proportions.
    func testYCSBOperationMixes() throws {
        let shares: [String: [String: Double]] = [
            "ycsb-a": ["read": 0.5, "update": 0.5], "ycsb-b": ["read": 0.95, "update": 0.05], "ycsb-c": ["read": 1.0],
            "ycsb-e": ["scan": 0.95, "insert": 0.05], "ycsb-f": ["read": 0.5, "rmw": 0.5],
        ]
        for (workload, expected) in shares.sorted(by: { $0.key < $1.key }) {
            try? FileManager.default.removeItem(at: root.appendingPathComponent("db"))
            let (_, results) = try report(["--workload", workload, "--recordcount", "300", "--operationcount", "4000"])
            for (operation, share) in expected {
                // Rows: "<workload> load", "<workload> run", then "  <operation>" per operation type.
                let row = try XCTUnwrap(results.first { ($0["name"] as? String)?.trimmingCharacters(in: .whitespaces) == operation },
                                        "\(workload): \(results.map { $0["name"] ?? "" })")
                let ops = Double(row["ops"] as? Int ?? 0)
                XCTAssertEqual(ops / 4000, share, accuracy: 0.03, "\(workload) \(operation)")
            }
        }
    }

    /// bench migrate and bench checkpoint report what the issue names, as JSON.
    func testMigrateAndCheckpointBenchesReportTheirFigures() throws {
        let migrate = try BenchCLI.run(["bench", "migrate", "--size-mb", "2", "--runs", "1", "--write-rate", "300",
                                        "--baseline-seconds", "0.2", "--bulk", "files", "--json"])
        XCTAssertEqual(migrate.status, 0, migrate.stderr)
        let moved = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(migrate.stdout.utf8)) as? [String: Any], migrate.stdout)
        let mode = try XCTUnwrap((moved["modes"] as? [[String: Any]])?.first, migrate.stdout)
        XCTAssertGreaterThan((mode["bulkMBps"] as? [Double])?.first ?? 0, 0)
        XCTAssertNotNil((mode["catchUpSeconds"] as? [Double])?.first)
        let pause = try XCTUnwrap(mode["pauseMs"] as? [String: Any])
        for field in ["p50", "p99", "max"] { XCTAssertGreaterThan(pause[field] as? Double ?? 0, 0, "pause \(field)") }
        XCTAssertGreaterThan((moved["writerBaseline"] as? [String: Any])?["count"] as? Int ?? 0, 0, "a baseline of foreground writes")
        XCTAssertNotNil(moved["writerP99Ratio"] as? Double)

        let checkpoint = try BenchCLI.run(["bench", "checkpoint", "--size-mb", "2", "--write-rate", "100", "--json"])
        XCTAssertEqual(checkpoint.status, 0, checkpoint.stderr)
        let figures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(checkpoint.stdout.utf8)) as? [String: Any], checkpoint.stdout)
        let full = figures["fullBytesCopied"] as? Int ?? 0, incremental = figures["incrementalBytesCopied"] as? Int ?? -1
        XCTAssertGreaterThan(full, 0)
        XCTAssertLessThan(incremental, full, "an incremental checkpoint copies less than a full one")
        XCTAssertGreaterThan(figures["fullSeconds"] as? Double ?? 0, 0)
    }

    /// Without --json: a table with a header and a row per workload.
    func testTableOutput() throws {
        let result = try BenchCLI.run(["bench", "--num", "500", "--benchmarks", "fillrandom,readrandom",
                                       "--db", root.appendingPathComponent("db").path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let header = try XCTUnwrap(lines.first { $0.contains("ops/s") }, result.stdout)
        for column in ["MB/s", "p50", "p99", "p99.9"] { XCTAssertTrue(header.contains(column), "\(column) in \(header)") }
        XCTAssertTrue(lines.contains { $0.hasPrefix("fillrandom") }, result.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("readrandom") }, result.stdout)
    }

    /// db_bench's mixes: readrandomwriterandom's reads and writes in the proportion
    /// asked, updaterandom's read and write per operation, and the writes land
    /// (a readrandom with the same seed then finds every key they wrote).
    func testReadWriteMixesReadAndWriteAsAsked() throws {
        // Half reads over keys fillseq wrote: every read finds its key.
        var (settings, results) = try report(["--num", "1000", "--reads", "1000", "--readwritepercent", "50", "--seed", "301",
                                              "--benchmarks", "fillseq,readrandomwriterandom"])
        XCTAssertEqual(settings["readWritePercent"] as? Int, 50)
        try assertMeasured(results[1])
        XCTAssertEqual(results[1]["ops"] as? Int, 1000)
        XCTAssertEqual(results[1]["writes"] as? Int, 500)
        XCTAssertEqual(results[1]["found"] as? Int, 500)

        // Writes only, on an empty database: nothing read, then a readrandom drawing the
        // same keys finds each of them.
        (_, results) = try report(["--num", "1000", "--reads", "700", "--readwritepercent", "0", "--seed", "301",
                                   "--benchmarks", "readrandomwriterandom,readrandom"])
        XCTAssertEqual(results[0]["ops"] as? Int, 700)
        XCTAssertEqual(results[0]["writes"] as? Int, 700)
        XCTAssertEqual(results[0]["found"] as? Int, 0)
        XCTAssertEqual(results[1]["found"] as? Int, 700)

        // updaterandom on an empty database: a read finds only a key drawn before (by
        // either thread), and every key it drew is written.
        (_, results) = try report(["--num", "1000", "--reads", "600", "--threads", "2", "--seed", "301",
                                   "--benchmarks", "updaterandom,readrandom"])
        try assertMeasured(results[0])
        XCTAssertEqual(results[0]["ops"] as? Int, 1200)
        XCTAssertNil(results[0]["writes"])
        let found = try XCTUnwrap(results[0]["found"] as? Int)
        XCTAssertTrue(found > 0 && found < 1200, "\(results[0])")
        XCTAssertEqual(results[1]["found"] as? Int, 1200)
    }

    func testBadInputExitsWithStatus2AndOneLine() throws {
        let cases: [[String]] = [
            ["--benchmarks", "fillrandom,nosuchworkload"],
            ["--workload", "ycsb-z"],
            ["--num", "0"],
            ["--threads", "-1"],
            ["--threads", "0"],
            ["--compression_type", "lzma"],
            ["--benchmarks", "fillrandom", "--use_existing_db"],
            ["--options", "no_such_option=1"],
            ["--benchmarks", "seekrandom", "--partitioning", "hash"],
            ["--benchmarks", "fillrandom", "--histogram", "maybe"],
            ["--benchmarks", "readrandomwriterandom", "--readwritepercent", "101"],
            ["--benchmarks", "readrandomwriterandom", "--readwritepercent", "-1"],
        ]
        // Options that exclude each other are a usage error.
        let usage = try BenchCLI.run(["bench", "--db", root.appendingPathComponent("bad").path, "--benchmarks", "readrandom", "--workload", "ycsb-a"])
        XCTAssertEqual(usage.status, 64, usage.stderr)
        XCTAssertEqual(usage.stderr.split(separator: "\n").count, 1, usage.stderr)
        for arguments in cases {
            let result = try BenchCLI.run(["bench", "--db", root.appendingPathComponent("bad").path] + arguments)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("shardctl: error: "), result.stderr)
        }
    }
}

/// The shared subprocess runner (ShardctlProcess.swift).
typealias BenchCLI = ShardctlProcess

