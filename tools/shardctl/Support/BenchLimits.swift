import ShardDB

/// Upper bounds of the stateful benchmarks' sizes, so a typo is refused instead
/// of overflowing the arithmetic that derives key counts and rates from them.
enum BenchLimits {
    static func check(sizeMB: Int, valueSize: Int, writeRate: Int) throws {
        guard sizeMB <= 1 << 20 else { throw ShardDBError(.invalidArgument, "--size-mb must be at most \(1 << 20) (1 TiB), got \(sizeMB)") }
        guard valueSize <= ShardEngine.maxValueSize else {
            throw ShardDBError(.invalidArgument, "--value-size must be at most \(ShardEngine.maxValueSize), got \(valueSize)")
        }
        guard writeRate <= 10_000_000 else { throw ShardDBError(.invalidArgument, "--write-rate must be at most 10000000 per second, got \(writeRate)") }
    }
}
