import Foundation
import GRPCNIOTransportHTTP2
import NIOSSL
import ShardDB

/// The TLS identity and trust of a ``MigrationServer`` (PEM files).
///
/// With ``clientCertificateAuthority`` set, the TLS handshake requires a
/// client certificate signed by that CA (mutual TLS) and such a certificate
/// authenticates its calls on its own; without it, calls must carry the
/// shared secret (docs/TRANSPORT.md, "Authentication").
///
/// ```swift
/// let tls = try ServerTLS(certificateChain: "server.pem", privateKey: "server.key", clientCertificateAuthority: "ca.pem")
/// ```
public struct ServerTLS: Sendable {
    /// The server's certificate, then any intermediates.
    public let certificateChain: [UInt8]
    public let privateKey: [UInt8]
    /// The CA that signs client certificates; nil accepts clients without one (they need the token).
    public let clientCertificateAuthority: [UInt8]?

    /// Reads and checks the PEM files now (each parses; the key belongs to the
    /// certificate), so bad material fails here, naming the file, rather than
    /// as a server that cannot start or a handshake that fails.
    ///
    /// - throws: `.invalidArgument` when a file cannot be read, does not parse, or the key does not match.
    public init(certificateChain: String, privateKey: String, clientCertificateAuthority: String? = nil) throws {
        self.certificateChain = try readPEM(certificateChain, what: "certificate")
        self.privateKey = try readPEM(privateKey, what: "private key")
        self.clientCertificateAuthority = try clientCertificateAuthority.map { try readPEM($0, what: "CA certificate") }
        try checkIdentity(chain: self.certificateChain, chainPath: certificateChain, key: self.privateKey, keyPath: privateKey)
        if let ca = self.clientCertificateAuthority, let path = clientCertificateAuthority { try checkCertificates(ca, path: path) }
    }

    var transportSecurity: HTTP2ServerTransport.Posix.TransportSecurity {
        .tls(HTTP2ServerTransport.Posix.TransportSecurity.TLS(
            certificateChain: [.bytes(certificateChain, format: .pem)],
            privateKey: .bytes(privateKey, format: .pem),
            // Any mode but "none" makes the handshake fail when the client presents no certificate.
            clientCertificateVerification: clientCertificateAuthority == nil ? .noVerification : .noHostnameVerification,
            trustRoots: clientCertificateAuthority.map { .certificates([.bytes($0, format: .pem)]) } ?? .systemDefault,
            requireALPN: false))
    }
}

/// How a ``RemoteInstance`` secures its connection (PEM files): the CA that
/// must have signed the server's certificate, and optionally a client
/// certificate for servers that require one.
///
/// ```swift
/// let tls = try ClientTLS(certificateAuthority: "ca.pem", certificateChain: "client.pem", privateKey: "client.key")
/// ```
public struct ClientTLS: Sendable {
    /// Trust roots for the server's certificate; nil uses the system's.
    public let certificateAuthority: [UInt8]?
    public let certificateChain: [UInt8]?
    public let privateKey: [UInt8]?

    /// The server's certificate must name the host dialled (IP or DNS subject alternative name).
    ///
    /// - throws: `.invalidArgument` when a file cannot be read, or only one of certificate and key is given.
    public init(certificateAuthority: String?, certificateChain: String? = nil, privateKey: String? = nil) throws {
        guard (certificateChain == nil) == (privateKey == nil) else {
            throw ShardDBError(.invalidArgument, "a client certificate needs its private key (both --tls-cert and --tls-key)")
        }
        self.certificateAuthority = try certificateAuthority.map { try readPEM($0, what: "CA certificate") }
        self.certificateChain = try certificateChain.map { try readPEM($0, what: "certificate") }
        self.privateKey = try privateKey.map { try readPEM($0, what: "private key") }
        if let ca = self.certificateAuthority, let path = certificateAuthority { try checkCertificates(ca, path: path) }
        if let chain = self.certificateChain, let key = self.privateKey, let chainPath = certificateChain, let keyPath = privateKey {
            try checkIdentity(chain: chain, chainPath: chainPath, key: key, keyPath: keyPath)
        }
    }

    var transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity {
        .tls(HTTP2ClientTransport.Posix.TransportSecurity.TLS(
            certificateChain: certificateChain.map { [.bytes($0, format: .pem)] } ?? [],
            privateKey: privateKey.map { .bytes($0, format: .pem) },
            serverCertificateVerification: .fullVerification,
            trustRoots: certificateAuthority.map { .certificates([.bytes($0, format: .pem)]) } ?? .systemDefault))
    }
}

private func readPEM(_ path: String, what: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ShardDBError(.invalidArgument, "cannot read the \(what) file \(path)")
    }
    guard String(decoding: data, as: UTF8.self).contains("-----BEGIN ") else {
        throw ShardDBError(.invalidArgument, "the \(what) file \(path) is not PEM")
    }
    return [UInt8](data)
}

/// The certificates in a PEM file; throws naming the file when there are none or one does not parse.
@discardableResult
private func checkCertificates(_ pem: [UInt8], path: String) throws -> [NIOSSLCertificate] {
    let certificates: [NIOSSLCertificate]
    do { certificates = try NIOSSLCertificate.fromPEMBytes(pem) } catch {
        throw ShardDBError(.invalidArgument, "\(path) holds no usable PEM certificate (\(error))")
    }
    guard !certificates.isEmpty else { throw ShardDBError(.invalidArgument, "\(path) holds no PEM certificate") }
    return certificates
}

/// The certificate chain and private key parse, and the key is the certificate's.
private func checkIdentity(chain: [UInt8], chainPath: String, key: [UInt8], keyPath: String) throws {
    let certificates = try checkCertificates(chain, path: chainPath)
    let privateKey: NIOSSLPrivateKey
    do { privateKey = try NIOSSLPrivateKey(bytes: key, format: .pem) } catch {
        throw ShardDBError(.invalidArgument, "\(keyPath) holds no usable PEM private key (\(error))")
    }
    // Building a context checks that the key matches the leaf certificate.
    do {
        _ = try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: certificates.map { .certificate($0) }, privateKey: .privateKey(privateKey)))
    } catch {
        throw ShardDBError(.invalidArgument, "the private key \(keyPath) does not belong to the certificate \(chainPath) (\(error))")
    }
}
