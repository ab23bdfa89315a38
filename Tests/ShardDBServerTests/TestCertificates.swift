import Foundation
import XCTest

/// A throwaway certificate authority and the certificates it signs, made with
/// the `openssl` command in a directory of the test (P-256 keys, valid two days).
struct TestCertificates {
    struct Identity {
        let certificate: String
        let key: String
    }

    let directory: URL
    let openssl: String
    let name: String

    var authority: String { path("\(name)-ca.pem") }

    /// Makes a CA named `name` in `directory`.
    ///
    /// - throws: `XCTSkip` when `openssl` is not installed.
    init(in directory: URL, name: String) throws {
        let candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/openssl" }
        guard let openssl = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("openssl is not installed: the TLS tests need it to make throwaway certificates")
        }
        self.directory = directory
        self.openssl = openssl
        self.name = name
        let config = path("\(name)-ca.cnf")
        try """
            [req]
            distinguished_name = dn
            x509_extensions = v3_ca
            prompt = no
            [dn]
            CN = ShardDB test CA \(name)
            [v3_ca]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash

            """.write(toFile: config, atomically: true, encoding: .utf8)
        try run(["req", "-x509", "-config", config, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", path("\(name)-ca.key"), "-out", authority, "-days", "2"])
    }

    /// A certificate for the loopback server (IP 127.0.0.1, DNS localhost).
    func server(_ label: String = "server") throws -> Identity {
        try issue(label, extensions: "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n")
    }

    /// A client certificate.
    func client(_ label: String = "client") throws -> Identity {
        try issue(label, extensions: "extendedKeyUsage = clientAuth\n")
    }

    private func issue(_ label: String, extensions: String) throws -> Identity {
        let base = "\(name)-\(label)"
        let ext = path("\(base).ext")
        try ("basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n" + extensions)
            .write(toFile: ext, atomically: true, encoding: .utf8)
        try run(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", path("\(base).key"), "-out", path("\(base).csr"), "-subj", "/CN=\(label)"])
        try run(["x509", "-req", "-in", path("\(base).csr"), "-CA", authority, "-CAkey", path("\(name)-ca.key"),
                 "-set_serial", "\(UInt32.random(in: 1...UInt32.max))", "-out", path("\(base).pem"), "-days", "2", "-extfile", ext])
        return Identity(certificate: path("\(base).pem"), key: path("\(base).key"))
    }

    private func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    private func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: openssl)
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let message = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "TestCertificates", code: Int(process.terminationStatus), userInfo: [
                NSLocalizedDescriptionKey: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: message, as: UTF8.self))",
            ])
        }
    }
}
