import Foundation
import GRPCCore
@testable import ShardDBServer
import ShardDB
import TestSupport
import XCTest

/// Calls the endpoint must refuse, each leaving the stored state unchanged:
/// a wrong token, bytes that are not HTTP/2, truncated or corrupted chunks,
/// and an old changelog chunk sent again.
final class TransportSecurityTests: XCTestCase {
    func testWrongTokenIsRefusedBeforeAnythingIsReadOrWritten() async throws {
        let workspace = try Workspace("WrongToken")
        let server = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 100), tokenFile: workspace.tokenFile)
        let intruder = try workspace.client(server.address, token: "not-the-secret-at-all-0000")
        let started = Date()
        for call in ["put", "get", "describe"] {
            do {
                switch call {
                case "put": try await intruder.put(Array("key-1".utf8), Array("overwritten".utf8))
                case "get": _ = try await intruder.get(Array("key-1".utf8))
                default: _ = try await intruder.describeInstance()
                }
                XCTFail("\(call) with a wrong token succeeded")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .unauthenticated, "\(call): \(error)")
            }
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5, "refusals are not retried")
        await intruder.close()

        let wrongTokenFile = workspace.path("wrong-token")
        try "another-secret-of-some-length".write(toFile: wrongTokenFile, atomically: true, encoding: .utf8)
        let cli = try Shardctl.run(["put", "--remote", server.address.description, "--token-file", wrongTokenFile, "key-2", "evil"])
        XCTAssertEqual(cli.status, 2)
        XCTAssertTrue(cli.stderr.contains("unauthenticated") || cli.stderr.contains("x-sharddb-token"), cli.stderr)
        // A migration's calls are refused alike: a migrate with the wrong token moves nothing.
        let other = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let move = try Shardctl.run(["migrate", "--from", server.address.description, "--to", other.address.description,
                                     "--shard", "1", "--token-file", wrongTokenFile, "--retry-seconds", "1"])
        XCTAssertEqual(move.status, 2, move.stdout)
        XCTAssertTrue(move.stderr.contains("unauthenticated") || move.stderr.contains("x-sharddb-token"), move.stderr)
        let untouched = try workspace.client(other.address)
        let shardsThere = try await untouched.describeInstance().shards.count
        XCTAssertEqual(shardsThere, 0, "the target took nothing")
        let journal = try await untouched.describeInstance().unfinishedMigrations
        XCTAssertEqual(journal.count, 0, "nor journaled anything")
        await untouched.close()
        XCTAssertEqual(other.terminate(), 0)

        let owner = try workspace.client(server.address)
        let value1 = try await owner.get(Array("key-1".utf8)).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(value1,
                       "value-1-" + String(repeating: "x", count: 100))
        let cliGet = try Shardctl.run(["get", "--remote", server.address.description, "--token-file", workspace.tokenFile, "key-2"])
        XCTAssertEqual(cliGet.stdout, "value-2-" + String(repeating: "x", count: 100) + "\n", cliGet.stderr)
        // delete --remote: refused with the wrong token, done with the right one.
        let refusedDelete = try Shardctl.run(["delete", "--remote", server.address.description, "--token-file", wrongTokenFile, "key-2"])
        XCTAssertEqual(refusedDelete.status, 2, refusedDelete.stdout)
        let cliDelete = try Shardctl.run(["delete", "--remote", server.address.description, "--token-file", workspace.tokenFile, "key-2"])
        XCTAssertEqual(cliDelete.status, 0, cliDelete.stderr)
        let gone = try Shardctl.run(["get", "--remote", server.address.description, "--token-file", workspace.tokenFile, "key-2"])
        XCTAssertEqual(gone.status, 1, "absent after the delete: \(gone.stdout)")
        await owner.close()
        XCTAssertEqual(server.terminate(), 0)
    }

    /// Only the secret itself matches: not a prefix, not the secret with bytes
    /// after it (256 more once passed, when the length check kept 8 bits).
    func testOnlyTheExactSecretMatches() throws {
        let secret = try SharedSecret("correct-horse-battery-staple")
        XCTAssertTrue(secret.matches("correct-horse-battery-staple"))
        for extra in [1, 255, 256, 512, 65_536] {
            XCTAssertFalse(secret.matches("correct-horse-battery-staple" + String(repeating: "A", count: extra)), "\(extra) bytes more")
        }
        XCTAssertFalse(secret.matches("correct-horse-battery-stapl"))
        XCTAssertFalse(secret.matches(""))
        XCTAssertFalse(secret.matches("correct-horse-battery-staplf"))
    }

    /// A token file the group or others can read (or write) is reported; one
    /// only its owner can is not, and neither is a missing file.
    func testATokenFileReadableByOthersIsReported() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("token-mode-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/token"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("correct-horse-battery-staple\n".utf8)))
        for (mode, exposed) in [(0o600, nil), (0o400, nil), (0o611, nil), (0o644, "read"), (0o640, "read"), (0o604, "read"),
                                (0o620, "replace"), (0o602, "replace")] {
            XCTAssertEqual(chmod(path, mode_t(mode)), 0)
            let exposure = SharedSecret.exposure(ofFile: path)
            XCTAssertEqual(exposure != nil, exposed != nil, "mode 0\(String(mode, radix: 8)): \(exposure ?? "nil")")
            if let exposure, let exposed {
                XCTAssertTrue(exposure.contains("0\(String(mode, radix: 8))") && exposure.contains("can \(exposed) the secret")
                              && exposure.contains("chmod 600"), exposure)
            }
            XCTAssertNoThrow(try SharedSecret(contentsOf: path), "a warning, not a refusal")
        }
        XCTAssertNil(SharedSecret.exposure(ofFile: directory + "/missing"))
    }

    /// A peer that accepts the TCP connection and never speaks HTTP/2 (a stopped
    /// process, a wrong service): the call fails at its deadline and closing the
    /// client returns, instead of both waiting for a handshake for ever.
    func testASilentPeerFailsAtTheDeadlineAndCloses() async throws {
        let listener = try LoopbackListener()
        // The kernel completes the TCP handshake from the backlog; nothing ever answers.
        let port = listener.port
        var configuration = RemoteInstance.Configuration()
        configuration.callTimeout = .seconds(1)
        configuration.retryWindow = .milliseconds(500)
        configuration.closeGrace = .milliseconds(500)
        let client = try RemoteInstance(address: try XCTUnwrap(InstanceAddress(parsing: "127.0.0.1:\(port)")),
                                        secret: try SharedSecret(Workspace.token), configuration: configuration)
        let started = ContinuousClock.now
        do {
            _ = try await client.describeInstance()
            XCTFail("a silent peer answered")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .deadlineExceeded, "\(error)")
        }
        await client.close()
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10), "the call or the close outlived its deadline")

        // A put that ran into its deadline is not sent again, however long the retry
        // window (it may have been stored, and would overwrite a newer write).
        configuration.retryWindow = .seconds(30)
        let writer = try RemoteInstance(address: try XCTUnwrap(InstanceAddress(parsing: "127.0.0.1:\(port)")),
                                        secret: try SharedSecret(Workspace.token), configuration: configuration)
        let putStarted = ContinuousClock.now
        do {
            try await writer.put(Array("k".utf8), Array("v".utf8))
            XCTFail("a silent peer took a put")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .deadlineExceeded, "\(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - putStarted, .seconds(5), "the put was retried after its deadline")
        await writer.close()
    }

    /// A client used after `close()` fails at once with `.closed` (it retried
    /// grpc-swift's "client is stopped" as a transport failure for its whole retry window).
    func testAClosedClientFailsAtOnce() async throws {
        let workspace = try Workspace("ClosedClient")
        let server = try ServeProcess(directory: try workspace.makeInstance("a", shards: 1, keys: 5), tokenFile: workspace.tokenFile)
        let client = try workspace.client(server.address, retry: .seconds(30))
        let shards = try await client.describeInstance().shards.count
        XCTAssertEqual(shards, 1)
        await client.close()
        let started = ContinuousClock.now
        for call in ["get", "put", "describe"] {
            do {
                switch call {
                case "get": _ = try await client.get(Array("key-1".utf8))
                case "put": try await client.put(Array("key-1".utf8), Array("x".utf8))
                default: _ = try await client.describeInstance()
                }
                XCTFail("\(call) on a closed client succeeded")
            } catch let error as ShardDBError {
                XCTAssertEqual(error.code, .closed, "\(call): \(error)")
            }
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "calls on a closed client are not retried")
        XCTAssertEqual(server.terminate(), 0)
    }

    /// `--listen` takes a host name, as clients do (it failed with "no listening
    /// address bound").
    func testServeListensOnAHostName() async throws {
        let workspace = try Workspace("ListenName")
        let server = try ServeProcess(directory: try workspace.makeInstance("a", shards: 1, keys: 5), tokenFile: workspace.tokenFile,
                                      listen: "localhost:0")
        XCTAssertEqual(server.address.host, "127.0.0.1")
        let client = try workspace.client(server.address)
        let shards = try await client.describeInstance().shards
        XCTAssertEqual(shards.count, 1)
        await client.close()
        XCTAssertEqual(server.terminate(), 0)
    }

    /// A client that connects and never sends a byte does not keep the server
    /// from stopping: shutdown closes it after the grace time (a graceful close
    /// alone waited for it for ever, and `shardctl serve` ignored SIGTERM).
    func testASilentClientDoesNotHoldUpShutdown() async throws {
        let host = try await InProcessServer("SilentClient") { configuration in
            configuration.connectionGraceTime = .milliseconds(500)
        }
        let server = host.server, bound = host.address
        defer { withExtendedLifetime(host) {} }  // (the instance lives to the end of the test)
        let fd = try connectRaw(to: bound)
        defer { close(fd) }
        try await Task.sleep(for: .milliseconds(200))  // accepted and set up by the server
        let started = ContinuousClock.now
        await server.shutdown()
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10), "shutdown waited for the silent client")
        XCTAssertTrue(readsToEnd(fd, within: 5), "the silent connection is closed")  // SETTINGS and GOAWAY, then the end
    }

    /// A connection that starts no call is closed after `firstCallTimeout`,
    /// whether it sent nothing or only the HTTP/2 preface and settings; one
    /// that made a call is not (the server keeps serving it).
    func testAConnectionThatStartsNoCallIsClosed() async throws {
        let host = try await InProcessServer("NoCall") { configuration in
            configuration.firstCallTimeout = .milliseconds(300)
            configuration.connectionGraceTime = .milliseconds(500)
        }
        let server = host.server, bound = host.address
        defer { withExtendedLifetime(host) {} }  // (the instance lives to the end of the test)
        let client = try RemoteInstance(address: bound, secret: try SharedSecret(Workspace.token))
        try await client.put(Array("kept".utf8), Array("value".utf8))

        let silent = try connectRaw(to: bound)
        defer { close(silent) }
        let prefaceOnly = try connectRaw(to: bound)
        defer { close(prefaceOnly) }
        let settings: [UInt8] = [0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]
        let hello = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + settings
        XCTAssertEqual(hello.withUnsafeBytes { send(prefaceOnly, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, hello.count)
        // A call to a method that does not exist is answered UNIMPLEMENTED before any
        // interceptor runs: it does not count as authenticated work.
        let unknownMethod = try connectRaw(to: bound)
        defer { close(unknownMethod) }
        let call = Self.rawCall("NoSuchMethod", token: nil)
        XCTAssertEqual(call.withUnsafeBytes { send(unknownMethod, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, call.count)
        XCTAssertTrue(readsToEnd(silent, within: 10), "a connection that sent nothing is closed")
        XCTAssertTrue(readsToEnd(prefaceOnly, within: 10), "a connection that only said hello is closed")
        XCTAssertTrue(readsToEnd(unknownMethod, within: 10), "a connection that only made a refused call is closed")
        XCTAssertEqual(server.connectionGate.closed.timedOut, 3, "the client's connection is not among them")
        XCTAssertEqual(server.connectionGate.closed.overLimit, 0)

        // Past the timeout the client's connection still serves calls.
        let value = try await client.get(Array("kept".utf8))
        XCTAssertEqual(value, Array("value".utf8))
        XCTAssertEqual(server.connectionGate.closed.timedOut, 3)
        await client.close()
        await server.shutdown()
    }

    /// A call refused as unauthenticated closes its connection, so a peer without
    /// a credential cannot keep sockets by making calls; a peer with one is not affected.
    func testAnUnauthenticatedCallClosesItsConnection() async throws {
        let host = try await InProcessServer("Unauthenticated") { configuration in
            configuration.connectionGraceTime = .milliseconds(500)
        }
        let server = host.server, bound = host.address
        defer { withExtendedLifetime(host) {} }  // (the instance lives to the end of the test)
        let owner = try RemoteInstance(address: bound, secret: try SharedSecret(Workspace.token))
        try await owner.put(Array("k".utf8), Array("v".utf8))

        let intruder = try RemoteInstance(address: bound, secret: try SharedSecret("not-the-secret-at-all-0000"))
        do {
            _ = try await intruder.describeInstance()
            XCTFail("a call with a wrong token succeeded")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unauthenticated, "\(error)")
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while server.connectionGate.closed.unauthenticated == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertEqual(server.connectionGate.closed.unauthenticated, 1, "the intruder's connection is closed")
        await intruder.close()
        let value = try await owner.get(Array("k".utf8))
        XCTAssertEqual(value, Array("v".utf8), "the owner's connection serves on")
        XCTAssertEqual(server.connectionGate.closed.unauthenticated, 1)
        await owner.close()
        await server.shutdown()
    }

    /// A connection told to go (here: idle) whose peer never answers is closed
    /// after the grace time; grpc-swift alone waited for the peer's
    /// acknowledgement for ever. The peer made one authenticated call (raw HTTP/2),
    /// then went silent.
    func testASilentPeerToldToGoIsClosedAfterTheGraceTime() async throws {
        let host = try await InProcessServer("GoAway") { configuration in
            configuration.connectionIdleTimeout = .milliseconds(300)
            configuration.connectionGraceTime = .milliseconds(300)
        }
        let server = host.server, bound = host.address
        defer { withExtendedLifetime(host) {} }  // (the instance lives to the end of the test)
        let fd = try connectRaw(to: bound)
        defer { close(fd) }
        let hello = Self.rawCall("Describe", token: Workspace.token)
        XCTAssertEqual(hello.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }, hello.count)
        // The answer (settings, headers, the description, trailers), then nothing is acknowledged.
        XCTAssertTrue(readsToEnd(fd, within: 10), "the silent connection is closed")
        XCTAssertEqual(server.connectionGate.closed.afterGoAway, 1)
        XCTAssertEqual(server.connectionGate.closed.timedOut, 0, "it made a call")
        XCTAssertEqual(server.connectionGate.closed.unauthenticated, 0, "its call was authenticated")
        await server.shutdown()
    }

    /// Beyond `maxConnectionsWithoutCall` connections waiting for their first
    /// call, a new one is closed at once (before its timeout); once the waiting
    /// ones go, calls are served again.
    func testConnectionsWaitingForAFirstCallAreCapped() async throws {
        let host = try await InProcessServer("NoCallCap") { configuration in
            configuration.firstCallTimeout = .seconds(120)
            configuration.maxConnectionsWithoutCall = 2
            configuration.connectionGraceTime = .milliseconds(500)
        }
        let server = host.server, bound = host.address
        defer { withExtendedLifetime(host) {} }  // (the instance lives to the end of the test)
        let first = try connectRaw(to: bound), second = try connectRaw(to: bound)
        let third = try connectRaw(to: bound)
        defer { close(third) }
        XCTAssertTrue(readsToEnd(third, within: 10), "the connection over the limit is closed")
        XCTAssertEqual(server.connectionGate.closed.overLimit, 1)
        XCTAssertEqual(server.connectionGate.closed.timedOut, 0, "the waiting ones are still open")
        XCTAssertTrue(isOpen(first), "the first waiting connection is still open")

        close(first)
        close(second)
        // The server sees both go (their close), then a client's connection is accepted.
        let client = try RemoteInstance(address: bound, secret: try SharedSecret(Workspace.token))
        try await client.put(Array("after".utf8), Array("flood".utf8))
        let value = try await client.get(Array("after".utf8))
        XCTAssertEqual(value, Array("flood".utf8))
        await client.close()
        await server.shutdown()
    }

    func testGarbageAndTruncatedFramesLeaveTheServerServing() async throws {
        let workspace = try Workspace("Garbage")
        let server = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 100), tokenFile: workspace.tokenFile)
        var generator = SplitMix(seed: 42)
        let garbage = (0..<65536).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        try sendRaw(garbage, to: server.address)
        // A valid HTTP/2 preface, then a frame header promising more than is sent.
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        try sendRaw(preface + [0x00, 0x40, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00], to: server.address)
        // Headers of a call without a token, cut off in the middle.
        try sendRaw(preface + [0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00] + [0x00, 0x10, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x01, 0x82, 0x86],
                    to: server.address)
        XCTAssertTrue(server.isRunning)
        let owner = try workspace.client(server.address)
        let value2 = try await owner.get(Array("key-7".utf8)).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(value2,
                       "value-7-" + String(repeating: "x", count: 100))
        let shards = try await owner.describeInstance().shards.count
        XCTAssertEqual(shards, 2)
        await owner.close()
        XCTAssertEqual(server.terminate(), 0)
    }

    /// The cutover by hand: fence the source, apply the changes from `next` to the
    /// fence's sequence, commit on the target, then on the source.
    private func fenceCatchUpAndCommit(_ plan: MigrationPlan, from next: UInt64, source: RemoteInstance, target: RemoteInstance) async throws {
        let final = try await source.fenceOutgoing(plan)
        var next = next
        while next <= final {
            let chunk = try await source.readChanges(plan, from: next, maxRecords: 1000)
            try await target.applyChanges(plan, chunk)
            next = chunk.nextSequence
        }
        try await target.commitIncoming(plan, finalSequence: final)
        try await source.commitOutgoing(plan)
    }

    /// Two servers, `a` with `keys` keys in two shards and `b` empty, clients to both,
    /// and the plan that moves a's shard 0 to b as a new shard (with its key groups),
    /// for tests that drive the protocol step by step.
    private func handDrivenMove(_ name: String, id: String, keys: Int) async throws
        -> (Workspace, ServeProcess, ServeProcess, RemoteInstance, RemoteInstance, MigrationPlan, KeyGroupRange) {
        let workspace = try Workspace(name)
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: keys), tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let source = try workspace.client(a.address, retry: .milliseconds(300))
        let target = try workspace.client(b.address, retry: .milliseconds(300))
        let from = try await source.describeInstance(), to = try await target.describeInstance()
        let shard = try XCTUnwrap(from.shards.first { $0.id == 0 })
        guard case .keyGroups(let groups) = shard.range else { throw XCTSkip("hash partitioning expected") }
        let plan = MigrationPlan(id: id, sourceInstance: from.instanceID, targetInstance: to.instanceID,
                                 sourceLocation: from.location, targetLocation: to.location, sourceShard: 0,
                                 range: shard.range, shape: .newShard, targetShard: 0)
        return (workspace, a, b, source, target, plan, groups)
    }

    /// Drives the protocol by hand to send corrupted, truncated and replayed chunks.
    func testCorruptTruncatedAndReplayedChunksAreRefusedOrIdempotent() async throws {
        let (workspace, a, b, source, target, plan, groups) = try await handDrivenMove("Replay", id: "replay-test", keys: 2000)
        defer { withExtendedLifetime(workspace) {} }  // (its folder goes with it)
        // A key of the moving shard.
        let key = try XCTUnwrap((0..<10_000).map { "k\($0)" }.first { name in
            groups.contains(Array(name.utf8).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Partitioning.defaultKeyGroups) })
        })

        try await source.prepareOutgoing(plan)
        let snapshot = try await source.openBulk(plan)
        let state = try await target.prepareIncoming(plan, snapshotSequence: snapshot)
        XCTAssertNil(state.bulkResumeKey)

        // Corrupted and truncated bulk chunks are refused; nothing is staged.
        let good = try await source.readBulk(plan, after: nil, maxBytes: 64 << 10)
        XCTAssertFalse(good.entries.isEmpty)
        var corrupt = WireBulkChunk(good)
        corrupt.crc32C ^= 1
        var truncated = WireBulkChunk(good)
        truncated.data = truncated.data.prefix(truncated.data.count / 2)
        truncated.crc32C = WireBulkChunk.checksum(data: truncated.data, keyLengths: truncated.keyLengths, valueLengths: truncated.valueLengths)
        // Marked compressed, checksum intact, but not Snappy's format for its lengths.
        var lying = WireBulkChunk(good)
        lying.compression = BulkCompression.snappy.rawValue
        for (name, chunk, code) in [("corrupt", corrupt, RPCError.Code.dataLoss), ("truncated", truncated, .invalidArgument),
                                    ("falsely compressed", lying, .invalidArgument)] {
            do {
                _ = try await target.stub.applyBulk(.with { $0.plan = WireMigrationPlan(plan); $0.chunk = chunk })
                XCTFail("\(name) chunk accepted")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, code, "\(name): \(error)")
            }
        }
        // On the stream too: the corrupt chunk is refused, not applied.
        let corruptRequest = WireApplyBulkRequest.with { $0.plan = WireMigrationPlan(plan); $0.chunk = corrupt }
        do {
            try await target.stub.applyBulkStream(requestProducer: { writer in
                try await writer.write(corruptRequest)
            }, onResponse: { response in
                for try await _ in response.messages { XCTFail("a corrupt chunk was acknowledged") }
            })
            XCTFail("corrupt chunk accepted on the stream")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .dataLoss, "\(error)")
        }
        let resume = try await target.prepareIncoming(plan, snapshotSequence: snapshot).bulkResumeKey
        XCTAssertNil(resume, "nothing staged")

        // The bulk copy (streamed: several chunks in flight, each acknowledged in order),
        // then two rounds of changes; the first round sent again changes nothing.
        let sent = LockedChunks(), acknowledged = LockedChunks()
        try await target.applyBulk(plan, chunks: {
            let last = sent.chunks.last
            if last?.done == true { return nil }
            let chunk = try await source.readBulk(plan, after: last?.lastKey, maxBytes: 16 << 10)
            sent.append(chunk)
            return chunk
        }, applied: { acknowledged.append($0) })
        XCTAssertGreaterThan(sent.chunks.count, 3)
        XCTAssertEqual(acknowledged.chunks, sent.chunks, "every chunk acknowledged once, in order")
        let staged = try await target.prepareIncoming(plan, snapshotSequence: snapshot)
        XCTAssertTrue(staged.bulkDone)
        try await source.put(Array(key.utf8), Array("old".utf8))
        let first = try await source.readChanges(plan, from: snapshot + 1, maxRecords: 1000)
        try await target.applyChanges(plan, first)
        try await source.put(Array(key.utf8), Array("new".utf8))
        let second = try await source.readChanges(plan, from: first.nextSequence, maxRecords: 1000)
        try await target.applyChanges(plan, second)
        try await target.applyChanges(plan, first)  // replayed: records at or below the applied sequence are skipped

        try await fenceCatchUpAndCommit(plan, from: second.nextSequence, source: source, target: target)
        let value3 = try await target.get(Array(key.utf8)).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(value3, "new")

        // After the commit, the old stream is refused and the value stays.
        do {
            try await target.applyChanges(plan, first)
            XCTFail("a replayed chunk after the commit was accepted")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .migrationConflict)
        }
        let value4 = try await target.get(Array(key.utf8)).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(value4, "new")
        do {
            _ = try await source.get(Array(key.utf8))
            XCTFail("the source still answers for a moved key")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .keyNotOwned)
            XCTAssertEqual(error.owner, b.address.description)
        }
        await source.close()
        await target.close()
        a.terminate()
        b.terminate()
    }

    /// A catch-up batch larger than a server takes in one message (64 MiB): big values
    /// written to the moving range during the bulk copy. It was sent as one message,
    /// refused, retried until the window ran out, and the migration rolled back.
    func testACatchUpBatchLargerThanOneMessageIsApplied() async throws {
        let (workspace, a, b, source, target, plan, groups) = try await handDrivenMove("BigCatchUp", id: "big-catch-up", keys: 200)
        defer { withExtendedLifetime(workspace) {} }  // (its folder goes with it)
        let keys = (0..<10_000).map { "big\($0)" }.filter { name in
            groups.contains(Array(name.utf8).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Partitioning.defaultKeyGroups) })
        }.prefix(3)
        XCTAssertEqual(keys.count, 3)

        try await source.prepareOutgoing(plan)
        let snapshot = try await source.openBulk(plan)
        _ = try await target.prepareIncoming(plan, snapshotSequence: snapshot)
        try await target.applyBulk(plan, chunks: { [done = LockedChunks()] in
            if done.chunks.last?.done == true { return nil }
            let chunk = try await source.readBulk(plan, after: done.chunks.last?.lastKey, maxBytes: 1 << 20)
            done.append(chunk)
            return chunk
        }, applied: { _ in })
        for (index, key) in keys.enumerated() {
            try await source.put(Array(key.utf8), [UInt8](repeating: UInt8(index + 1), count: 24 << 20))
        }
        let changes = try await source.readChanges(plan, from: snapshot + 1, maxRecords: 1000)
        XCTAssertEqual(changes.records.count, 3)
        XCTAssertGreaterThan(changes.records.reduce(0) { $0 + ($1.value?.count ?? 0) }, 64 << 20)
        try await target.applyChanges(plan, changes)

        try await fenceCatchUpAndCommit(plan, from: changes.nextSequence, source: source, target: target)
        for (index, key) in keys.enumerated() {
            let value = try await target.get(Array(key.utf8))
            XCTAssertEqual(value?.count, 24 << 20)
            XCTAssertEqual(value?.first, UInt8(index + 1))
        }
        await source.close()
        await target.close()
        a.terminate()
        b.terminate()
    }

    /// Change chunks cut for messages: in order, each part's next sequence just past
    /// its last record, the last part keeping the chunk's, a record larger than the
    /// limit alone.
    func testChangeChunksAreCutIntoMessages() {
        func record(_ sequence: UInt64, _ bytes: Int) -> ChangeRecord {
            ChangeRecord(sequence: sequence, shard: 0, operation: .put, storedKey: [0, 1, 2], storedEndKey: nil,
                         value: [UInt8](repeating: 7, count: bytes), key: [2])
        }
        let chunk = ChangeChunk(records: [record(10, 400), record(12, 400), record(13, 2000), record(20, 100)],
                                nextSequence: 40, latestSequence: 50)
        let parts = RemoteInstance.messageParts(of: chunk, maxBytes: 1000)
        XCTAssertEqual(parts.map { $0.records.map(\.sequence) }, [[10, 12], [13], [20]])
        XCTAssertEqual(parts.map(\.nextSequence), [13, 14, 40])
        XCTAssertEqual(Set(parts.map(\.latestSequence)), [50])
        XCTAssertEqual(RemoteInstance.messageParts(of: chunk, maxBytes: 1 << 20), [chunk])
        let empty = ChangeChunk(records: [], nextSequence: 5, latestSequence: 5)
        XCTAssertEqual(RemoteInstance.messageParts(of: empty, maxBytes: 1000), [empty])
    }

    /// Table files sent by hand: names that are paths, corrupt and truncated
    /// chunks, writes past the end and an incomplete file are refused; sent whole,
    /// the files become the staging shard and the migration commits.
    func testTableFileTransferRefusesBadNamesCorruptAndTruncatedFiles() async throws {
        let workspace = try Workspace("TableFiles")
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 2, keys: 2000), tokenFile: workspace.tokenFile)
        let b = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile)
        let source = try workspace.client(a.address, retry: .milliseconds(300))
        let target = try workspace.client(b.address, retry: .milliseconds(300))
        let from = try await source.describeInstance(), to = try await target.describeInstance()
        let shard = try XCTUnwrap(from.shards.first { $0.id == 0 })
        let plan = MigrationPlan(id: "files-test", sourceInstance: from.instanceID, targetInstance: to.instanceID,
                                 sourceLocation: from.location, targetLocation: to.location, sourceShard: 0,
                                 range: shard.range, shape: .newShard, targetShard: 0)
        try await source.prepareOutgoing(plan)
        let snapshot = try await source.openBulk(plan)
        _ = try await target.prepareIncoming(plan, snapshotSequence: snapshot)
        let exported = try await source.exportTableFiles(plan)
        let files = try XCTUnwrap(exported)
        XCTAssertFalse(files.isEmpty)
        XCTAssertTrue(files.allSatisfy { $0.directory.isEmpty }, "a remote export names no local folder")

        func expect(_ code: ShardDBError.Code, _ what: String, _ body: () async throws -> Void) async {
            do { try await body(); XCTFail("\(what) accepted") } catch let error as ShardDBError {
                XCTAssertEqual(error.code, code, "\(what): \(error)")
            } catch { XCTFail("\(what): \(error)") }
        }
        for name in ["../../etc/passwd", "/etc/passwd", "000001.sst/..", "CURRENT", ""] {
            await expect(.invalidArgument, "read \(name)") { _ = try await source.readTableFile(plan, name: name, offset: 0, maxBytes: 4096) }
            await expect(.invalidArgument, "write \(name)") { try await target.writeTableFile(plan, name: name, offset: 0, Data([1])) }
        }
        // Ids that are paths never reach a folder: refused on the wire.
        var escaping = plan
        escaping.id = ".."
        await expect(.invalidArgument, "release with id ..") { try await source.releaseTableFiles(escaping) }
        await expect(.migrationConflict, "a file not exported") { _ = try await source.readTableFile(plan, name: "999999.sst", offset: 0, maxBytes: 4096) }
        let first = files[0]
        let head = try await source.readTableFile(plan, name: first.name, offset: 0, maxBytes: 4096)
        // Offsets past the end (up to the largest the wire can carry) read nothing; the server stays up.
        for offset in [first.size, first.size + 1, UInt64(Int64.max), UInt64.max] {
            let past = try await source.readTableFile(plan, name: first.name, offset: offset, maxBytes: 4096)
            XCTAssertTrue(past.isEmpty, "offset \(offset)")
        }
        await expect(.invalidArgument, "a write past the end") { try await target.writeTableFile(plan, name: first.name, offset: 10_000, head) }
        var corrupt = WireTableFileChunk(head)
        corrupt.crc32C ^= 1
        do {
            _ = try await target.stub.writeTableFile(.with { $0.plan = WireMigrationPlan(plan); $0.name = first.name; $0.chunk = corrupt })
            XCTFail("corrupt chunk accepted")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .dataLoss, "\(error)")
        }
        // A compressed piece whose header claims 1 GiB is refused before anything is
        // allocated or written (relays send pieces as read; the cap is a chunk's size).
        var inflated = WireTableFileChunk()
        inflated.data = Data([0x80, 0x80, 0x80, 0x80, 0x04, 0x00])
        inflated.compression = BulkCompression.snappy.rawValue
        var crc = CRC32C()
        crc.update(inflated.data)
        inflated.crc32C = crc.checksum
        do {
            _ = try await target.stub.writeTableFile(.with { $0.plan = WireMigrationPlan(plan); $0.name = first.name; $0.chunk = inflated })
            XCTFail("a piece claiming 1 GiB accepted")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .invalidArgument, "\(error)")
            XCTAssertTrue(error.message.contains("more than"), "refused for its claimed size, not after allocating it: \(error)")
        }
        await expect(.invalidArgument, "a write past the end, after the refused piece") {
            try await target.writeTableFile(plan, name: first.name, offset: 1, head)
        }
        // Truncated: the import refuses a file shorter than exported, and nothing goes live.
        try await target.writeTableFile(plan, name: first.name, offset: 0, head)
        await expect(.invalidArgument, "an incomplete file") { _ = try await target.importTableFiles(plan, files) }
        let shardsBefore = try await target.describeInstance().shards.count
        XCTAssertEqual(shardsBefore, 0)

        // Sent whole (the first chunk again from 0: harmless), imported, caught up, committed.
        func sendAll(pieceBytes: Int = 1 << 20, rewritingTheFirstPiece: Bool = false) async throws {
            for file in files {
                var offset: UInt64 = 0
                while offset < file.size {
                    let data = try await source.readTableFile(plan, name: file.name, offset: offset, maxBytes: pieceBytes)
                    try await target.writeTableFile(plan, name: file.name, offset: offset, data)
                    offset += UInt64(data.count)
                }
                if rewritingTheFirstPiece {
                    // As a call that outlived its deadline and finished late would: the
                    // same bytes again, which used to cut off every piece after it.
                    let data = try await source.readTableFile(plan, name: file.name, offset: 0, maxBytes: pieceBytes)
                    try await target.writeTableFile(plan, name: file.name, offset: 0, data)
                }
            }
        }
        // Metadata RocksDB would trust is refused, complete files or not (a failed
        // import drops what was sent: it is sent again).
        try await sendAll()
        var misplaced = files
        misplaced[0].level = 50
        // (RocksDB's refusal, as a storage error naming the file and level.)
        await expect(.storage, "a file at level 50") { _ = try await target.importTableFiles(plan, misplaced) }
        try await sendAll(pieceBytes: 8 << 10, rewritingTheFirstPiece: true)
        XCTAssertGreaterThan(files.map(\.size).max() ?? 0, 8 << 10, "files of several pieces")
        let imported = try await target.importTableFiles(plan, files)
        XCTAssertTrue(imported)
        try await source.releaseTableFiles(plan)
        try await fenceCatchUpAndCommit(plan, from: snapshot + 1, source: source, target: target)
        let moved = try await target.describeInstance().shards.filter { $0.state == .active }.map(\.range)
        XCTAssertEqual(moved, [shard.range])
        let key = try XCTUnwrap((0..<2000).map { "key-\($0)" }.first { name in
            guard case .keyGroups(let groups) = shard.range else { return false }
            return groups.contains(Array(name.utf8).withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: Partitioning.defaultKeyGroups) })
        })
        let value = try await target.get(Array(key.utf8))
        XCTAssertNotNil(value, key)
        await source.close()
        await target.close()
        a.terminate()
        b.terminate()
    }

    /// A ``MigrationServer`` in this process over a new one-shard instance, with the
    /// test's secret and `configure` applied; the instance goes with this object
    /// (the test shuts the server down).
    private final class InProcessServer {
        let server: MigrationServer
        let address: InstanceAddress
        private let engine: ShardEngine
        private let directory: String

        init(_ name: String, _ configure: (inout MigrationServer.Configuration) -> Void) async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
            engine = try ShardEngine.create(at: directory, shards: 1)
            var configuration = MigrationServer.Configuration(secret: try SharedSecret(Workspace.token))
            configure(&configuration)
            server = MigrationServer(engine: engine, configuration: configuration)
            let bound = try await server.start()
            address = try XCTUnwrap(InstanceAddress(parsing: bound))
        }

        deinit {
            engine.close()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// The bytes of a client that opens HTTP/2 and makes one unary call to `method`
    /// of the service with an empty message (and the token, if any), by hand.
    private static func rawCall(_ method: String, token: String?) -> [UInt8] {
        func frame(_ type: UInt8, _ flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            [UInt8(payload.count >> 16 & 0xFF), UInt8(payload.count >> 8 & 0xFF), UInt8(payload.count & 0xFF), type, flags,
             UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
        }
        // HPACK literals with incremental indexing (names indexed where the static table has them).
        func literal(_ prefix: [UInt8], _ value: String) -> [UInt8] { prefix + [UInt8(value.utf8.count)] + Array(value.utf8) }
        var headers: [UInt8] = [0x83, 0x86]  // :method POST, :scheme http
        headers += literal([0x44], "/sharddb.transport.v1.ShardInstance/\(method)")
        headers += literal([0x41], "localhost")
        headers += literal([0x5F], "application/grpc")
        headers += literal([0x40, 2] + Array("te".utf8), "trailers")
        if let token { headers += literal([0x40, 15] + Array("x-sharddb-token".utf8), token) }
        return Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(0x4, 0, stream: 0, [])
            + frame(0x1, 0x4, stream: 1, headers) + frame(0x0, 0x1, stream: 1, [0, 0, 0, 0, 0])
    }

    /// A TCP connection to `address` (IPv4), blocking.
    private func connectRaw(to address: InstanceAddress) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(address.port).bigEndian)
        addr.sin_addr.s_addr = inet_addr(address.host)
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0)
        return fd
    }

    /// Reads `fd` until the peer closes it (true) or `seconds` pass without that.
    private func readsToEnd(_ fd: Int32, within seconds: Int) -> Bool {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        var n = 1
        while n > 0 { n = read(fd, &buffer, buffer.count) }
        return n == 0
    }

    /// Whether the peer has not closed `fd`: what it sent so far is read without waiting.
    private func isOpen(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { continue }
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
    }

    private func sendRaw(_ bytes: [UInt8], to address: InstanceAddress) throws {
        let fd = try connectRaw(to: address)
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        // Give the server a moment to read and reject, then hang up mid-stream.
        var timeout = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sink = [UInt8](repeating: 0, count: 4096)
        _ = recv(fd, &sink, sink.count, 0)
    }
}

/// Chunks a test collects from concurrent closures.
final class LockedChunks: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [BulkChunk] = []
    var chunks: [BulkChunk] { lock.withLock { stored } }
    func append(_ chunk: BulkChunk) { lock.withLock { stored.append(chunk) } }
}
