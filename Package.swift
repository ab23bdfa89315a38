// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ShardDB",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RocksDB", targets: ["RocksDB"]),
        .library(name: "ShardDB", targets: ["ShardDB"]),
        .executable(name: "shardctl", targets: ["shardctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // The RocksDB C API (rocksdb/c.h) as a system library.
        .systemLibrary(
            name: "CRocksDB",
            path: "Sources/CRocksDB",
            pkgConfig: "rocksdb",
            providers: [.apt(["librocksdb-dev"])]
        ),
        // A few C++ functions the 7.8 C API lacks (see Sources/CRocksDBShim/include/CRocksDBShim.h).
        .target(
            name: "CRocksDBShim",
            dependencies: ["CRocksDB"],
            path: "Sources/CRocksDBShim",
            cxxSettings: [.unsafeFlags(["-std=c++17"])],
            linkerSettings: [.linkedLibrary("rocksdb"), .linkedLibrary("stdc++")]
        ),
        .target(
            name: "RocksDB",
            dependencies: ["CRocksDB", "CRocksDBShim"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .target(
            name: "ShardDB",
            dependencies: [
                "RocksDB",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "shardctl",
            dependencies: [
                "ShardDB",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "tools/shardctl",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(name: "RocksDBTests", dependencies: ["RocksDB"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "ShardDBTests", dependencies: ["ShardDB"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "ShardctlTests", dependencies: ["ShardDB"], swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
