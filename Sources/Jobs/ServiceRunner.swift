import Catalog
import Foundation
import Glibc
import Logging
import ModelStore
import Registry

/// Runs the services this node has taken: starts each one's server (the mount's
/// `--serve-command`, as the user who asked, on the jobs' executor), follows its health until it
/// is ready, stops it when asked, and moves a service that follows an alias to the alias's new
/// version — the new server first, the endpoint once it is ready, the old one stopped after a
/// drain. Every step is a compare-and-set on the service's row (``Registry/changeService``), so
/// a stop or a restart that lands meanwhile wins; the runner keeps nothing it cannot find again
/// in the catalog and the service's directory but the moments instances started.
public final class ServiceRunner: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Shell command line run for every service; nil: this mount takes none.
        public var command: String?
        /// The path asked of a server until it answers 200.
        public var healthPath = "/health"
        /// Seconds a server has to become ready.
        public var timeout = 120.0
        /// Seconds the old server keeps serving after a switch moved the endpoint.
        public var drain = 3.0
        /// Where service directories live: `<dir>/<name>/` with `log` and one `i<n>/` per instance.
        public var directory: String
        /// The mount: servers read their version through it.
        public var mountpoint: String?
        public var pollInterval = 0.5

        public init(directory: String, command: String?) { self.directory = directory; self.command = command }
    }

    public let registry: Registry
    public let executor: any JobExecutor
    public let configuration: Configuration
    let logger: Logger
    private let lock = NSLock()
    private let loop = PollingLoop()
    private let logLock = NSLock()
    /// When each instance (service, instance number) was launched here: its readiness deadline.
    private var launched: [String: Date] = [:]
    /// Whether the last pass saw a server starting (a service's, or a switch's).
    private var awaiting = false

    public init(registry: Registry, executor: any JobExecutor, configuration: Configuration,
                logger: Logger = Logger(label: "modelfs.services")) {
        self.registry = registry; self.executor = executor; self.configuration = configuration; self.logger = logger
    }

    public var runsServices: Bool { configuration.command != nil }
    /// This node's name in the rows it takes: its lease's on a shared catalog.
    var me: String { registry.node ?? "local" }

    public func directory(of id: ServiceID) -> String { configuration.directory + "/" + id.rawValue }
    public func logPath(of id: ServiceID) -> String { directory(of: id) + "/log" }
    func instanceDirectory(_ id: ServiceID, _ instance: Int64) -> String { directory(of: id) + "/i\(instance)" }

    // MARK: Requests (the same rules for the mount's files and the CLI: the Registry's)

    public func submit(_ request: Registry.ServiceStart, owner: JobOwner, requester: Ownership.Requester) throws(StoreError) -> Service {
        guard runsServices else {
            throw StoreError(.notSupported, "this mount runs no services: mount it with --serve-command")
        }
        // Asked of this mount: this node runs it (another mount hearing of it does not take it).
        let s = try registry.startService(request, executor: executor.name, owner: owner, requester: requester, node: me)
        loop.poke()
        return s
    }

    public func stop(_ id: ServiceID, requester: Ownership.Requester) throws(StoreError) {
        _ = try registry.stopService(id, requester: requester)
        loop.poke()
    }

    public func restart(_ id: ServiceID, requester: Ownership.Requester) throws(StoreError) {
        _ = try registry.restartService(id, requester: requester)
        loop.poke()
    }

    /// Looks at the services now rather than at the next poll (a request just changed one).
    public func poke() { loop.poke() }

    // MARK: Following

    public func start() {
        loop.start(name: "modelfs-services") { [self] in
            do { try tick() } catch { logger.warning("services: \(error)") }
            // A server on its way up is asked often, so that ready is seen soon after it is.
            return lock.withLock { awaiting } ? min(0.1, configuration.pollInterval) : configuration.pollInterval
        }
    }

    /// Stops following; the servers keep running (a remount follows them again).
    public func stop() { loop.stop() }

    /// One pass over the services: each step of each is one change of its row.
    public func tick() throws(StoreError) {
        var leases: [String: NodeLease]? = nil
        let all = try registry.services()
        StateGauges.services(all)
        // Starting here, switching here, or not taken yet (taken by this very pass).
        lock.withLock {
            awaiting = all.contains { ($0.node == me || ($0.node == nil && runsServices)) && ($0.status == .starting || $0.nextInstance != nil) }
        }
        for s in all {
            if let node = s.node, node != me {
                if s.status.holdsVersion {
                    if leases == nil { leases = Dictionary(try registry.catalog.nodes().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }) }
                    if leases?[node]?.expired ?? true { failOrphan(s, node) }
                }
                continue
            }
            do throws(StoreError) {
                try endDrain(s)
                switch s.status {
                case .starting: try advanceStarting(s)
                case .ready: try advanceReady(s)
                case .stopping: try finishStopping(s)
                case .failed: try reclaimIfRunning(s)
                case .stopped: continue
                }
            } catch {
                logger.warning("service \(s.id): \(error.message)")
            }
        }
    }

    /// The server a switch moved away from, once its drain is over (or its service ended).
    private func endDrain(_ s: Service) throws(StoreError) {
        guard let old = s.oldExecutorID, let until = s.drainUntil, until <= Date() || !s.status.holdsVersion else { return }
        executor.cancel(old)
        try registry.changeService(s.id) { (row) throws(StoreError) in
            guard row.oldExecutorID == old else { return }
            row.oldVersionID = nil; row.oldExecutorID = nil; row.drainUntil = nil
        }
        note(s.id, "the server switched from stopped")
    }

    /// A service of a node that stopped renewing its lease: nobody follows it any more.
    private func failOrphan(_ s: Service, _ node: String) {
        _ = try? registry.changeService(s.id, audit: "service.fail") { (row) throws(StoreError) in
            guard row.node == node, row.status.holdsVersion else { return }
            row.status = .failed
            row.reason = "node \(node), which ran it, \(ServiceRunner.orphanReason)"
            row.endpoint = nil
        }
    }

    static let orphanReason = "stopped renewing its lease"

    /// A service of this node that another node failed while this one was away (its lease ran
    /// out, or it was unmounted and mounted again) and whose server still runs: followed again.
    private func reclaimIfRunning(_ s: Service) throws(StoreError) {
        guard s.reason?.hasSuffix(ServiceRunner.orphanReason) == true, let eid = s.executorID else { return }
        let dir = instanceDirectory(s.id, s.instance)
        guard case .running = executor.state(of: eid, directory: dir), let endpoint = endpoint(of: s, dir),
              HealthProbe.status(of: endpoint + configuration.healthPath) == 200 else { return }
        let back = try registry.changeService(s.id, audit: "service.reclaim") { (row) throws(StoreError) in
            guard row.status == .failed, row.node == me, row.instance == s.instance, row.executorID == eid else { return }
            row.status = .ready
            row.endpoint = endpoint
            row.reason = nil
        }
        if back.status == .ready { note(s.id, "taken back: its server ran on while this node was away") }
    }

    private func key(_ id: ServiceID, _ instance: Int64) -> String { "\(id.rawValue)#\(instance)" }

    private func advanceStarting(_ s: Service) throws(StoreError) {
        if s.node == nil || s.runningGeneration != s.generation {
            guard runsServices else { return }
            try launchInstance(of: s)
            return
        }
        guard let eid = s.executorID else { return }
        let dir = instanceDirectory(s.id, s.instance)
        copyOutput(s.id, dir)
        switch executor.state(of: eid, directory: dir) {
        case .exited(let code): return fail(s, "the server exited with code \(code) before it was ready")
        case .cancelled, .lost: return fail(s, "the server ended before it was ready")
        case .queued: return  // Slurm has not placed it: no deadline while it waits
        case .running: break
        }
        guard let endpoint = endpoint(of: s, dir) else { return checkDeadline(s, eid) }
        if HealthProbe.status(of: endpoint + configuration.healthPath) == 200 {
            let ready = try registry.changeService(s.id, audit: "service.ready") { (row) throws(StoreError) in
                guard row.status == .starting, row.instance == s.instance, row.runningGeneration == row.generation else { return }
                row.status = .ready
                row.endpoint = endpoint
                row.reason = nil
            }
            if ready.status == .ready && ready.instance == s.instance {
                note(s.id, "ready at \(endpoint)")
                logger.info("service \(s.id) ready at \(endpoint)")
            }
        } else {
            checkDeadline(s, eid)
        }
    }

    private func checkDeadline(_ s: Service, _ eid: String) {
        let since = lock.withLock { launched[key(s.id, s.instance)] } ?? s.modified
        guard Date().timeIntervalSince(since) > configuration.timeout else { return }
        executor.cancel(eid)
        fail(s, "the server was not ready within \(Int(configuration.timeout)) s (\(configuration.healthPath) did not answer 200)")
    }

    /// Starts a new instance for a service taken now or restarted: the previous instance (a
    /// restart's) is stopped first, and the row claimed for this node before anything runs.
    private func launchInstance(of s: Service) throws(StoreError) {
        if let old = s.executorID { executor.cancel(old) }
        if let next = s.nextExecutorID { executor.cancel(next) }
        let claimed = try registry.changeService(s.id) { (row) throws(StoreError) in
            guard row.status == .starting, row.node == s.node, row.generation == s.generation,
                  row.runningGeneration == s.runningGeneration else { return }
            row.node = me
            row.runningGeneration = row.generation
            row.instance += 1
            row.executor = executor.name
            row.executorID = nil
            row.endpoint = nil
            row.nextVersionID = nil; row.nextExecutorID = nil; row.nextInstance = nil
        }
        // Another node's claim won (the row answered is theirs): nothing to start here.
        guard claimed.node == me, claimed.runningGeneration == claimed.generation, claimed.instance == s.instance + 1 else { return }
        do throws(StoreError) {
            let (m, v) = try registry.served(claimed)
            let eid = try launch(claimed, instance: claimed.instance, model: m, version: v)
            let now = try registry.changeService(s.id) { (row) throws(StoreError) in
                guard row.instance == claimed.instance, row.status == .starting else { return }
                row.executorID = eid
            }
            if now.executorID != eid { executor.cancel(eid) }  // stopped or restarted meanwhile
        } catch {
            fail(claimed, "the server could not be started: \(error.message)")
        }
    }

    private func advanceReady(_ s: Service) throws(StoreError) {
        guard let eid = s.executorID else { return }
        let dir = instanceDirectory(s.id, s.instance)
        copyOutput(s.id, dir)
        switch executor.state(of: eid, directory: dir) {
        case .exited(let code): return fail(s, "the server exited with code \(code)")
        case .cancelled, .lost: return fail(s, "the server ended")
        case .queued, .running: break
        }
        if let next = s.nextInstance, let nextEID = s.nextExecutorID {
            try advanceSwitch(s, next, nextEID)
        } else if s.nextVersionID == nil, s.runningGeneration == s.generation, let (m, v) = try registry.switchTarget(of: s) {
            try beginSwitch(s, to: m, v)
        }
    }

    /// The alias moved: a second instance on its new version, beside the one serving.
    private func beginSwitch(_ s: Service, to m: Model, _ v: Version) throws(StoreError) {
        let instance = s.instance + 1
        let claimed = try registry.changeService(s.id) { (row) throws(StoreError) in
            guard row.status == .ready, row.nextVersionID == nil, row.instance == s.instance else { return }
            row.nextVersionID = v.id
            row.nextInstance = instance
        }
        guard claimed.nextInstance == instance, claimed.nextVersionID == v.id else { return }
        let (_, old) = try registry.served(s)
        note(s.id, "\(s.alias ?? "the alias") moved to \(v.fileName): starting it beside \(old.fileName)")
        do throws(StoreError) {
            var next = claimed
            next.versionID = v.id
            let eid = try launch(next, instance: instance, model: m, version: v)
            let now = try registry.changeService(s.id) { (row) throws(StoreError) in
                guard row.nextInstance == instance else { return }
                row.nextExecutorID = eid
            }
            if now.nextExecutorID != eid { executor.cancel(eid) }
        } catch {
            failSwitch(s.id, instance, v, "could not be started: \(error.message)")
        }
    }

    private func advanceSwitch(_ s: Service, _ instance: Int64, _ eid: String) throws(StoreError) {
        let dir = instanceDirectory(s.id, instance)
        copyOutput(s.id, dir)
        guard let nextVersion = s.nextVersionID, let (_, v) = try? registry.served(s, next: true) else {
            executor.cancel(eid)
            return failSwitch(s.id, instance, nil, "its version is gone")
        }
        switch executor.state(of: eid, directory: dir) {
        case .exited(let code): return failSwitch(s.id, instance, v, "its server exited with code \(code)")
        case .cancelled, .lost: return failSwitch(s.id, instance, v, "its server ended")
        case .queued: return
        case .running: break
        }
        var next = s
        next.versionID = nextVersion
        guard let endpoint = endpoint(of: next, dir), HealthProbe.status(of: endpoint + configuration.healthPath) == 200 else {
            let since = lock.withLock { launched[key(s.id, instance)] } ?? s.modified
            if Date().timeIntervalSince(since) > configuration.timeout {
                executor.cancel(eid)
                failSwitch(s.id, instance, v, "its server was not ready within \(Int(configuration.timeout)) s")
            }
            return
        }
        let (_, old) = try registry.served(s)
        let oldEndpoint = s.endpoint ?? ""
        // A drain still running (the alias moved twice in a row) ends now: one old server at a time.
        if let earlier = s.oldExecutorID { executor.cancel(earlier) }
        let switched = try registry.changeService(s.id, audit: "service.switch", detail: "\(old.fileName) -> \(v.fileName)") { (row) throws(StoreError) in
            guard row.status == .ready, row.nextInstance == instance, row.nextExecutorID == eid else { return }
            row.oldVersionID = row.versionID
            row.oldExecutorID = row.executorID
            row.drainUntil = Date().addingTimeInterval(configuration.drain)
            row.versionID = nextVersion
            row.instance = instance
            row.executorID = eid
            row.endpoint = endpoint
            row.reason = nil
            row.nextVersionID = nil; row.nextInstance = nil; row.nextExecutorID = nil
        }
        guard switched.instance == instance, switched.executorID == eid else { return }
        note(s.id, "switched from \(old.fileName) to \(v.fileName) (\(oldEndpoint) -> \(endpoint)); the old server stops in \(configuration.drain) s")
        logger.info("service \(s.id) switched from \(old.fileName) to \(v.fileName)")
    }

    /// The new version's server did not become ready: the old one keeps serving, and the alias's
    /// version is not tried again until the alias moves elsewhere.
    private func failSwitch(_ id: ServiceID, _ instance: Int64, _ v: Version?, _ why: String) {
        let reason = "switch to \(v?.fileName ?? "the alias's new version") failed: \(why)"
        let row = try? registry.changeService(id, audit: "service.switch-failed") { (row) throws(StoreError) in
            guard row.nextInstance == instance else { return }
            row.refusedVersionID = row.nextVersionID
            row.nextVersionID = nil; row.nextInstance = nil; row.nextExecutorID = nil
            row.reason = reason
        }
        if row?.reason == reason { note(id, reason + "; the old server keeps serving") }
    }

    private func finishStopping(_ s: Service) throws(StoreError) {
        for eid in [s.executorID, s.nextExecutorID, s.oldExecutorID].compactMap({ $0 }) { executor.cancel(eid) }
        let done = try registry.changeService(s.id, audit: "service.stopped") { (row) throws(StoreError) in
            guard row.status == .stopping else { return }
            row.status = .stopped
            row.endpoint = nil
            row.nextVersionID = nil; row.nextInstance = nil; row.nextExecutorID = nil
            row.oldVersionID = nil; row.oldExecutorID = nil; row.drainUntil = nil
        }
        if done.status == .stopped { note(s.id, "stopped") }
    }

    private func fail(_ s: Service, _ why: String) {
        let tail = lastLines(of: s.id, 8)
        let reason = why + (tail.isEmpty ? "" : "; the log's last lines:\n" + tail)
        let row = try? registry.changeService(s.id, audit: "service.fail") { (row) throws(StoreError) in
            guard row.instance == s.instance, row.status == s.status, row.generation == s.generation else { return }
            row.status = .failed
            row.reason = reason
            row.endpoint = nil
        }
        if row?.status == .failed {
            for eid in [s.nextExecutorID, s.oldExecutorID].compactMap({ $0 }) { executor.cancel(eid) }
            note(s.id, "failed: \(why)")
            logger.notice("service \(s.id) failed: \(why)")
        }
    }

    // MARK: Instances

    /// Where a server answers: this machine for a local child; the node Slurm placed it on,
    /// which its `run.sh` writes to `work/host`, for a batch job.
    private func endpoint(of s: Service, _ dir: String) -> String? {
        guard let port = (try? JobFiles.withDirectory(dir) { (d) throws(StoreError) in
            try JobFiles.contents("port", in: d, limit: 16, owners: [getuid()]) }).flatMap({ Int(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) })
        else { return nil }
        guard executor.copiesOutput else { return "http://127.0.0.1:\(port)" }
        guard let bytes = try? JobFiles.withDirectory(dir, "work", { (w) throws(StoreError) in
            try JobFiles.contents("host", in: w, limit: 256, owners: [s.owner.uid]) }) else { return nil }
        let host = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }) else { return nil }
        return "http://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

    /// Makes the instance's directory (the mount's: `run.sh`, `port`; the user's: `work/`) and
    /// starts it. The command is the mount's; the request's values reach it as variables only.
    private func launch(_ s: Service, instance: Int64, model m: Model, version v: Version) throws(StoreError) -> String {
        guard let command = configuration.command, let mnt = configuration.mountpoint else {
            throw StoreError(.notSupported, "this mount runs no services")
        }
        guard let port = HealthProbe.freePort() else { throw StoreError(.io, "no free port") }
        let serviceDir = directory(of: s.id), dir = instanceDirectory(s.id, instance)
        let owner = s.owner
        let another = owner.uid != getuid() || owner.gid != getgid()
        do {
            try JobService.makePrivateDirectories([configuration.directory])
            if mkdir(serviceDir, 0o700) != 0 && errno != EEXIST { throw StoreError(.io, "cannot create \(serviceDir)") }
            var st = stat()
            guard lstat(serviceDir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == getuid() else {
                throw StoreError(.io, "\(serviceDir) is not the mount's directory")
            }
            if lstat(logPath(of: s.id), &st) != 0 { try JobService.writePrivate(logPath(of: s.id), Data()) }
            try JobService.makeFreshDirectory(dir)
            try JobService.makePrivateDirectories([dir + "/work"])
            try JobService.writePrivate(dir + "/port", Data("\(port)\n".utf8))
            let script = """
                #!/bin/sh
                # Written by modelfs for one instance of a service. Request values arrive only as MODELFS_* variables.
                cd "$MODELFS_INSTANCE_DIR/work" || exit 97
                echo "${SLURMD_NODENAME:-$(hostname)}" > host.tmp && mv -f host.tmp host
                # A subshell, so that exit, exec, set -e or cd in the command cannot skip the exit code.
                (
                \(command)
                )
                code=$?
                echo "$code" > exit_code.tmp && mv -f exit_code.tmp exit_code
                exit "$code"

                """
            try JobService.writePrivate(dir + "/run.sh", Data(script.utf8))
            if another {
                // The user's server reaches its own work directory and reads run.sh; nothing
                // else of the mount's is listed or read.
                for parent in [(configuration.directory as NSString).deletingLastPathComponent, configuration.directory, serviceDir, dir] {
                    if stat(parent, &st) == 0 && st.st_mode & 0o001 == 0 { chmod(parent, (st.st_mode & 0o7777) | 0o711) }
                }
                chmod(dir + "/run.sh", 0o644)
                guard lchown(dir + "/work", owner.uid, owner.gid) == 0 else {
                    throw StoreError(.io, "cannot give \(dir)/work to uid \(owner.uid): \(String(cString: strerror(errno)))")
                }
            }
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "cannot prepare \(dir): \(error.localizedDescription)")
        }
        // An archive version is served from its view: the directory loaders expect.
        let isArchive = ["zip", "tar", "tar.gz"].contains(v.format)
        let path = "\(mnt)/models/\(m.name)/\(isArchive ? v.name : v.fileName)"
        var env: [String: String] = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": JobService.home(of: owner) ?? ProcessInfo.processInfo.environment["HOME"] ?? "/",
            "MODELFS_SERVICE": s.id.rawValue, "MODELFS_SERVICE_DIR": serviceDir, "MODELFS_INSTANCE_DIR": dir,
            "MODELFS_MODEL": m.name, "MODELFS_VERSION": v.name, "MODELFS_MODEL_PATH": path,
            "MODELFS_PORT": String(port), "MODELFS_HOST": executor.copiesOutput ? "0.0.0.0" : "127.0.0.1",
        ]
        for (key, value) in s.params { env[JobRequest.variable(for: key)] = value }
        let log = executor.copiesOutput ? dir + "/work/output.log" : logPath(of: s.id)
        let eid = try executor.start(script: dir + "/run.sh", directory: dir, environment: env, log: log,
                                     jobID: "serve-" + s.id.rawValue, user: owner)
        // A server on its way up: the next look comes soon (this pass began without it).
        lock.withLock { launched[key(s.id, instance)] = Date(); awaiting = true }
        note(s.id, "started \(m.name)/\(v.fileName) on \(executor.name) as \(eid), port \(port)")
        return eid
    }

    // MARK: The log

    /// Appends a line of modelfs's own to the service's log.
    func note(_ id: ServiceID, _ line: String) {
        logLock.withLock { Logs.note(logPath(of: id), line) }
    }

    /// What a Slurm instance wrote to its own output, appended to the service's log.
    private func copyOutput(_ id: ServiceID, _ dir: String) {
        guard executor.copiesOutput, let s = try? registry.service(named: id) else { return }
        logLock.withLock { Logs.copyOutput(of: dir, owners: [s.owner.uid], into: logPath(of: id)) }
    }

    /// Bytes of a service's log (the mount's file).
    public func readLog(of id: ServiceID, offset: Int64, size: Int) -> [UInt8] {
        Logs.read(directory(of: id), owners: [getuid()], offset: offset, size: size)
    }

    public func logSize(of id: ServiceID) -> Int64 { Logs.size(logPath(of: id)) }

    /// The last `count` lines of the log the server wrote (modelfs's own lines left out).
    func lastLines(of id: ServiceID, _ count: Int) -> String {
        let size = logSize(of: id)
        let bytes = readLog(of: id, offset: max(0, size - 16384), size: 16384)
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("modelfs: ") }
        return lines.suffix(count).map { Names.printable(String($0)) }.joined(separator: "\n")
    }
}
