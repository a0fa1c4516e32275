import Catalog
import Foundation
import Glibc
import Logging
import ModelStore
import Registry

/// Jobs: checks and records requests, starts them on an executor with bounded concurrency,
/// follows them, and keeps what a job that succeeded made: a training job's checkpoints become
/// new versions, an evaluation job's metrics are stored on the version it measured.
///
/// The commands are the mount's (`--train-command`, `--eval-command`), never the request's:
/// request values reach them only as `MODELFS_*` environment variables and a params file.
public final class JobService: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Shell command line run for every training job; nil refuses them.
        public var trainCommand: String?
        /// Shell command line run for every evaluation job; nil refuses them.
        public var evalCommand: String?
        /// Jobs running at once (local executor).
        public var maxRunning = 1
        /// Where job directories live: `<dir>/<job-id>/` with spec.json, params.json, log, output/.
        public var directory: String
        /// When the store is mounted here, jobs read their inputs through the mount.
        public var mountpoint: String?
        public var pollInterval = 0.5

        public init(directory: String, trainCommand: String?, evalCommand: String? = nil) {
            self.directory = directory
            self.trainCommand = trainCommand
            self.evalCommand = evalCommand
        }

        public func command(_ kind: JobKind) -> String? { kind == .train ? trainCommand : evalCommand }

        /// Why a job of this kind cannot run on this mount, if it cannot.
        func missingCommand(_ kind: JobKind) -> StoreError? {
            guard command(kind) == nil else { return nil }
            return kind == .train
                ? StoreError(.invalidArgument, "this store has no training command: mount it with --train-command")
                : StoreError(.invalidArgument, "this store has no evaluation command: mount it with --eval-command")
        }
    }

    public let registry: Registry
    public let executor: any JobExecutor
    public let configuration: Configuration
    let logger: Logger
    private let loop = PollingLoop()
    /// Serializes what goes into jobs' logs (modelfs's lines and copied output).
    private let logLock = NSLock()

    public init(registry: Registry, executor: any JobExecutor, configuration: Configuration,
                logger: Logger = Logger(label: "modelfs.jobs")) {
        self.registry = registry
        self.executor = executor
        self.configuration = configuration
        self.logger = logger
    }

    var catalog: Catalog { registry.catalog }

    public func directory(of id: JobID) -> String { configuration.directory + "/" + id.rawValue }
    /// The log `jobs/<id>/log` serves: the mount's file, in the mount's directory.
    public func logPath(of id: JobID) -> String { directory(of: id) + "/log" }
    /// The job's own directory (its user's): its working directory and its exit code.
    public func workPath(of id: JobID) -> String { directory(of: id) + "/work" }
    /// Where an evaluation job writes its metrics (`MODELFS_METRICS_FILE`).
    public func metricsPath(of id: JobID) -> String { directory(of: id) + "/output/metrics.json" }
    /// Where a job writes when its executor opens the output as the job's user (Slurm): the
    /// mount copies it into the log as it grows.
    func outputPath(of id: JobID) -> String { workPath(of: id) + "/output.log" }

    // MARK: Submitting

    /// Checks a request against the store and queues it. `ENOENT` for an unknown model, version or
    /// dataset, `EBUSY` when the version or dataset is not ready, `EINVAL` for anything else wrong.
    public func submit(_ request: JobRequest, kind: JobKind = .train, owner: JobOwner? = nil) throws(StoreError) -> Job {
        if let missing = configuration.missingCommand(kind) { throw missing }
        if let name = request.name { try JobRequest.validateName(name) }
        if request.evaluate != nil {
            guard kind == .train else { throw .invalid("evaluate= is for training requests: an evaluation names its dataset") }
            if let missing = configuration.missingCommand(.evaluate) { throw missing }
        }
        let evaluateName = request.evaluate.map { (try? Formats.splitDataset($0).name) ?? $0 }
        let versionName = (try? Formats.splitVersion(request.version).name) ?? request.version
        let datasetName = (try? Formats.splitDataset(request.dataset).name) ?? request.dataset
        let asker = owner ?? JobOwner(uid: Actor.now.uid, gid: Actor.now.gid)
        // The kernel's rules for the asker, with their groups as the asking process has them.
        let who = Actor.now.uid == asker.uid ? Actor.now.requester
            : Ownership.Requester.user(uid: asker.uid, gid: asker.gid)
        // The checks and the insert in one transaction: a version or dataset deleted (or renamed)
        // by another process cannot slip between them, and two submissions cannot take one id.
        let (job, v, d) = try catalog.transaction { tx in
            let (m, v) = try Registry.version(tx, request.model, versionName)
            guard v.status == .ready else {
                throw StoreError(.busy, "\(m.name)/\(v.fileName) is \(v.status.rawValue), not ready")
            }
            let d = try Registry.dataset(tx, datasetName)
            guard d.status == .ready else {
                throw StoreError(.busy, "dataset \(d.fileName) is \(d.status.rawValue), not ready")
            }
            try checkMayRead(m, v, by: who)
            try checkMayRead(d, by: who)
            if let evaluateName {
                let e = try Registry.dataset(tx, evaluateName)
                guard e.status == .ready else { throw StoreError(.busy, "dataset \(e.fileName) is \(e.status.rawValue), not ready") }
                try checkMayRead(e, by: who)
            }
            if kind == .train {
                let o = m.owner ?? mountOwner(file: false)
                guard o.allows(.write, to: who) && o.allows(.search, to: who) else {
                    throw StoreError(.accessDenied, "uid \(who.uid) may not add versions to models/\(m.name) "
                                     + "(\(JobService.describe(o))): a training job's checkpoints become versions of its "
                                     + "model, so its user must be allowed to write there")
                }
            } else {
                try JobService.checkMayStoreMetrics(on: m, v, by: who.uid, mountOwner: mountOwner(file: true))
            }
            var job = Job(id: JobID(""), model: m.name, version: v.name, dataset: d.name, params: request.params, status: .queued,
                          executor: executor.name, created: Date(timeIntervalSince1970: Date().timeIntervalSince1970))
            job.kind = kind
            job.evaluate = evaluateName
            job.owner = asker
            job.id = try request.name.map { JobID($0) } ?? tx.freeJobID(prefix: "\(m.name)-\(v.name)-\(kind == .train ? "ft" : "eval")-")
            try tx.insertJob(job)
            try tx.record(AuditEntry(uid: job.owner!.uid, pid: Actor.now.pid, action: "job.submit", model: m.name, target: job.id.rawValue,
                                     detail: "\(kind.rawValue) \(v.fileName) on \(d.fileName)"))
            return (try tx.job(id: job.id) ?? job, v, d)
        }
        do throws(StoreError) {
            try prepareDirectory(job, version: v, dataset: d)
        } catch {
            _ = try? catalog.transitionJob(id: job.id, from: [.queued], to: .failed, error: error.message)
            throw error
        }
        loop.poke()
        return job
    }

    // MARK: Owners

    /// What a row from before owners is taken to be: the mount's user's, default mode.
    func mountOwner(file: Bool) -> Ownership {
        Ownership(uid: getuid(), gid: getgid(), mode: file ? Ownership.defaultFileMode : Ownership.defaultModelMode)
    }

    static func describe(_ o: Ownership) -> String { "uid \(o.uid) gid \(o.gid) mode \(String(o.mode, radix: 8))" }

    /// A job reads its version through the mount as its user: the kernel would need `x` on the
    /// model's directory and `r` on the version. Refused up front (`EACCES`) instead of a job that fails.
    func checkMayRead(_ m: Model, _ v: Version, by who: Ownership.Requester) throws(StoreError) {
        let dir = m.owner ?? mountOwner(file: false), file = v.owner ?? mountOwner(file: true)
        guard dir.allows(.search, to: who) && file.allows(.read, to: who) else {
            throw StoreError(.accessDenied, "uid \(who.uid) may not read \(m.name)/\(v.fileName) "
                             + "(the model: \(JobService.describe(dir)); the version: \(JobService.describe(file))): "
                             + "a job reads only what its user may read")
        }
    }

    func checkMayRead(_ d: Dataset, by who: Ownership.Requester) throws(StoreError) {
        let file = d.owner ?? mountOwner(file: true)
        guard file.allows(.read, to: who) else {
            throw StoreError(.accessDenied, "uid \(who.uid) may not read datasets/\(d.fileName) "
                             + "(\(JobService.describe(file))): a job reads only what its user may read")
        }
    }

    /// An evaluation's metrics go on the version, as its note does: only its owner or root
    /// stores them (`EACCES` otherwise), so that nobody replaces the metrics of another's version.
    static func checkMayStoreMetrics(on m: Model, _ v: Version, by uid: UInt32,
                                     mountOwner: Ownership) throws(StoreError) {
        let owner = (v.owner ?? mountOwner).uid
        guard uid == 0 || uid == owner else {
            throw StoreError(.accessDenied, "uid \(uid) may not store metrics on \(m.name)/\(v.fileName): they go on "
                             + "the version, and only its owner (uid \(owner)) or root may change it")
        }
    }

    /// The same check when the metrics arrive: the version may have changed hands since.
    func checkMayStoreMetrics(_ job: Job) throws(StoreError) {
        let (m, v) = try registry.version(job.model, job.version)
        try JobService.checkMayStoreMetrics(on: m, v, by: job.owner?.uid ?? getuid(), mountOwner: mountOwner(file: true))
    }

    /// Makes the job's directory. It is the mount's (its user cannot rename, replace or link
    /// anything in it): `log` (the mount's, the job gets it open or the mount copies into it),
    /// `spec.json`, `params.json` and `run.sh`; and two directories of the job's user, `output/`
    /// (checkpoints, metrics) and `work/` (its working directory and exit code), which the mount
    /// only ever opens without following links (see ``JobFiles``).
    private func prepareDirectory(_ job: Job, version v: Version, dataset d: Dataset) throws(StoreError) {
        let dir = directory(of: job.id)
        do {
            try JobService.makePrivateDirectories([configuration.directory])
            try JobService.makeFreshDirectory(dir)
            try JobService.makePrivateDirectories([dir + "/output", dir + "/work"])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            try JobService.writePrivate(dir + "/params.json", encoder.encode(job.params))
            try JobService.writePrivate(dir + "/spec.json", encoder.encode(JobSpec(job: job, versionFile: v.fileName, datasetFile: d.fileName)))
            try JobService.writePrivate(dir + "/log", Data())
            // The trainer is the mount's command line; request values stay in the environment.
            let script = """
                #!/bin/sh
                # Written by modelfs for one job. Request values arrive only as MODELFS_* variables.
                cd "$MODELFS_JOB_DIR/work" || exit 97
                # A subshell, so that exit, exec, set -e or cd in the command cannot skip the exit code.
                (
                \(configuration.command(job.kind) ?? "exit 96")
                )
                code=$?
                echo "$code" > "$MODELFS_JOB_DIR/work/exit_code.tmp" &&
                    mv -f "$MODELFS_JOB_DIR/work/exit_code.tmp" "$MODELFS_JOB_DIR/work/exit_code"
                exit "$code"

                """
            try giveToOwner(job, dir, [dir + "/output", dir + "/work", dir + "/params.json"])
            // run.sh comes last, whole: the job's row is committed before its directory is made,
            // and a launch waits for run.sh (see `launch`). It stays the mount's (sbatch reads it
            // as root: its `#SBATCH` lines are the mount's alone); another user's job reads it.
            try JobService.writePrivate(dir + "/run.sh.partial", Data(script.utf8))
            if isAnotherUsers(job) { chmod(dir + "/run.sh.partial", 0o644) }
            guard rename(dir + "/run.sh.partial", dir + "/run.sh") == 0 else {
                throw StoreError(.io, "cannot write \(dir)/run.sh: \(String(cString: strerror(errno)))")
            }
        } catch {
            throw StoreError(.io, "cannot prepare \(dir): \(error.localizedDescription)")
        }
    }

    func isAnotherUsers(_ job: Job) -> Bool {
        guard let owner = job.owner else { return false }
        return owner.uid != getuid() || owner.gid != getgid()
    }

    /// A job of another user than the mount's runs as that user: `output/`, `work/` and
    /// `params.json` become theirs (still private: 0700 and 0600), and the directories above
    /// them are made traversable (`--x` only: nothing in them is listed or read) so that the job
    /// can reach its own.
    func giveToOwner(_ job: Job, _ dir: String, _ paths: [String]) throws {
        guard let owner = job.owner, isAnotherUsers(job) else { return }
        for parent in [(configuration.directory as NSString).deletingLastPathComponent, configuration.directory, dir] {
            var st = stat()
            if stat(parent, &st) == 0 && st.st_mode & 0o001 == 0 { chmod(parent, (st.st_mode & 0o7777) | 0o711) }
        }
        for path in paths {
            guard lchown(path, owner.uid, owner.gid) == 0 else {
                throw StoreError(.io, "cannot give \(path) to uid \(owner.uid): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// A new job directory, made now by the mount: one left from an earlier catalog (its
    /// files perhaps another user's) is moved aside, never reused.
    static func makeFreshDirectory(_ path: String) throws {
        if mkdir(path, 0o700) == 0 { return }
        guard errno == EEXIST, rename(path, path + ".replaced-\(Int(Date().timeIntervalSince1970))-\(getpid())") == 0,
              mkdir(path, 0o700) == 0 else {
            throw StoreError(.io, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The home directory of the job's user, from the user database.
    static func home(of owner: JobOwner?) -> String? {
        guard let owner, owner.uid != getuid(), let pw = getpwuid(owner.uid), let dir = pw.pointee.pw_dir else { return nil }
        return String(cString: dir)
    }

    /// Creates each directory (and missing parents of the first) with mode 0700.
    static func makePrivateDirectories(_ paths: [String]) throws {
        if let first = paths.first {
            try FileManager.default.createDirectory(atPath: (first as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        for path in paths where mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw StoreError(.io, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes a file readable and writable by this user only (mode 0600).
    static func writePrivate(_ path: String, _ data: Data) throws {
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw StoreError(.io, "cannot write \(path)")
        }
    }

    /// What `spec.json` says.
    public struct JobSpec: Codable, Sendable {
        public var id: JobID
        public var model: String
        public var version: String
        public var dataset: String
        public var params: [String: String]
        public var executor: String
        public var created: Date
        init(job: Job, versionFile: String, datasetFile: String) {
            id = job.id; model = job.model; version = versionFile; dataset = datasetFile; params = job.params
            executor = job.executor; created = job.created
        }
    }

    /// Asks the executor to stop a job; it becomes `cancelled`.
    /// A job that already ended is refused with `EINVAL` and what became of it ("job X already
    /// succeeded"), also when it ends while the cancel is on its way.
    public func cancel(_ id: JobID) throws(StoreError) {
        guard let job = try catalog.job(id: id) else { throw .notFound("no job \(id)") }
        guard try catalog.transitionJob(id: id, from: [.queued, .running], to: .cancelled, error: "cancelled") else {
            let now = try catalog.job(id: id)?.status ?? job.status
            throw StoreError(.invalidArgument, "job \(id) already \(now.rawValue)")
        }
        // The executor id as it is now: the job may have started since it was read. A local job
        // of another node is a process there: that node stops it (``tick``), never this one,
        // whatever has that number here.
        let now = try catalog.job(id: id) ?? job
        if let eid = now.executorID, now.node == nil || now.node == registry.node || executor.idsReachEveryNode {
            cancelledHere.withLock { _ = $0.insert(id) }
            executor.cancel(eid)
        }
        note(id, "job cancelled")
        loop.poke()
    }

    // MARK: Running

    /// Follows jobs until `stop()`: starts queued ones, notices finished ones. Jobs left running
    /// by an earlier process are picked up where they are (reconciled with the executor).
    public func start() {
        loop.start(name: "modelfs-jobs") { [self] in
            do { try tick() } catch { logger.warning("jobs: \(error)") }
            return configuration.pollInterval
        }
    }

    public func stop() { loop.stop() }

    /// One pass over active jobs. Public so that `modelfs train` can drive one job in the foreground.
    public func tick() throws(StoreError) {
        var running = 0
        var leases: [String: NodeLease]? = nil
        var swept = false
        if let me = registry.node { try reclaimJobs(of: me) }
        let runningJobs = try catalog.jobs(status: .running)
        try stopJobsCancelledElsewhere(running: runningJobs)
        for job in runningJobs {
            // Another node's job (a shared catalog) is that node's to follow, unless the node is gone.
            if let owner = job.node, owner != registry.node {
                if leases == nil { leases = Dictionary(try catalog.nodes().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }) }
                if !swept, leases?[owner]?.expired ?? true {
                    // Checked again in the statement that fails them: a node that renewed keeps its jobs.
                    swept = true
                    let failed = try catalog.failJobsOfExpiredNodes(except: registry.node)
                    if !failed.isEmpty {
                        logger.notice("failed job(s) of nodes whose lease ran out: \(failed.joined(separator: ", "))")
                    }
                }
                continue
            }
            guard let eid = job.executorID else { continue }
            switch executor.state(of: eid, directory: directory(of: job.id)) {
            case .queued, .running:
                running += 1
                logLock.withLock { copyOutput(of: job.id) }
            case .exited(let code): try finish(job, exitCode: code)
            case .cancelled:
                try catalog.transitionJob(id: job.id, from: [.running], to: .cancelled, error: "cancelled")
                note(job.id, "job cancelled")
            case .lost:
                try catalog.transitionJob(id: job.id, from: [.running], to: .failed,
                                          error: "the job ended without an exit code (machine or executor restarted?)")
                note(job.id, "job failed: it ended without an exit code")
            }
        }
        let queued = try catalog.jobs(status: .queued)
        StateGauges.jobs(queued: queued.count, running: runningJobs.count)
        for job in queued where running < max(1, configuration.maxRunning) || executor.name == "slurm" {
            if try launch(job) {
                running += 1
                seenRunning.withLock { _ = $0.insert(job.id) }
            }
        }
    }

    /// This node's jobs it saw running at its last look, and the ones it cancelled itself.
    private let seenRunning = Locked<Set<JobID>>([])
    private let cancelledHere = Locked<Set<JobID>>([])

    /// Stops this node's jobs that another node cancelled since the last look (it only recorded
    /// the cancel: the process is this node's to signal).
    private func stopJobsCancelledElsewhere(running: [Job]) throws(StoreError) {
        let mine = Set(running.filter { $0.node == nil || $0.node == registry.node }.map(\.id))
        let gone = seenRunning.withLock { seen in defer { seen = mine }; return seen.subtracting(mine) }
        for id in gone where !cancelledHere.withLock({ $0.remove(id) != nil }) {
            guard let job = try catalog.job(id: id), job.status == .cancelled, let eid = job.executorID else { continue }
            switch executor.state(of: eid, directory: directory(of: id)) {
            case .queued, .running:
                executor.cancel(eid)
                note(id, "job stopped: it was cancelled on another node")
            default: break
            }
        }
    }

    /// Takes back this node's jobs that other nodes failed while it was cut off from the catalog
    /// (its lease ran out, but it was not gone): those whose process still runs here, or left its
    /// exit code, are `running` again and followed as before; their checkpoints are imported once
    /// (see ``finish(_:exitCode:)``).
    private func reclaimJobs(of node: String) throws(StoreError) {
        for job in try catalog.jobsFailedForLease(node: node) {
            guard let eid = job.executorID else { continue }
            switch executor.state(of: eid, directory: directory(of: job.id)) {
            case .queued, .running, .exited:
                if try catalog.reclaimJob(id: job.id, node: node) {
                    logger.notice("job \(job.id) taken back: this node was cut off from the catalog, its job ran on")
                    note(job.id, "job taken back: this node was cut off from the catalog for longer than its lease; "
                                 + "the job ran on")
                }
            case .cancelled, .lost:
                continue
            }
        }
    }

    private func launch(_ job: Job) throws(StoreError) -> Bool {
        let dir = directory(of: job.id)
        // Queued but its directory still being made (by the submitting thread): next time.
        guard FileManager.default.fileExists(atPath: dir + "/run.sh") else { return false }
        guard try catalog.transitionJob(id: job.id, from: [.queued], to: .running, node: registry.node) else { return false }
        do throws(StoreError) {
            let env = try environment(for: job)
            // A cancel may land while inputs are fetched: look again before and after starting.
            guard try catalog.job(id: job.id)?.status == .running else { return false }
            let log = executor.copiesOutput ? outputPath(of: job.id) : logPath(of: job.id)
            let eid = try executor.start(script: dir + "/run.sh", directory: dir, environment: env, log: log, jobID: job.id.rawValue,
                                         user: job.owner)
            guard try catalog.transitionJob(id: job.id, from: [.running], to: .running, executorID: eid) else {
                executor.cancel(eid)
                return false
            }
            logger.info("job \(job.id) started on \(executor.name) as \(eid)")
            note(job.id, "job started on \(executor.name) as \(eid)")
            return true
        } catch {
            try catalog.transitionJob(id: job.id, from: [.running], to: .failed, error: error.message)
            note(job.id, "job failed: \(error.message)")
            return false
        }
    }

    /// `MODELFS_*` variables: where the inputs are, where to write, the params file, names.
    func environment(for job: Job) throws(StoreError) -> [String: String] {
        let (m, v) = try registry.version(job.model, job.version)
        let d = try registry.dataset(job.dataset)
        let dir = directory(of: job.id)
        let modelPath: String
        let datasetPath: String
        if let mnt = configuration.mountpoint {
            modelPath = "\(mnt)/models/\(m.name)/\(v.fileName)"
            datasetPath = "\(mnt)/datasets/\(d.fileName)"
        } else {
            // Without a mount, inputs are fetched into the job's directory.
            modelPath = dir + "/inputs/" + v.fileName
            datasetPath = dir + "/inputs/" + d.fileName
            try fetch(v.objectKey, size: v.size, to: modelPath)
            try fetch(d.objectKey, size: d.size, to: datasetPath)
        }
        var env: [String: String] = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": JobService.home(of: job.owner) ?? ProcessInfo.processInfo.environment["HOME"] ?? "/",
            "MODELFS_JOB_ID": job.id.rawValue, "MODELFS_JOB_DIR": dir,
            "MODELFS_MODEL": m.name, "MODELFS_VERSION": v.name, "MODELFS_DATASET": d.name,
            "MODELFS_MODEL_PATH": modelPath, "MODELFS_DATASET_PATH": datasetPath,
            "MODELFS_OUTPUT_DIR": dir + "/output", "MODELFS_PARAMS": dir + "/params.json",
        ]
        if job.kind == .evaluate { env["MODELFS_METRICS_FILE"] = metricsPath(of: job.id) }
        for (key, value) in job.params { env[JobRequest.variable(for: key)] = value }
        return env
    }

    private func fetch(_ key: String, size: Int64, to path: String) throws(StoreError) {
        try? JobService.makePrivateDirectories([(path as NSString).deletingLastPathComponent])
        guard (try? JobService.writePrivate(path, Data())) != nil, let handle = FileHandle(forWritingAtPath: path) else {
            throw StoreError(.io, "cannot write \(path)")
        }
        defer { try? handle.close() }
        var offset: Int64 = 0
        let chunk: Int64 = 8 << 20
        while offset < size {
            let bytes: [UInt8]
            do { bytes = try registry.objects.get(key, range: offset..<min(offset + chunk, size)) } catch { throw error.storeError }
            handle.write(Data(bytes))
            offset += Int64(bytes.count)
            if bytes.isEmpty { break }
        }
    }

    /// Appends a line of modelfs's own to the job's log, so `cat log` tells the whole story.
    func note(_ id: JobID, _ line: String) {
        logLock.withLock {
            copyOutput(of: id)
            Logs.note(logPath(of: id), line)
        }
    }

    /// Bytes of a job's log for `jobs/<id>/log`. The log is the mount's file in the mount's
    /// directory; it is still opened as anything of a job's is (a job directory of the layout
    /// before that was its user's): never through a link, never waiting, a regular file of the
    /// mount's or the job's user with no other name. Empty when there is none such.
    public func readLog(of job: Job, offset: Int64, size: Int) -> [UInt8] {
        Logs.read(directory(of: job.id), owners: jobUsers(job).union([getuid()]), offset: offset, size: size)
    }

    /// The log's size, as `ls -l jobs/<id>/log` shows it.
    public func logSize(of id: JobID) -> Int64 { Logs.size(logPath(of: id)) }

    /// Copies what a job wrote to its own output file (an executor that opens the output as the
    /// job's user: Slurm) into the mount's log (see ``Logs/copyOutput(of:owners:into:)``).
    func copyOutput(of id: JobID) {
        guard executor.copiesOutput, let job = try? catalog.job(id: id) else { return }
        Logs.copyOutput(of: directory(of: id), owners: jobUsers(job), into: logPath(of: id))
    }

    /// The user a job acts for in the audit trail: the one who asked for it.
    func actor(of job: Job) -> Actor {
        // The mount's pid for the trail, never its groups: the user's primary group alone.
        job.owner.map { Actor(uid: $0.uid, gid: $0.gid, pid: getpid(), groups: [$0.gid]) } ?? Actor.process
    }

    /// A job ended: on success its checkpoints become the model's next versions, with lineage,
    /// or its metrics are stored — recorded in the audit trail as the doing of the job's user.
    private func finish(_ job: Job, exitCode code: Int) throws(StoreError) {
        defer { if let now = try? catalog.job(id: job.id) { note(job.id, "job \(now.status.rawValue)\(now.error.map { ": " + $0 } ?? "")") } }
        guard code == 0 else {
            try catalog.transitionJob(id: job.id, from: [.running], to: .failed, error: "the training command exited with \(code)", exitCode: code)
            return
        }
        if job.kind == .evaluate {
            do throws(StoreError) {
                let e = try Actor.acting(actor(of: job)) { () throws(StoreError) in try recordMetrics(job) }
                try catalog.transitionJob(id: job.id, from: [.running], to: .succeeded, exitCode: 0)
                let shown = e.metrics.sorted { $0.key < $1.key }.map { "\($0.key)=\(Evaluation.text($0.value))" }.joined(separator: " ")
                note(job.id, "metrics of \(job.model)/\(job.version) on \(job.dataset): \(shown)")
            } catch {
                try catalog.transitionJob(id: job.id, from: [.running], to: .failed, error: "metrics not stored: \(error.message)", exitCode: 0)
            }
            return
        }
        // The import is claimed once (the exit code recorded while running); a job whose import
        // was claimed before (then cut off, failed for its lease, taken back) is concluded from
        // the versions it made, never imported twice.
        if job.exitCode != nil {
            let outputs = try catalog.versionsMade(byJob: job.id).map(\.fileName)
            try catalog.transitionJob(id: job.id, from: [.running], to: .succeeded, exitCode: 0, outputs: outputs)
            return
        }
        guard try catalog.claimJobImport(id: job.id) else { return }
        let outputs: [String]
        do throws(StoreError) {
            outputs = try Actor.acting(actor(of: job)) { () throws(StoreError) in try ingest(job) }
            guard try catalog.transitionJob(id: job.id, from: [.running], to: .succeeded, exitCode: 0, outputs: outputs) else { return }
            logger.info("job \(job.id) succeeded: \(outputs.joined(separator: ", "))")
        } catch {
            try catalog.transitionJob(id: job.id, from: [.running], to: .failed, error: "checkpoints not stored: \(error.message)", exitCode: 0)
            return
        }
        if let dataset = job.evaluate { evaluateOutputs(of: job, outputs, on: dataset) }
    }

    /// The users a file the job made may belong to: the job's, or the mount's (its own job).
    func jobUsers(_ job: Job) -> Set<UInt32> { [job.owner?.uid ?? getuid()] }

    /// What an evaluation job wrote to `MODELFS_METRICS_FILE`, stored on the version it measured
    /// (the asker may: checked at submission, and again now — the version may have changed hands).
    func recordMetrics(_ job: Job) throws(StoreError) -> Evaluation {
        let bytes: [UInt8]
        do throws(StoreError) {
            bytes = try JobFiles.withDirectory(directory(of: job.id), "output") { (out) throws(StoreError) in
                try JobFiles.contents("metrics.json", in: out, limit: Evaluation.maxBytes, owners: jobUsers(job))
            }
        } catch where error.code == .notFound {
            throw .invalid("the evaluator wrote no metrics: it writes a JSON object of numbers to $MODELFS_METRICS_FILE")
        } catch where error.code == .accessDenied {
            throw .invalid("the metrics file was not taken: \(error.message)")
        }
        let metrics = try Evaluation.parseMetrics(bytes)
        try checkMayStoreMetrics(job)
        return try registry.recordEvaluation(model: job.model, version: job.version, dataset: job.dataset, job: job.id.rawValue, metrics: metrics)
    }

    /// A training job that asked for it (`evaluate=D`): one evaluation job per checkpoint it made.
    func evaluateOutputs(of job: Job, _ outputs: [String], on dataset: String) {
        for (i, file) in outputs.enumerated() {
            let version = (try? Formats.splitVersion(file).name) ?? file
            let name = job.id.rawValue + "-eval" + (outputs.count > 1 ? "-\(i + 1)" : "")
            do throws(StoreError) {
                let e = try submit(JobRequest(model: job.model, version: version, dataset: dataset, name: name), kind: .evaluate,
                                   owner: job.owner)
                note(job.id, "evaluation of \(job.model)/\(file) on \(dataset) submitted as job \(e.id)")
            } catch {
                note(job.id, "evaluation of \(job.model)/\(file) on \(dataset) not submitted: \(error.message)")
            }
        }
    }

    /// Each checkpoint the job left in `output/` becomes the model's next version. A checkpoint
    /// is opened without following links and without waiting, checked on its descriptor (a
    /// regular file of the job's user: not a link, a FIFO, or a hard link to another user's file)
    /// and read from that very descriptor; anything else is left out with the reason in the log.
    func ingest(_ job: Job) throws(StoreError) -> [String] {
        try JobFiles.withDirectory(directory(of: job.id), "output") { (out) throws(StoreError) -> [String] in
            var made: [String] = []
            for file in JobService.names(in: out).sorted() {
                guard let (_, format) = try? Formats.splitVersion(file) else { continue }
                let fd: Int32
                do throws(StoreError) { fd = try JobFiles.openFile(file, in: out, owners: jobUsers(job)).fd } catch {
                    note(job.id, "checkpoint \(Names.printable(file)) left out: \(error.message)")
                    continue
                }
                let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
                let next = try registry.nextVersionName(of: job.model)
                // The checkpoint is the job's user's, as if they had copied it in themselves.
                let owner = job.owner.map { Ownership(uid: $0.uid, gid: $0.gid, mode: Ownership.defaultFileMode) }
                let upload = try registry.beginVersion(
                    model: job.model, fileName: next + "." + format,
                    note: "fine-tuned from \(job.version) on \(job.dataset) by job \(job.id)",
                    lineage: Lineage(parentVersion: job.version, dataset: job.dataset, job: job.id.rawValue), owner: owner)
                while true {
                    let data: Data
                    do { data = try handle.read(upToCount: 1 << 20) ?? Data() } catch {
                        upload.abort(reason: "cannot read \(file): \(error.localizedDescription)")
                        throw StoreError(.io, "cannot read \(file): \(error.localizedDescription)")
                    }
                    if data.isEmpty { break }
                    try data.withUnsafeBytes { b in Result { () throws(StoreError) in try upload.write(b) } }.get()
                }
                made.append(try upload.finishVersion().fileName)
            }
            return made
        }
    }

    /// The names in an open directory (its descriptor stays the caller's).
    static func names(in dir: Int32) -> [String] {
        let fd = dup(dir)
        guard fd >= 0, let d = fdopendir(fd) else { return [] }
        defer { closedir(d) }
        rewinddir(d)
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }
}
