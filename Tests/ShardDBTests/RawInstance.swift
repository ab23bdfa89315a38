import Foundation
import RocksDB
import ShardDB

/// An instance directory seen through the plain RocksDB module, bypassing the
/// engine: to plant bad data and to check what is physically stored. The
/// engine must be closed first (RocksDB's lock).
enum RawInstance {
    /// Opens the database at `path` with every column family it has.
    static func withDatabase<R>(at path: String, _ body: (Database) throws -> R) throws -> R {
        let database = try Database.open(at: path, options: Options())
        defer { database.close() }
        return try body(database)
    }

    /// Every stored key and value of a column family.
    static func entries(at path: String, family: String) throws -> [[UInt8]: [UInt8]] {
        try withDatabase(at: path) { database in
            let iterator = try database.makeIterator(in: try database.columnFamily(named: family))
            iterator.seekToFirst()
            var result: [[UInt8]: [UInt8]] = [:]
            try iterator.forEach { key, value in
                result[[UInt8](key)] = [UInt8](value)
                return true
            }
            return result
        }
    }

    /// Every column family's entries.
    static func allEntries(at path: String) throws -> [String: [[UInt8]: [UInt8]]] {
        var result: [String: [[UInt8]: [UInt8]]] = [:]
        for family in try Database.listColumnFamilies(at: path) {
            result[family] = try entries(at: path, family: family)
        }
        return result
    }

    /// The stored form of `key` under hash partitioning: its key group, 2 bytes big-endian, then the key.
    static func storedKey(_ key: [UInt8], keyGroups: Int) -> [UInt8] {
        let group = key.withUnsafeBytes { KeyHash.keyGroup(of: $0, keyGroups: keyGroups) }
        return [UInt8(group >> 8), UInt8(group & 0xff)] + key
    }
}
