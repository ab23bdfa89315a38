import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import ShardDB

/// The secret every peer of a migration endpoint presents (`--token-file`).
///
/// Whoever holds it can read and overwrite every key of the instance
/// (docs/TRANSPORT.md, "Threat model"); keep the file mode 0600.
public struct SharedSecret: Sendable {
    /// The metadata header that carries the secret on every call.
    public static let header = "x-sharddb-token"
    static let minimumLength = 16
    /// Longer secrets do not fit the HTTP/2 header limits peers enforce (calls would fail as resets).
    static let maximumLength = 4096

    let bytes: [UInt8]

    /// - throws: `.invalidArgument` when the secret is shorter than 16 bytes, longer
    ///   than 4096, or holds anything but printable ASCII (it travels as a header value).
    public init(_ text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count >= Self.minimumLength else {
            throw ShardDBError(.invalidArgument, "the token must be at least \(Self.minimumLength) bytes long")
        }
        guard trimmed.utf8.count <= Self.maximumLength else {
            throw ShardDBError(.invalidArgument, "the token must be at most \(Self.maximumLength) bytes long, got \(trimmed.utf8.count)")
        }
        guard trimmed.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw ShardDBError(.invalidArgument, "the token must be printable ASCII (it is sent as an HTTP/2 header value)")
        }
        bytes = Array(trimmed.utf8)
    }

    /// Reads the secret from a file (surrounding whitespace ignored).
    ///
    /// - throws: `.invalidArgument` when the file cannot be read or the secret is too short.
    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ShardDBError(.invalidArgument, "cannot read the token file \(path)")
        }
        do { try self.init(String(decoding: data, as: UTF8.self)) } catch let error as ShardDBError {
            throw ShardDBError(error.code, "token file \(path): \(error.message)")
        }
    }

    /// Why the token file at `path` is exposed to more than its owner (its mode
    /// lets the group or others read it, e.g. 0644 from the default umask, or
    /// replace it); nil when only its owner can, or when it cannot be examined.
    /// Not a refusal: secrets mounted by an orchestrator are often 0644 in a
    /// private volume; `shardctl serve` warns.
    public static func exposure(ofFile path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let mode = info.st_mode & 0o777
        let what: String
        if mode & 0o044 != 0 {
            what = "other users of this host can read the secret, which reads and overwrites all state"
        } else if mode & 0o022 != 0 {
            what = "other users of this host can replace the secret"
        } else {
            return nil
        }
        return "token file \(path) has mode 0\(String(mode, radix: 8)): \(what) (chmod 600 \(path))"
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Compares in time independent of where the inputs differ.
    func matches(_ presented: String) -> Bool {
        let other = Array(presented.utf8)
        // The whole length difference counts (folded into 8 bits, a secret followed by
        // 256 more bytes would pass), then every byte of the secret.
        var difference = UInt64(truncatingIfNeeded: other.count ^ bytes.count)
        for i in 0..<bytes.count {
            difference |= UInt64(bytes[i] ^ (i < other.count ? other[i] : 0))
        }
        return difference == 0
    }
}

/// Refuses every call that neither carries the shared secret nor arrives
/// over a connection whose client certificate the TLS handshake verified,
/// before the service reads a message or touches the engine.
struct CallAuthentication: ServerInterceptor {
    let secret: SharedSecret?
    /// The handshake requires and verifies client certificates (``ServerTLS/clientCertificateAuthority``).
    let verifiesClientCertificates: Bool
    /// Told the peer (`ServerContext.remotePeer`) of each call that passed.
    var passed: @Sendable (String) -> Void = { _ in }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        if verifiesClientCertificates, (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate != nil {
            passed(context.remotePeer)
            return try await next(request, context)
        }
        let presented = request.metadata[stringValues: SharedSecret.header].first(where: { _ in true })
        guard let secret, let presented, secret.matches(presented) else {
            return StreamingServerResponse(error: RPCError(code: .unauthenticated, message: "missing or wrong \(SharedSecret.header)"))
        }
        passed(context.remotePeer)
        return try await next(request, context)
    }
}

/// Attaches the shared secret to every outgoing call.
struct TokenAttach: ClientInterceptor {
    let secret: SharedSecret

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingClientRequest<Input>,
        context: ClientContext,
        next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
    ) async throws -> StreamingClientResponse<Output> {
        var request = request
        request.metadata.replaceOrAddString(secret.text, forKey: SharedSecret.header)
        return try await next(request, context)
    }
}
