import Foundation

/// A service's name: also its directory under `services/`.
public struct ServiceID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
    public static func < (a: ServiceID, b: ServiceID) -> Bool { a.rawValue < b.rawValue }
}

/// Where a service is: starting → ready → stopping → stopped, or failed (with the reason).
public enum ServiceStatus: String, Sendable, Codable, CaseIterable {
    case starting, ready, stopping, stopped, failed

    /// A service in one of these holds its version: the version cannot be deleted.
    public var holdsVersion: Bool { self == .starting || self == .ready || self == .stopping }
}

/// An inference server on a model version, run by a mount with `--serve-command`, as the user
/// who asked. A service started from an alias follows it: when the alias moves, the mount starts
/// the new version's server, switches `endpoint` once it is ready and stops the old one.
public struct Service: Sendable, Equatable, Codable {
    public var id: ServiceID
    /// A stable number (its directory's inode), never reused.
    public var number: Int64 = 0
    public var modelID: ModelID
    /// The version served now.
    public var versionID: VersionID
    /// The alias followed (its name without `@`), nil for a service of one version.
    public var alias: String?
    public var params: [String: String]
    public var owner: JobOwner
    public var status: ServiceStatus
    /// Why it failed, or why a switch to the alias's new version did not happen.
    public var reason: String?
    /// `http://HOST:PORT` once ready.
    public var endpoint: String?
    /// `local` or `slurm`.
    public var executor: String
    /// The running instance: its process id (local) or Slurm job id, and its directory's number.
    public var executorID: String?
    public var instance: Int64 = 0
    /// The node that runs and follows it (a shared catalog); nil until a mount takes it.
    public var node: String?
    /// An instance being started on the alias's new version, not yet serving.
    public var nextVersionID: VersionID?
    public var nextExecutorID: String?
    public var nextInstance: Int64?
    /// The version a switch failed to; not tried again until the alias moves elsewhere.
    public var refusedVersionID: VersionID?
    /// Incremented by each restart: the runner starts a new instance when it differs from the one running.
    public var generation: Int64 = 0
    public var runningGeneration: Int64 = -1
    public var created: Date
    public var modified: Date

    public init(id: ServiceID, modelID: ModelID, versionID: VersionID, alias: String?, params: [String: String], owner: JobOwner,
                status: ServiceStatus, executor: String, created: Date) {
        self.id = id; self.modelID = modelID; self.versionID = versionID; self.alias = alias; self.params = params
        self.owner = owner; self.status = status; self.executor = executor; self.created = created; self.modified = created
    }
}
