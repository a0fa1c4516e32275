import ArgumentParser
import BlobStore
import Catalog
import Foundation
import Logging
import ModelStore
import Registry
import S3

/// Where the store is: the flags every command shares, with `MODELFS_*` environment defaults.
/// This is the composition root: the only place that picks the object store.
struct StoreOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory for the SQLite catalog and the local blob store (env MODELFS_DATA_DIR).", valueName: "dir"))
    var dataDir: String?

    @Option(help: ArgumentHelp("SQLite catalog file (env MODELFS_DB); default <data-dir>/catalog.db, or <data-dir>/<bucket>.db with S3.", valueName: "file"))
    var db: String?

    @Option(help: ArgumentHelp("""
        The catalog: a postgresql://user@host:port/db URL shared by every node, or a SQLite file (env MODELFS_CATALOG); \
        default SQLite in the data dir. Give the password in PGPASSWORD or ~/.pgpass, not in the URL.
        """, valueName: "url"))
    var catalog: String?

    @Option(help: ArgumentHelp("S3 bucket; without one, bytes stay in <data-dir>/blobs (env MODELFS_BUCKET).", valueName: "name"))
    var bucket: String?

    @Option(help: ArgumentHelp("S3 endpoint URL, e.g. http://127.0.0.1:9000 (env MODELFS_ENDPOINT, AWS_ENDPOINT_URL).", valueName: "url"))
    var endpoint: String?

    @Option(help: ArgumentHelp("S3 region (env MODELFS_REGION, AWS_REGION).", valueName: "region"))
    var region: String?

    @Option(help: ArgumentHelp("Profile in ~/.aws/credentials and ~/.aws/config (env MODELFS_PROFILE, AWS_PROFILE).", valueName: "name"))
    var profile: String?

    @Option(help: ArgumentHelp("Seconds an S3 operation may take, retries included, before it fails (env MODELFS_S3_TIMEOUT; default 30).", valueName: "s"))
    var s3Timeout: Int?

    @Flag(name: .shortAndLong, help: "Log what happens, to stderr.")
    var verbose = false

    private var env: [String: String] { ProcessInfo.processInfo.environment }

    private func setting(_ flag: String?, _ variable: String) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let v = env[variable], !v.isEmpty { return v }
        return nil
    }

    /// Always absolute: a relative `--data-dir d` is taken from the directory the command runs in
    /// (path arithmetic on a bare `d` crashed Foundation; the background mount keeps the paths it was given).
    var resolvedDataDir: String {
        if let dir = setting(dataDir, "MODELFS_DATA_DIR") { return StoreOptions.absolute(dir) }
        if let xdg = env["XDG_DATA_HOME"], !xdg.isEmpty { return StoreOptions.absolute(xdg + "/modelfs") }
        return StoreOptions.absolute((env["HOME"] ?? NSHomeDirectory()) + "/.local/share/modelfs")
    }

    var resolvedBucket: String? { setting(bucket, "MODELFS_BUCKET") }

    /// The SQLite catalog file.
    var resolvedDB: String {
        setting(db, "MODELFS_DB").map(StoreOptions.absolute)
            ?? resolvedDataDir + "/" + (resolvedBucket.map { $0 + ".db" } ?? "catalog.db")
    }

    /// The catalog's location: `--catalog`, `MODELFS_CATALOG`, or the SQLite file.
    var resolvedCatalog: String {
        guard let given = setting(catalog, "MODELFS_CATALOG") else { return resolvedDB }
        return PostgresURL(given) != nil || given.contains("://") ? given : StoreOptions.absolute(given)
    }

    /// Whether the catalog is shared by many nodes (PostgreSQL).
    var sharedCatalog: Bool { PostgresURL(resolvedCatalog) != nil }

    /// Seconds a node's lease lasts without a renewal (env MODELFS_NODE_LEASE; default 30).
    var nodeLeaseSeconds: Double { setting(nil, "MODELFS_NODE_LEASE").flatMap(Double.init).map { max($0, 1) } ?? 30 }

    /// This node's id in a shared catalog: made once per data dir and kept in `<data-dir>/node-id`,
    /// so a restarted mount knows the uploads its earlier self left.
    func nodeID() throws -> String {
        let file = resolvedDataDir + "/node-id"
        if let id = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty {
            return id
        }
        let id = Writer.hostname() + "-" + String(UUID().uuidString.lowercased().prefix(8))
        let temp = file + ".\(getpid())"
        do {
            try id.write(toFile: temp, atomically: false, encoding: .utf8)
            // Two processes making it at once: the first link wins, and both use what it says.
            if link(temp, file) != 0 && errno != EEXIST { throw CLIError("cannot create \(file): \(String(cString: strerror(errno)))") }
            unlink(temp)
        } catch let e as CLIError { throw e } catch { throw CLIError("cannot create \(file): \(error)") }
        return try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The lease this process keeps for its node while it runs (a shared catalog only).
    nonisolated(unsafe) static var heartbeat: NodeHeartbeat?

    /// Opens the catalog and the object store this configuration names, and checks that the
    /// bucket (or the local store) belongs to this catalog, claiming it if it belongs to none.
    func openRegistry(adopt: Bool = false, role: String = "cli") throws -> Registry { try openStore(adopt: adopt, role: role).registry }

    /// The store's port: what commands that change a row by its name use, after finding its id
    /// (``StorePort/model(called:)`` and the like), so that every rule is the port's.
    func openPort() throws -> any StorePort { try openRegistry() }

    /// ``openRegistry(adopt:)``, saying whether the bucket was this catalog's before.
    func openStore(adopt: Bool = false, role: String = "cli") throws -> (registry: Registry, claim: Registry.Claim) {
        Log.setup(verbose: verbose)
        let dir = resolvedDataDir
        // The embedded store is private to the user who owns it: the data dir and the blobs dir
        // are 0700 (the catalog's files 0600, by Catalog).
        try StoreOptions.makePrivateDirectory(dir)
        let objects: any ObjectStore
        let what: String
        if let bucket = resolvedBucket {
            do {
                var config = try S3Config.resolve(bucket: bucket, endpoint: setting(endpoint, "MODELFS_ENDPOINT"),
                                                  region: setting(region, "MODELFS_REGION"), profile: setting(profile, "MODELFS_PROFILE"))
                if let seconds = s3Timeout ?? setting(nil, "MODELFS_S3_TIMEOUT").flatMap(Int.init) {
                    config.operationTimeout = .seconds(seconds)
                }
                objects = try S3ObjectStore(config: config)
            } catch {
                throw CLIError("\(error)")
            }
            what = "bucket \(bucket)"
        } else {
            try StoreOptions.makePrivateDirectory(dir + "/blobs")
            do { objects = try LocalObjectStore(root: dir + "/blobs") } catch { throw CLIError("\(error)") }
            what = "the local store \(dir)/blobs"
        }
        let catalog = try Catalog.open(resolvedCatalog)
        Log.logger.info("store: catalog \(catalog.location), bytes in \(objects.location)")
        let parallel = setting(nil, "MODELFS_UPLOAD_PARALLEL").flatMap(Int.init) ?? 4
        let node = catalog.database.isShared ? try nodeID() : nil
        let registry = Registry(catalog: catalog, objects: objects, uploadConcurrency: max(1, parallel), node: node, logger: Log.logger)
        if let node, StoreOptions.heartbeat == nil {
            StoreOptions.heartbeat = try NodeHeartbeat(registry: registry, node: node, role: role, seconds: nodeLeaseSeconds, sweeps: role == "mount")
        }
        let claim = try registry.claimBucket(what, adopt: adopt)
        if claim == .claimed, let id = try? registry.catalog.catalogID() { Log.logger.notice("\(what) now belongs to catalog \(id)") }
        return (registry, claim)
    }
}

extension StoreOptions {
    /// `path` made absolute against the working directory, `.` and `..` resolved (links are not).
    static func absolute(_ path: String) -> String {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        return URL(fileURLWithPath: path, relativeTo: cwd).standardizedFileURL.path
    }

    /// Creates `path` with mode 0700 if it is missing (its parents the usual way); one that
    /// exists and is this user's loses its group and other bits (a data dir made by an older
    /// modelfs, or by the mount's log before the store was opened).
    static func makePrivateDirectory(_ path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw CLIError("cannot create \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        if stat(path, &st) == 0, st.st_uid == geteuid(), st.st_mode & 0o077 != 0 { chmod(path, st.st_mode & 0o700) }
    }
}

/// A refusal worth one line on stderr and a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

enum Log {
    nonisolated(unsafe) static var logger = Logger(label: "modelfs")
    nonisolated(unsafe) private static var done = false

    static func setup(verbose: Bool, level: Logger.Level = .warning) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .debug : level
            return handler
        }
        logger = Logger(label: "modelfs")
    }
}

/// Runs a command body, turning store errors into one line on stderr and exit status 1.
func reporting<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as StoreError {
        FileHandle.standardError.write(Data("modelfs: \(e.message)\n".utf8))
        throw ExitCode(1)
    } catch let e as CLIError {
        FileHandle.standardError.write(Data("modelfs: \(e.description)\n".utf8))
        throw ExitCode(1)
    }
}
