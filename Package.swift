// swift-tools-version: 6.0
import PackageDescription

/// Release builds of the modules on the request path go without dynamic exclusivity checks: loop-confined class
/// properties are touched many times per request, and the checks cost about 6 % of it (measured with callgrind,
/// bench/h2-ceiling). Debug builds, which run the tests, keep them.
let withoutExclusivityChecks = SwiftSetting.unsafeFlags(
    ["-enforce-exclusivity=unchecked"], .when(configuration: .release))
/// Core's generic code (`CompactList`, `UserState`'s accessors) is specialised in the modules that use it instead
/// of running through value witnesses (measured with callgrind, bench/h2-ceiling).
let crossModuleOptimization = SwiftSetting.unsafeFlags(
    ["-cross-module-optimization"], .when(configuration: .release))

let package = Package(
    name: "approvald",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "approvald", targets: ["approvald"]),
        // The device SDK an authenticator app adds with `.product(name: "ApprovalKit", package: "approvald")`.
        .library(name: "ApprovalKit", targets: ["ApprovalKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
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
        // The HTTP/1.1 request parser (nodejs/http-parser), which has no pkg-config entry: its header is in
        // /usr/include.
        .systemLibrary(name: "CHTTPParser", providers: [.apt(["libhttp-parser-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CQREncode", pkgConfig: "libqrencode", providers: [.apt(["libqrencode-dev"])]),
        // hiredis's pkg-config entry adds -D_FILE_OFFSET_BITS=64, a flag SwiftPM refuses (and a no-op on 64-bit
        // Linux): its headers are found under /usr/include instead (libhiredis-dev, installed by the Makefile).
        .systemLibrary(name: "CHiredis"),
        // hiredis on the libevent loop, an adapter in C beside the CLibevent module (see its header).
        .target(name: "CHiredisLibevent", linkerSettings: [.linkedLibrary("hiredis"), .linkedLibrary("event")]),

        // The version and commit the Makefile bakes in (CBuildInfo/build_info.c).
        .target(name: "CBuildInfo"),
        .target(name: "Crypto", dependencies: ["COpenSSL"]),
        // A value behind a pthread mutex, for the few queues threads share (ThreadSanitizer sees its ordering).
        .target(name: "Locking"),
        .target(name: "JSONText"),
        // The wire formats both ends share (signing strings, the answer's body, event-stream framing): what the
        // broker verifies with and the phone side signs with. No I/O.
        .target(name: "Protocol", dependencies: ["Crypto", "JSONText"]),
        // The broker's domain: pure Swift, no I/O, no clock or randomness of its own.
        .target(
            name: "Core",
            dependencies: [
                "JSONText",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ], swiftSettings: [withoutExclusivityChecks, crossModuleOptimization]),
        // Durable state behind one protocol; SQLite is the embedded default.
        // SQLite's default page cache behind a wrapper that skips truncations with nothing to drop.
        .target(name: "CSQLitePageCache", linkerSettings: [.linkedLibrary("sqlite3")]),
        .target(
            name: "Store",
            dependencies: [
                "Core", "CSQLite", "CSQLitePageCache", "Locking",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: [withoutExclusivityChecks]),
        // The libevent loop: timers, signals, clocks, cross-thread wake-ups. Everything that does I/O runs on one.
        .target(name: "EventLoop", dependencies: ["CLibevent", "Locking"], swiftSettings: [withoutExclusivityChecks]),
        // Listeners, TLS and ALPN, HTTP/2 (nghttp2) and HTTP/1.1 (http-parser) behind one request/response
        // interface, and the client for both.
        .target(
            name: "HTTP",
            dependencies: [
                "EventLoop", "CNghttp2", "CLibevent", "COpenSSL", "CHTTPParser", "Locking",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: [withoutExclusivityChecks]),
        // A Redis client on the event loop (hiredis, async): timeouts, reconnect, probes, login.
        .target(
            name: "Redis",
            dependencies: [
                "CHiredis", "CHiredisLibevent", "EventLoop", .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ], swiftSettings: [withoutExclusivityChecks]),
        // User state, indexes, deadlines and the outbox in Redis, for many instances of the broker. The Redis
        // functions are a Lua file, embedded at build time.
        .target(
            name: "RedisStore",
            dependencies: [
                "Core", "Store", "Redis", "EventLoop", .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ], resources: [.embedInCode("functions.lua")], swiftSettings: [withoutExclusivityChecks]),
        // QR codes as SVG documents and terminal text, for activation codes.
        .target(name: "QRCode", dependencies: ["CQREncode"]),
        // The OpenID provider's protocol, apart from HTTP and storage: its settings, signing keys as JWKs, discovery.
        .target(name: "OIDC", dependencies: ["Crypto", "JSONText"]),
        // The API: routes, authentication, the commit pipeline, fan-out to streams and long polls, the forwarder,
        // the push relay, metrics.
        .target(
            name: "Service",
            dependencies: [
                "EventLoop", "HTTP", "Crypto", "Protocol", "Core", "Store", "JSONText", "QRCode", "OIDC",
                "CBuildInfo", "Locking",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            // The OpenID provider's pages, embedded: the binary needs no file beside it.
            resources: [
                .embedInCode("Pages/head.mustache"), .embedInCode("Pages/error.mustache"),
                .embedInCode("Pages/formpost.mustache"), .embedInCode("Pages/name.mustache"),
                .embedInCode("Pages/number.mustache"),
            ],
            swiftSettings: [withoutExclusivityChecks]),
        // The composition root: the configuration (TOML and environment) and the broker it makes and runs.
        .target(
            name: "Broker",
            dependencies: [
                "Service", "EventLoop", "HTTP", "Core", "Store", "Redis", "RedisStore", "JSONText", "OIDC", "Crypto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]),
        // The device SDK: enroll, receive prompts, answer them, with the broker's own wire formats (Protocol) and
        // a transport (this project's HTTP client here; URLSession on Apple platforms).
        .target(
            name: "ApprovalKit",
            dependencies: [
                "Protocol", "Crypto", "JSONText", "EventLoop", "HTTP", .product(name: "Logging", package: "swift-log"),
            ]),
        // The tools that play the other parties against a broker: simulate (IdP and phones), bench (load), verifier.
        .target(
            name: "Tools",
            dependencies: [
                "Broker", "ApprovalKit", "EventLoop", "HTTP", "Crypto", "JSONText", "Protocol", "QRCode", "Locking",
                "OIDC", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),
        // The command line: serve, check-config and dev-cert here; simulate, bench, verifier, phone, idp and demo-app
        // from Tools.
        .executableTarget(
            name: "approvald",
            dependencies: [
                "Broker", "Service", "Tools", "Crypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // jemalloc serves every allocation of the process (Swift's, OpenSSL's, SQLite's, nghttp2's): with many
            // requests in flight, glibc's allocator spent about a tenth of a sign-in's CPU (docs/performance.md).
            linkerSettings: [.linkedLibrary("jemalloc")]),

        // Helpers shared by the test targets: raw HTTP/2 frames, bounded waits, running the real binary.
        .target(
            name: "TestSupport", dependencies: ["CNghttp2", "EventLoop", "HTTP", "Locking", "Core"],
            path: "Tests/TestSupport"),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CoreTests", dependencies: ["Core", "TestSupport"]),
        .testTarget(name: "QRCodeTests", dependencies: ["QRCode", "TestSupport"]),
        .testTarget(
            name: "StoreTests", dependencies: ["Store", "Core", "Locking", "TestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "HTTPTests", dependencies: ["EventLoop", "HTTP", "Crypto", "Locking", "TestSupport"]),
        .testTarget(
            name: "ServiceTests",
            dependencies: [
                "Service", "EventLoop", "HTTP", "Core", "Store", "Crypto", "JSONText", "Protocol", "Locking",
                "TestSupport",
            ]),
        .testTarget(
            name: "BrokerTests", dependencies: ["Broker", "Service", "HTTP", "Crypto", "RedisStore", "TestSupport"]),
        .testTarget(name: "ApprovalKitTests", dependencies: ["ApprovalKit", "Crypto", "JSONText", "Locking"]),
        .testTarget(name: "ProtocolTests", dependencies: ["Protocol", "Crypto", "JSONText"]),
        .testTarget(name: "OIDCTests", dependencies: ["OIDC", "Crypto", "JSONText", "TestSupport"]),
        .testTarget(
            name: "RedisTests",
            dependencies: [
                "Redis", "RedisStore", "Core", "Store", "EventLoop", "Locking", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "EndToEndTests", dependencies: ["ApprovalKit", "HTTP", "Crypto", "TestSupport"]),
    ]
)

// libFuzzer targets, one per parser of what arrives from the network or an operator, built only for `make fuzz`
// (`APPROVALD_FUZZ=1`, with `-sanitize=fuzzer,address`). SwiftPM links each executable's `main` to `<Target>_main`:
// each target defines that and hands over to libFuzzer's driver (CFuzzer).
if Context.environment["APPROVALD_FUZZ"] == "1" {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzJSON", ["JSONText", "Service"]),
        ("FuzzIdPSignature", ["HTTP", "Protocol", "Service"]),
        ("FuzzDeviceAuthorization", ["Crypto", "HTTP", "Service"]),
        ("FuzzRouter", ["HTTP", "Service"]),
        ("FuzzEventStream", ["Protocol"]),
        ("FuzzConfiguration", ["Broker"]),
        ("FuzzH2Server", ["FuzzServer"]),
        ("FuzzHTTP1Server", ["FuzzServer"]),
        ("FuzzOIDCRequests", ["OIDC"]),
        ("FuzzEnrollment", ["Core", "Crypto", "Protocol", "Service"]),
    ]
    package.targets.append(.target(name: "CFuzzer", path: "Tests/Fuzz/CFuzzer"))
    package.targets.append(.target(name: "FuzzSupport", dependencies: ["CFuzzer"], path: "Tests/Fuzz/FuzzSupport"))
    // The server fuzz targets' shared harness: one connection's bytes through the real server.
    package.targets.append(
        .target(
            name: "FuzzServer",
            dependencies: ["CLibevent", "EventLoop", "HTTP", .product(name: "Logging", package: "swift-log")],
            path: "Tests/Fuzz/FuzzServer"))
    for target in fuzzTargets {
        package.targets.append(
            .executableTarget(
                name: target.name, dependencies: target.dependencies + ["FuzzSupport"],
                path: "Tests/Fuzz/Targets/\(target.name)", swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    }
}
