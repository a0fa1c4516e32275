import ArgumentParser
import Foundation
import FUSEAdapter
import Glibc
import Logging
import ModelFS
import Registry
import Spawn
import ModelStore
import ReadPath
import Registry
import Telemetry
import Web

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the store: models/<model>/<version>.<ext>, datasets/, jobs/, .stats.",
        discussion: "Runs in the background unless --foreground; unmount with `fusermount3 -u DIR` (or SIGINT/SIGTERM in the foreground).")

    @Argument(help: "The directory to mount on (created if missing).")
    var directory: String

    @Flag(help: "Stay in the foreground, logging to stderr.")
    var foreground = false

    @Flag(help: "Let other users see the mount (turns on permission checks by the kernel).")
    var allowOther = false

    @Option(help: "Memory for cached and prefetched bytes, shared by all readers (MiB).")
    var cacheMemory = 128

    @Option(help: "On-disk cache of fetched blocks, reused across remounts and shareable by every mount of the node; default <data-dir>/cache (on the local store it holds only inflated archive members); 'none' turns it off.")
    var cacheDir: String?

    @Option(help: "Size cap of the on-disk cache (MiB); default a tenth of the disk it is on.")
    var cacheSize: Int?

    @Option(help: "Where files whose writer seeks back (zipfile, torch.save) are held until closed; default <data-dir>/spool.")
    var spoolDir: String?

    @Option(help: "Size cap of the spool (MiB); a write past it fails with ENOSPC.")
    var spoolSize = 20480

    @Option(help: "Kernel readahead for the mount (KiB).")
    var readAheadKb = 512

    @Option(help: ArgumentHelp("""
        auto: files with a whole local copy (local store versions, complete disk-cache copies) are read by the kernel \
        straight from that copy (FUSE passthrough; Linux >= 6.9, a mount by root), else through the daemon; \
        off: always through the daemon (env MODELFS_PASSTHROUGH; default auto).
        """, valueName: "auto|off"))
    var passthrough: PassthroughMode?

    @Option(help: "Where the background mount logs; default <data-dir>/mount.log.")
    var logFile: String?

    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464); see docs/OPERATIONS.md.",
                               valueName: "host:port"))
    var metrics: String?

    @Option(help: ArgumentHelp("Also serve the store's HTTP API and pages from this process (as `modelfs web --listen`); jobs submitted over it run on this mount; see docs/WEB.md.",
                               valueName: "host:port"))
    var web: String?

    @Option(help: ArgumentHelp("The tokens file of --web (as `modelfs web --tokens`).", valueName: "file"))
    var webTokens: String?

    @Option(help: ArgumentHelp("Take --web's user from this header, set by a reverse proxy you trust (as `modelfs web --trust-proxy-header`).", valueName: "name"))
    var webTrustProxyHeader: String?

    @OptionGroup var jobOptions: JobOptions
    @OptionGroup var serveOptions: ServeOptions
    @OptionGroup var store: StoreOptions

    func run() throws {
        let mountpoint = URL(fileURLWithPath: directory).standardizedFileURL.path
        // Refusals come before anything changes: no directory made, no upload touched.
        let lock = try reporting { () throws -> DataDirLock? in
            try MountChecks.check(mountpoint: mountpoint, dataDir: store.resolvedDataDir, db: store.resolvedDB)
            _ = try resolvedPassthrough()
            _ = try metricsAddress()
            if let web = try webOptions() { try WebCommand.checkFree(web, flag: "--web") }
            let refused = { (holder: String) in
                "the data dir \(store.resolvedDataDir) is in use by \(holder): one data dir has one mount; unmount it first"
            }
            if foreground {
                return try DataDirLock.acquire(dataDir: store.resolvedDataDir, holder: "mount", mountpoint: mountpoint, refused: refused)
            }
            // The background mount takes the lock itself; this only says no early, in the user's terminal.
            try DataDirLock.check(dataDir: store.resolvedDataDir, refused: refused)
            return nil
        }
        try? FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        if let lock {
            try withExtendedLifetime(lock) { try serve(mountpoint) }
        } else {
            try daemonize(mountpoint)
        }
    }

    private func serve(_ mountpoint: String) throws {
        try reporting {
            Log.setup(verbose: store.verbose, level: .notice)
            // Before anything that records is made: an instrument made earlier records nothing.
            var endpoint: MetricsEndpoint?
            if let address = try metricsAddress() {
                Telemetry.bootstrap()
                do { endpoint = try MetricsEndpoint(address) } catch { throw CLIError("\(error)") }
                Log.logger.notice("metrics at http://\(address)/metrics")
            }
            defer { endpoint?.stop() }
            if web != nil { Telemetry.bootstrap() }  // --web serves /metrics too
            let registry = try store.openRegistry(role: "mount")
            try? registry.retryPending()
            // Uploads a crashed mount left half-done become failed, their multipart uploads aborted;
            // those whose writer still runs (an import beside this mount) are left alone.
            if let failed = try? registry.failInterruptedUploads(), failed > 0 {
                Log.logger.notice("marked \(failed) interrupted upload(s) failed")
            }
            // With S3 the node keeps what it fetched: a remount or a restart reads it from local disk.
            // The local store's own files need no copy, but its compressed archive members are
            // inflated into it, once (ReadPath/InflatedMembers.swift).
            let defaultDiskDir = store.resolvedDataDir + "/cache"
            let diskDir = cacheDir == "none" ? nil : cacheDir.map(StoreOptions.absolute) ?? defaultDiskDir
            // A cache dir that cannot be used costs speed, not the mount: it reads without one.
            let disk = diskDir.flatMap { (dir) -> DiskCache? in
                do {
                    let capacity = cacheSize.map { Int64(max($0, 1)) << 20 } ?? MountCommand.tenthOfDisk(dir)
                    return try DiskCache(directory: dir, capacity: capacity, blockSize: 64 << 10)
                } catch {
                    Log.logger.warning("no disk cache: \(error); fetched bytes are kept in memory only")
                    return nil
                }
            }
            let cache = BlockCache(budget: max(cacheMemory, 16) << 20, blockSize: 64 << 10, disk: disk)
            let jobs = try jobOptions.service(registry, dataDir: store.resolvedDataDir, mountpoint: mountpoint)
            let spool = try SpoolSpace(directory: spoolDir.map(StoreOptions.absolute) ?? store.resolvedDataDir + "/spool",
                                       capacity: Int64(max(spoolSize, 1)) << 20)
            let services = serveOptions.runner(registry, executor: jobs.executor, dataDir: store.resolvedDataDir, mountpoint: mountpoint)
            let fs = FileSystem(registry: registry, cache: cache, jobs: jobs, services: services, spool: spool, logger: Log.logger)
            let purges = CachePurgeFollower(registry: registry, fs: fs, dataDir: store.resolvedDataDir)
            defer { purges.stop() }
            let adapter = FUSEAdapter(fs: fs, logger: Log.logger)
            var options = FUSEAdapter.MountOptions()
            options.allowOther = allowOther
            options.readAheadKB = readAheadKb
            options.passthrough = try resolvedPassthrough() == .auto
            let where_ = "catalog \(registry.catalog.location), bytes in \(registry.objects.location)"
            let logger = Log.logger
            let flusher = DatasetsManifestFlusher(registry: registry)
            let web = try webOptions().map { (o) -> WebServer in
                var o = o
                o.jobs = jobs
                o.dataDirectory = store.resolvedDataDir
                o.stopsOnSignals = false  // the mount's signals unmount; the server stops with it
                return WebServer(registry: registry, options: o, logger: logger)
            }
            let serving = Locked<Task<Void, Never>?>(nil)
            try adapter.run(mountpoint: mountpoint, options: options) {
                logger.notice("mounted at \(mountpoint): \(where_); jobs run \(jobs.executor.name)\(jobs.configuration.trainCommand == nil ? " (no --train-command: training refused)" : "")\(jobs.configuration.evalCommand == nil ? " (no --eval-command: evaluation refused)" : "")")
                // Jobs read their inputs through the mount: follow them once it is live, picking
                // up where an earlier mount left off.
                jobs.start()
                services.start()
                // Once the mount is live: jobs submitted over HTTP read their inputs through it.
                if let web {
                    serving.withLock { $0 = Task { do { try await web.run() } catch { logger.error("web: \(error)") } } }
                }
            }
            if let task = serving.withLock({ $0 }) {
                task.cancel()
                let stopped = DispatchSemaphore(value: 0)
                Task { await task.value; stopped.signal() }
                _ = stopped.wait(timeout: .now() + 10)
            }
            flusher.stop()
            jobs.stop()
            services.stop()
            // Dataset changes of the last moments reach the bucket before the process ends.
            registry.publishDatasetsManifestIfBehind()
            Log.logger.notice("unmounted \(mountpoint)")
        }
    }

    /// `--web`, `--web-tokens`, `--web-trust-proxy-header`, checked (tokens read) before the mount starts.
    func webOptions() throws -> WebServer.Options? {
        guard let web else { return nil }
        return try WebCommand.options(listen: web, tokens: webTokens.map(StoreOptions.absolute), trustProxyHeader: webTrustProxyHeader, prefix: "web")
    }

    enum PassthroughMode: String, ExpressibleByArgument, CaseIterable { case auto, off }

    /// `--metrics`, checked before the mount starts.
    func metricsAddress() throws -> MetricsEndpoint.Address? {
        guard let metrics else { return nil }
        do { return try MetricsEndpoint.Address(parsing: metrics) } catch { throw CLIError("\(error)") }
    }

    /// `--passthrough`, else `MODELFS_PASSTHROUGH`, else auto.
    func resolvedPassthrough() throws(StoreError) -> PassthroughMode {
        if let passthrough { return passthrough }
        guard let env = ProcessInfo.processInfo.environment["MODELFS_PASSTHROUGH"], !env.isEmpty else { return .auto }
        guard let mode = PassthroughMode(rawValue: env) else {
            throw StoreError(.invalidArgument, "MODELFS_PASSTHROUGH is \(env): auto or off")
        }
        return mode
    }

    /// `arguments` without `option VALUE` and `option=VALUE`.
    static func removing(option: String, from arguments: [String]) -> [String] {
        var out: [String] = []
        var skipNext = false
        for a in arguments {
            if skipNext { skipNext = false; continue }
            if a == option { skipNext = true; continue }
            if a.hasPrefix(option + "=") { continue }
            out.append(a)
        }
        return out
    }

    /// Starts `modelfs mount --foreground` in its own session with output to the log file, and
    /// returns once the mount is live (or says why it is not).
    private func daemonize(_ mountpoint: String) throws {
        let log = logFile.map(StoreOptions.absolute) ?? store.resolvedDataDir + "/mount.log"
        try? FileManager.default.createDirectory(atPath: (log as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var arguments = CommandLine.arguments
        arguments.insert("--foreground", at: min(2, arguments.count))
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        // A catalog URL may hold a password: the long-lived mount gets it in its environment
        // (readable by its user and root only), never in its command line, which `ps` shows to all.
        var environment: [String: String]? = nil
        if let catalog = store.catalog {
            arguments = MountCommand.removing(option: "--catalog", from: arguments)
            var env = ProcessInfo.processInfo.environment
            env["MODELFS_CATALOG"] = catalog
            environment = env
        }

        let pid: pid_t
        switch Spawn.detached(executable, arguments, environment: environment, log: log) {
        case .success(let p): pid = p
        case .failure(let e): throw CLIError("cannot start the mount: \(e.message)")
        }

        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if MountCommand.isMounted(mountpoint) {
                print("modelfs mounted at \(mountpoint) (pid \(pid), log \(log)); unmount with: fusermount3 -u \(mountpoint)")
                return
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(separator: "\n") ?? ""
                throw CLIError("the mount exited before it was ready; \(log) says:\n\(tail)")
            }
            usleep(50_000)
        }
        throw CLIError("the mount did not become ready within 60 s; see \(log)")
    }

    /// A tenth of the file system `dir` is on (1 GiB when it cannot be told).
    static func tenthOfDisk(_ dir: String) -> Int64 {
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var st = statvfs()
        guard statvfs(dir, &st) == 0 else { return 1 << 30 }
        return Int64(st.f_blocks) * Int64(st.f_frsize) / 10
    }

    static func isMounted(_ mountpoint: String) -> Bool {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        let escaped = mountpoint.replacingOccurrences(of: " ", with: "\\040")
        return mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[1] == escaped && fields[2].hasPrefix("fuse")
        }
    }
}

/// Dataset changes made through the mount (a copy into datasets/ completing or failing) reach
/// the datasets manifest in the bucket within a second: every change to a dataset row moves the
/// manifest's generation in the catalog, and this thread writes the manifest when it is behind.
final class DatasetsManifestFlusher: @unchecked Sendable {
    private let registry: Registry
    private let condition = NSCondition()
    private var stopped = false
    private var thread: Thread?

    init(registry: Registry, every interval: TimeInterval = 1) {
        self.registry = registry
        let t = Thread { [self] in
            condition.lock()
            while !stopped {
                condition.unlock()
                registry.publishDatasetsManifestIfBehind()
                registry.recordDeferredFailures()  // uploads that failed while the catalog was away
                condition.lock()
                if !stopped { _ = condition.wait(until: Date().addingTimeInterval(interval)) }
            }
            condition.unlock()
        }
        t.name = "datasets-manifest"
        thread = t
        t.start()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }
}
