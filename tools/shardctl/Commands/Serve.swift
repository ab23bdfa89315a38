import ArgumentParser
import Foundation
import ShardDB
import ShardDBServer
import Synchronization

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve an instance to migration peers and remote clients over gRPC.",
        discussion: """
            Opens the instance and listens on --listen (loopback by default; port 0 picks a free \
            port). Prints 'listening on HOST:PORT' once bound. Every call must carry the secret in \
            --token-file, or come over TLS with a client certificate signed by --tls-ca: whoever has \
            either can read and overwrite every key. --tls-cert and --tls-key serve TLS; without \
            them traffic is plaintext, so keep the endpoint on loopback or a private network \
            (docs/TRANSPORT.md). SIGTERM or SIGINT stops serving and closes the instance.
            """)

    @OptionGroup var instance: InstanceOptions
    @Option(help: "HOST:PORT to listen on.") var listen = "127.0.0.1:0"
    @Option(name: .customLong("token-file"), help: "File holding the shared secret (at least 16 bytes).") var tokenFile: String?
    @Option(name: .customLong("tls-cert"), help: "Serve TLS with this certificate chain (PEM); with --tls-key.") var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "Private key (PEM) of --tls-cert.") var tlsKey: String?
    @Option(name: .customLong("tls-ca"), help: "Require client certificates signed by this CA (PEM); needs --tls-cert.") var tlsCA: String?
    @Option(name: .customLong("rate-limit"), parsing: .unconditional, help: "Cap on bulk-copy bytes read from this instance, e.g. 200MB/s.") var rateLimit: String?
    @Option(help: "HOST:PORT peers should record for this instance (default: the bound address).") var advertise: String?
    @Option(name: .customLong("peer-token-file"),
            help: "Secret this instance presents when, as a migration target, it pulls a bulk copy from the source itself (default: --token-file when serving without TLS; without one the coordinator relays the copy). A server that serves TLS presents it over TLS only, the source verified against --peer-tls-ca.")
    var peerTokenFile: String?
    @Option(name: .customLong("peer-tls-ca"),
            help: "CA (PEM) that signed the sources' server certificates, for the TLS a pull uses (default: --tls-ca, else the system's trust roots).")
    var peerTLSCA: String?
    @Option(name: .customLong("peer-tls-cert"),
            help: "Client certificate (PEM) this instance presents, over TLS, to a source it pulls a bulk copy from; with --peer-tls-key, the source verified against --peer-tls-ca, else --tls-ca.")
    var peerTLSCert: String?
    @Option(name: .customLong("peer-tls-key"), help: "Private key (PEM) of --peer-tls-cert.") var peerTLSKey: String?
    @Flag(help: """
        fsync the write-ahead log before each write is acknowledged, so an acknowledged \
        write survives a power failure, not only a crash of this process (slower: one \
        disk flush per write, shared by writes that arrive together).
        """) var sync = false

    /// Options that go together or need another: a usage error (status 64).
    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard tlsCA == nil || tlsCert != nil else {
            throw ValidationError("--tls-ca (client certificates) needs TLS: give --tls-cert and --tls-key")
        }
        guard tokenFile != nil || tlsCA != nil else { throw ValidationError("give --token-file, or --tls-ca to authenticate clients by certificate") }
        guard (peerTLSCert == nil) == (peerTLSKey == nil) else { throw ValidationError("--peer-tls-cert and --peer-tls-key go together") }
        guard peerTLSCert == nil || tlsCA != nil || peerTLSCA != nil else {
            throw ValidationError("--peer-tls-cert needs --tls-ca or --peer-tls-ca (the CA that signed the sources' certificates)")
        }
        guard peerTLSCA == nil || tlsCert != nil || peerTLSCert != nil else {
            throw ValidationError("--peer-tls-ca is for pulls over TLS: give --tls-cert and --tls-key, or --peer-tls-cert and --peer-tls-key")
        }
    }

    func run() async throws {
        let (configuration, engine) = try failing { () throws -> (MigrationServer.Configuration, ShardEngine) in
            guard let address = InstanceAddress(parsing: listen) else {
                throw ShardDBError(.invalidArgument, "--listen '\(listen)' is not HOST:PORT")
            }
            // Peers record this address as the new owner of what moves here: it must be one they can dial.
            if let advertise, (InstanceAddress(parsing: advertise)?.port ?? 0) == 0 {
                throw ShardDBError(.invalidArgument, "--advertise '\(advertise)' is not HOST:PORT with a port from 1 to 65535")
            }
            if let advertise, let advertised = InstanceAddress(parsing: advertise), MigrationServer.isWildcard(advertised.host) {
                throw ShardDBError(.invalidArgument,
                    "--advertise \(advertise) is every interface, which peers cannot dial: give the address they should record (this host's name or IP)")
            }
            guard advertise != nil || !MigrationServer.isWildcard(address.host) else {
                throw ShardDBError(.invalidArgument,
                    "--listen \(listen) is every interface, which peers cannot dial: give --advertise HOST:PORT, the address they should record")
            }
            let tls = try tlsCert.map { try ServerTLS(certificateChain: $0, privateKey: tlsKey!, clientCertificateAuthority: tlsCA) }
            let secret = try tokenFile.map { try SharedSecret(contentsOf: $0) }
            let peerSecret = try peerTokenFile.map { try SharedSecret(contentsOf: $0) }
            // A server that serves TLS pulls over TLS too: a peer secret sent in plaintext
            // would go to whoever answers at the source's address, in clear on the wire.
            let peerCA = peerTLSCA ?? tlsCA
            var peers = try peerSecret.map {
                PeerCredentials(secret: $0, tls: tls == nil ? nil : try ClientTLS(certificateAuthority: peerCA))
            }
            if let peerTLSCert, let peerTLSKey {
                peers = PeerCredentials(secret: peerSecret ?? secret,
                                        tls: try ClientTLS(certificateAuthority: peerCA, certificateChain: peerTLSCert, privateKey: peerTLSKey))
            }
            let configuration = MigrationServer.Configuration(
                listen: address, secret: secret, tls: tls, advertisedAddress: advertise,
                bulkRateLimit: try rateLimit.map { try ByteRate(parsing: $0) }, peers: peers)
            var options = instance.engineOptions()
            options.syncWrites = sync
            return (configuration, try ShardEngine.open(at: instance.directory, options: options))
        }
        let server = MigrationServer(engine: engine, configuration: configuration)
        let bound: String
        do { bound = try await server.start() } catch {
            engine.close()
            fail("cannot listen on \(listen): \(Self.bindFailure(listen) ?? "\(error)")")
        }
        // Before "listening on": a supervisor that stops the server as soon as it
        // reports ready finds the handlers in place.
        let stopping = Mutex(false)
        StopSignals.install {
            stopping.withLock { $0 = true }
            Task { await server.shutdown() }
        }
        // Once serving (a refused start stays one line of error).
        for file in [tokenFile, peerTokenFile].compactMap({ $0 }) {
            if let exposure = SharedSecret.exposure(ofFile: file) { writeStandardError(Data("shardctl: warning: \(exposure)\n".utf8)) }
        }
        print("listening on \(bound)")
        fflush(stdout)
        do {
            try await server.run()
        } catch where !stopping.withLock({ $0 }) {
            // The transport stopped on its own: not the clean stop a signal asks for
            // (which may end the serving task with an error once its grace time is up).
            engine.close()
            fail("serving \(bound) failed: \(error)")
        } catch {}
        engine.close()
        writeStandardError(Data("shardctl: stopped serving \(bound)\n".utf8))
    }

    /// Why binding `listen` fails, found by trying it with a plain socket (the
    /// transport's own error only says no address was bound); nil when it binds.
    static func bindFailure(_ listen: String) -> String? {
        guard let address = InstanceAddress(parsing: listen) else { return nil }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &result)
        guard status == 0, let first = result else { return "cannot resolve '\(address.host)': \(String(cString: gai_strerror(status)))" }
        defer { freeaddrinfo(result) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))  // as the server does
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else { return String(cString: strerror(errno)) }
        return nil
    }
}
