import Foundation
import RocksDB
import XCTest

/// A fresh directory under the system temporary directory, removed on deinit.
final class TemporaryDirectory {
    let url: URL
    var path: String { url.path }

    init(function: String = #function) {
        let name = "RocksDBTests-\(function.filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString)"
        url = FileManager.default.temporaryDirectory.appendingPathComponent(name, isDirectory: true)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// A path inside the directory (not created).
    func path(_ component: String) -> String { url.appendingPathComponent(component).path }
}

extension XCTestCase {
    /// Opens (creating if needed) a database at `path` with default settings and the given extra column families.
    func openDatabase(at path: String, columnFamilies: [String] = [], configure: (Options) throws -> Void = { _ in }) throws -> Database {
        let options = Options()
        options.createIfMissing = true
        options.createMissingColumnFamilies = true
        try configure(options)
        var families: [String: Options]? = nil
        if !columnFamilies.isEmpty {
            families = Dictionary(uniqueKeysWithValues: columnFamilies.map { ($0, options) })
        }
        return try Database.open(at: path, options: options, columnFamilies: families)
    }

    /// Asserts that `body` throws a ``RocksDBError`` of `kind`.
    func assertThrows<R>(_ kind: RocksDBError.Kind, _ body: @autoclosure () throws -> R,
                         file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected RocksDBError \(kind), got no error", file: file, line: line)
        } catch let error as RocksDBError {
            XCTAssertEqual(error.kind, kind, "message: \(error.message)", file: file, line: line)
        } catch {
            XCTFail("expected RocksDBError \(kind), got \(error)", file: file, line: line)
        }
    }
}

/// UTF-8 bytes of a string, for keys and values.
func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

/// The UTF-8 text of bytes, for readable assertions.
func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }
