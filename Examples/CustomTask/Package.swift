// swift-tools-version:6.0
// An ElasticFlow program with a task of its own, run as both master and worker (the same binary).
import PackageDescription

let package = Package(
    name: "CustomTask",
    dependencies: [
        // The root package, by path: this example builds against the checkout it sits in.
        .package(name: "ElasticFlow", path: "../.."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "custom-task",
            dependencies: [
                .product(name: "ElasticFlow", package: "ElasticFlow"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/CustomTask"
        )
    ],
    swiftLanguageModes: [.v6]
)
