// swift-tools-version:6.0
// ElasticFlow: a Flow-style computation distributed over a cluster, with a C core for the hot path.
import PackageDescription

let package = Package(
    name: "ElasticFlow",
    products: [
        .library(name: "ElasticFlow", targets: ["ElasticFlow"]),
        .library(name: "CElasticFlow", targets: ["CElasticFlow"]),
        .executable(name: "elasticflow", targets: ["ElasticFlowCLI"]),
        // Worker and step queue as swift-service-lifecycle services (its own product, so the core
        // library does not carry the dependency).
        .library(name: "ElasticFlowService", targets: ["ElasticFlowService"]),
        // The status server (`--status`, `--metrics`): HTTP on swift-nio, Prometheus text through
        // swift-metrics and swift-prometheus. Its own product, so the core library carries no NIO.
        .library(name: "ElasticFlowStatus", targets: ["ElasticFlowStatus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `make docs`: `swift package generate-documentation` (the DocC catalog in Sources/ElasticFlow).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Every component logs through a `Logger` (levels, metadata); the CLI brings its handlers.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The C core; also built alone as libelasticflow by the Makefile.
        .target(
            name: "CElasticFlow",
            path: "CCore",
            exclude: ["tests", "examples"],
            sources: ["src"],
            publicHeadersPath: "include",
            cSettings: [
                .define("_GNU_SOURCE"),
                .define("EF_BUILDING_LIBRARY"),
                // elasticflow_testing.h's calls: the chaos mode's tampered send.
                .define("EF_TESTING"),
                .headerSearchPath("src"),
            ],
            linkerSettings: [
                .linkedLibrary("zstd"),
                .linkedLibrary("lz4"),
                .linkedLibrary("z"),
                .linkedLibrary("bz2"),
                .linkedLibrary("crypto"),
                .linkedLibrary("pthread"),
            ]
        ),
        .target(
            name: "ElasticFlow",
            dependencies: ["CElasticFlow", .product(name: "Logging", package: "swift-log")],
            path: "Sources/ElasticFlow"
        ),
        .target(
            name: "ElasticFlowService",
            dependencies: [
                "ElasticFlow",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/ElasticFlowService"
        ),
        .target(
            name: "ElasticFlowStatus",
            dependencies: [
                "ElasticFlow",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/ElasticFlowStatus"
        ),
        .executableTarget(
            name: "ElasticFlowCLI",
            dependencies: [
                "ElasticFlow", "ElasticFlowStatus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/ElasticFlowCLI"
        ),
        // README.md's runnable Swift blocks as one program (scripts/check_snippets.py --readme
        // writes it; ReadmeTests checks it matches and runs it).
        .executableTarget(
            name: "ReadmeSnippets",
            dependencies: ["ElasticFlow", .product(name: "Logging", package: "swift-log")],
            path: "Tests/ReadmeSnippets"
        ),
        .testTarget(
            name: "ElasticFlowTests",
            dependencies: [
                "ElasticFlow", "CElasticFlow", "ElasticFlowCLI", "ElasticFlowService", "ElasticFlowStatus",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ElasticFlowTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
