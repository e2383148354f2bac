// swift-tools-version:6.0
// ElasticFlow: a Flow-style computation distributed over a cluster, with a C core for the hot path.
import PackageDescription

let package = Package(
    name: "ElasticFlow",
    products: [
        .library(name: "ElasticFlow", targets: ["ElasticFlow"]),
        .library(name: "CElasticFlow", targets: ["CElasticFlow"]),
        .executable(name: "elasticflow", targets: ["ElasticFlowCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
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
            dependencies: ["CElasticFlow"],
            path: "Sources/ElasticFlow"
        ),
        .executableTarget(
            name: "ElasticFlowCLI",
            dependencies: [
                "ElasticFlow",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/ElasticFlowCLI"
        ),
        .testTarget(
            name: "ElasticFlowTests",
            dependencies: ["ElasticFlow", "CElasticFlow", "ElasticFlowCLI"],
            path: "Tests/ElasticFlowTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
