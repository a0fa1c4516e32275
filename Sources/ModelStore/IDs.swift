/// The catalog's identity of a row: what the mount's inodes, the port's operations and the
/// caches are keyed by. Names change (a rename); an id never does and is never reused, so an
/// operation through an id acts on that row or finds it gone, never on whatever holds the name now.
/// Each kind has its own type so that a version's id cannot be passed where a model's is meant.
/// Encoded as the bare number (JSON output and manifests are unchanged).
public protocol RowID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible
where RawValue == Int64 {
    init(_ rawValue: Int64)
}

extension RowID {
    public init(rawValue: Int64) { self.init(rawValue) }
    public var description: String { String(rawValue) }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

public struct ModelID: RowID {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
}

public struct VersionID: RowID {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
}

public struct DatasetID: RowID {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
}

public struct AliasID: RowID {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
}

/// A job's identity is its name (`train-3`, or one its submitter chose): also its directory under
/// `jobs/`. Its inode is ``Job/number``. A literal is one (`"train-3"`), a `String` is not.
public struct JobID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
    public static func < (a: JobID, b: JobID) -> Bool { a.rawValue < b.rawValue }
}

/// A row that has an owner and a mode (`chmod`, `chown`).
public enum OwnedRow: Sendable, Hashable {
    case model(ModelID), version(VersionID), dataset(DatasetID)
}
