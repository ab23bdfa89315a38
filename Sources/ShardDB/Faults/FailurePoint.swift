import Foundation
import Synchronization

/// Named places where a test can make the engine fail: crash the process
/// (SIGKILL, as `kill -9` would) or throw. Inert unless armed: each hit costs
/// one atomic load.
///
/// Arm them in-process with ``FailurePoints/arm(_:action:)``, or for a child
/// process with the environment variable `SHARDDB_FAILPOINTS`, a comma-separated
/// list of `name=action` where action is `kill`, `error`, or `kill@N` /
/// `error@N` (act on the N-th hit, counting from 1):
///
/// ```
/// SHARDDB_FAILPOINTS=checkpoint.after-backup=kill shardctl checkpoint create ...
/// ```
///
/// The names are listed in docs/FAILURE_POINTS.md.
public enum FailurePoints {
    public enum Action: Sendable, Equatable {
        /// SIGKILL the process at once.
        case kill
        /// Throw ``ShardDBError`` with code `.injectedFailure`.
        case error
        /// Run a closure there (in-process tests only), e.g. another caller's
        /// operation at exactly that moment of this one.
        case call(Hook)
    }

    /// A closure a failure point runs; equal only to itself.
    public struct Hook: Sendable, Equatable {
        let id = UUID()
        let body: @Sendable () -> Void
        public init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        public static func == (a: Hook, b: Hook) -> Bool { a.id == b.id }
    }

    struct Armed {
        var action: Action
        var remainingSkips: Int
    }

    // Starts true when the environment arms points, so the first hit loads `table`
    // (static lets are lazy: nothing else would read the environment).
    private static let anyArmed = Atomic<Bool>(!(ProcessInfo.processInfo.environment["SHARDDB_FAILPOINTS"] ?? "").isEmpty)
    private static let table = Mutex<[String: Armed]>(loadEnvironment())

    private static func loadEnvironment() -> [String: Armed] {
        guard let spec = ProcessInfo.processInfo.environment["SHARDDB_FAILPOINTS"], !spec.isEmpty else { return [:] }
        var armed: [String: Armed] = [:]
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            let actionParts = parts[1].split(separator: "@").map(String.init)
            let action: Action = actionParts[0] == "error" ? .error : .kill
            let nth = actionParts.count > 1 ? max(1, Int(actionParts[1]) ?? 1) : 1
            armed[parts[0]] = Armed(action: action, remainingSkips: nth - 1)
        }
        if !armed.isEmpty { anyArmed.store(true, ordering: .releasing) }
        return armed
    }

    /// Arms `name`: its `nth` hit (from 1) performs `action`, once.
    public static func arm(_ name: String, action: Action, nth: Int = 1) {
        table.withLock { $0[name] = Armed(action: action, remainingSkips: max(0, nth - 1)) }
        anyArmed.store(true, ordering: .releasing)
    }

    /// Disarms every failure point.
    public static func disarmAll() {
        table.withLock { $0.removeAll() }
        anyArmed.store(false, ordering: .releasing)
    }

    /// Marks a failure point. Does nothing unless armed.
    @inline(__always)
    public static func hit(_ name: StaticString) throws {
        guard anyArmed.load(ordering: .acquiring) else { return }
        try slowHit("\(name)")
    }

    private static func slowHit(_ name: String) throws {
        let action: Action? = table.withLock { armed in
            guard var entry = armed[name] else { return nil }
            if entry.remainingSkips > 0 {
                entry.remainingSkips -= 1
                armed[name] = entry
                return nil
            }
            armed[name] = nil
            return entry.action
        }
        switch action {
        case .kill?:
            FileHandle.standardError.write(Data("sharddb: failure point \(name): killing the process\n".utf8))
            kill(getpid(), SIGKILL)
        case .error?:
            throw ShardDBError(.injectedFailure, "injected failure at \(name)")
        case .call(let hook)?:
            hook.body()
        case nil:
            return
        }
    }
}
