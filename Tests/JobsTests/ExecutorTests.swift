import Foundation
import Glibc
import Testing
import ModelStore
import Spawn
@testable import Jobs

/// LocalExecutor on its own: a script in a directory, no service.
@Suite("LocalExecutor")
final class LocalExecutorTests {
    let dir: String
    let executor = LocalExecutor()

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("modelfs-exec-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func run(_ script: String, environment: [String: String] = [:]) throws -> String {
        // The executor does not change directory: run.sh does, as JobService's does.
        try ("cd '\(dir)' || exit 97\n" + script).write(toFile: dir + "/run.sh", atomically: true, encoding: .utf8)
        return try withSIGTERMUnblocked {
            try executor.start(script: dir + "/run.sh", directory: dir, environment: environment, log: dir + "/log", jobID: "t")
        }
    }

    func ended(_ id: String) -> ExecutorState {
        _ = eventually { ![.running, .queued].contains(executor.state(of: id, directory: dir)) }
        return executor.state(of: id, directory: dir)
    }

    var log: String { (try? String(contentsOfFile: dir + "/log", encoding: .utf8)) ?? "" }

    /// A recorded number that is no longer a job's leader (a reboot, a restarted mount, pid reuse):
    /// root signals nothing, and the job is not taken for running.
    @Test func aNumberThatIsNoLongerALeaderIsNeitherSignalledNorRunning() throws {
        // Another process, in a session of its own as a job's would be, with no job's environment.
        let other = try #require(try? Spawn.detached("/bin/sleep", ["/bin/sleep", "30"], environment: [:], log: dir + "/other.log").get())
        defer { kill(other, SIGKILL); var s: Int32 = 0; waitpid(other, &s, 0) }
        #expect(eventually { (try? String(contentsOfFile: "/proc/\(other)/cmdline", encoding: .utf8))?.contains("sleep") == true })
        executor.cancel(String(other))
        usleep(300_000)
        #expect(kill(other, 0) == 0, "a process that is not a job's was signalled")
        #expect(executor.state(of: String(other), directory: dir) == .lost)
        // A leader it started is signalled.
        let id = try run("sleep 30\n", environment: ["MODELFS_JOB_DIR": dir])
        executor.cancel(id)
        #expect(ended(id) == .lost)
    }

    @Test func theExitCodeFileIsTheOutcome() throws {
        let id = try run("echo out; echo err >&2; echo 5 > exit_code.tmp && mv exit_code.tmp exit_code; exit 5\n")
        #expect(ended(id) == .exited(5))
        #expect(log == "out\nerr\n")
    }

    @Test func aProcessGoneWithoutAnExitCodeIsLost() throws {
        let id = try run("exit 0\n")
        #expect(ended(id) == .lost)
        #expect(executor.state(of: "not-a-pid", directory: dir) == .lost)
    }

    /// A job ending between the look for its exit code and the look at its process is not lost:
    /// polled without pause while it ends (as the service's tick may), it is always `.exited`.
    @Test func aJobEndingWhileItIsLookedAtIsNeverLost() throws {
        for round in 0..<40 {
            try? FileManager.default.removeItem(atPath: dir + "/exit_code")
            let id = try run("echo 0 > exit_code.tmp && mv exit_code.tmp exit_code; exit 0\n")
            var state = executor.state(of: id, directory: dir)
            let deadline = Date().addingTimeInterval(30)  // bounded: a job that never ends fails, never hangs the run
            while state == .running && Date() < deadline { state = executor.state(of: id, directory: dir) }
            #expect(state == .exited(0), "round \(round): \(state)")
            // … and reaped: no zombie of this process is left behind.
            if let pid = pid_t(id) { #expect(procStat(pid)?.state != "Z", "round \(round): pid \(pid) left a zombie") }
        }
    }

    @Test func theJobGetsOnlyItsEnvironmentAndNoStdin() throws {
        // The mount's own environment (object-store credentials, say) is not the job's.
        let id = try run("cat > stdin.txt; env > env.txt; echo 0 > exit_code\n", environment: ["ONLY": "this", "PATH": "/usr/bin:/bin"])
        #expect(ended(id) == .exited(0))
        let env = ((try? String(contentsOfFile: dir + "/env.txt", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(env.contains("ONLY=this"))
        let names = Set(env.compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
        #expect(names.subtracting(["ONLY", "PATH", "PWD", "OLDPWD", "SHLVL", "_"]).isEmpty, "\(names)")
        #expect(FileManager.default.contents(atPath: dir + "/stdin.txt") == Data())
    }

    @Test func theJobRunsInItsOwnSessionAndCancelEndsIt() throws {
        let id = try run("sleep 30 & sleep 30\n")
        let pid = try #require(pid_t(id))
        #expect(eventually { liveMembers(ofGroup: pid).count >= 2 })
        #expect(getsid(pid) == pid && getpgid(pid) == pid)
        #expect(executor.state(of: id, directory: dir) == .running)
        executor.cancel(id)
        #expect(eventually { liveMembers(ofGroup: pid).isEmpty })
        #expect(ended(id) == .lost, "killed: no exit code")
    }

    @Test func theJobDoesNotInheritTheCallersBlockedSignals() throws {
        // A libfuse worker or a dispatch thread blocks signals; a job started from one must not
        // start with SIGTERM blocked, or a cancel does not reach a trainer the command execs.
        try "exec grep SigBlk /proc/self/status\n".write(toFile: dir + "/run.sh", atomically: true, encoding: .utf8)
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &block, &old)
        let id = try executor.start(script: dir + "/run.sh", directory: dir, environment: [:], log: dir + "/log", jobID: "t")
        pthread_sigmask(SIG_SETMASK, &old, nil)
        _ = ended(id)
        #expect(log.hasPrefix("SigBlk:"))
        do {
            #expect(log == "SigBlk:\t0000000000000000\n")
        }
    }
}

@Suite("SlurmExecutor: what a job gets")
struct SlurmEnvironmentTests {
    @Test func sbatchExportsOnlyTheJobsVariables() {
        let job = ["PATH": "/usr/bin:/bin", "HOME": "/home/u", "MODELFS_JOB_ID": "j,1", "MODELFS_PARAM_NOTE": "a,b=c"]
        let mount = ["AWS_SECRET_ACCESS_KEY": "secret", "AWS_ACCESS_KEY_ID": "id", "CANARY": "x", "PATH": "/mount/bin",
                     "SLURM_CONF": "/etc/slurm/test.conf", "SBATCH_PARTITION": "debug", "SBATCH_EXPORT": "ALL", "MODELFS_BUCKET": "b"]
        let env = SlurmExecutor.sbatchEnvironment(job, mount: mount)
        #expect(env == ["PATH": "/usr/bin:/bin", "HOME": "/home/u", "MODELFS_JOB_ID": "j,1", "MODELFS_PARAM_NOTE": "a,b=c",
                        "SLURM_CONF": "/etc/slurm/test.conf", "SBATCH_PARTITION": "debug"])
        let argv = SlurmExecutor.sbatchArguments(jobID: "j", log: "/d/log", directory: "/d", partition: nil,
                                                 exporting: job.keys.sorted(), script: "/d/run.sh")
        // Names only: values come from sbatch's environment, so commas in them cannot split the list.
        #expect(argv.contains("--export=HOME,MODELFS_JOB_ID,MODELFS_PARAM_NOTE,PATH"))
        #expect(!argv.contains { $0.hasPrefix("--export=ALL") || $0.contains("secret") })
        #expect(argv.last == "/d/run.sh")
    }
}
