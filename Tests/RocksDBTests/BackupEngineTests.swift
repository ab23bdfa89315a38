import Foundation
import RocksDB
import XCTest

/// BackupEngine's report of backups it cannot load, through a read-only engine.
final class BackupEngineTests: XCTestCase {
    /// Every regular file under `path`, relative, with its size.
    private func files(under path: String) -> [String: Int] {
        var result: [String: Int] = [:]
        let walker = FileManager.default.enumerator(atPath: path)
        while let entry = walker?.nextObject() as? String {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + entry)
            if attributes?[.type] as? FileAttributeType == .typeRegular { result[entry] = attributes?[.size] as? Int }
        }
        return result
    }

    func testCorruptBackupsNameTheMissingFileAndDeleteNothing() throws {
        let dir = TemporaryDirectory()
        let directory = dir.path("backups")
        XCTAssertEqual(try BackupEngine.corruptBackups(at: directory), [], "no directory: no backups")
        let database = try openDatabase(at: dir.path("db"))
        defer { database.close() }
        let backups = try BackupEngine.open(at: directory)
        try database.put("a", "1")
        try backups.createBackup(of: database)
        try database.put("b", "2")
        try backups.createBackup(of: database)
        backups.close()
        XCTAssertEqual(try BackupEngine.corruptBackups(at: directory), [])

        let first = try String(contentsOfFile: directory + "/meta/1", encoding: .utf8)
        let table = try XCTUnwrap(first.split(separator: "\n").first { $0.hasPrefix("shared_checksum/") }?.split(separator: " ").first)
        try FileManager.default.removeItem(atPath: directory + "/" + table)
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/meta/2", contents: Data("garbage\n".utf8)))
        let before = files(under: directory)

        let corrupt = try BackupEngine.corruptBackups(at: directory)
        XCTAssertEqual(corrupt.map(\.id), [1, 2])
        XCTAssertEqual(corrupt.map(\.status.kind), [.corruption, .corruption])
        XCTAssertTrue(corrupt[0].status.message.contains(String(table)), corrupt[0].status.message)
        XCTAssertTrue(corrupt[1].status.message.contains("meta/2"), corrupt[1].status.message)
        XCTAssertFalse(corrupt[0].status.detail.hasPrefix("Corruption"), corrupt[0].status.detail)
        XCTAssertEqual(files(under: directory), before, "a read-only engine deletes nothing")

        // What the report guards against: a read-write engine's garbage collection.
        let writer = try BackupEngine.open(at: directory)
        XCTAssertEqual(try writer.backups().map(\.id), [])
        XCTAssertEqual(files(under: directory), before, "opening read-write deletes nothing either")
        try writer.garbageCollect()
        XCTAssertEqual(files(under: directory).keys.filter { $0.hasPrefix("private/") }, [], "garbage collection deleted both backups' private files")
        writer.close()
    }
}
