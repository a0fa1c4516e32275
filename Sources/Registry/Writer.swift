import Foundation
import Glibc

/// Who writes an upload: `<host> <pid> <start>`, the start being the process's start time in
/// clock ticks since boot (`/proc/<pid>/stat` field 22), so a recycled pid is not taken for the
/// writer. Recorded on the version or dataset row when its upload begins.
public enum Writer {
    /// This process.
    public static let current: String = "\(hostname()) \(getpid()) \(startTime(of: getpid()) ?? 0)"

    public enum Liveness: Equatable, Sendable { case alive, gone, unknown }

    /// Whether the process `writer` names still runs: `unknown` for a writer on another host
    /// (nothing here can tell), or for a value this modelfs did not write.
    public static func liveness(_ writer: String) -> Liveness {
        let fields = writer.split(separator: " ")
        guard fields.count == 3, let pid = Int32(fields[1]), let start = UInt64(fields[2]) else { return .unknown }
        guard fields[0] == hostname() else { return .unknown }
        guard let now = startTime(of: pid) else { return .gone }
        return now == start ? .alive : .gone
    }

    public static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buffer)
        return name.isEmpty ? "localhost" : name.replacingOccurrences(of: " ", with: "_")
    }

    /// Field 22 of `/proc/<pid>/stat`; nil when there is no such process, or only its zombie.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        guard rest.count > 19, rest[0] != "Z", rest[0] != "X" else { return nil }
        return UInt64(rest[19])
    }
}
