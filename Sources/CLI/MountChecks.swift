import Foundation
import Glibc

/// Refusals before a mount changes anything: mounting onto (or inside) a live modelfs mount, and
/// a catalog or data dir that the mount would hide under itself.
enum MountChecks {
    /// Mount points of live modelfs mounts, from `/proc/self/mountinfo`.
    static func modelfsMounts() -> [String] {
        guard let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return info.split(separator: "\n").compactMap { line in
            // id parent dev root MOUNTPOINT options [optional…] - fstype source super-options
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            let type = fields[dash + 1], source = fields[dash + 2]
            guard type == "fuse.modelfs" || (type.hasPrefix("fuse") && source == "modelfs") else { return nil }
            return unescape(String(fields[4]))
        }
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescape(_ s: String) -> String {
        var out = [UInt8]()
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 4 <= bytes.count,
               let v = UInt8(String(decoding: bytes[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The path with symlinks resolved as far as it exists (the rest appended as it is).
    static func canonical(_ path: String) -> String {
        let standard = URL(fileURLWithPath: path).standardizedFileURL.path
        var head = standard
        var tail: [String] = []
        while head != "/" && !head.isEmpty {
            if let resolved = realpath(head, nil) {
                defer { free(resolved) }
                return ([String(cString: resolved)] + tail.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
            }
            tail.append((head as NSString).lastPathComponent)
            head = (head as NSString).deletingLastPathComponent
        }
        return standard
    }

    static func isInside(_ path: String, _ dir: String) -> Bool {
        path == dir || path.hasPrefix(dir.hasSuffix("/") ? dir : dir + "/")
    }

    /// Throws the refusal, if any, for mounting on `mountpoint` with this data dir and catalog.
    static func check(mountpoint: String, dataDir: String, db: String) throws {
        let mounts = modelfsMounts()
        let point = URL(fileURLWithPath: mountpoint).standardizedFileURL.path
        if mounts.contains(point) {
            throw CLIError("\(point) is already a modelfs mount: unmount it first (fusermount3 -u \(point))")
        }
        if let outer = mounts.first(where: { isInside(point, $0) }) {
            throw CLIError("\(point) is inside the modelfs mount at \(outer): mount elsewhere")
        }
        let realPoint = canonical(point)
        for (what, path) in [("data dir", dataDir), ("catalog", db)] {
            let real = canonical(path)
            if isInside(real, realPoint) || isInside(URL(fileURLWithPath: path).standardizedFileURL.path, point) {
                throw CLIError("the \(what) \(path) is inside the mountpoint \(point): the mount would hide it; use another --data-dir or mount elsewhere")
            }
        }
    }
}
