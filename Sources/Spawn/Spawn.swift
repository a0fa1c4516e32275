import Foundation
import Glibc

/// The one place modelfs starts processes: jobs, the background mount, and the short commands it
/// asks things of (`sbatch`, `squeue`, …).
public enum Spawn {
    /// Starts `executable` with `arguments` (argv[0] included) in a session of its own, reading
    /// `/dev/null` and appending stdout and stderr to `log` (created 0600; with `followingLinks`
    /// false a link there is not followed: the open fails and so does the spawn), with no blocked
    /// signals and default dispositions — FUSE and dispatch threads block or ignore some, and a
    /// child must not inherit that. `environment` nil passes this process's own. Returns its pid;
    /// the error is `strerror`'s text.
    public static func detached(_ executable: String, _ arguments: [String], environment: [String: String]?,
                                log: String, followingLinks: Bool = true) -> Result<pid_t, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let flags = O_WRONLY | O_CREAT | O_APPEND | (followingLinks ? 0 : O_NOFOLLOW)
        posix_spawn_file_actions_addopen(&actions, 1, log, flags, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        // POSIX_SPAWN_SETSID | SETSIGMASK | SETSIGDEF (glibc hides SETSID behind _GNU_SOURCE)
        posix_spawnattr_setflags(&attributes, Int16(0x80 | 0x08 | 0x04))
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { (argv + (envp ?? [])).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = envp.map { e in e.withUnsafeBufferPointer { posix_spawn(&pid, executable, &actions, &attributes, argv, $0.baseAddress) } }
            ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { return .failure(SpawnError(message: String(cString: strerror(rc)))) }
        return .success(pid)
    }

    /// Runs a program found on PATH, without a shell; returns its exit status and its output
    /// (stdout and stderr together). `environment` nil passes this process's own.
    public static func run(_ argv: [String], environment: [String: String]? = nil) -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        if let environment { p.environment = environment }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (127, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

public struct SpawnError: Error, Sendable { public let message: String }
