// The CPU-only parts of every operation: routing a key to its key group
// (KeyHash, MurmurHash3) and the value header's encode/decode.
import Benchmark
import ShardDB

let key16 = [UInt8]("user:0000000042!".utf8)
let key64 = [UInt8](repeating: 0x61, count: 64)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .mega,
        maxDuration: .seconds(2)
    )

    Benchmark("KeyHash.keyGroup 16 B key") { benchmark in
        key16.withUnsafeBytes { key in
            for _ in benchmark.scaledIterations {
                blackHole(KeyHash.keyGroup(of: key, keyGroups: Partitioning.defaultKeyGroups))
            }
        }
    }

    Benchmark("KeyHash.keyGroup 64 B key") { benchmark in
        key64.withUnsafeBytes { key in
            for _ in benchmark.scaledIterations {
                blackHole(KeyHash.keyGroup(of: key, keyGroups: Partitioning.defaultKeyGroups))
            }
        }
    }

    Benchmark("ValueHeader encode (no expiry)") { benchmark in
        var buffer = [UInt8](repeating: 0, count: 16)
        let header = ValueHeader()
        buffer.withUnsafeMutableBytes { out in
            for _ in benchmark.scaledIterations { header.encode(into: out); blackHole(out[1]) }
        }
    }

    Benchmark("ValueHeader encode (expiry)") { benchmark in
        var buffer = [UInt8](repeating: 0, count: 16)
        let header = ValueHeader(expiresAtMilliseconds: 1_700_000_000_000)
        buffer.withUnsafeMutableBytes { out in
            for _ in benchmark.scaledIterations { header.encode(into: out); blackHole(out[9]) }
        }
    }

    Benchmark("ValueHeader decode (expiry)") { benchmark in
        var stored = [UInt8](repeating: 0x76, count: 110)
        stored.withUnsafeMutableBytes { ValueHeader(expiresAtMilliseconds: 1_700_000_000_000).encode(into: $0) }
        stored.withUnsafeBytes { input in
            for _ in benchmark.scaledIterations {
                let (header, payload) = try! ValueHeader.decode(input)
                blackHole(header.expiresAtMilliseconds)
                blackHole(payload.count)
            }
        }
    }
}
