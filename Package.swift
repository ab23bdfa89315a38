// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ShardDB",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RocksDB", targets: ["RocksDB"]),
        .library(name: "ShardDB", targets: ["ShardDB"]),
        // The migration transport (gRPC); a separate product so embedders who stay in-process do not link it.
        .library(name: "ShardDBServer", targets: ["ShardDBServer"]),
        .executable(name: "shardctl", targets: ["shardctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.30.0"),
        // Already in the graph through grpc-swift-nio-transport; named to check TLS material up front.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        // Also already in the graph; named for the server's connection gate (accepted channels, HTTP/2 frames).
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.35.0"),
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
        // Snappy (Debian's libsnappy-dev, which RocksDB already links): the transport
        // compresses bulk chunks between processes with it.
        .systemLibrary(
            name: "CSnappy",
            path: "Sources/CSnappy",
            pkgConfig: "snappy",
            providers: [.apt(["libsnappy-dev"])]
        ),
        // CRC-32C with the CPU's instruction, for the transport's chunk checksums.
        .target(name: "CCRC32C", path: "Sources/CCRC32C"),
        // Linux calls Swift's Glibc module leaves out (sync_file_range), for the engine's file writes.
        .target(name: "CLinux", path: "Sources/CLinux"),
        .target(
            name: "RocksDB",
            dependencies: ["CRocksDB", "CRocksDBShim"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .target(
            name: "ShardDB",
            dependencies: [
                "RocksDB",
                "CLinux",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Migration between live processes: MigrationServer and RemoteInstance (docs/TRANSPORT.md).
        .target(
            name: "ShardDBServer",
            dependencies: [
                "ShardDB",
                "CCRC32C",
                "CSnappy",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Proto"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "shardctl",
            dependencies: [
                "ShardDB",
                "ShardDBServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "tools/shardctl",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Helpers the test targets share (one copy of each); linked only into tests.
        // PowerLoss/powerloss.c is compiled by the tests that use it into an LD_PRELOAD library, not into the target.
        .target(name: "TestSupport", path: "Tests/TestSupport", exclude: ["PowerLoss/powerloss.c"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "RocksDBTests", dependencies: ["RocksDB", "CRocksDBShim", "TestSupport"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "ShardDBTests", dependencies: ["ShardDB", "TestSupport"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "ShardctlTests", dependencies: ["ShardDB", "TestSupport"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(
            name: "ShardDBServerTests",
            dependencies: ["ShardDB", "ShardDBServer", "TestSupport", .product(name: "GRPCCore", package: "grpc-swift-2")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
