import Foundation

/// A fresh directory for one test under the system temporary directory,
/// removed with everything in it when the last reference goes away.
final class TemporaryDirectory {
    let url: URL
    var path: String { url.path }

    init(function: String = #function) {
        let label = function.filter { $0.isLetter || $0.isNumber }
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("ShardDBTests-\(label)-\(UUID().uuidString)", isDirectory: true)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    /// A path inside the directory (nothing is created there).
    func path(_ component: String) -> String { url.appendingPathComponent(component).path }
}
