import Foundation
import TestSupport
import XCTest

/// Bad input to every command: the process exits non-zero with one line on
/// stderr, and nothing stored changes.
///
/// Two kinds of failure:
/// - ShardDB errors: exit status 2, exactly one stderr line `shardctl: error: ...`.
/// - swift-argument-parser usage errors (an unknown subcommand or option, a missing
///   required option, a value that does not parse as the option's type):
///   exit status 64 (EX_USAGE), also exactly one line, `shardctl: error: ... (see --help)`
///   (`ShardCtl.main` prints the parser's message without its usage screen).
final class BadInputCommandTests: ShardctlTestCase {
    /// What a directory holds, as far as a user can tell.
    enum DirectoryState: Equatable {
        case absent
        case files([String])
        /// A ShardDB instance: its exported records (jsonl, sorted) and, when asked, its shard map.
        case instance(records: [String], shardMap: [String]?)
        /// A plain RocksDB database: ldb's listing of its column families and its content.
        case rocksDB(String)

        var withoutShardMap: DirectoryState {
            guard case .instance(let records, _) = self else { return self }
            return .instance(records: records, shardMap: nil)
        }
    }

    struct Case {
        var arguments: [String]
        var stdin: String? = nil
        /// 2 for ShardDB errors, 64 for argument-parser usage errors.
        var status: Int32 = 2
        /// Text the (first) stderr line must contain.
        var mentioning: String

        init(_ arguments: [String], stdin: String? = nil, status: Int32 = 2, _ mentioning: String) {
            self.arguments = arguments
            self.stdin = stdin
            self.status = status
            self.mentioning = mentioning
        }
    }

    private let instances = ["inst", "ranged", "target", "other", "twin"]
    private let fixtureNames = ["inst", "ranged", "target", "other", "twin", "empty", "plain", "missing", "fresh", "damaged", "userfiles"]

    /// In `set`: inst: hash, 4 shards, 20 entries (one with a TTL); ranged: split at g,n;
    /// target: empty, like inst; other: hash over 16 key groups; twin: like inst with its
    /// own values of the same keys (unstamped); empty: an empty
    /// directory; plain: a plain RocksDB database; missing and fresh: do not exist;
    /// damaged: inst's files without CURRENT; userfiles: a directory with a user's file.
    /// Beside them, token files: good-token, long-token (too long for a header).
    private func makeFixtures(in set: String) throws {
        try FileManager.default.createDirectory(atPath: path(set), withIntermediateDirectories: false)
        let p: (String) -> String = { self.path("\(set)/\($0)") }
        try shardctl(["init", p("inst")])
        try shardctl(["import", p("inst"), "--format", "jsonl"],
                     stdin: (0..<19).map { #"{"key":"key-\#($0)","value":"value-\#($0)"}"# }.joined(separator: "\n")
                         + "\n" + #"{"key":"session","value":"s","ttl":3600}"# + "\n")
        try shardctl(["init", p("ranged"), "--split-points", "g,n"])
        try shardctl(["import", p("ranged")], stdin: "a\t1\nh\t2\nz\t3\n")
        try shardctl(["init", p("target"), "--shards", "0", "--like", p("inst")])
        try shardctl(["init", p("other"), "--key-groups", "16"])
        try shardctl(["init", p("twin"), "--like", p("inst")])
        try shardctl(["import", p("twin")], stdin: (0..<19).map { "key-\($0)\ttwin-\($0)\n" }.joined())
        try FileManager.default.createDirectory(atPath: p("empty"), withIntermediateDirectories: false)
        try runLDB(["--db=\(p("plain"))", "--create_if_missing", "put", "a", "b"])
        try FileManager.default.copyItem(atPath: p("inst"), toPath: p("damaged"))
        try FileManager.default.removeItem(atPath: p("damaged") + "/CURRENT")
        try FileManager.default.createDirectory(atPath: p("userfiles"), withIntermediateDirectories: false)
        try Data("mine\n".utf8).write(to: URL(fileURLWithPath: p("userfiles") + "/precious.txt"))
        try Data("bad-input-table-token-0123456789\n".utf8).write(to: URL(fileURLWithPath: p("good-token")))
        try Data(String(repeating: "t", count: 5000).utf8).write(to: URL(fileURLWithPath: p("long-token")))
    }

    /// What a user can see of fixture `name` (exports and ldb dumps; safe off the test thread).
    private func state(_ dir: String, name: String, shardMap: Bool) throws -> DirectoryState {
        guard FileManager.default.fileExists(atPath: dir) else { return .absent }
        if name == "plain" {
            return .rocksDB(try runLDB(["--db=\(dir)", "list_column_families"]) + (try runLDB(["--db=\(dir)", "scan"])))
        }
        guard instances.contains(name) else { return .files(try FileManager.default.contentsOfDirectory(atPath: dir).sorted()) }
        let export = try ShardctlProcess.run(["export", dir, "--format", "jsonl"])
        guard export.status == 0 else { throw StateError("export \(dir): \(export.stderr)") }
        var map: [String]?
        if shardMap {
            let info = try ShardctlProcess.run(["info", dir, "--json"])
            guard info.status == 0, let object = try JSONSerialization.jsonObject(with: info.stdoutData) as? [String: Any],
                  let shards = object["shards"] as? [[String: Any]] else { throw StateError("info \(dir): \(info.stderr)") }
            map = shards.map { "\($0["id"] ?? "") \($0["range"] ?? "") \($0["state"] ?? "") \($0["defaultTTLSeconds"] ?? "-")" }
        }
        return .instance(records: export.stdout.split(separator: "\n").map(String.init).sorted(), shardMap: map)
    }

    struct StateError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Names, sizes and modification times of a directory's files. RocksDB rotates its
    /// LOG at every open, so an unchanged fingerprint means the command never opened the
    /// directory and nothing in it can have changed.
    private func fingerprint(_ dir: String) -> [String] {
        guard FileManager.default.fileExists(atPath: dir) else { return ["<absent>"] }
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return [] }
        return walker.compactMap { $0 as? String }.sorted().map { file in
            let attributes = (try? FileManager.default.attributesOfItem(atPath: dir + "/" + file)) ?? [:]
            return "\(file) \(attributes[.size] ?? "") \((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        }
    }

    @discardableResult
    private func runLDB(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ldb")
        guard FileManager.default.isExecutableFile(atPath: process.executableURL!.path) else {
            throw XCTSkip("ldb (rocksdb-tools) is not installed")
        }
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw StateError("ldb \(arguments) exited \(process.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs one case in fixture set `set`; returns what went wrong. `known` holds each
    /// fixture's state and fingerprint, updated as snapshots reopen directories.
    private func check(_ testCase: Case, in set: String, known: inout [String: (state: DirectoryState, fingerprint: [String])]) throws -> [String] {
        let label = "shardctl \(testCase.arguments.map { $0.count > 60 ? "<\($0.count) bytes>" : $0 }.joined(separator: " "))"
        let result = try ShardctlProcess.run(testCase.arguments, stdin: testCase.stdin.map { Data($0.utf8) })
        var problems: [String] = []
        let first = result.stderrLines.first.map(String.init) ?? ""
        if result.signal != nil { problems.append("\(label): killed by signal \(result.status)") }
        if testCase.status == 64 {
            if result.status != 64 { problems.append("\(label): usage errors exit 64, got \(result.status); stderr: \(result.stderr)") }
            if !first.hasSuffix("(see --help)") { problems.append("\(label): a usage error does not point at --help: \(result.stderr)") }
        } else if result.status != 2 {
            problems.append("\(label): exit \(result.status), expected 2; stderr: \(result.stderr)")
        }
        if result.stderrLines.count != 1 { problems.append("\(label): \(result.stderrLines.count) stderr lines: \(result.stderr)") }
        if !first.hasPrefix("shardctl: error: ") { problems.append("\(label): stderr is not 'shardctl: error: ...': \(result.stderr)") }
        if !first.contains(testCase.mentioning) { problems.append("\(label): '\(first)' does not mention '\(testCase.mentioning)'") }

        // Nothing changed in any directory the command was given.
        let checkShardMap = ["init", "migrate", "rescale", "compact"].contains(testCase.arguments.first ?? "")
        for name in fixtureNames {
            let dir = path("\(set)/\(name)")
            guard testCase.arguments.contains(where: { $0.contains(dir) }), let before = known[name] else { continue }
            if fingerprint(dir) == before.fingerprint { continue }
            let now = try state(dir, name: name, shardMap: checkShardMap)
            if now != (checkShardMap ? before.state : before.state.withoutShardMap) {
                problems.append("\(label) changed \(name): \(now) != \(before.state)")
            }
            known[name] = (before.state, fingerprint(dir))
        }
        return problems
    }

    func testEveryCommandRejectsBadInputWithoutChangingState() throws {
        // Cases run in parallel, each worker on its own copy of the fixtures.
        let sets = ["set-0", "set-1", "set-2", "set-3"]
        try makeFixtures(in: sets[0])
        for set in sets.dropFirst() { try FileManager.default.copyItem(atPath: path(sets[0]), toPath: path(set)) }
        // The copies hold the same states; each has its own fingerprints.
        let states = Dictionary(uniqueKeysWithValues: try fixtureNames.map { ($0, try state(path("\(sets[0])/\($0)"), name: $0, shardMap: true)) })
        let known = sets.map { set in
            Dictionary(uniqueKeysWithValues: fixtureNames.map { ($0, (state: states[$0]!, fingerprint: fingerprint(path("\(set)/\($0)")))) })
        }
        let caseCount = cases(in: sets[0]).count
        let started = Date()
        let problems = Problems()
        DispatchQueue.concurrentPerform(iterations: sets.count) { worker in
            var mine = known[worker]
            let all = cases(in: sets[worker])
            for index in stride(from: worker, to: all.count, by: sets.count) {
                do { problems.add(try check(all[index], in: sets[worker], known: &mine)) } catch { problems.add(["\(all[index].arguments): \(error)"]) }
            }
        }
        for problem in problems.list { XCTFail(problem) }
        print("bad-input table: \(caseCount) cases in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    private final class Problems: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var list: [String] = []
        func add(_ items: [String]) { lock.lock(); list += items; lock.unlock() }
    }

    private func cases(in set: String) -> [Case] {
        let p: (String) -> String = { self.path("\(set)/\($0)") }
        let inst = p("inst"), ranged = p("ranged"), target = p("target"), other = p("other"), twin = p("twin")
        let empty = p("empty"), plain = p("plain"), missing = p("missing"), fresh = p("fresh")
        let bigKey = String(repeating: "k", count: 16 * 1024 + 1)
        let cases: [Case] = [
            Case(["frobnicate"], status: 64, "Unexpected argument"),
            // init
            Case(["init"], status: 64, "Missing expected argument"),
            Case(["init", fresh, "--shards", "many"], status: 64, "invalid for '--shards"),
            Case(["init", fresh, "--shards=-1"], "negative"),
            Case(["init", fresh, "--key-groups", "0"], "between 1 and 65536"),
            Case(["init", fresh, "--key-groups", "70000"], "between 1 and 65536"),
            Case(["init", fresh, "--key-groups", "8", "--split-points", "g"], status: 64, "exclude each other"),
            Case(["init", fresh, "--split-points", "n,g"], "strictly increasing"),
            Case(["init", fresh, "--split-points", ""], "must not be empty"),
            Case(["init", fresh, "--split-points", "g,,n"], "must not be empty"),
            Case(["init", fresh, "--default-ttl", "0"], "TTL"),
            Case(["init", fresh, "--default-ttl=-3"], "TTL"),
            Case(["init", fresh, "--default-ttl", "9223372036854775"], "10,000 years"),
            Case(["init", fresh, "--like", missing], "does not exist"),
            // A path under a regular file: the system's reason, not Foundation's "error 512".
            Case(["init", p("good-token") + "/x"], "cannot create \(p("good-token"))/x: Not a directory"),
            Case(["checkpoint", "create", inst, "--store", p("good-token") + "/st"], "Not a directory"),
            Case(["bench", "ttl", "--dir", p("good-token") + "/x", "--num", "10", "--rounds", "1"], "cannot create \(p("good-token"))/x: Not a directory"),
            Case(["init", fresh, "--like", plain], "plain RocksDB"),
            Case(["init", fresh, "--like", empty], "holds no ShardDB instance"),
            Case(["init", fresh, "--like", inst, "--key-groups", "8"], status: 64, "--like excludes"),
            Case(["init", inst], "already holds a ShardDB instance"),
            Case(["init", plain], "not a ShardDB instance"),
            // info
            Case(["info"], status: 64, "Missing expected argument"),
            Case(["info", missing], "does not exist"),
            Case(["info", empty], "holds no ShardDB instance"),
            Case(["info", plain], "plain RocksDB database"),
            // put / get / delete
            Case(["put", inst, "k"], status: 64, "expected DIR KEY VALUE"),
            Case(["put", "--remote", "127.0.0.1:1", "k"], status: 64, "expected KEY VALUE after --remote"),
            Case(["put", inst, "", "v"], "empty"),
            Case(["put", inst, bigKey, "v"], "exceeds the limit of 16384 bytes"),
            Case(["put", inst, "k", "v", "--ttl", "0"], "--ttl must be a positive number"),
            Case(["put", inst, "k", "v", "--ttl=-5"], "--ttl must be a positive number"),
            // A negative number as its own word is the option's value, named in the error.
            Case(["put", inst, "k", "v", "--ttl", "-5"], "--ttl must be a positive number"),
            Case(["init", fresh, "--shards", "-1"], "negative"),
            Case(["scan", inst, "--limit", "-1"], "--limit"),
            Case(["delete-range", inst, "a", "b", "--key-group", "-1"], "outside [0, 4096)"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "-1"], "shard -1"),
            // Negative numbers reach the option's own check (they read as a missing value).
            Case(["put", inst, "k", "v", "--min-free-disk-bytes", "-1"], status: 64, "'-1' is invalid for '--min-free-disk-bytes"),
            Case(["import", inst, "--batch-size", "-1"], "--batch-size must be positive"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--retry-seconds", "-1", "k"], "--retry-seconds must be between"),
            Case(["stress", fresh, "--ops", "-1"], "--ops must not be negative"),
            Case(["stress", fresh, "--keys", "-3"], "--keys must be between 1 and"),
            // Past the bound, verification walked every key (a hang) and names wrapped.
            Case(["stress", fresh, "--keys", "9223372036854775807"], "--keys must be between 1 and 1000000"),
            Case(["serve", inst, "--token-file", p("good-token"), "--rate-limit", "-5MB/s"], "is not like 200MB/s"),
            // 10 B/s and megabits: a limit a thousand or eight times off what was meant
            Case(["serve", inst, "--token-file", p("good-token"), "--rate-limit", "10"], "give a unit"),
            Case(["serve", inst, "--token-file", p("good-token"), "--rate-limit", "200mb/s"], "means bits"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--bulk-chunk-bytes", "-5"], status: 64, "--bulk-chunk-bytes must be positive"),
            // A value that starts with '-' is taken for an option: the error says how to pass it.
            Case(["put", inst, "k", "-5"], status: 64, "goes after '--'"),
            Case(["put", inst, "k", "v", "--ttl", "9223372036854775807"], "10,000 years"),
            Case(["put", inst, "k", "v", "--ttl", "9223372036854775"], "10,000 years"),
            Case(["put", inst, "k", "v", "--ttl", "soon"], status: 64, "invalid for '--ttl"),
            Case(["put", missing, "k", "v"], "does not exist"),
            Case(["put", inst, "k", "v", "--min-free-disk-bytes", "18446744073709551615"], "free"),
            Case(["put", "--remote", "127.0.0.1:1", "k", "v", "--min-free-disk-bytes", "0"], "applies to a directory"),
            Case(["put", empty, "k", "v"], "holds no ShardDB instance"),
            Case(["put", plain, "k", "v"], "plain RocksDB database"),
            Case(["get", inst], status: 64, "expected DIR KEY"),
            Case(["get", inst, "k", "extra"], status: 64, "expected DIR KEY"),
            Case(["get", inst, ""], "empty"),
            Case(["get", inst, bigKey], "exceeds the limit"),
            Case(["get", missing, "k"], "does not exist"),
            Case(["delete", inst, ""], "empty"),
            Case(["delete", inst, bigKey], "exceeds the limit"),
            Case(["delete", empty, "k"], "holds no ShardDB instance"),
            // delete-range
            Case(["delete-range", inst, "a"], status: 64, "Missing expected argument"),
            Case(["delete-range", inst, "a", "b"], "needs a key group"),
            Case(["delete-range", inst, "b", "a", "--key-group", "1"], "must sort before"),
            Case(["delete-range", inst, "a", "a", "--key-group", "1"], "must sort before"),
            Case(["delete-range", inst, "", "b", "--key-group", "1"], "empty"),
            Case(["delete-range", inst, "a", bigKey, "--key-group", "1"], "exceeds the limit"),
            Case(["delete-range", inst, "a", "b", "--key-group", "4096"], "outside [0, 4096)"),
            Case(["delete-range", inst, "a", "b", "--key-group=-1"], "outside [0, 4096)"),
            Case(["delete-range", inst, "a", "b", "--key-group", "one"], status: 64, "invalid for '--key-group"),
            Case(["delete-range", inst, "a", "b", "--key-group", "1", "--key-group-of", "x"], status: 64, "not both"),
            Case(["delete-range", ranged, "a", "z", "--key-group", "0"], "only to hash partitioning"),
            Case(["delete-range", ranged, "a", "z", "--key-group-of", "a"], "only to hash partitioning"),
            Case(["delete-range", target, "a", "b", "--key-group", "0"], "not owned"),
            Case(["delete-range", empty, "a", "b"], "holds no ShardDB instance"),
            Case(["delete-range", missing, "a", "b"], "does not exist"),
            // salvage-wal
            Case(["salvage-wal"], status: 64, "Missing expected argument"),
            Case(["salvage-wal", missing], "does not exist"),
            Case(["salvage-wal", plain], "plain RocksDB database"),
            Case(["salvage-wal", empty], "holds no ShardDB instance"),
            // scan / export / compact
            Case(["scan", inst, "--shard", "9"], "shard 9 does not exist"),
            Case(["scan", inst, "--limit=-1"], "--limit"),
            Case(["scan", inst, "--shard", "one"], status: 64, "invalid for '--shard"),
            Case(["scan", plain], "plain RocksDB database"),
            Case(["export", inst, "--shard", "9"], "shard 9 does not exist"),
            Case(["export", inst, "--format", "xml"], status: 64, "invalid for '--format"),
            Case(["export", missing], "does not exist"),
            Case(["compact", inst, "--shard", "9"], "shard 9 does not exist"),
            Case(["compact", plain], "plain RocksDB database"),
            // import: a malformed line anywhere fails the whole (single) batch
            Case(["import", inst], stdin: "a\t1\nno tab here\n", "line 2"),
            Case(["import", inst], stdin: "a\t1\nb\t2\nc\\q\t3\n", "line 3"),
            Case(["import", inst], stdin: "\tempty key\n", "line 1"),
            Case(["import", inst], stdin: "\(bigKey)\tv\n", "line 1"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"a","value":"1"}"# + "\nnot json\n", "line 2"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"a"}"# + "\n", "line 1"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"a","value":"1","writtenAt":-5}"# + "\n", "write time -5 is negative"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"a","value":"1","writtenAt":"soon"}"# + "\n", "line 1"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"keyHex":"zz","value":"v"}"# + "\n", "line 1"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"a","value":"v","ttl":0}"# + "\n", "line 1"),
            Case(["import", inst, "--format", "xml"], stdin: "a\tb\n", status: 64, "invalid for '--format"),
            Case(["import", inst, "--ttl", "0"], stdin: "a\tb\n", "--ttl must be a positive number"),
            Case(["import", inst, "--batch-size", "0"], stdin: "a\tb\n", "--batch-size"),
            Case(["import", empty], stdin: "a\tb\n", "holds no ShardDB instance"),
            // migrate
            Case(["migrate", "--from", inst, "--shard", "0"], status: 64, "Missing expected argument '--to"),
            Case(["migrate", "--from", inst, "--to", target], status: 64, "--shard is required"),
            Case(["migrate", "--from", inst, "--to", inst, "--shard", "0"], "same instance"),
            Case(["migrate", "--from", inst, "--to", inst + "/.", "--shard", "0"], "same instance"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "9"], "shard 9 does not exist"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "5"], "is not LO..HI"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "512..100"], "0 <= LO < HI <= 4096"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "0..5000"], "0 <= LO < HI <= 4096"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "a..b"], "0 <= LO < HI <= 4096"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "2000..3000"], "not inside"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "100..200"], "end"),
            Case(["migrate", "--from", ranged, "--to", target, "--shard", "1", "--range", "m..h"], "LO must sort before HI"),
            Case(["migrate", "--from", inst, "--to", other, "--shard", "0"], "partition"),
            Case(["migrate", "--from", inst, "--to", twin, "--shard", "0"], "pick a conflict policy"),
            Case(["migrate", "--from", inst, "--to", twin, "--shard", "0", "--on-conflict", "newest"], status: 64, "invalid for '--on-conflict"),
            Case(["migrate", "--from", inst, "--to", twin, "--shard", "0", "--on-conflict", "last-write-wins"], "neither side has a write time"),
            Case(["migrate", "--from", inst, "--to", twin, "--shard", "0", "--merge-into", "1", "--on-conflict", "source-wins"], "not the merge target"),
            Case(["migrate", "--from", inst, "--to", missing, "--shard", "0"], "does not exist"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--bulk-transfer", "zip"], status: 64, "invalid for '--bulk-transfer"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--bulk-route", "sideways"], status: 64, "invalid for '--bulk-route"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--wire-compression", "zstd"], status: 64, "invalid for '--wire-compression"),
            Case(["migrate", "--from", inst, "--to", "127.0.0.1:7400", "--shard", "0", "--copy-table-files", "--token-file", p("good-token")],
                 status: 64, "--copy-table-files applies to a target directory opened here"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "0..512", "--copy-table-files"],
                 status: 64, "--copy-table-files applies only when a whole shard moves as table files"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--bulk-transfer", "entries", "--copy-table-files"],
                 status: 64, "--copy-table-files applies only when a whole shard moves as table files"),
            // serve: peer credentials for pulling a bulk copy
            Case(["serve", inst, "--token-file", p("token"), "--peer-tls-cert", p("c.pem")], status: 64, "--peer-tls-cert and --peer-tls-key go together"),
            Case(["serve", inst, "--token-file", p("token"), "--peer-tls-cert", p("c.pem"), "--peer-tls-key", p("k.pem")], status: 64, "needs --tls-ca or --peer-tls-ca"),
            Case(["serve", inst, "--token-file", p("token"), "--peer-token-file", p("token"), "--peer-tls-ca", p("ca.pem")], status: 64, "--peer-tls-ca is for pulls over TLS"),
            Case(["serve", inst, "--peer-token-file", missing + "/token"], status: 64, "give --token-file"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--range", "0..512", "--bulk-transfer", "table-files"],
                 "as table files"),
            Case(["migrate", "--from", inst, "--to", empty, "--shard", "0"], "holds no ShardDB instance"),
            Case(["migrate", "--from", inst, "--to", plain, "--shard", "0"], "plain RocksDB database"),
            Case(["migrate", "--from", missing, "--to", target, "--shard", "0"], "does not exist"),
            // rescale
            Case(["rescale", "--from", inst], status: 64, "Missing expected argument '--to"),
            Case(["rescale", "--from", inst, "--to", target, "--wire-compression", "lz4"], status: 64, "invalid for '--wire-compression"),
            Case(["rescale", "--from", ",", "--to", inst], "empty entry"),
            Case(["rescale", "--from", inst, "--to", "\(inst),\(inst)"], "twice"),
            Case(["rescale", "--from", inst, "--to", "\(inst),\(p("."))/inst"], "already open in this process"),
            Case(["rescale", "--from", inst, "--to", "\(inst),,\(other)"], "empty entry"),
            Case(["rescale", "--from", inst, "--to", "\(inst),::1:7400", "--token-file", p("good-token")], "is not HOST:PORT"),
            Case(["migrate", "--from", inst, "--to", "::1:7400", "--shard", "0", "--token-file", p("good-token")], "is not HOST:PORT"),
            Case(["rescale", "--from", inst, "--to", inst, "--parallelism", "0"], "--parallelism"),
            Case(["rescale", "--from", target, "--to", "\(target),\(fresh)"], "owned by none"),
            Case(["rescale", "--from", ranged, "--to", ranged], "hash partitioning"),
            Case(["rescale", "--from", inst, "--to", "\(inst),\(other)"], "partitioned as"),
            // demo
            Case(["demo", "--keys", "0"], "must be positive"),
            Case(["demo", "--keys", "many"], status: 64, "invalid for '--keys"),
            Case(["demo", "--keys", "100", "--shards", "2", "--writers", "101"], "--writers at most"),
            // a damaged database (no CURRENT): named, never initialized over
            Case(["init", p("damaged")], "no CURRENT file"),
            Case(["info", p("damaged")], "no CURRENT file"),
            Case(["put", p("damaged"), "k", "v"], "no CURRENT file"),
            // bench removes only what it made
            Case(["bench", "--num", "10", "--db", inst], "did not create"),
            Case(["bench", "--num", "10", "--db", p("userfiles")], "did not create"),
            Case(["bench", "--num", "10", "--db", p("good-token")], "is a file"),
            Case(["bench", "ttl", "--num", "10", "--dir", p("userfiles")], "did not create"),
            Case(["bench", "migrate", "--size-mb", "9999999999999"], "--size-mb must be at most"),
            Case(["bench", "ttl", "--num", "4294967296"], "--num must be at most 50000000"),
            Case(["bench", "migrate", "--chunk-mb", "99999999999999"], "--chunk-mb must be between"),
            Case(["bench", "checkpoint", "--size-mb", "9999999999999"], "--size-mb must be at most"),
            Case(["bench", "--num", "10", "--duration", "99999999999"], "at most a year"),
            // live instances: credentials, addresses, patience
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("long-token"), "k"], "at most 4096 bytes"),
            Case(["get", "--remote", "nonexistent.invalid:7411", "--token-file", p("good-token"), "k"], "cannot resolve host"),
            Case(["get", "--remote", "127.0.0.1:7411:1", "--token-file", p("good-token"), "k"], "is not HOST:PORT"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--retry-seconds", "inf", "k"], "--retry-seconds"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--call-timeout", "0", "k"], "--call-timeout"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--call-timeout", "-5", "k"], "--call-timeout"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--call-timeout", "nan", "k"], "--call-timeout"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--call-timeout", "100000", "k"], "--call-timeout"),
            Case(["get", "--remote", "127.0.0.1:1", "--token-file", p("good-token"), "--call-timeout", "soon", "k"], status: 64, "--call-timeout"),
            Case(["put", "--remote", "127.0.0.1:0", "--token-file", p("good-token"), "k", "v"], "port 0"),
            Case(["get", inst, "--token-file", p("good-token"), "key-1"], "applies to --remote"),
            Case(["put", inst, "--tls-ca", p("good-token"), "k", "v"], "applies to --remote"),
            Case(["serve", inst, "--token-file", p("good-token"), "--rate-limit", "9999999999999MB/s"], "more than"),
            Case(["serve", inst, "--token-file", p("good-token"), "--advertise", "127.0.0.1:99999"], "--advertise"),
            Case(["serve", inst, "--token-file", p("good-token"), "--advertise", "127.0.0.1"], "--advertise"),
            Case(["serve", inst, "--token-file", p("good-token"), "--listen", "0.0.0.0:0"], "give --advertise"),
            // recorded as a moved range's owner, it sent every client to an address nobody can dial
            Case(["serve", inst, "--token-file", p("good-token"), "--listen", "0.0.0.0:0", "--advertise", "0.0.0.0:7400"], "every interface"),
            Case(["serve", inst, "--token-file", p("good-token"), "--advertise", "[::]:7400"], "every interface"),
            Case(["bench", "--num", "10", "--write_buffer_size", "9223372036854775807"], "--write_buffer_size must be between"),
            Case(["demo", "--keys", "100", "--directory", inst], "is not empty"),
            // ranges and keys
            Case(["delete-range", inst, "a", "b", "--key-group-of", ""], "must not be empty"),
            Case(["scan", inst, "--start", "z", "--end", "a"], "must come before"),
            // jsonl fields
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":"1","expiresAt":-1}"# + "\n", "not negative"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":"1","ttl":1.5}"# + "\n", "wrong type"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":"1","ttl":0}"# + "\n", "\"ttl\" must be a positive"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","keyHex":"62","value":"1"}"# + "\n", "both"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":1}"# + "\n", "\"value\" must be a string"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":"1","value":"2"}"# + "\n", "\"value\" appears twice"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","k\u0065y":"key-2","value":"1"}"# + "\n", "\"key\" appears twice"),
            // instants past 10,000 years (a write time there wins every last-write-wins merge)
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":"1","expiresAt":9223372036854775807}"# + "\n", "10,000 years"),
            Case(["import", inst, "--format", "jsonl"], stdin: #"{"key":"key-1","value":"1","writtenAt":9223372036854775807}"# + "\n", "10,000 years"),
            // --hex takes two hex digits per byte
            Case(["put", inst, "--hex", "zz", "00"], "is not hex"),
            Case(["get", inst, "--hex", "abc"], "is not hex"),
            Case(["delete", inst, "--hex", "6"], "is not hex"),
            // no key comes before the empty one: the scan listed nothing, as of an empty instance
            Case(["scan", inst, "--end", ""], "--end must not be empty"),
            // --resolve settles; options of a new migration were silently ignored
            Case(["migrate", "--from", inst, "--to", target, "--resolve", "--shard", "9", "--range", "garbage"], status: 64, "--resolve takes no options"),
            Case(["migrate", "--from", inst, "--to", target, "--resolve", "--bulk-transfer", "entries", "--bulk-chunk-bytes", "8192",
                  "--bulk-route", "relay"], status: 64, "(--bulk-chunk-bytes, --bulk-transfer, --bulk-route)"),
            Case(["migrate", "--from", inst, "--to", target, "--shard", "0", "--merge-into", "-7"], status: 64, "--merge-into must be a shard id"),
            // a dry run approved a target under a regular file, which the real run cannot create
            Case(["rescale", "--from", inst, "--to", p("good-token") + "/sub", "--dry-run"], "is not a writable directory"),
            // the parser's list of accepted values is kept on the one line
            Case(["bench", "migrate", "--bulk", "foo"], status: 64, "files"),
            // stress
            Case(["stress", p("stress-work"), "--ops", "5", "--max-value-bytes", "99999999999"], "--max-value-bytes"),
            Case(["stress", p("good-token"), "--ops", "5"], "cannot create the work directory"),
        ]

        return cases
    }

    /// True when another process holds RocksDB's lock (fcntl) on the instance's LOCK file.
    static func isLockedByAnotherProcess(_ dir: String) -> Bool {
        let fd = open(dir + "/LOCK", O_RDWR)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_GETLK, &lock) == 0 else { return false }
        return lock.l_type != Int16(F_UNLCK)
    }

    /// Runs shardctl through /bin/sh (for arguments that are not UTF-8, and redirections).
    private func shell(_ script: String, _ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, "sh", try ShardctlProcess.executable.path] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Bytes that are not UTF-8 would decode to U+FFFD and two keys would collide:
    /// refused. Output that cannot be written (a full disk) is an error, not a
    /// quiet success or a "reader went away" 141; input that cannot be read too.
    /// A directory named like an option, given after "--", is that directory: put and
    /// get parsed it again as an option ("--help" printed the whole help and exited 0
    /// having stored nothing; "-dd" was "missing <directory>"). Values that start with
    /// '-' are taken by --start, --end and --prefix.
    func testADirectoryOrValueNamedLikeAnOptionIsTakenAsGiven() throws {
        let root = path("dash")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for name in ["-dd", "--help"] {
            let created = try ShardctlProcess.run(["init", "--shards", "1", "--", name], currentDirectory: root)
            XCTAssertEqual(created.status, 0, created.stderr)
            let put = try ShardctlProcess.run(["put", "--", name, "-k", "v"], currentDirectory: root)
            XCTAssertEqual(put.status, 0, put.stderr)
            XCTAssertFalse(put.stdout.contains("USAGE"), "printed the help instead: \(put.stdout.prefix(200))")
            let got = try ShardctlProcess.run(["get", "--", name, "-k"], currentDirectory: root)
            XCTAssertEqual(got.stdout, "v\n", got.stderr)
            let scanned = try ShardctlProcess.run(["scan", "--start", "-a", "--end", "-z", "--", name], currentDirectory: root)
            XCTAssertEqual(scanned.stdout, "-k\tv\n", scanned.stderr)
        }
    }

    /// Keys that are not text (imported with keyHex), or that scan shows escaped,
    /// could not be named by get or delete at all: --hex names them by their bytes.
    func testBinaryKeysAreNamedInHex() throws {
        let dir = path("hex")
        XCTAssertEqual(try ShardctlProcess.run(["init", dir, "--shards", "2"]).status, 0)
        let put = try ShardctlProcess.run(["put", dir, "--hex", "00ff5c", "6869"])
        XCTAssertEqual(put.status, 0, put.stderr)
        XCTAssertEqual(try ShardctlProcess.run(["scan", dir]).stdout, "\\x00\\xff\\\\\thi\n")
        XCTAssertEqual(try ShardctlProcess.run(["get", dir, "--hex", "00FF5C"]).stdout, "hi\n")
        let deleted = try ShardctlProcess.run(["delete", dir, "--hex", "00ff5c"])
        XCTAssertEqual(deleted.status, 0, deleted.stderr)
        XCTAssertEqual(try ShardctlProcess.run(["get", dir, "--hex", "00ff5c"]).status, 1)
        XCTAssertEqual(try ShardctlProcess.run(["scan", dir]).stdout, "")
    }

    /// --keys and --seed are fixed by a work directory's first run: a later run given
    /// other values ignored them without a word.
    func testStressSaysWhenItIgnoresKeysAndSeed() throws {
        let work = path("stress-fixed")
        let first = try ShardctlProcess.run(["stress", work, "--ops", "2", "--keys", "50"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let again = try ShardctlProcess.run(["stress", work, "--ops", "1", "--keys", "5", "--seed", "99"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("--keys 5 ignored: this work directory's first run fixed it at 50"), again.stderr)
        XCTAssertTrue(again.stderr.contains("--seed 99 ignored"), again.stderr)
        let same = try ShardctlProcess.run(["stress", work, "--ops", "1", "--keys", "50"])
        XCTAssertEqual(same.stderr, "", "nothing to say when the values agree")
    }

    func testBytesAndStreamsThatAreNotWhatTheySeem() throws {
        let dir = path("instance")
        try shardctl(["init", dir])
        try shardctl(["put", dir, "k", "v"])
        let before = try exported(dir)
        for (script, mentioning) in [
            (#""$1" put "$2" "$(printf 'a\376')" v"#, "argument 3 is not valid UTF-8"),
            (#""$1" get "$2" "$(printf '\377')""#, "argument 3 is not valid UTF-8"),
            (#"printf 'a\377\tb\n' | "$1" import "$2""#, "not valid UTF-8"),
            (#""$1" import "$2" < /"#, "cannot read standard input"),
            (#""$1" info "$2" > /dev/full"#, "No space left on device"),
            (#""$1" scan "$2" > /dev/full"#, "No space left on device"),
            (#""$1" get "$2" k --json > /dev/full"#, "No space left on device"),
        ] {
            let result = try shell(script, [dir])
            XCTAssertEqual(result.status, 2, "\(script): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(script): \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("shardctl: error: ") && result.stderr.contains(mentioning), "\(script): \(result.stderr)")
        }
        XCTAssertEqual(try exported(dir), before, "nothing stored changed")
        // A reader that went away is still quiet (status 141, nothing on stderr).
        let piped = try shell(#""$1" scan "$2" | head -c 0"#, [dir])
        XCTAssertTrue(piped.stderr.isEmpty, piped.stderr)
    }

    /// `serve` with a token file others can read serves (orchestrators mount
    /// secrets 0644 in private volumes) and warns once on stderr; a 0600 one is quiet.
    func testServeWarnsAboutATokenFileOthersCanRead() throws {
        let instance = path("inst")
        try shardctl(["init", instance, "--shards", "1"])
        for mode in [0o644, 0o600] {
            let token = path("token-\(String(mode, radix: 8))")
            XCTAssertTrue(FileManager.default.createFile(atPath: token, contents: Data("correct-horse-battery-staple\n".utf8)))
            XCTAssertEqual(chmod(token, mode_t(mode)), 0)
            let process = Process()
            process.executableURL = try ShardctlProcess.executable
            process.arguments = ["serve", instance, "--listen", "127.0.0.1:0", "--token-file", token]
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            var printed = Data()
            while !String(decoding: printed, as: UTF8.self).contains("\n") {
                let more = output.fileHandleForReading.availableData
                if more.isEmpty { break }
                printed += more
            }
            XCTAssertTrue(String(decoding: printed, as: UTF8.self).hasPrefix("listening on 127.0.0.1:"), String(decoding: printed, as: UTF8.self))
            process.terminate()
            // A server that ignores the signal fails the test instead of hanging it.
            let watchdog = DispatchWorkItem { [pid = process.processIdentifier] in kill(pid, SIGKILL) }
            DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
            process.waitUntilExit()
            watchdog.cancel()
            XCTAssertEqual(process.terminationReason, .exit, "stopped by SIGTERM's handler, not killed")
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            // Any warning about this file counts, so the 0600 case would see a wrong one.
            let warnings = stderr.split(separator: "\n").filter { $0.hasPrefix("shardctl: warning: token file \(token)") }
            XCTAssertEqual(warnings.count, mode == 0o644 ? 1 : 0, stderr)
            if mode == 0o644 { XCTAssertTrue(warnings.first?.contains("has mode 0644") == true, stderr) }
            XCTAssertEqual(process.terminationStatus, 0, stderr)
        }
    }

    /// `get --remote` to a peer that accepts the connection and never answers
    /// gives up after about two `--call-timeout`s with `--retry-seconds 0`, not
    /// the default minute.
    func testACallTimeoutBoundsAQuickLookAtASilentPeer() throws {
        let listener = try LoopbackListener()
        // The kernel completes the TCP handshake from the backlog; nothing ever answers.
        let token = path("token")
        XCTAssertTrue(FileManager.default.createFile(atPath: token, contents: Data("correct-horse-battery-staple\n".utf8)))
        let started = Date()
        let answer = try ShardctlProcess.run(["get", "--remote", "127.0.0.1:\(listener.port)", "--token-file", token,
                                              "--call-timeout", "1", "--retry-seconds", "0", "k"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 15, "gave up at the deadline, not after a minute")
        assertError(answer, mentioning: "deadline")
    }

    /// bench marks the directories it makes and runs again over them, but no other.
    /// `stress` and `rescale` create their instances only where nothing is: a
    /// directory of someone's files is refused, never emptied or written into.
    func testStressAndRescaleLeaveOtherPeoplesDirectoriesAlone() throws {
        let project = path("project"), db = path("db"), notes = path("notes")
        try shardctl(["init", project + "/a", "--shards", "2"])
        try shardctl(["put", project + "/a", "important", "data"])
        try FileManager.default.createDirectory(atPath: project + "/checkpoints", withIntermediateDirectories: true)
        try "mine\n".write(toFile: project + "/checkpoints/notes.txt", atomically: true, encoding: .utf8)
        assertError(try ShardctlProcess.run(["stress", project, "--ops", "1"]), mentioning: "holds no stress oracle")
        XCTAssertEqual(try shardctl(["get", project + "/a", "important"]).stdout, "data\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: project + "/checkpoints/notes.txt"))
        assertError(try ShardctlProcess.run(["stress", path("stress-new"), "--ops=-1"]), mentioning: "--ops must not be negative")

        try shardctl(["init", db, "--shards", "2"])
        try shardctl(["put", db, "k", "v"])
        try FileManager.default.createDirectory(atPath: notes, withIntermediateDirectories: true)
        try "mine\n".write(toFile: notes + "/notes.txt", atomically: true, encoding: .utf8)
        assertError(try ShardctlProcess.run(["rescale", "--from", db, "--to", notes]), mentioning: "holds no ShardDB instance")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: notes), ["notes.txt"])
        XCTAssertEqual(try shardctl(["get", db, "k"]).stdout, "v\n")
        // An empty directory, like a missing one, becomes the new instance.
        let empty = path("empty-target")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try shardctl(["rescale", "--from", db, "--to", "\(db),\(empty)"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: empty + "/CURRENT"))
    }

    func testBenchReusesOnlyItsOwnDirectories() throws {
        let db = path("bench-db")
        for _ in 0..<2 {
            try shardctl(["bench", "--num", "50", "--benchmarks", "fillrandom", "--db", db, "--histogram", "false"])
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: db + "/.shardctl-bench"))
        try shardctl(["bench", "--num", "50", "--benchmarks", "readrandom", "--db", db, "--use_existing_db", "--histogram", "false"])
    }

    /// A malformed line fails its batch, names its line, and keeps the earlier batches.
    func testMalformedImportLineKeepsEarlierBatchesOnly() throws {
        let dir = path("instance")
        try shardctl(["init", dir])
        let lines = ["a\t1", "b\t2", "c\t3", "d\t4", "", "e\t5", "f has no tab", "g\t7"]
        let result = try ShardctlProcess.run(["import", dir, "--batch-size", "2"], stdin: Data(lines.joined(separator: "\n").utf8))
        assertError(result, mentioning: "line 7")
        XCTAssertTrue(result.stderr.contains("imported 4 entries before"), result.stderr)
        let kept = try exported(dir)
        XCTAssertEqual(Set(kept.keys.map { String(decoding: $0, as: UTF8.self) }), ["a", "b", "c", "d"],
                       "the batches before the malformed line stay; nothing of its batch (e) is written")
    }

    /// An instance open in another process (an `import` waiting on its stdin) is
    /// refused by every command, with one line saying so; its content stays intact.
    func testInstanceOpenInAnotherProcess() throws {
        let dir = path("instance"), target = path("target")
        try shardctl(["init", dir])
        try shardctl(["import", dir], stdin: "a\t1\nb\t2\n")
        try shardctl(["init", target, "--shards", "0", "--like", dir])
        let holder = try ShardctlProcess.start(["import", dir])
        var holderFinished = false
        defer { if !holderFinished { _ = holder.finish() } }
        try holder.stdin.write(contentsOf: Data("c\t3\n".utf8))

        // Wait until the holder has the instance open (holds the lock on its LOCK file).
        let deadline = Date().addingTimeInterval(20)
        while !Self.isLockedByAnotherProcess(dir) && holder.process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTAssertTrue(holder.process.isRunning, "the holder is waiting on its stdin")
        assertError(try ShardctlProcess.run(["get", dir, "a"]), mentioning: "already open in another process", "get")

        let commands: [([String], String?)] = [
            (["info", dir], nil), (["put", dir, "k", "v"], nil), (["delete", dir, "a"], nil), (["scan", dir], nil),
            (["export", dir], nil), (["compact", dir], nil), (["import", dir], "x\ty\n"),
            (["migrate", "--from", dir, "--to", target, "--shard", "0"], nil),
            (["migrate", "--from", target, "--to", dir, "--shard", "0"], nil),
            (["init", path("like"), "--like", dir], nil),
            (["rescale", "--from", dir, "--to", target, "--dry-run"], nil),
        ]
        for (arguments, stdin) in commands {
            let result = try ShardctlProcess.run(arguments, stdin: stdin.map { Data($0.utf8) })
            assertError(result, mentioning: "\(dir) is already open in another process", arguments.joined(separator: " "))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("like")))

        let finished = holder.finish()
        holderFinished = true
        XCTAssertEqual(finished.status, 0, finished.stderr)
        XCTAssertEqual(finished.stdout, "imported 1 entries\n")
        XCTAssertEqual(try exported(dir), [Array("a".utf8): Array("1".utf8), Array("b".utf8): Array("2".utf8), Array("c".utf8): Array("3".utf8)])
        XCTAssertEqual(try shards(target).count, 0)
    }
}
