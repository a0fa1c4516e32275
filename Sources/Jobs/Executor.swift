import Foundation
import Spawn
import Glibc
import ModelStore

/// What an executor says about a job it started.
public enum ExecutorState: Equatable, Sendable {
    case queued
    case running
    case exited(Int)
    case cancelled
    /// The executor no longer knows the job and it left no exit code.
    case lost
}

/// Runs a job's `run.sh` somewhere: a child process here, or a Slurm batch job.
public protocol JobExecutor: Sendable {
    var name: String { get }
    /// Whether the job's output goes to a file of its own that the mount copies into its log
    /// (Slurm opens the output as the job's user, who may not write the mount's log); false when
    /// the job is handed the mount's log open (a local child).
    var copiesOutput: Bool { get }
    /// Starts `script` in `directory` with `environment`; output goes to `log`. Returns an id to follow it by.
    /// Starts `script`; as `user` when given (a job asked for by another user than the mount's).
    func start(script: String, directory: String, environment: [String: String], log: String, jobID: String,
               user: JobOwner?) throws(StoreError) -> String
    func state(of id: String, directory: String) -> ExecutorState
    func cancel(_ id: String)
    /// Whether an id of it means the same job on every node (Slurm's), not one machine's process:
    /// then any node may cancel it.
    var idsReachEveryNode: Bool { get }
}

extension JobExecutor {
    public var idsReachEveryNode: Bool { false }

    func start(script: String, directory: String, environment: [String: String], log: String, jobID: String) throws(StoreError) -> String {
        try start(script: script, directory: directory, environment: environment, log: log, jobID: jobID, user: nil)
    }
}

/// How a job becomes its user: `setpriv` (util-linux) sets the real and effective uid and gid
/// and the user's groups from the group database, as `su` would, then runs the command; nil
/// when the job runs as this process's user.
func switchingUser(_ user: JobOwner?) -> [String]? {
    guard let user, user.uid != getuid() || user.gid != getgid() else { return nil }
    let groups = getpwuid(user.uid) != nil ? "--init-groups" : "--clear-groups"
    return ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", groups, "--"]
}

/// The exit code `run.sh` leaves in `work/` (in the job directory itself, for a job started
/// before it had a `work/`), whoever ran it: the job's user's file, so opened as ``JobFiles``
/// opens anything of theirs (a link or a FIFO there is no exit code).
func exitCode(in directory: String) -> Int? {
    for (dir, name) in [(directory, "work"), (directory, nil)] {
        let read = { (d: Int32) throws(StoreError) -> [UInt8] in try JobFiles.contents("exit_code", in: d, limit: 32) }
        if let bytes = try? JobFiles.withDirectory(dir, name, read) {
            return Int(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
    return nil
}

/// Runs a program without a shell; returns its exit status and output.
func runProgram(_ argv: [String], environment: [String: String]? = nil) -> (status: Int32, output: String) {
    Spawn.run(argv, environment: environment)
}

/// Child processes of this machine, each in its own session so a cancel reaches all it started.
public final class LocalExecutor: JobExecutor, @unchecked Sendable {
    public let name = "local"
    public let copiesOutput = false
    /// When each leader this process started began (`/proc/PID/stat`'s start time): a pid is
    /// that leader only while it still has that start time, not once the number went to another.
    private let leaders = Locked<[pid_t: UInt64]>([:])
    public init() {}

    /// Whether `pid` is still the leader of a job or service: one this process started, by its
    /// start time; one an earlier mount started, by the job's or service's environment. Never a
    /// process that took a recorded pid since (a daemon, another user's shell): root signals
    /// only what it started.
    func isLeader(_ pid: pid_t) -> Bool {
        guard pid > 0 else { return false }
        if let started = leaders.withLock({ $0[pid] }) { return LocalExecutor.startTime(of: pid) == started }
        guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        return environ.split(separator: 0).contains { $0.starts(with: Data("MODELFS_JOB_DIR=".utf8)) || $0.starts(with: Data("MODELFS_SERVICE_DIR=".utf8)) }
    }

    /// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
    static func startTime(of pid: pid_t) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil  // fields from the state (3rd) on: the 22nd is the 20th
    }

    public func start(script: String, directory: String, environment: [String: String], log: String, jobID: String,
                      user: JobOwner?) throws(StoreError) -> String {
        // Its own session, so a cancel reaches everything it starts.
        let argv = (switchingUser(user) ?? []) + ["/bin/sh", script]
        switch Spawn.detached(argv[0], argv, environment: environment, log: log, followingLinks: false) {
        case .success(let pid):
            if let started = LocalExecutor.startTime(of: pid) { leaders.withLock { $0[pid] = started } }
            return String(pid)
        case .failure(let e): throw StoreError(.io, "cannot start job \(jobID): \(e.message)")
        }
    }

    public func state(of id: String, directory: String) -> ExecutorState {
        guard let pid = pid_t(id) else { return .lost }
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG) == pid  // our child: reap it
        // The process first, its exit code second: a job that ends between the two looks is
        // then seen as running (and as exited at the next look), never as gone without a code.
        let alive = !reaped && kill(pid, 0) == 0 && !isZombie(pid) && isLeader(pid)
        if let code = exitCode(in: directory) {
            // The script writes its exit code just before it exits: reap it, or it would stay a
            // zombie of the mount for good (nothing looks at a job again once it has exited).
            if !reaped { LocalExecutor.reap(pid) }
            return .exited(code)
        }
        return alive ? .running : .lost
    }

    /// Waits up to 2 s for a child that is about to exit; returns at once for a process that is
    /// not this one's child (a job an earlier mount started).
    static func reap(_ pid: pid_t) {
        var status: Int32 = 0
        for _ in 0..<200 {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || r < 0 { return }
            usleep(10_000)
        }
    }

    private func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
    }

    public func cancel(_ id: String) {
        guard let pid = pid_t(id), isLeader(pid) else { return }
        kill(-pid, SIGTERM)
        // Reap it (it is our child unless an earlier mount started it), and SIGKILL the group if
        // it is still there after 5 s — only while the leader is unreaped, so the pid is still its.
        Thread.detachNewThread {
            for _ in 0..<50 {
                var status: Int32 = 0
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid || (r < 0 && kill(pid, 0) != 0) { return }
                usleep(100_000)
            }
            guard self.isLeader(pid) else { return }
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }
}

/// Slurm: `sbatch` the job's script, follow it with `squeue` (and `sacct -c` once it is gone),
/// cancel with `scancel`.
public final class SlurmExecutor: JobExecutor, @unchecked Sendable {
    public let name = "slurm"
    public let copiesOutput = true
    public let partition: String?
    public init(partition: String? = nil) { self.partition = partition }

    public func start(script: String, directory: String, environment: [String: String], log: String, jobID: String,
                      user: JobOwner?) throws(StoreError) -> String {
        // The job gets the variables it is given (MODELFS_*, PATH, HOME) and what Slurm adds on
        // the node (SLURM_*, and for any --export but ALL the user's login environment, under
        // ours), never the mount's environment: its AWS_* credentials and whatever else it holds
        // stay here. `--export=NAME,…` names them (their values come from sbatch's own
        // environment, so a value with a comma cannot break the list), and sbatch itself runs
        // with only those plus the Slurm client's settings.
        var argv = SlurmExecutor.sbatchArguments(jobID: jobID, log: log, directory: directory, partition: partition,
                                                 exporting: environment.keys.sorted(), script: script)
        // Root submits on behalf of the user who asked: Slurm runs the job as them.
        if switchingUser(user) != nil, let user { argv.insert(contentsOf: ["--uid=\(user.uid)", "--gid=\(user.gid)"], at: 1) }
        let (status, output) = runProgram(argv, environment: SlurmExecutor.sbatchEnvironment(environment))
        let id = output.split(separator: "\n").last.map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces) } ?? ""
        guard status == 0, !id.isEmpty, id.allSatisfy(\.isNumber) else {
            throw StoreError(.io, "sbatch refused job \(jobID): \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return id
    }

    static func sbatchArguments(jobID: String, log: String, directory: String, partition: String?, exporting names: [String],
                                script: String) -> [String] {
        var argv = ["sbatch", "--parsable", "--job-name=modelfs-\(jobID)", "--output=\(log)", "--open-mode=append",
                    "--chdir=\(directory)", "--export=" + names.joined(separator: ",")]
        if let partition { argv.append("--partition=\(partition)") }
        argv.append(script)
        return argv
    }

    /// What sbatch runs with: the job's variables, and the mount's `SLURM_*`/`SBATCH_*` settings
    /// that tell the client where the cluster is (`SLURM_CONF`…) — nothing else of the mount's.
    static func sbatchEnvironment(_ job: [String: String], mount: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var env = mount.filter { $0.key.hasPrefix("SLURM_") || $0.key.hasPrefix("SBATCH_") }
        // An SBATCH_EXPORT of the mount's must not widen what the job gets.
        env["SBATCH_EXPORT"] = nil
        env.merge(job) { _, new in new }
        return env
    }

    public func state(of id: String, directory: String) -> ExecutorState {
        if let code = exitCode(in: directory) { return .exited(code) }
        // `-t all`: without it a finished job prints nothing. After MinJobAge the controller
        // forgets the job (squeue exits 1) and the accounting file has the final word.
        let (status, output) = runProgram(["squeue", "-h", "-t", "all", "-j", id, "-o", "%T"])
        var state = output.trimmingCharacters(in: .whitespacesAndNewlines)
        if status != 0 || state.isEmpty {
            let (acctStatus, acct) = runProgram(["sacct", "-c", "-n", "-P", "-j", id, "-o", "State"])
            state = acct.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
            if acctStatus != 0 || state.isEmpty { return status == 0 ? .lost : .running }  // ask again later
        }
        switch state {
        case "PENDING", "CONFIGURING", "REQUEUED", "SUSPENDED", "RESV_DEL_HOLD", "REQUEUE_HOLD": return .queued
        case "RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING": return .running
        case _ where state.hasPrefix("CANCELLED"): return .cancelled
        default:
            // COMPLETED, FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY…: the script's exit code if it got that far.
            if let code = exitCode(in: directory) { return .exited(code) }
            return state == "COMPLETED" ? .exited(0) : .exited(1)
        }
    }

    public func cancel(_ id: String) {
        _ = runProgram(["scancel", id])
    }

    public var idsReachEveryNode: Bool { true }
}
