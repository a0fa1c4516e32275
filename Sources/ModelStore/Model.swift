import Foundation

/// What a model is for. Set with `setfattr -n user.modelfs.type`.
public enum ModelType: String, Sendable, CaseIterable, Codable {
    case text, image, general

    public init(parsing value: String) throws(StoreError) {
        guard let t = ModelType(rawValue: value) else {
            throw .invalid("unknown model type '\(Names.printable(value))'; use text, image or general")
        }
        self = t
    }
}

/// Where a version or dataset is in its life: uploading → ready | failed.
public enum UploadStatus: String, Sendable, Codable {
    case uploading, ready, failed
}

public struct Model: Sendable, Equatable, Codable {
    public var id: ModelID
    public var name: String
    public var type: ModelType
    public var note: String
    public var created: Date
    public var modified: Date
    /// Nil for a model from before owners: the mount's user's.
    public var owner: Ownership? = nil

    public init(id: ModelID, name: String, type: ModelType, note: String, created: Date, modified: Date) {
        self.id = id; self.name = name; self.type = type; self.note = note; self.created = created; self.modified = modified
    }
}

/// Where a version made by a training job came from.
public struct Lineage: Sendable, Equatable, Codable {
    public var parentVersion: String?
    public var dataset: String?
    public var job: String?

    public init(parentVersion: String? = nil, dataset: String? = nil, job: String? = nil) {
        self.parentVersion = parentVersion; self.dataset = dataset; self.job = job
    }

    public var isEmpty: Bool { parentVersion == nil && dataset == nil && job == nil }
}

public struct Version: Sendable, Equatable, Codable {
    public var id: VersionID
    public var modelID: ModelID
    public var name: String
    public var format: String
    /// Fixed when the version is created, so renames touch no bytes.
    public var objectKey: String
    public var size: Int64
    public var sha256: String?
    public var status: UploadStatus
    public var error: String?
    public var note: String
    public var lineage: Lineage
    public var created: Date
    public var modified: Date
    public var owner: Ownership? = nil

    public init(id: VersionID, modelID: ModelID, name: String, format: String, objectKey: String, size: Int64,
                sha256: String?, status: UploadStatus, error: String?, note: String, lineage: Lineage,
                created: Date, modified: Date) {
        self.id = id; self.modelID = modelID; self.name = name; self.format = format; self.objectKey = objectKey
        self.size = size; self.sha256 = sha256; self.status = status; self.error = error; self.note = note
        self.lineage = lineage; self.created = created; self.modified = modified
    }

    /// A writer's temporary file (no format yet): see ``Names/isScratch(_:)``.
    public var isScratch: Bool { format.isEmpty }

    public var fileName: String { isScratch ? name : name + "." + format }
}

public struct Dataset: Sendable, Equatable, Codable {
    public var id: DatasetID
    public var name: String
    public var format: String
    public var objectKey: String
    public var size: Int64
    /// Lines for line-based formats; nil where records cannot be counted while streaming.
    public var records: Int64?
    public var sha256: String?
    public var status: UploadStatus
    public var error: String?
    public var note: String
    public var created: Date
    public var modified: Date
    public var owner: Ownership? = nil

    public init(id: DatasetID, name: String, format: String, objectKey: String, size: Int64, records: Int64?,
                sha256: String?, status: UploadStatus, error: String?, note: String, created: Date, modified: Date) {
        self.id = id; self.name = name; self.format = format; self.objectKey = objectKey; self.size = size
        self.records = records; self.sha256 = sha256; self.status = status; self.error = error; self.note = note
        self.created = created; self.modified = modified
    }

    public var fileName: String { name + "." + format }
}

/// A name for one version of a model (`models/X/@production`), moved from version to version.
/// Its name starts with `@` — so it never collides with a version — except while `ln -sf`
/// makes it under a temporary name and renames it into place.
public struct Alias: Sendable, Equatable, Codable {
    public var id: AliasID
    public var modelID: ModelID
    public var name: String
    public var versionID: VersionID
    public var created: Date
    public var modified: Date
    /// It names the version's archive view (`@production -> v1`, a directory) rather than its file.
    public var view: Bool

    public init(id: AliasID, modelID: ModelID, name: String, versionID: VersionID, created: Date, modified: Date,
                view: Bool = false) {
        self.id = id; self.modelID = modelID; self.name = name; self.versionID = versionID; self.created = created; self.modified = modified
        self.view = view
    }

    /// A real alias, not a link on its way to becoming one.
    public var isNamed: Bool { name.hasPrefix("@") }
}
