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
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
