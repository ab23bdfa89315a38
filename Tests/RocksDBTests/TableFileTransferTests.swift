import Foundation
import RocksDB
import XCTest

/// A column family's table files exported from one database and imported into another.
final class TableFileTransferTests: XCTestCase {
    func testExportedFamilyImportsWithItsDataLevelsAndSequences() throws {
        let dir = TemporaryDirectory()
        let source = try openDatabase(at: dir.path("source"), columnFamilies: ["shard"])
        let family = try source.columnFamily(named: "shard")
        for i in 0..<1000 { try source.put(bytes(String(format: "k%04d", i)), bytes("v\(i)"), in: family) }
        try source.compactRange(family)  // some files below L0
        for i in 0..<10 { try source.put(bytes(String(format: "k%04d", i)), bytes("new\(i)"), in: family) }
        try source.delete(bytes("k0500"), in: family)
        try source.put(bytes("k0600"), bytes("replaced"), in: family)  // in the memtable: flushed by the export
        try source.put(bytes("elsewhere"), bytes("x"))  // another family: not exported

        let files = try source.exportColumnFamily(family, to: dir.path("export"))
        XCTAssertFalse(files.isEmpty)
        XCTAssertTrue(files.contains { $0.level > 0 })
        for file in files { XCTAssertTrue(FileManager.default.fileExists(atPath: file.path), file.path) }
        XCTAssertThrowsError(try source.exportColumnFamily(family, to: dir.path("export"))) { error in
            XCTAssertEqual((error as? RocksDBError)?.kind, .invalidArgument, "\(error)")
        }

        let target = try openDatabase(at: dir.path("target"))
        try target.put(bytes("own"), bytes("1"))
        XCTAssertLessThan(try target.latestSequenceNumber(), try source.latestSequenceNumber())
        let imported = try target.createColumnFamily(named: "copy", importing: files, moveFiles: true)
        // The files' sequence numbers came along, and the target's sequence rose past them.
        XCTAssertGreaterThanOrEqual(try target.latestSequenceNumber(), files.map(\.largestSequence).max()!)
        XCTAssertEqual(text(try target.get(bytes("k0001"), in: imported)), "new1")
        XCTAssertEqual(text(try target.get(bytes("k0999"), in: imported)), "v999")
        XCTAssertNil(try target.get(bytes("k0500"), in: imported))
        XCTAssertEqual(text(try target.get(bytes("k0600"), in: imported)), "replaced")
        XCTAssertEqual(files.map(\.rangeDeletions).max(), 0)
        XCTAssertNil(try target.get(bytes("elsewhere"), in: imported))
        // A write after the import is newer than everything imported.
        try target.put(bytes("k0999"), bytes("after"), in: imported)
        XCTAssertEqual(text(try target.get(bytes("k0999"), in: imported)), "after")
        // Moved: the export's links are gone; the source still has its own files.
        for file in files { XCTAssertFalse(FileManager.default.fileExists(atPath: file.path), file.path) }
        XCTAssertEqual(text(try source.get(bytes("k0999"), in: family)), "v999")

        target.close()
        let reopened = try openDatabase(at: dir.path("target"), columnFamilies: ["copy"])
        let copy = try reopened.columnFamily(named: "copy")
        XCTAssertEqual(text(try reopened.get(bytes("k0999"), in: copy)), "after")
        XCTAssertEqual(text(try reopened.get(bytes("k0002"), in: copy)), "new2")
    }

    /// RocksDB 7.8 imports a file bounded by its point keys: a range tombstone past
    /// them would be lost (facebook/rocksdb#11252). The export says which files hold one.
    func testExportCountsRangeTombstones() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["shard"])
        let family = try db.columnFamily(named: "shard")
        for i in 0..<100 { try db.put(bytes(String(format: "k%04d", i)), bytes("v"), in: family) }
        try db.flush(family)
        try db.put(bytes("k0001"), bytes("w"), in: family)
        try db.deleteRange(from: bytes("k0050"), to: bytes("k0060"), in: family)
        let files = try db.exportColumnFamily(family, to: dir.path("export"))
        XCTAssertEqual(files.count, 2)
        XCTAssertEqual(files.map(\.rangeDeletions).sorted(), [0, 1])
    }

    func testBadImportsFailAndLeaveNoFamily() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"), columnFamilies: ["taken"])
        XCTAssertThrowsError(try db.createColumnFamily(named: "empty", importing: [], moveFiles: false)) { error in
            XCTAssertEqual((error as? RocksDBError)?.kind, .invalidArgument, "\(error)")
        }
        let missing = TableFile(directory: dir.path("nowhere"), name: "000001.sst", level: 0, smallestSequence: 1,
                                largestSequence: 1, size: 10)
        XCTAssertThrowsError(try db.createColumnFamily(named: "ghost", importing: [missing], moveFiles: false))
        XCTAssertFalse(db.columnFamilyNames.contains("ghost"))
        let source = try openDatabase(at: dir.path("source"))
        try source.put(bytes("a"), bytes("1"))
        let files = try source.exportColumnFamily(try source.defaultColumnFamily, to: dir.path("export"))
        XCTAssertThrowsError(try db.createColumnFamily(named: "taken", importing: files, moveFiles: false)) { error in
            XCTAssertEqual((error as? RocksDBError)?.kind, .invalidArgument, "\(error)")
        }
        // Metadata RocksDB would trust: a level past the options' (a manifest no open
        // accepts again), a negative one (an assertion), sequences upside down.
        for bad in [50, 7, -1] {
            var file = files[0]
            file.level = bad
            XCTAssertThrowsError(try db.createColumnFamily(named: "bad", importing: [file], moveFiles: false)) { error in
                XCTAssertEqual((error as? RocksDBError)?.kind, .invalidArgument, "level \(bad): \(error)")
            }
        }
        var upsideDown = files[0]
        upsideDown.smallestSequence = upsideDown.largestSequence + 1
        XCTAssertThrowsError(try db.createColumnFamily(named: "bad", importing: [upsideDown], moveFiles: false))
        XCTAssertFalse(db.columnFamilyNames.contains("bad"))
        // An empty family exports no files.
        let empty = try db.exportColumnFamily(try db.columnFamily(named: "taken"), to: dir.path("export-empty"))
        XCTAssertEqual(empty, [])
    }
}
