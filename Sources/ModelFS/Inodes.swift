import Glibc
import ModelStore

/// What an inode names. Inode numbers are derived from catalog ids, so they are stable across
/// remounts and need no table: `kind << 56 | id`. Eight bits of kind leave room for 246 more kinds
/// than today's ten; a kind whose nodes are named by two ids (an archive member: a version id and
/// a member index) splits the 56 low bits (32 + 24) the same way.
public enum Node: Equatable, Sendable {
    case root, modelsDir, datasetsDir, jobsDir, stats, submit
    case model(Int64)
    /// `jobs/<id>/`, by the job's number.
    case job(Int64)
    case jobFile(Int64, JobFile)
    case version(Int64)
    case next(Int64)
    case dataset(Int64)

    private static let shift: UInt64 = 56

    public init?(inode: UInt64) {
        switch inode {
        case 1: self = .root
        case 2: self = .modelsDir
        case 3: self = .datasetsDir
        case 4: self = .jobsDir
        case 5: self = .stats
        case 6: self = .submit
        default:
            let id = Int64(inode & ((1 << Node.shift) - 1))
            switch inode >> Node.shift {
            case 1: self = .model(id)
            case 2: self = .version(id)
            case 3: self = .next(id)
            case 4: self = .dataset(id)
            case 5: self = .job(id)
            case 6...9: self = .jobFile(id, JobFile.allCases[Int(inode >> Node.shift) - 6])
            default: return nil
            }
        }
    }

    public var inode: UInt64 {
        switch self {
        case .root: return 1
        case .modelsDir: return 2
        case .datasetsDir: return 3
        case .jobsDir: return 4
        case .stats: return 5
        case .submit: return 6
        case .job(let id): return 5 << Node.shift | UInt64(id)
        case .jobFile(let id, let file): return UInt64(6 + JobFile.allCases.firstIndex(of: file)!) << Node.shift | UInt64(id)
        case .model(let id): return 1 << Node.shift | UInt64(id)
        case .version(let id): return 2 << Node.shift | UInt64(id)
        case .next(let id): return 3 << Node.shift | UInt64(id)
        case .dataset(let id): return 4 << Node.shift | UInt64(id)
        }
    }

    public var isDirectory: Bool {
        switch self {
        case .root, .modelsDir, .datasetsDir, .jobsDir, .model, .job: return true
        default: return false
        }
    }
}

/// The files of a job's directory.
public enum JobFile: String, CaseIterable, Sendable {
    case spec = "spec.json", status, log, control
}

/// A file's attributes as `stat` shows them, without FUSE types.
public struct Attributes: Equatable, Sendable {
    public var inode: UInt64
    public var isDirectory: Bool
    public var size: Int64
    /// Permission bits only.
    public var permissions: UInt32
    public var links: UInt32
    public var modified: Double
    public var changed: Double
    public var uid: UInt32
    public var gid: UInt32
    /// How long the kernel may cache these attributes, in seconds.
    public var cacheSeconds: Double
}

/// A directory entry.
public struct DirectoryEntry: Equatable, Sendable {
    public var name: String
    public var attributes: Attributes
}
