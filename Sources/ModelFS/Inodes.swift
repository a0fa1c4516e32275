import Glibc
import ModelStore

/// The version or dataset whose archive a view shows.
public enum ArchiveOwner: Hashable, Sendable {
    case version(VersionID)
    case dataset(DatasetID)
}

/// What an inode names. Inode numbers are derived from catalog ids, so they are stable across
/// remounts and need no table: `kind << 56 | id`. Eight bits of kind leave room for 241 more kinds
/// than today's fifteen; an archive member is named by two ids, its version's (or dataset's) and
/// its index in the archive, which split the 56 low bits 32 + 24.
public enum Node: Equatable, Sendable {
    case root, modelsDir, datasetsDir, jobsDir, stats, submit
    /// `jobs/evaluate`: the control file of evaluation requests.
    case evaluate
    case model(ModelID)
    /// `jobs/<id>/`, by the job's number.
    case job(Int64)
    case jobFile(Int64, JobFile)
    case version(VersionID)
    case next(ModelID)
    case dataset(DatasetID)
    /// `models/X/v1/` of `v1.zip` (or `datasets/D/` of `D.tar`): the archive's top directory.
    case archive(ArchiveOwner)
    /// A file or directory inside an archive's view, by its index in the archive's index.
    case member(ArchiveOwner, Int)
    /// `models/X/@production`: a symbolic link to the version it names.
    case alias(AliasID)
    /// `services/` and its `submit` control file.
    case servicesDir, serviceSubmit
    /// `services/<name>/`, by the service's number.
    case service(Int64)
    case serviceFile(Int64, ServiceFile)

    private static let shift: UInt64 = 56
    private static let memberBits: UInt64 = 24
    /// The largest owner id and member index a member's inode can hold.
    public static let maxMemberOwner: Int64 = (1 << 32) - 1
    public static let maxMemberIndex = (1 << 24) - 1

    public init?(inode: UInt64) {
        switch inode {
        case 1: self = .root
        case 2: self = .modelsDir
        case 3: self = .datasetsDir
        case 4: self = .jobsDir
        case 5: self = .stats
        case 6: self = .submit
        case 7: self = .evaluate
        case 8: self = .servicesDir
        case 9: self = .serviceSubmit
        default:
            let id = Int64(inode & ((1 << Node.shift) - 1))
            switch inode >> Node.shift {
            case 1: self = .model(ModelID(id))
            case 2: self = .version(VersionID(id))
            case 3: self = .next(ModelID(id))
            case 4: self = .dataset(DatasetID(id))
            case 5: self = .job(id)
            case 6...9: self = .jobFile(id, JobFile.allCases[Int(inode >> Node.shift) - 6])
            case 10: self = .archive(.version(VersionID(id)))
            case 11: self = .archive(.dataset(DatasetID(id)))
            case 12, 13:
                let owner = id >> Int64(Node.memberBits), index = Int(id & ((1 << Int64(Node.memberBits)) - 1))
                self = .member(inode >> Node.shift == 12 ? .version(VersionID(owner)) : .dataset(DatasetID(owner)), index)
            case 14: self = .alias(AliasID(id))
            case 15: self = .service(id)
            case 16..<(16 + UInt64(ServiceFile.allCases.count)): self = .serviceFile(id, ServiceFile.allCases[Int(inode >> Node.shift) - 16])
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
        case .evaluate: return 7
        case .job(let id): return 5 << Node.shift | UInt64(id)
        case .jobFile(let id, let file): return UInt64(6 + JobFile.allCases.firstIndex(of: file)!) << Node.shift | UInt64(id)
        case .model(let id): return 1 << Node.shift | UInt64(id.rawValue)
        case .version(let id): return 2 << Node.shift | UInt64(id.rawValue)
        case .next(let id): return 3 << Node.shift | UInt64(id.rawValue)
        case .dataset(let id): return 4 << Node.shift | UInt64(id.rawValue)
        case .archive(.version(let id)): return 10 << Node.shift | UInt64(id.rawValue)
        case .archive(.dataset(let id)): return 11 << Node.shift | UInt64(id.rawValue)
        case .member(.version(let id), let index): return 12 << Node.shift | UInt64(id.rawValue) << Node.memberBits | UInt64(index)
        case .member(.dataset(let id), let index): return 13 << Node.shift | UInt64(id.rawValue) << Node.memberBits | UInt64(index)
        case .alias(let id): return 14 << Node.shift | UInt64(id.rawValue)
        case .servicesDir: return 8
        case .serviceSubmit: return 9
        case .service(let id): return 15 << Node.shift | UInt64(id)
        case .serviceFile(let id, let file): return UInt64(16 + ServiceFile.allCases.firstIndex(of: file)!) << Node.shift | UInt64(id)
        }
    }

    public var isDirectory: Bool {
        switch self {
        case .root, .modelsDir, .datasetsDir, .jobsDir, .model, .job, .archive, .servicesDir, .service: return true
        default: return false
        }
    }
}

/// The files of a job's directory.
public enum JobFile: String, CaseIterable, Sendable {
    case spec = "spec.json", status, log, control
}

/// The files of a service's directory.
public enum ServiceFile: String, CaseIterable, Sendable {
    case spec = "spec.json", status, endpoint, log, control
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
    /// How long the kernel may keep the name pointing at this inode; nil: the default for its kind.
    public var nameCacheSeconds: Double? = nil
    /// A symbolic link (an alias): `size` is its target's length.
    public var isSymlink = false
}

/// A directory entry.
public struct DirectoryEntry: Equatable, Sendable {
    public var name: String
    public var attributes: Attributes
}
