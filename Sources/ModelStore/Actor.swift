import Foundation
import Glibc

/// Who a change is made for: the user and process of a file-system request, or of the command
/// that runs. The file system binds it for the length of each request (`Actor.$current`), so the
/// registry records the right user in the audit trail however deep the change is made.
public struct Actor: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    /// Groups known otherwise than from the process: a web user's (the process is the server's,
    /// whose own groups are not theirs). Nil: the process's.
    public var knownGroups: Set<UInt32>?

    public init(uid: UInt32, gid: UInt32, pid: Int32, groups: Set<UInt32>? = nil) {
        self.uid = uid; self.gid = gid; self.pid = pid; knownGroups = groups
    }

    /// This process: the CLI, and the mount's own work (sweeps, jobs' checkpoints).
    public static var process: Actor { Actor(uid: getuid(), gid: getgid(), pid: getpid()) }

    @TaskLocal public static var current: Actor?

    /// Who is acting now.
    public static var now: Actor { current ?? process }

    /// Runs `body` on behalf of `actor`.
    public static func acting<R>(_ actor: Actor, _ body: () throws(StoreError) -> R) throws(StoreError) -> R {
        do {
            return try $current.withValue(actor) { () throws -> R in try body() }
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "\(error)")
        }
    }

    /// The primary and supplementary groups of the process, from `/proc/<pid>/status`; the
    /// primary alone when it cannot be read (the process has gone).
    public var groups: Set<UInt32> {
        if let knownGroups { return knownGroups.union([gid]) }
        var out: Set<UInt32> = [gid]
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return out }
        for line in status.split(separator: "\n") where line.hasPrefix("Groups:") {
            for g in line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                if let n = UInt32(g) { out.insert(n) }
            }
        }
        return out
    }

    public var requester: Ownership.Requester { Ownership.Requester(uid: uid, groups: uid == 0 ? [gid] : groups) }
}
