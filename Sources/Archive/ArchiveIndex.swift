import Foundation

/// The bytes of an archive, read by range: a version's object through the mount's read path,
/// or a buffer in tests. Reads past the end return what is there.
public protocol ByteSource: Sendable {
    var size: Int64 { get }
    func read(at offset: Int64, count: Int) throws -> [UInt8]
}

/// An archive kind modelfs opens as a directory, from the version's format.
public enum ArchiveKind: String, Codable, Sendable {
    case zip, tar, tgz

    public init?(format: String) {
        switch format.lowercased() {
        case "zip": self = .zip
        case "tar": self = .tar
        case "tar.gz", "tgz": self = .tgz
        default: return nil
        }
    }
}

/// How a member's bytes are stored.
public enum MemberMethod: String, Codable, Sendable {
    /// A byte range of the archive.
    case stored
    /// Raw deflate, inflated as it is read.
    case deflated
    /// A range of the archive's inflated stream (a `.tar.gz` member), from the nearest access point.
    case inflatedStream = "gzip"
}

/// One file or directory of an archive, as the view shows it.
public struct ArchiveMember: Codable, Equatable, Sendable {
    /// Relative, normalized: no leading `/`, no `.` or `..` or empty segment.
    public var path: String
    public var isDirectory: Bool
    /// Uncompressed size: what `stat` shows, and the most an inflate may produce.
    public var size: Int64
    public var mode: UInt32
    public var modified: Double
    public var method: MemberMethod
    /// Where the member's stored bytes begin, once known. A zip member's data follows its local
    /// header, whose length only that header says: nil until the member is first opened.
    public var dataOffset: Int64?
    /// Zip only: where the member's local header is.
    public var headerOffset: Int64?
    /// The stored (compressed) length.
    public var storedSize: Int64
    public var crc32: UInt32?
    /// Zip only: where the next local header (or the central directory) begins; the member's data
    /// must end before it.
    public var dataLimit: Int64?
    /// Zip only: the name as the central directory has it, when it differs from `path`; the
    /// local header must carry the same.
    public var rawName: String?

    public init(path: String, isDirectory: Bool, size: Int64, mode: UInt32, modified: Double, method: MemberMethod = .stored,
                dataOffset: Int64?, headerOffset: Int64? = nil, storedSize: Int64, crc32: UInt32? = nil) {
        self.path = path; self.isDirectory = isDirectory; self.size = size; self.mode = mode; self.modified = modified
        self.method = method; self.dataOffset = dataOffset; self.headerOffset = headerOffset; self.storedSize = storedSize
        self.crc32 = crc32
    }

    /// The name the local header must carry.
    public var headerName: String { rawName ?? path }

    /// The last segment of the path.
    public var name: String { path.split(separator: "/").last.map(String.init) ?? path }
    /// The directory the member is in ("" for the top).
    public var parent: String { ArchiveMember.parent(of: path) }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }
}

/// What an archive holds, as far as it can be trusted: the members (directories included, the
/// implied ones added), sorted by path, and why anything was left out.
public struct ArchiveIndex: Codable, Equatable, Sendable {
    /// Indexes of an older format were built by rules since changed (duplicates, `..`, stubs,
    /// gzip members, local header checks; 3: tar's pax sizes and data-less entries, zip's end
    /// record and entries past its count, paths' length and depth): they are built again rather than used.
    public static let currentFormat = 3
    public var formatVersion = ArchiveIndex.currentFormat
    public var kind: ArchiveKind
    public var members: [ArchiveMember]
    /// Members left out and why (`../x`: leaves the archive).
    public var problems: [String]
    /// Damage found that leaves no member out (a truncated compressed stream, trailing bytes).
    public var notes: [String]?
    /// Why no member's bytes can be trusted (a `.tar.gz` whose gzip check fails): every read of
    /// a member is refused with this reason.
    public var damage: String?
    /// A `.tar.gz`: where inflating can start again, and the inflated stream's length.
    public var points: [AccessPoint]?
    public var inflatedSize: Int64?

    public init(kind: ArchiveKind, members: [ArchiveMember], problems: [String]) {
        self.kind = kind
        self.problems = problems
        self.members = []
        // The last of several members of one name is the one shown, as tar, unzip and Python
        // extract it (an update appended with `tar -r` replaces the earlier copy).
        var last: [String: Int] = [:]
        for (i, m) in members.enumerated() { last[m.path] = i }
        var all: [ArchiveMember] = []
        for (i, m) in members.enumerated() {
            if let l = last[m.path], l != i {
                if m.isDirectory && members[l].isDirectory { continue }  // a directory listed twice is one directory
                self.problems.append("\(MemberPaths.printable(m.path)): an earlier copy; a later member of the same name is shown")
                continue
            }
            all.append(m)
        }
        // A file whose path another member uses as a directory cannot be both. Each directory's
        // first member under it gives an implied directory its time (one walk, not a scan each).
        var usedAsDirectory = Set<String>()
        var firstUnder: [String: Double] = [:]
        for m in all {
            var parent = m.parent
            while !parent.isEmpty && usedAsDirectory.insert(parent).inserted {
                firstUnder[parent] = m.modified
                parent = ArchiveMember.parent(of: parent)
            }
        }
        all = all.filter { m in
            if !m.isDirectory && usedAsDirectory.contains(m.path) {
                self.problems.append("\(m.path): both a file and a directory, the file left out")
                return false
            }
            return true
        }
        // Directories the paths imply but the archive does not list.
        let listed = Set(all.filter(\.isDirectory).map(\.path))
        for path in usedAsDirectory.subtracting(listed) {
            all.append(ArchiveMember(path: path, isDirectory: true, size: 0, mode: 0o755, modified: firstUnder[path] ?? 0,
                                     dataOffset: nil, storedSize: 0))
        }
        self.members = all.sorted { $0.path < $1.path }
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }

    public static func decode(_ bytes: [UInt8]) throws -> ArchiveIndex { try JSONDecoder().decode(ArchiveIndex.self, from: Data(bytes)) }

    /// A stored index of the current format, or nil (an older one is to be built again).
    public static func decodeCurrent(_ bytes: [UInt8]) -> ArchiveIndex? {
        guard let index = try? decode(bytes), index.formatVersion == currentFormat else { return nil }
        return index
    }

    /// Members whose bytes run past `size` (the archive's real length, learnt only at the end of
    /// a stream) left out with their reason: a tar cut short lists no member at a size it lacks.
    public mutating func cut(at size: Int64) {
        members = members.filter { m in
            guard !m.isDirectory, let start = m.dataOffset, start + m.storedSize > size else { return true }
            problems.append("\(MemberPaths.printable(m.path)): cut short by the end of the archive (\(max(0, size - start)) of its "
                            + "\(m.storedSize) bytes), left out")
            return false
        }
    }

    /// What `user.modelfs.archive_error` says of the index, or nil when all is well.
    public var summary: String? {
        var parts: [String] = []
        if let damage { parts.append(damage) }
        parts += notes ?? []
        if !problems.isEmpty { parts.append("\(problems.count) member(s) left out: " + problems.prefix(20).joined(separator: "; ")) }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }

    /// Builds the index of `source` as an archive of `kind`.
    public static func build(_ kind: ArchiveKind, _ source: some ByteSource) throws(ArchiveError) -> ArchiveIndex {
        switch kind {
        case .zip: return try ZipReader.index(source)
        case .tar: return try TarReader.index(source)
        case .tgz: return try GzipTarReader.index(source)
        }
    }
}

/// An archive that cannot be read at all: its version stays a plain file, and the view says why.
public struct ArchiveError: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: String
    /// The bytes could not be read (object storage down): no verdict on the archive.
    public var unreadable: Bool
    public init(_ reason: String, unreadable: Bool = false) { self.reason = reason; self.unreadable = unreadable }
    public var description: String { reason }
}

/// Member names as the view can show them: relative, `/`-separated, every segment a real name.
enum MemberPaths {
    /// Linux's PATH_MAX, and a depth no model's files reach.
    static let maxPath = 4096
    static let maxDepth = 256

    /// The normalized path, or why it cannot be shown. `..` is resolved by name (`a/../b` is `b`,
    /// which stays inside); only one that climbs above the top leaves the archive.
    static func normalize(_ raw: String) -> Result<String, ArchiveError> {
        // No file system takes a longer path, and every prefix of a member's path becomes a
        // directory of the view: a deep one (`a/a/…`, 800 KB in a pax record) would cost the
        // square of its length.
        if raw.utf8.count > maxPath { return .failure(ArchiveError("\(printable(String(raw.prefix(64))))…: a path longer than \(maxPath) bytes, left out")) }
        if raw.hasPrefix("/") { return .failure(ArchiveError("\(printable(raw)): an absolute path, left out")) }
        var segments: [Substring] = []
        for s in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if s == "." { continue }
            if s == ".." {
                guard !segments.isEmpty else { return .failure(ArchiveError("\(printable(raw)): leaves the archive (..), left out")) }
                segments.removeLast()
                continue
            }
            if s.utf8.count > 255 { return .failure(ArchiveError("\(printable(raw)): a name longer than 255 bytes, left out")) }
            segments.append(s)
        }
        if segments.count > maxDepth { return .failure(ArchiveError("\(printable(String(raw.prefix(64))))…: deeper than \(maxDepth) directories, left out")) }
        if segments.isEmpty { return .failure(ArchiveError("\(printable(raw)): an empty name, left out")) }
        if raw.utf8.contains(0) || raw.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            return .failure(ArchiveError("\(printable(raw)): a control character in the name, left out"))
        }
        return .success(segments.joined(separator: "/"))
    }

    /// A name's bytes as text: the view's names are UTF-8, and no guess at another encoding may
    /// make two different names one, so a name that is not valid UTF-8 is left out.
    static func decode(_ raw: some Collection<UInt8>) -> Result<String, ArchiveError> {
        if let s = String(validating: raw, as: UTF8.self) { return .success(s) }
        return .failure(ArchiveError("\(printable(String(decoding: raw, as: UTF8.self))): a name that is not valid UTF-8, left out"))
    }

    static func printable(_ s: String) -> String {
        String(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : Character($0) }.prefix(200))
    }
}

/// Little- and big-endian integers out of a header, bounds checked: a short header reads zeros.
struct Fields {
    let bytes: [UInt8]
    let base: Int

    init(_ bytes: [UInt8], at base: Int = 0) { self.bytes = bytes; self.base = base }

    func u16(_ at: Int) -> UInt16 {
        let i = base + at
        guard i >= 0, i + 2 <= bytes.count else { return 0 }
        return UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
    }

    func u32(_ at: Int) -> UInt32 {
        let i = base + at
        guard i >= 0, i + 4 <= bytes.count else { return 0 }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[i + $1]) << (8 * $1) }
    }

    func u64(_ at: Int) -> UInt64 {
        let i = base + at
        guard i >= 0, i + 8 <= bytes.count else { return 0 }
        return (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * $1) }
    }

    func slice(_ at: Int, _ count: Int) -> ArraySlice<UInt8> {
        let i = base + at
        guard i >= 0, count >= 0, i + count <= bytes.count else { return [] }
        return bytes[i..<(i + count)]
    }
}
