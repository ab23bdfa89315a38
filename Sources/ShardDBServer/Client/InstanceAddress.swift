import Foundation
import ShardDB

/// Where a live instance listens: `HOST:PORT` (IPv6 as `[::1]:PORT`).
public struct InstanceAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; nil for anything else (a directory, say).
    ///
    /// ```swift
    /// InstanceAddress(parsing: "127.0.0.1:7400")  // host 127.0.0.1, port 7400
    /// InstanceAddress(parsing: "/var/lib/shard")  // nil
    /// ```
    public init?(parsing text: String) {
        guard !text.contains("/"), let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port), !host.isEmpty else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") || host.contains("[") || host.contains("]") {
            return nil  // `a:1:2`, or IPv6 without its brackets
        }
        guard !host.isEmpty, !host.contains(where: { $0.isWhitespace }) else { return nil }
        self.init(host: host, port: port)
    }

    /// True when `text` has the form of `HOST:PORT` (no `/`, a numeric tail after
    /// its last colon), parsed or not: a spec that looks like an address but does
    /// not parse (IPv6 without brackets) must be refused, not taken as a directory.
    public static func looksLikeAddress(_ text: String) -> Bool {
        guard !text.contains("/"), let colon = text.lastIndex(of: ":") else { return false }
        let tail = text[text.index(after: colon)...]
        return !tail.isEmpty && tail.allSatisfy(\.isNumber)
    }

    /// Checks that `host` exists (a name through the system resolver, as a
    /// connection would) and `port` can be connected to, so a typo fails at once
    /// instead of as connection attempts that never succeed. A resolver that
    /// cannot answer now is not an error here (the connection retries).
    ///
    /// - throws: `.invalidArgument` naming the host when the resolver says it does not exist.
    public func checkConnectable() throws {
        guard port != 0 else { throw ShardDBError(.invalidArgument, "\(self): port 0 cannot be connected to") }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        if let result { freeaddrinfo(result) }
        // Only a name that does not exist fails here; a resolver that cannot answer
        // now (EAI_AGAIN, ...) is left to the connection's retries.
        guard status != EAI_NONAME else {
            throw ShardDBError(.invalidArgument, "\(self): cannot resolve host '\(host)': \(String(cString: gai_strerror(status)))")
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
