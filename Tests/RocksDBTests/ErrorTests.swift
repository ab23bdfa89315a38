import Foundation
import RocksDB
import XCTest

final class ErrorTests: XCTestCase {
    func testStatusMessagePrefixMapsToKind() {
        // The prefixes of RocksDB's Status::ToString(), one per code.
        let messages: [(String, RocksDBError.Kind)] = [
            ("NotFound: key", .notFound),
            ("Corruption: bad block", .corruption),
            ("Not implemented: no support", .notSupported),
            ("Invalid argument: /x/CURRENT: does not exist (create_if_missing is false)", .invalidArgument),
            ("IO error: No space left on device: /x/000012.log", .ioError),
            ("Merge in progress: ", .mergeInProgress),
            ("Result incomplete: ", .incomplete),
            ("Shutdown in progress: ", .shutdownInProgress),
            ("Operation timed out: ", .timedOut),
            ("Operation aborted: ", .aborted),
            ("Resource busy: ", .busy),
            ("Operation expired: ", .expired),
            ("Operation failed. Try again.: ", .tryAgain),
            ("Compaction too large: ", .compactionTooLarge),
            ("Column family dropped: ", .columnFamilyDropped),
            ("Something else entirely", .unknown),
            ("", .unknown),
            // The wrapper's own kind is never parsed from RocksDB's text.
            ("Closed: database /x is closed", .unknown),
        ]
        for (message, kind) in messages {
            let error = RocksDBError(statusMessage: message)
            XCTAssertEqual(error.kind, kind, message)
            XCTAssertEqual(error.message, message)
            XCTAssertEqual(error.description, message)
        }
        // Every RocksDB kind is covered above.
        let covered = Set(messages.map(\.1))
        XCTAssertEqual(covered.union([.closed]), Set(RocksDBError.Kind.allCases))
    }

    func testIsLockHeldOnlyForLockErrors() {
        XCTAssertTrue(RocksDBError(statusMessage: "IO error: While lock file: /x/LOCK: Resource temporarily unavailable").isLockHeld)
        XCTAssertTrue(RocksDBError(statusMessage: "IO error: lock hold by current process, acquire time 1 acquiring thread 2: /x/LOCK: No locks available").isLockHeld)
        XCTAssertFalse(RocksDBError(statusMessage: "IO error: No such file or directory: /x/CURRENT").isLockHeld)
        XCTAssertFalse(RocksDBError(statusMessage: "Invalid argument: /x/LOCK: Resource temporarily unavailable").isLockHeld)
    }

    func testOpeningMissingDirectoryWithoutCreateIfMissingIsInvalidArgument() throws {
        let dir = TemporaryDirectory()
        let path = dir.path("missing")
        do {
            _ = try Database.open(at: path, options: Options())
            XCTFail("opened a database that does not exist")
        } catch let error as RocksDBError {
            // RocksDB 7.8: "Invalid argument: <path>/CURRENT: does not exist (create_if_missing is false)"
            XCTAssertEqual(error.kind, .invalidArgument, error.message)
            XCTAssertTrue(error.message.contains("create_if_missing is false"), error.message)
            XCTAssertFalse(error.isLockHeld)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + "/CURRENT"))
    }

    func testListColumnFamiliesOfMissingDatabaseIsIOError() throws {
        let dir = TemporaryDirectory()
        assertThrows(.ioError, try Database.listColumnFamilies(at: dir.path("missing")))
    }

    func testErrorIfExists() throws {
        let dir = TemporaryDirectory()
        try openDatabase(at: dir.path("db")).close()
        let options = Options()
        options.createIfMissing = true
        options.errorIfExists = true
        XCTAssertTrue(options.errorIfExists)
        assertThrows(.invalidArgument, try Database.open(at: dir.path("db"), options: options))
    }

    func testOpeningTheSameDirectoryTwiceInProcessReportsLockHeld() throws {
        let dir = TemporaryDirectory()
        let db = try openDatabase(at: dir.path("db"))
        do {
            _ = try openDatabase(at: dir.path("db"))
            XCTFail("opened the same database twice")
        } catch let error as RocksDBError {
            XCTAssertEqual(error.kind, .ioError, error.message)
            XCTAssertTrue(error.isLockHeld, error.message)
        }
        // The first handle is unaffected.
        try db.put("k", "v")
        XCTAssertEqual(text(try db.get("k")), "v")
        db.close()
        XCTAssertNoThrow(try openDatabase(at: dir.path("db")).close())
    }

    func testApplyOptionsString() throws {
        let dir = TemporaryDirectory()
        let options = Options()
        options.createIfMissing = true
        try options.apply(optionsString: "periodic_compaction_seconds=3600;max_subcompactions=2;write_buffer_size=1048576")
        XCTAssertTrue(options.createIfMissing)
        let db = try Database.open(at: dir.path("db"), options: options)
        try db.put("k", "v")
        XCTAssertEqual(text(try db.get("k")), "v")
        let optionsFile = try FileManager.default.contentsOfDirectory(atPath: dir.path("db")).first { $0.hasPrefix("OPTIONS-") }
        let persisted = try String(contentsOfFile: dir.path("db") + "/" + XCTUnwrap(optionsFile), encoding: .utf8)
        XCTAssertTrue(persisted.contains("periodic_compaction_seconds=3600"))
        XCTAssertTrue(persisted.contains("max_subcompactions=2"))
        XCTAssertTrue(persisted.contains("write_buffer_size=1048576"))
    }

    func testApplyUnknownOptionThrowsInvalidArgumentAndLeavesOptionsUsable() throws {
        let dir = TemporaryDirectory()
        let options = Options()
        options.createIfMissing = true
        try options.apply(optionsString: "max_subcompactions=3")
        assertThrows(.invalidArgument, try options.apply(optionsString: "no_such_option_anywhere=1"))
        assertThrows(.invalidArgument, try options.apply(optionsString: "write_buffer_size=not-a-number"))

        // Still usable, with its earlier settings.
        let db = try Database.open(at: dir.path("db"), options: options)
        try db.put("k", "v")
        XCTAssertEqual(text(try db.get("k")), "v")
        db.close()
        let optionsFile = try FileManager.default.contentsOfDirectory(atPath: dir.path("db")).first { $0.hasPrefix("OPTIONS-") }
        let persisted = try String(contentsOfFile: dir.path("db") + "/" + XCTUnwrap(optionsFile), encoding: .utf8)
        XCTAssertTrue(persisted.contains("max_subcompactions=3"))
    }

    func testOpenWithoutAllExistingColumnFamiliesFails() throws {
        let dir = TemporaryDirectory()
        try openDatabase(at: dir.path("db"), columnFamilies: ["a", "b"]).close()
        XCTAssertEqual(try Database.listColumnFamilies(at: dir.path("db")), ["default", "a", "b"])
        let options = Options()
        assertThrows(.invalidArgument, try Database.open(at: dir.path("db"), options: options, columnFamilies: ["a": options]))
        // Without an explicit list, every existing family is opened.
        let db = try Database.open(at: dir.path("db"), options: options)
        XCTAssertEqual(db.columnFamilyNames, ["a", "b", "default"])
    }
}
