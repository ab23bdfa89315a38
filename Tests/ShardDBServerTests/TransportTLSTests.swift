import Foundation
import GRPCCore
import ShardDB
import ShardDBServer
import TestSupport
import XCTest

/// `shardctl serve` over TLS on loopback: mutual TLS authenticates without a
/// token; a client without a certificate, with one from another CA, or
/// speaking plaintext is refused and changes nothing.
final class TransportTLSTests: XCTestCase {
    private func shardctl(_ arguments: [String]) async throws -> Shardctl.Result {
        try await Task.detached { try Shardctl.run(arguments) }.value
    }

    private func mutualTLSServer(_ directory: String, _ ca: TestCertificates, _ identity: TestCertificates.Identity,
                                 peer: TestCertificates.Identity? = nil) throws -> ServeProcess {
        try ServeProcess(directory: directory, tokenFile: nil,
                         extra: ["--tls-cert", identity.certificate, "--tls-key", identity.key, "--tls-ca", ca.authority]
                            + (peer.map { ["--peer-tls-cert", $0.certificate, "--peer-tls-key", $0.key] } ?? []))
    }

    private func client(_ address: InstanceAddress, ca: TestCertificates, identity: TestCertificates.Identity?) throws -> RemoteInstance {
        var configuration = RemoteInstance.Configuration()
        configuration.retryWindow = .seconds(1)
        configuration.callTimeout = .seconds(10)
        let tls = try ClientTLS(certificateAuthority: ca.authority, certificateChain: identity?.certificate, privateKey: identity?.key)
        return try RemoteInstance(address: address, secret: nil, tls: tls, configuration: configuration)
    }

    func testMutualTLSMigrationBetweenProcesses() async throws {
        let workspace = try Workspace("MutualTLS")
        let ca = try TestCertificates(in: workspace.root, name: "trusted")
        let serverIdentity = try ca.server(), clientIdentity = try ca.client()
        let a = try mutualTLSServer(try workspace.makeInstance("a", shards: 2, keys: 4000), ca, serverIdentity)
        // The target presents a client certificate of the same CA to the source, so it pulls the copy itself.
        let b = try mutualTLSServer(try workspace.makeEmpty("b"), ca, serverIdentity, peer: clientIdentity)
        let credentials = ["--tls-ca", ca.authority, "--tls-cert", clientIdentity.certificate, "--tls-key", clientIdentity.key]

        let result = try await shardctl(["migrate", "--from", a.address.description, "--to", b.address.description,
                                         "--shard", "1", "--json"] + credentials)
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout)
        XCTAssertGreaterThan(report["keysCopied"] as? Int ?? 0, 1000)
        XCTAssertEqual(report["bulkRoute"] as? String, "direct")

        let put = try await shardctl(["put", "--remote", b.address.description] + credentials + ["tls-key", "tls-value"])
        XCTAssertEqual(put.status, 0, put.stderr)
        let source = try client(a.address, ca: ca, identity: clientIdentity)
        let target = try client(b.address, ca: ca, identity: clientIdentity)
        try await assertOwnership([source, target])
        var onTarget = 0
        for i in stride(from: 0, to: 4000, by: 7) {
            let key = Array("key-\(i)".utf8)
            let value: [UInt8]?
            do { value = try await source.get(key) } catch let error as ShardDBError where error.code == .keyNotOwned {
                XCTAssertEqual(error.owner, b.address.description)
                value = try await target.get(key)
                onTarget += 1
            }
            XCTAssertEqual(value.map { String(decoding: $0, as: UTF8.self) }, "value-\(i)-" + String(repeating: "x", count: 100))
        }
        XCTAssertGreaterThan(onTarget, 50)

        // Without a peer certificate the TLS-only target cannot pull: the copy is relayed.
        let c = try mutualTLSServer(try workspace.makeEmpty("c"), ca, serverIdentity)
        let relayed = try await shardctl(["migrate", "--from", a.address.description, "--to", c.address.description,
                                          "--shard", "0", "--bulk-transfer", "entries", "--json"] + credentials)
        XCTAssertEqual(relayed.status, 0, relayed.stderr)
        let relayReport = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(relayed.stdout.utf8)) as? [String: Any], relayed.stdout)
        XCTAssertEqual(relayReport["bulkRoute"] as? String, "relay")
        XCTAssertEqual(c.terminate(), 0)
        await source.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    func testClientsWithoutATrustedCertificateAreRefused() async throws {
        let workspace = try Workspace("RefusedTLS")
        let ca = try TestCertificates(in: workspace.root, name: "trusted")
        let other = try TestCertificates(in: workspace.root, name: "other")
        let serverIdentity = try ca.server(), clientIdentity = try ca.client()
        let strangerIdentity = try other.client("stranger")
        let a = try mutualTLSServer(try workspace.makeInstance("a", shards: 2, keys: 500), ca, serverIdentity)
        let b = try mutualTLSServer(try workspace.makeEmpty("b"), ca, serverIdentity)

        let refused: [(String, [String])] = [
            ("no client certificate", ["--tls-ca", ca.authority, "--token-file", workspace.tokenFile]),
            ("a certificate from another CA", ["--tls-ca", ca.authority, "--tls-cert", strangerIdentity.certificate,
                                               "--tls-key", strangerIdentity.key]),
            ("plaintext", ["--token-file", workspace.tokenFile]),
        ]
        for (name, credentials) in refused {
            let options = credentials + ["--retry-seconds", "0.5"]
            let put = try await shardctl(["put", "--remote", a.address.description] + options + ["key-1", "evil"])
            XCTAssertEqual(put.status, 2, "\(name): put was not refused: \(put.stdout)")
            XCTAssertEqual(put.stderr.split(separator: "\n").count, 1, "\(name): one line: \(put.stderr)")
            XCTAssertTrue(put.stderr.contains("TLS refused"), "\(name): the error names the likely cause: \(put.stderr)")
            let get = try await shardctl(["get", "--remote", a.address.description] + options + ["key-1"])
            XCTAssertEqual(get.status, 2, "\(name): get was not refused: \(get.stdout)")
            XCTAssertFalse(get.stdout.contains("value-1"), "\(name): data leaked")
            let migrate = try await shardctl(["migrate", "--from", a.address.description, "--to", b.address.description,
                                              "--shard", "0"] + options)
            XCTAssertEqual(migrate.status, 2, "\(name): migrate was not refused: \(migrate.stdout)")
        }
        XCTAssertTrue(a.isRunning && b.isRunning)

        // Nothing changed: the value, the shard maps, no migration started on either side.
        let owner = try client(a.address, ca: ca, identity: clientIdentity)
        let target = try client(b.address, ca: ca, identity: clientIdentity)
        let value = try await owner.get(Array("key-1".utf8)).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(value, "value-1-" + String(repeating: "x", count: 100))
        let from = try await owner.describeInstance(), to = try await target.describeInstance()
        XCTAssertEqual(from.shards.filter { $0.state == .active }.count, 2)
        XCTAssertTrue(to.shards.isEmpty)
        XCTAssertTrue(from.unfinishedMigrations.isEmpty && to.unfinishedMigrations.isEmpty)
        await owner.close()
        await target.close()
        XCTAssertEqual(a.terminate(), 0)
        XCTAssertEqual(b.terminate(), 0)
    }

    /// TLS without client certificates: the token still authenticates, and is still required.
    func testTLSWithTokenRequiresTheToken() async throws {
        let workspace = try Workspace("TokenTLS")
        let ca = try TestCertificates(in: workspace.root, name: "trusted")
        let serverIdentity = try ca.server()
        let a = try ServeProcess(directory: try workspace.makeInstance("a", shards: 1, keys: 10), tokenFile: workspace.tokenFile,
                                 extra: ["--tls-cert", serverIdentity.certificate, "--tls-key", serverIdentity.key])
        let ok = try await shardctl(["get", "--remote", a.address.description, "--tls-ca", ca.authority,
                                     "--token-file", workspace.tokenFile, "key-3"])
        XCTAssertEqual(ok.stdout, "value-3-" + String(repeating: "x", count: 100) + "\n", ok.stderr)

        let wrongToken = workspace.path("wrong-token")
        try "another-secret-of-some-length".write(toFile: wrongToken, atomically: true, encoding: .utf8)
        let refused = try await shardctl(["put", "--remote", a.address.description, "--tls-ca", ca.authority,
                                          "--token-file", wrongToken, "key-3", "evil"])
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("unauthenticated") || refused.stderr.contains("x-sharddb-token"), refused.stderr)
        // A server certificate from a CA the client does not trust is refused by the client.
        let other = try TestCertificates(in: workspace.root, name: "other")
        let untrusted = try await shardctl(["get", "--remote", a.address.description, "--tls-ca", other.authority,
                                            "--token-file", workspace.tokenFile, "--retry-seconds", "0.5", "key-3"])
        XCTAssertEqual(untrusted.status, 2, untrusted.stdout)
        let after = try await shardctl(["get", "--remote", a.address.description, "--tls-ca", ca.authority,
                                        "--token-file", workspace.tokenFile, "key-3"])
        XCTAssertEqual(after.stdout, ok.stdout, after.stderr)
        XCTAssertEqual(a.terminate(), 0)
    }

    /// A server that serves TLS presents its peer secret over TLS only. It dialled the
    /// source a coordinator named in plaintext, so whoever answered at that address
    /// (or watched the wire) read the secret in the call's headers.
    func testATLSServerPullsFromASourceOverTLSOnly() async throws {
        let workspace = try Workspace("PeerTLS")
        let ca = try TestCertificates(in: workspace.root, name: "trusted")
        let serverIdentity = try ca.server()
        let target = try ServeProcess(directory: try workspace.makeEmpty("b"), tokenFile: workspace.tokenFile,
                                      extra: ["--tls-cert", serverIdentity.certificate, "--tls-key", serverIdentity.key,
                                              "--peer-token-file", workspace.tokenFile])
        // A "source" that records the first bytes its first connection sends.
        let listener = try LoopbackListener()
        let port = listener.port
        let received = LockedBytes()
        let reader = Thread { received.set(listener.firstBytes()) }
        reader.start()

        var configuration = RemoteInstance.Configuration()
        configuration.retryWindow = .seconds(1)
        configuration.callTimeout = .seconds(20)
        let client = try RemoteInstance(address: target.address, secret: try SharedSecret(Workspace.token),
                                        tls: try ClientTLS(certificateAuthority: ca.authority), configuration: configuration)
        let plan = MigrationPlan(id: "peer-tls", sourceInstance: "s", targetInstance: "t", sourceLocation: "127.0.0.1:\(port)",
                                 targetLocation: target.address.description, sourceShard: 0,
                                 range: .keyGroups(KeyGroupRange(0, 10)), shape: .newShard, targetShard: 1)
        let pulled = try await client.pullBulk(plan, fromSourceAt: "127.0.0.1:\(port)", after: nil, maxBytes: 4096) { _ in }
        await client.close()
        XCTAssertFalse(pulled, "nothing answering TLS there: the coordinator relays")
        let bytes = try XCTUnwrap(received.wait(seconds: 10), "the target never dialled the source")
        XCTAssertEqual(bytes.first, 0x16, "a TLS handshake record, not plaintext HTTP/2: \(bytes.prefix(24))")
        XCTAssertFalse(String(decoding: bytes, as: UTF8.self).contains("PRI * HTTP/2.0"))
        XCTAssertEqual(target.terminate(), 0)
    }

    /// The library's rule behind `serve`'s: a TLS server given peer credentials
    /// without TLS (which would send the peer secret in clear on a pull) does
    /// not start; with TLS for its peers, or none, it does.
    func testATLSServerWithPlaintextPeerCredentialsDoesNotStart() async throws {
        let workspace = try Workspace("PeerTLSLibrary")
        let ca = try TestCertificates(in: workspace.root, name: "trusted")
        let identity = try ca.server()
        let engine = try ShardEngine.create(at: workspace.path("a"), shards: 1)
        defer { engine.close() }
        let secret = try SharedSecret(Workspace.token)
        let tls = try ServerTLS(certificateChain: identity.certificate, privateKey: identity.key)
        let plaintext = MigrationServer(engine: engine, configuration: MigrationServer.Configuration(
            secret: secret, tls: tls, peers: PeerCredentials(secret: secret)))
        do {
            _ = try await plaintext.start()
            XCTFail("a TLS server with plaintext peer credentials started")
        } catch let error as ShardDBError {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertTrue(error.message.contains("in clear"), error.message)
        }
        for peers in [PeerCredentials(secret: secret, tls: try ClientTLS(certificateAuthority: ca.authority)), nil] {
            let server = MigrationServer(engine: engine, configuration: MigrationServer.Configuration(secret: secret, tls: tls, peers: peers))
            _ = try await server.start()
            await server.shutdown()
        }
    }
}

/// Bytes one thread hands another.
private final class LockedBytes: @unchecked Sendable {
    private let condition = NSCondition()
    private var bytes: [UInt8]?

    func set(_ value: [UInt8]) {
        condition.lock(); bytes = value; condition.broadcast(); condition.unlock()
    }

    func wait(seconds: Double) -> [UInt8]? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock(); defer { condition.unlock() }
        while bytes == nil && condition.wait(until: deadline) {}
        return bytes
    }
}
