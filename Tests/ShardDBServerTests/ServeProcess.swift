import Foundation
import ShardDB
import ShardDBServer
import XCTest

/// The `shardctl` built next to the test bundle (`swift build --build-tests`).
enum Shardctl {
    static var executable: URL {
        get throws {
            let candidates = [
                URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                Bundle.main.bundleURL,
                Bundle.main.bundleURL.deletingLastPathComponent(),
            ].map { $0.appendingPathComponent("shardctl") }
            guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
                throw XCTSkip("shardctl is not built next to the tests (run `swift build --build-tests` first)")
            }
            return found
        }
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `shardctl arguments...` to the end.
    static func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = try executable
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// A `shardctl serve` child process.
final class ServeProcess {
    let directory: String
    let tokenFile: String?
    /// Further `serve` arguments (TLS), kept across restarts.
    let extra: [String]
    /// RPCs the server answers UNIMPLEMENTED, as an older version would (`SHARDDB_SERVER_OMIT_RPCS`), kept across restarts.
    let omitRPCs: [String]
    private(set) var process: Process
    private(set) var address: InstanceAddress

    /// Starts serving `directory` on `listen` (port 0: a free one), with failure points armed by `failpoints`
    /// and `environment` added to the child's (both for this run only, not for restarts).
    init(directory: String, tokenFile: String?, listen: String = "127.0.0.1:0", failpoints: String? = nil,
         extra: [String] = [], omitRPCs: [String] = [], environment: [String: String] = [:]) throws {
        self.directory = directory
        self.tokenFile = tokenFile
        self.extra = extra
        self.omitRPCs = omitRPCs
        (process, address) = try Self.launch(directory: directory, tokenFile: tokenFile, listen: listen,
                                             failpoints: failpoints, extra: extra, omitRPCs: omitRPCs, adding: environment)
    }

    private static func launch(directory: String, tokenFile: String?, listen: String, failpoints: String?,
                               extra: [String], omitRPCs: [String], adding: [String: String] = [:]) throws -> (Process, InstanceAddress) {
        let process = Process()
        process.executableURL = try Shardctl.executable
        process.arguments = ["serve", directory, "--listen", listen] + (tokenFile.map { ["--token-file", $0] } ?? []) + extra
        var environment = ProcessInfo.processInfo.environment.merging(adding) { $1 }
        environment["SHARDDB_FAILPOINTS"] = failpoints ?? ""
        environment["SHARDDB_SERVER_OMIT_RPCS"] = omitRPCs.joined(separator: ",")
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line is "listening on HOST:PORT".
        var line = Data()
        let handle = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("listening on "), let address = InstanceAddress(parsing: String(text.dropFirst(13))) else {
            process.terminate()
            process.waitUntilExit()
            throw NSError(domain: "ServeProcess", code: 1, userInfo: [NSLocalizedDescriptionKey: "serve did not start: '\(text)'"])
        }
        return (process, address)
    }

    var isRunning: Bool { process.isRunning }

    /// kill -9, as a crash would.
    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// SIGTERM; returns the exit status.
    @discardableResult
    func terminate() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Starts the same instance again on the same port, without failure points.
    func restart() throws {
        if process.isRunning { kill9() }
        var lastError: Error?
        for _ in 0..<50 {
            do {
                (process, address) = try Self.launch(directory: directory, tokenFile: tokenFile, listen: address.description,
                                                     failpoints: nil, extra: extra, omitRPCs: omitRPCs)
                return
            } catch {
                lastError = error  // the port or the directory lock may linger for a moment
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        throw lastError!
    }

    /// Waits for the process to exit on its own (a failure point fired), up to `timeout` seconds.
    func waitForExit(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        return !process.isRunning
    }

    deinit { if process.isRunning { kill9() } }
}

/// A scratch directory with a token file, removed at the end.
final class Workspace {
    let root: URL
    let tokenFile: String
    static let token = "test-secret-0123456789abcdef"

    init(_ name: String) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        tokenFile = root.appendingPathComponent("token").path
        try Self.token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
    }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// An instance with `shards` shards and `keys` keys `key-<i>` = `value-<i>`, closed.
    func makeInstance(_ name: String, shards: Int, keys: Int, valueSize: Int = 100) throws -> String {
        let dir = path(name)
        let engine = try ShardEngine.create(at: dir, shards: shards)
        defer { engine.close() }
        let pad = String(repeating: "x", count: valueSize)
        for start in stride(from: 0, to: keys, by: 1000) {
            try engine.write { batch in for i in start..<min(keys, start + 1000) { try batch.put("key-\(i)", "value-\(i)-\(pad)") } }
        }
        return dir
    }

    /// An empty instance partitioned like the default hash partitioning.
    func makeEmpty(_ name: String) throws -> String {
        let dir = path(name)
        try ShardEngine.create(at: dir, shards: 0).close()
        return dir
    }

    func client(_ address: InstanceAddress, retry: Duration = .seconds(2), token: String = Workspace.token) throws -> RemoteInstance {
        var configuration = RemoteInstance.Configuration()
        configuration.retryWindow = retry
        configuration.callTimeout = .seconds(10)
        return try RemoteInstance(address: address, secret: try SharedSecret(token), configuration: configuration)
    }

    deinit { try? FileManager.default.removeItem(at: root) }
}

/// Reads and writes keys across live instances the way an application would:
/// a "moved to" answer sends the call to the new owner.
actor RoutingClient {
    private let workspace: Workspace
    private var clients: [InstanceAddress: RemoteInstance] = [:]
    /// Acknowledged writes: the value each key must have.
    private(set) var acknowledged: [String: String] = [:]
    /// Writes whose outcome is unknown (the call failed): the key holds this value or an acknowledged one.
    private(set) var uncertain: [String: String] = [:]
    /// Writes the engine refused (not written), by error code.
    private(set) var refusals: [ShardDBError.Code: Int] = [:]

    /// Instances to ask when one knows nothing of a key (only the instance that gave a range away knows its owner).
    private let peers: [InstanceAddress]

    init(workspace: Workspace, peers: [InstanceAddress] = []) {
        self.workspace = workspace
        self.peers = peers
    }

    private func client(_ address: InstanceAddress) throws -> RemoteInstance {
        if let client = clients[address] { return client }
        let client = try workspace.client(address, retry: .milliseconds(500))
        clients[address] = client
        return client
    }

    /// Runs `body` against `start`, following "moved to" answers (at most 4 hops).
    private func routed<R: Sendable>(_ start: InstanceAddress, _ body: (RemoteInstance) async throws -> R) async throws -> R {
        var address = start
        var untried = peers.filter { $0 != start }
        for _ in 0..<(4 + peers.count) {
            do {
                return try await body(try client(address))
            } catch let error as ShardDBError where error.code == .keyNotOwned {
                if let owner = error.owner.flatMap(InstanceAddress.init(parsing:)) {
                    address = owner
                } else if !untried.isEmpty {
                    address = untried.removeFirst()
                } else {
                    throw error
                }
            }
        }
        throw ShardDBError(.keyNotOwned, "too many redirects")
    }

    /// Writes and records the outcome; true when acknowledged.
    @discardableResult
    func put(_ key: String, _ value: String, via start: InstanceAddress) async -> Bool {
        do {
            try await routed(start) { try await $0.put(Array(key.utf8), Array(value.utf8)) }
            acknowledged[key] = value
            uncertain[key] = nil
            return true
        } catch let error as ShardDBError where error.code != .storage {
            refusals[error.code, default: 0] += 1
            return false  // refused by the engine: not written
        } catch {
            uncertain[key] = value
            return false
        }
    }

    func get(_ key: String, via start: InstanceAddress) async throws -> String? {
        try await routed(start) { try await $0.get(Array(key.utf8)) }.map { String(decoding: $0, as: UTF8.self) }
    }

    func close() async {
        for client in clients.values { await client.close() }
        clients = [:]
    }
}

/// Every key of `expected` readable through `entry` with its value (or an uncertain one).
func verify(_ client: RoutingClient, expected: [String: String], uncertain: [String: String] = [:], via entry: InstanceAddress,
            file: StaticString = #filePath, line: UInt = #line) async throws {
    var wrong = 0
    for (key, value) in expected {
        let found = try await client.get(key, via: entry)
        if found != value && (uncertain[key] == nil || found != uncertain[key]) {
            wrong += 1
            if wrong <= 5 { XCTFail("\(key): expected \(value), found \(found ?? "nothing")", file: file, line: line) }
        }
    }
    XCTAssertEqual(wrong, 0, "\(wrong) of \(expected.count) keys wrong", file: file, line: line)
}

/// No key group has two active owners, and every one has one.
func assertOwnership(_ instances: [RemoteInstance], keyGroups: Int = Partitioning.defaultKeyGroups,
                     file: StaticString = #filePath, line: UInt = #line) async throws {
    var owners = [Int](repeating: 0, count: keyGroups)
    for instance in instances {
        for shard in try await instance.describeInstance().shards where shard.state == .active {
            guard case .keyGroups(let r) = shard.range else { continue }
            for kg in r.lowerBound..<r.upperBound { owners[kg] += 1 }
        }
    }
    XCTAssertEqual(owners.filter { $0 != 1 }.count, 0,
                   "key groups without exactly one owner: \(owners.enumerated().filter { $0.element != 1 }.prefix(5).map { "\($0.offset)x\($0.element)" })",
                   file: file, line: line)
}

/// Runs blocking `body` (waiting for a child process) on a thread of its own: on
/// 2 cores the concurrency pool has two threads, and blocking them would starve
/// the test's own writer and clients.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
