import ArgumentParser
import Foundation
import ShardDB
import ShardDBServer

/// How commands reach live instances (`HOST:PORT`): credentials, TLS and patience.
struct RemoteOptions: ParsableArguments {
    @Option(name: .customLong("token-file"), help: "File holding the shared secret of the instances given as HOST:PORT.")
    var tokenFile: String?

    @Option(name: .customLong("tls-ca"), help: "Connect over TLS, trusting servers whose certificate this CA (PEM) signed.")
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "Client certificate (PEM) to present to servers that require one; with --tls-key.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "Private key (PEM) of --tls-cert.")
    var tlsKey: String?

    @Option(name: .customLong("retry-seconds"), parsing: .unconditional, help: "How long a call to a live instance is retried when the connection fails.")
    var retrySeconds: Double = 30

    @Option(name: .customLong("call-timeout"), parsing: .unconditional,
            help: "The deadline of each call to a live instance, in seconds (a peer that accepts the connection and never answers fails after it).")
    var callTimeout: Double = 60

    /// The connection options given on the command line, by flag name.
    var givenConnectionOptions: [String] {
        [("--token-file", tokenFile != nil), ("--tls-ca", tlsCA != nil), ("--tls-cert", tlsCert != nil), ("--tls-key", tlsKey != nil)]
            .filter(\.1).map(\.0)
    }

    /// - parameters:
    ///   - wireCompression: what a target asked to pull a bulk copy asks the source
    ///     for, and what this process asks for the chunks it relays.
    func connect(_ address: InstanceAddress, wireCompression: BulkCompression = .snappy) throws -> RemoteInstance {
        guard tokenFile != nil || tlsCert != nil else {
            throw ShardDBError(.invalidArgument, "\(address) is a live instance: --token-file or a client certificate (--tls-cert) is required")
        }
        let tls = tlsCA != nil || tlsCert != nil || tlsKey != nil
            ? try ClientTLS(certificateAuthority: tlsCA, certificateChain: tlsCert, privateKey: tlsKey) : nil
        guard retrySeconds.isFinite, (0...86_400).contains(retrySeconds) else {
            throw ShardDBError(.invalidArgument, "--retry-seconds must be between 0 and 86400, got \(retrySeconds)")
        }
        guard callTimeout.isFinite, callTimeout >= 0.1, callTimeout <= 86_400 else {
            throw ShardDBError(.invalidArgument, "--call-timeout must be between 0.1 and 86400 seconds, got \(callTimeout)")
        }
        var configuration = RemoteInstance.Configuration()
        configuration.retryWindow = .milliseconds(Int64(retrySeconds * 1000))
        configuration.callTimeout = .milliseconds(Int64(callTimeout * 1000))
        configuration.closeGrace = min(configuration.closeGrace, configuration.callTimeout)
        configuration.pullCompression = wireCompression
        configuration.readCompression = wireCompression  // (what this coordinator relays, forwarded as it comes)
        return try RemoteInstance(address: address, secret: try tokenFile.map { try SharedSecret(contentsOf: $0) }, tls: tls,
                                  configuration: configuration)
    }
}

/// How a bulk copy travels between two live instances (migrate, rescale).
struct WireOptions: ParsableArguments {
    @Option(name: .customLong("wire-compression"),
            help: "Between two live instances, how the bulk copy travels (entries or table files, pulled by the target or relayed through this process): snappy (each chunk or piece compressed when that saves an eighth or more; the default) or none (less CPU on both ends, more bytes on the network).")
    var method: WireCompressionArgument = .snappy

    var compression: BulkCompression {
        switch method {
        case .snappy: return .snappy
        case .none: return .none
        }
    }
}

/// `--wire-compression`'s values: ``BulkCompression``'s names (its raw values are
/// the wire's numbers, which the parser would show as the default).
enum WireCompressionArgument: String, ExpressibleByArgument, CaseIterable {
    case snappy, none
}

/// An instance named on the command line: a directory opened in this
/// process, or a live instance at `HOST:PORT` (anything with a colon and a
/// numeric port) reached through its `shardctl serve` endpoint.
enum InstanceEndpoint {
    case local(ShardEngine)
    case remote(RemoteInstance)

    /// - parameters:
    ///   - verbose: log the opened engine's events to stderr (a directory's; a live instance logs in its own process).
    ///   - createLike: create a missing directory as an empty instance with this partitioning.
    ///   - linkTableFiles: a directory's engine hard-links table files a migration brings in from an engine in this process (false: copies them).
    ///   - wireCompression: how bulk entries travel between two live instances (``WireOptions``).
    static func open(_ spec: String, remote: RemoteOptions, verbose: Bool = false,
                     createLike: Partitioning? = nil, linkTableFiles: Bool = true,
                     wireCompression: BulkCompression = .snappy) throws -> InstanceEndpoint {
        if let address = InstanceAddress(parsing: spec) { return .remote(try remote.connect(address, wireCompression: wireCompression)) }
        if InstanceAddress.looksLikeAddress(spec) {
            throw ShardDBError(.invalidArgument, "'\(spec)' is not HOST:PORT (an IPv6 address goes in brackets: [::1]:7400); a directory would need a '/' (./\(spec))")
        }
        var options = shardctlEngineOptions(verbose: verbose)
        options.migrationLinkTableFiles = linkTableFiles
        if let partitioning = createLike, !FileManager.default.fileExists(atPath: spec + "/CURRENT") {
            return .local(try ShardEngine.create(at: spec, shards: 0, partitioning: partitioning, options: options))
        }
        return .local(try ShardEngine.open(at: spec, options: options))
    }

    var endpoint: any MigrationSource & MigrationTarget {
        switch self {
        case .local(let engine): return engine
        case .remote(let remote): return remote
        }
    }

    var isRemote: Bool { if case .remote = self { return true } else { return false } }

    func close() async {
        switch self {
        case .local(let engine): engine.close()
        case .remote(let remote): await remote.close()
        }
    }
}

/// Opens every spec (closing the opened ones if one fails).
func openEndpoints(_ specs: [String], remote: RemoteOptions, verbose: Bool = false,
                   linkTableFiles: Bool = true, wireCompression: BulkCompression = .snappy) throws -> [String: InstanceEndpoint] {
    var opened: [String: InstanceEndpoint] = [:]
    do {
        for spec in specs where opened[spec] == nil {
            opened[spec] = try InstanceEndpoint.open(spec, remote: remote, verbose: verbose, linkTableFiles: linkTableFiles,
                                                     wireCompression: wireCompression)
        }
    } catch {
        for endpoint in opened.values { if case .local(let engine) = endpoint { engine.close() } }
        throw error
    }
    return opened
}
