// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "approvald",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "approvald", targets: ["approvald"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // System libraries, found through pkg-config; macros the importer cannot see are static inline shims.
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        // One module for libevent, its pthreads locking and its OpenSSL bufferevents: two modules that both include
        // libevent's headers would each define the system types those pull in, and the importer refuses that.
        // libevent_openssl's pkg-config entry brings libevent's; the module map links all three libraries.
        .systemLibrary(
            name: "CLibevent", pkgConfig: "libevent_openssl", providers: [.apt(["libevent-dev", "libssl-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        .target(name: "Crypto", dependencies: ["COpenSSL"]),
        // A value behind a pthread mutex, for the few queues threads share (ThreadSanitizer sees its ordering).
        .target(name: "Locking"),
        .target(name: "JSONText"),
        // The broker's domain: pure Swift, no I/O, no clock or randomness of its own.
        .target(
            name: "Core",
            dependencies: [
                "JSONText",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]),
        // Durable state behind one protocol; SQLite is the embedded default.
        .target(name: "Store", dependencies: ["Core", "CSQLite", "Locking"]),
        .target(
            name: "H2",
            dependencies: [
                "CNghttp2", "CLibevent", "COpenSSL", "Locking",
                .product(name: "Logging", package: "swift-log"),
            ],
            // Every stream touches a dozen loop-confined class properties; their dynamic exclusivity checks cost
            // about 6 % of the request path (measured with callgrind, bench/h2-ceiling). Debug builds, which run
            // the tests, keep them.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        .target(
            name: "Service",
            dependencies: [
                "H2", "Crypto", "Core", "Store", "JSONText",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]),
        // The phone's side of the protocol, for the tools that play phones.
        .target(name: "Phone", dependencies: ["Service", "Crypto", "JSONText"]),
        .executableTarget(
            name: "approvald",
            dependencies: [
                "Service", "H2", "Crypto", "JSONText", "Phone", "Locking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),

        // Helpers shared by the test targets: raw HTTP/2 frames, bounded waits, running the real binary.
        .target(name: "TestSupport", dependencies: ["CNghttp2", "H2", "Locking"], path: "Tests/TestSupport"),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CoreTests", dependencies: ["Core", "TestSupport"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "Core", "Locking", "TestSupport"]),
        .testTarget(name: "H2Tests", dependencies: ["H2", "Crypto", "TestSupport"]),
        .testTarget(
            name: "ServiceTests",
            dependencies: ["Service", "H2", "Core", "Store", "Crypto", "JSONText", "Locking", "TestSupport"]),
        .testTarget(name: "PhoneTests", dependencies: ["Phone", "JSONText"]),
        .testTarget(name: "EndToEndTests", dependencies: ["H2", "Crypto", "TestSupport"]),
    ]
)

// libFuzzer targets, one per parser of what arrives from the network or an operator, built only for `make fuzz`
// (`APPROVALD_FUZZ=1`, with `-sanitize=fuzzer,address`). SwiftPM links each executable's `main` to `<Target>_main`:
// each target defines that and hands over to libFuzzer's driver (CFuzzer).
if Context.environment["APPROVALD_FUZZ"] == "1" {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzJSON", ["JSONText", "Service"]),
        ("FuzzIdPSignature", ["H2", "Service"]),
        ("FuzzDeviceAuthorization", ["Crypto", "H2", "Service"]),
        ("FuzzRouter", ["H2", "Service"]),
        ("FuzzEventStream", ["Phone"]),
        ("FuzzConfiguration", ["Service"]),
        ("FuzzH2Server", ["CLibevent", "H2", .product(name: "Logging", package: "swift-log")]),
    ]
    package.targets.append(.target(name: "CFuzzer", path: "Tests/Fuzz/CFuzzer"))
    package.targets.append(.target(name: "FuzzSupport", dependencies: ["CFuzzer"], path: "Tests/Fuzz/FuzzSupport"))
    for target in fuzzTargets {
        package.targets.append(
            .executableTarget(
                name: target.name, dependencies: target.dependencies + ["FuzzSupport"],
                path: "Tests/Fuzz/Targets/\(target.name)", swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
