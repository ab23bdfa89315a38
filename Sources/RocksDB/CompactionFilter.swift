#if canImport(Glibc)
import Glibc
#endif
import CRocksDB

/// Decides, during compaction, which entries to drop. Set it on the
/// ``Options`` of a column family with ``Options/setCompactionFilter(_:)``.
///
/// RocksDB calls ``shouldRemove(level:key:value:)`` from its background
/// threads, concurrently: implementations must be thread-safe and should not
/// allocate (the call is made for every entry compacted). Changing a value is
/// not supported (the 7.8 C API cannot hand back a value with its own
/// destructor), only keep or remove.
open class CompactionFilter: @unchecked Sendable {
    /// The name RocksDB logs for this filter.
    public let name: String
    // RocksDB asks for the name as a C string it does not free.
    fileprivate let cName: UnsafeMutablePointer<CChar>

    public init(name: String) {
        self.name = name
        cName = strdup(name)
    }

    deinit { free(cName) }

    /// Return true to drop the entry.
    open func shouldRemove(level: Int, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool { false }
}

/// The C filter object; it retains the Swift filter it calls until RocksDB's
/// destructor callback runs.
final class CompactionFilterBox {
    let pointer: OpaquePointer

    init(_ filter: CompactionFilter) {
        let context = Unmanaged.passRetained(filter).toOpaque()
        pointer = rocksdb_compactionfilter_create(
            context,
            { context in Unmanaged<CompactionFilter>.fromOpaque(context!).release() },
            { context, level, key, keyLength, value, valueLength, _, _, _ in
                let filter = Unmanaged<CompactionFilter>.fromOpaque(context!).takeUnretainedValue()
                return filter.shouldRemove(
                    level: Int(level),
                    key: UnsafeRawBufferPointer(start: key, count: keyLength),
                    value: UnsafeRawBufferPointer(start: value, count: valueLength)) ? 1 : 0
            },
            { context in
                UnsafePointer(Unmanaged<CompactionFilter>.fromOpaque(context!).takeUnretainedValue().cName)
            })
    }

    deinit { rocksdb_compactionfilter_destroy(pointer) }
}
