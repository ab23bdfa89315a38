// swift-tools-version:6.1
// Micro-benchmarks of ShardDB's hot paths (ordo-one/benchmark). A separate
// package so the main one builds without the benchmark toolchain:
//   cd Benchmarks && swift package benchmark
import PackageDescription

@MainActor
func suite(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(
        name: name,
        dependencies: [.product(name: "Benchmark", package: "benchmark")] + dependencies,
        path: "Benchmarks/\(name)",
        swiftSettings: [.swiftLanguageMode(.v5)],
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}

let package = Package(
    name: "ShardDBBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "ShardDB", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The RocksDB C API again, for the raw reference the engine is measured
        // against (the root package does not export its CRocksDB target).
        .systemLibrary(name: "CRocksDBReference", path: "Sources/CRocksDBReference", pkgConfig: "rocksdb"),
        // The engine and raw stores PointOps compares, shared with PointOpsProfile.
        .target(
            name: "PointOpsSupport",
            dependencies: [.product(name: "ShardDB", package: "ShardDB"), "CRocksDBReference"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        suite("PointOps", [.product(name: "ShardDB", package: "ShardDB"), "PointOpsSupport"]),
        // Instruction counts per point operation under callgrind (Benchmarks/point-ops-cost).
        .executableTarget(
            name: "PointOpsProfile",
            dependencies: [.product(name: "ShardDB", package: "ShardDB"), "PointOpsSupport"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        suite("BatchWrites", [.product(name: "ShardDB", package: "ShardDB"), .product(name: "RocksDB", package: "ShardDB")]),
        suite("Scans", [.product(name: "ShardDB", package: "ShardDB"), .product(name: "RocksDB", package: "ShardDB")]),
        suite("Encoding", [.product(name: "ShardDB", package: "ShardDB")]),
        suite("Changelog", [.product(name: "ShardDB", package: "ShardDB"), .product(name: "RocksDB", package: "ShardDB")]),
    ]
)
