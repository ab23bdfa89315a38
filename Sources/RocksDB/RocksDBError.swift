import CRocksDB

/// An error reported by RocksDB, or by this wrapper when a handle is used after
/// its database was closed.
///
/// RocksDB's C API reports failures as a status string such as
/// `"IO error: While lock file: /tmp/x/LOCK: Resource temporarily unavailable"`.
/// The wrapper parses the status kind from that string's prefix so callers can
/// match on ``Kind`` instead of comparing text:
///
/// ```swift
/// do { try db.put("k", "v") } catch let error as RocksDBError where error.kind == .ioError { ... }
/// ```
public struct RocksDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// RocksDB's `Status::Code`, plus ``closed`` for handles used after `close()`.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case notFound = "NotFound"
        case corruption = "Corruption"
        case notSupported = "Not implemented"
        case invalidArgument = "Invalid argument"
        case ioError = "IO error"
        case mergeInProgress = "Merge in progress"
        case incomplete = "Result incomplete"
        case shutdownInProgress = "Shutdown in progress"
        case timedOut = "Operation timed out"
        case aborted = "Operation aborted"
        case busy = "Resource busy"
        case expired = "Operation expired"
        case tryAgain = "Operation failed. Try again."
        case compactionTooLarge = "Compaction too large"
        case columnFamilyDropped = "Column family dropped"
        /// The database was closed before this call (a column family used after
        /// it was dropped is ``columnFamilyDropped``).
        case closed = "Closed"
        /// A status string this wrapper does not recognise.
        case unknown = "Unknown"
    }

    /// The status kind.
    public let kind: Kind
    /// The full message, as RocksDB gave it.
    public let message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    /// Parses a RocksDB status string (`"<Kind>: <detail>"`).
    public init(statusMessage: String) {
        var found = Kind.unknown
        for kind in Kind.allCases where kind != .unknown && kind != .closed {
            if statusMessage.hasPrefix(kind.rawValue) { found = kind; break }
        }
        self.init(kind: found, message: statusMessage)
    }

    /// The message without its kind prefix: `"Corruption: bad block"` gives `"bad block"`.
    public var detail: String {
        let prefix = kind.rawValue + ": "
        return message.hasPrefix(prefix) ? String(message.dropFirst(prefix.count)) : message
    }

    /// True when RocksDB refused to open because another process (or another
    /// handle in this process) holds the database's LOCK file.
    public var isLockHeld: Bool {
        kind == .ioError && message.contains("LOCK")
            && (message.contains("Resource temporarily unavailable") || message.contains("lock hold by current process")
                || message.contains("No locks available"))
    }

    public var description: String { message }

    /// A column family used after it was dropped (the database is open).
    static func dropped(_ family: String) -> RocksDBError {
        RocksDBError(kind: .columnFamilyDropped, message: "Column family dropped: the column family\(family.isEmpty ? "" : " " + family) was dropped")
    }

    static func closed(_ what: String) -> RocksDBError {
        RocksDBError(kind: .closed, message: "Closed: \(what) is closed")
    }
}

/// Runs one C call with a fresh error pointer; turns a non-nil error into a
/// thrown ``RocksDBError`` and frees the C string at once.
@usableFromInline
func withStatus<R>(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) throws -> R) throws -> R {
    var error: UnsafeMutablePointer<CChar>? = nil
    let result = try body(&error)
    if let error {
        let message = String(cString: error)
        rocksdb_free(error)
        throw RocksDBError(statusMessage: message)
    }
    return result
}
