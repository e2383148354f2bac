// swift-tools-version:6.1
// ElasticFlow microbenchmarks (ordo-one/benchmark). A package of its own so that the main package,
// its tests and CI never resolve or build the benchmark tooling. Run: Benchmarks/run-micro.sh.
import PackageDescription

// One executable target per suite, under Benchmarks/<Name>/ as the BenchmarkPlugin expects.
func suite(_ name: String, importsCore: Bool = false) -> Target {
    var dependencies: [Target.Dependency] = [
        .product(name: "Benchmark", package: "benchmark"),
        .product(name: "ElasticFlow", package: "ElasticFlow"),
        "BenchmarkSupport",
    ]
    // The C module, for the frame and checksum functions that have no Swift API yet.
    if importsCore { dependencies.append(.product(name: "CElasticFlow", package: "ElasticFlow")) }
    return .executableTarget(
        name: name,
        dependencies: dependencies,
        path: "Benchmarks/\(name)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}

let package = Package(
    name: "ElasticFlowBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "ElasticFlow", path: ".."),
        // Only the malloc interposer trait: the allocation metrics need it, and naming the traits
        // explicitly leaves out the others (the Linux 6.3 ARC runtime interposer).
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Shared by the suites: the sample parcel and the MB/s metric.
        .target(
            name: "BenchmarkSupport",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ElasticFlow", package: "ElasticFlow"),
            ],
            path: "Sources/BenchmarkSupport"
        ),
        suite("Codecs"),
        suite("Counting"),
        suite("Frames", importsCore: true),
    ],
    swiftLanguageModes: [.v6]
)
