// swift-tools-version:6.0
import PackageDescription

// The module table and graph: docs/ARCHITECTURE.md (the one place they are described).
let package = Package(
    name: "modelfs",
    products: [
        .executable(name: "modelfs", targets: ["modelfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.24.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian, each wrapped in a system-library target with a small shim.
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl"),
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3"),
        .systemLibrary(name: "CPostgres", path: "Sources/CPostgres", pkgConfig: "libpq"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib"),
        .systemLibrary(name: "CDeflate", path: "Sources/CDeflate", pkgConfig: "libdeflate"),
        .systemLibrary(name: "CFuse", path: "CFuse", pkgConfig: "fuse3"),

        // The domain: names, formats, statuses, rules, errors, the object-store protocol, hashing.
        .target(name: "ModelStore", dependencies: ["CCrypto"]),
        // The local directory store (the in-memory one for tests is in TestSupport).
        .target(name: "BlobStore", dependencies: ["ModelStore"]),
        // S3 over libcurl with SigV4 signing.
        .target(name: "S3", dependencies: [
            "ModelStore", "CCurl", "CCrypto",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The catalog: schema, migrations and queries, on SQLite (one node) or PostgreSQL (many).
        .target(name: "Catalog", dependencies: ["ModelStore", "CSQLite", "CPostgres", .product(name: "Metrics", package: "swift-metrics")]),
        // Streaming multipart uploads: parts, parallelism, sha256, abort.
        .target(name: "UploadPath", dependencies: [
            "ModelStore",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The store's operations with their rules, shared by the CLI and the mount.
        .target(name: "Registry", dependencies: [
            "ModelStore", "Catalog", "UploadPath", "Archive",
            .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The read path: a node-wide block cache with single-flight fetches, and per-file prefetch.
        .target(name: "ReadPath", dependencies: ["ModelStore", "Archive", "CDeflate", .product(name: "Metrics", package: "swift-metrics")]),
        // What modelfs looks inside: zip, tar and tar.gz indexes (zlib), safetensors headers, out
        // of any ranged byte source; no I/O of its own.
        .target(name: "Archive", dependencies: ["CZlib", "CDeflate"]),
        // The one place processes are started: jobs, the background mount, short commands.
        .target(name: "Spawn"),
        // Training jobs: requests, executors (local, Slurm), checkpoints into versions.
        .target(name: "Jobs", dependencies: [
            "ModelStore", "Catalog", "Registry", "Spawn", "CCurl",
            .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The mounted namespace as plain operations: no FUSE types, testable without a mount.
        .target(name: "ModelFS", dependencies: [
            "ModelStore", "Registry", "ReadPath", "Jobs", "Archive",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // libfuse's low-level callbacks over ModelFS; the only importer of CFuse.
        .target(name: "FUSEAdapter", dependencies: [
            "CFuse", "ModelFS", "ModelStore",
            .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The process's metrics: swift-metrics bootstrapped onto one Prometheus registry, its text
        // exposition, and the mount's `--metrics` endpoint. The modules that record import only Metrics.
        .target(name: "Telemetry", dependencies: [
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The store over HTTP: the JSON API of `modelfs web`, its users, errors as HTTP statuses.
        .target(name: "Web", dependencies: [
            "ModelStore", "Catalog", "Registry", "Jobs", "Telemetry",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Commands and the composition root.
        .target(name: "CLI", dependencies: [
            "ModelStore", "BlobStore", "S3", "Catalog", "UploadPath", "Registry", "ReadPath", "Jobs", "ModelFS", "FUSEAdapter", "Spawn", "Web", "Telemetry",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "modelfs", dependencies: ["CLI"]),

        // Helpers every test target shares.
        .target(name: "TestSupport", dependencies: ["ModelStore", "Catalog"], path: "Tests/TestSupport"),
        .testTarget(name: "ModelStoreTests", dependencies: ["ModelStore"]),
        .testTarget(name: "BlobStoreTests", dependencies: ["TestSupport", "ModelStore", "BlobStore", "S3"]),
        .testTarget(name: "S3Tests", dependencies: ["S3", "ModelStore", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "CatalogTests", dependencies: ["TestSupport", "Catalog", "ModelStore"]),
        .testTarget(name: "UploadPathTests", dependencies: ["TestSupport", "UploadPath", "BlobStore", "ModelStore"]),
        .testTarget(name: "JobsTests", dependencies: ["TestSupport", "Jobs", "Spawn", "Registry", "Catalog", "BlobStore", "ModelStore"]),
        .testTarget(name: "ArchiveTests", dependencies: ["Archive"]),
        .testTarget(name: "ReadPathTests", dependencies: ["TestSupport", "ReadPath", "ModelStore", "BlobStore", "Archive", "CDeflate"]),
        .testTarget(name: "ModelFSTests", dependencies: ["TestSupport", "Archive", "ModelFS", "Registry", "Catalog", "BlobStore", "ReadPath", "ModelStore"]),
        .testTarget(name: "FUSEAdapterTests", dependencies: ["FUSEAdapter", "ModelStore"]),
        .testTarget(name: "TelemetryTests", dependencies: ["TestSupport", "Telemetry", "FUSEAdapter", "ModelFS", "Registry", "Catalog", "ReadPath", "Jobs", "ModelStore"]),
        .testTarget(name: "WebTests", dependencies: [
            "Web", "ModelStore", "Catalog", "Spawn", .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .testTarget(name: "RegistryTests", dependencies: ["TestSupport", "Registry", "Catalog", "BlobStore", "UploadPath", "ModelStore"]),
    ]
)
