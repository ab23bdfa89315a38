/// One change to a shard, read from the write-ahead log by a ``ChangelogReader``.
///
/// Keys and values are in their stored form, as in the shard's column family
/// (docs/FORMAT.md), so a consumer can apply them to another instance's shard
/// byte for byte; ``key`` and ``header`` are the decoded forms for convenience.
public struct ChangeRecord: Sendable, Equatable {
    public enum Operation: String, Sendable {
        case put, delete, singleDelete, deleteRange, merge
    }

    /// The sequence number the change was written at (unique, increasing).
    public var sequence: UInt64
    /// The shard whose column family the change was written to.
    public var shard: Int
    public var operation: Operation
    /// The key as stored in the shard's column family: under hash partitioning,
    /// the 2-byte big-endian key group then the user key; under range
    /// partitioning, the user key. For ``Operation/deleteRange``, the begin bound
    /// (inclusive), clipped to the reader's range.
    public var storedKey: [UInt8]
    /// For ``Operation/deleteRange``: the end bound (exclusive), stored form,
    /// clipped to the reader's range; nil otherwise.
    public var storedEndKey: [UInt8]?
    /// For ``Operation/put`` and ``Operation/merge``: the stored value, ShardDB's
    /// value header included; nil otherwise.
    public var value: [UInt8]?
    /// The user key (``storedKey`` without the key-group prefix). For
    /// ``Operation/deleteRange``, the user key of the begin bound; may be empty
    /// (a bound at a key-group boundary has no user key).
    public var key: [UInt8]
    /// The decoded header of ``value``; nil when there is no value, or when the
    /// value has no valid header (never for puts made through the engine).
    /// Expired values are reported too: the consumer decides with
    /// ``ValueHeader/isExpired(at:)``.
    public var header: ValueHeader?

    public init(sequence: UInt64, shard: Int, operation: Operation, storedKey: [UInt8], storedEndKey: [UInt8]? = nil,
                value: [UInt8]? = nil, key: [UInt8], header: ValueHeader? = nil) {
        self.sequence = sequence
        self.shard = shard
        self.operation = operation
        self.storedKey = storedKey
        self.storedEndKey = storedEndKey
        self.value = value
        self.key = key
        self.header = header
    }

    /// The user value (``value`` without its header); nil when there is no value or header.
    public var userValue: [UInt8]? {
        guard let value, let header else { return nil }
        return Array(value.dropFirst(header.encodedSize))
    }
}
