import Foundation
import ModelStore

/// The per-model JSON document in the bucket (`.catalog/<model>.json`) and its versions' entries
/// (`.catalog/.versions/<object key>.json`, one ``VersionEntry`` each): enough to rebuild the
/// catalog from the bucket alone. Format 1 listed the versions in the model's document, which
/// made writing a version cost as much as the model had; `recover` still reads it.
public struct Manifest: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var name: String
        public var format: String
        public var key: String
        public var size: Int64
        public var sha256: String?
        public var status: UploadStatus
        public var error: String?
        public var note: String
        public var lineage: Lineage?
        public var created: Date
        public var modified: Date
        public var owner: Ownership?
    }

    public var formatVersion = 2
    /// The catalog's manifest generation of this model when it was written: a later write of
    /// the same model carries a higher one.
    public var generation: Int64?
    public var model: String
    public var type: ModelType
    public var note: String
    public var created: Date
    public var modified: Date
    /// Format 1 only: the versions, now in their own entries.
    public var versions: [Entry]?
    /// The model's aliases: each name (`@production`) and the object key of the version it points at.
    public var aliases: [String: String]?
    /// Those of `aliases` that name their version's archive view (`@production -> v1`), not its file.
    public var aliasViews: [String]?
    public var owner: Ownership?

    public init(model: Model) {
        self.model = model.name
        owner = model.owner
        type = model.type
        note = model.note
        created = model.created
        modified = model.modified
    }

    public func encoded() -> [UInt8] { ManifestCoding.encode(self) }

    public static func decode(_ bytes: [UInt8]) throws -> Manifest { try ManifestCoding.decode(bytes) }
}

/// One version's JSON document in the bucket (`.catalog/.versions/<object key>.json`), written
/// when the version changes; `generation` orders the writes of one version.
public struct VersionEntry: Codable, Equatable, Sendable {
    public var formatVersion = 2
    public var generation: Int64
    public var model: String
    public var version: Manifest.Entry
    /// What evaluation jobs measured of the version, one per dataset.
    public var evaluations: [Evaluated]?

    public struct Evaluated: Codable, Equatable, Sendable {
        public var dataset: String
        public var job: String?
        public var metrics: [String: Double]
        public var created: Date
    }

    public init(model: String, version v: Version, generation: Int64, evaluations: [Evaluation] = []) {
        self.model = model
        self.generation = generation
        if !evaluations.isEmpty {
            self.evaluations = evaluations.map { Evaluated(dataset: $0.dataset, job: $0.job, metrics: $0.metrics, created: $0.created) }
        }
        version = Manifest.Entry(name: v.name, format: v.format, key: v.objectKey, size: v.size, sha256: v.sha256, status: v.status,
                                 error: v.error, note: v.note, lineage: v.lineage.isEmpty ? nil : v.lineage,
                                 created: v.created, modified: v.modified, owner: v.owner)
    }

    public func encoded() -> [UInt8] { ManifestCoding.encode(self) }

    public static func decode(_ bytes: [UInt8]) throws -> VersionEntry { try ManifestCoding.decode(bytes) }
}

/// The datasets' JSON document in the bucket (`.catalog/.datasets.json`): every dataset, so that
/// `modelfs recover` brings them back.
public struct DatasetsManifest: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var name: String
        public var format: String
        public var key: String
        public var size: Int64
        public var records: Int64?
        public var sha256: String?
        public var status: UploadStatus
        public var error: String?
        public var note: String
        public var created: Date
        public var modified: Date
        public var owner: Ownership?
    }

    public var formatVersion = 1
    public var generation: Int64
    public var datasets: [Entry]

    public init(datasets: [Dataset], generation: Int64) {
        self.generation = generation
        self.datasets = datasets.map {
            Entry(name: $0.name, format: $0.format, key: $0.objectKey, size: $0.size, records: $0.records, sha256: $0.sha256,
                  status: $0.status, error: $0.error, note: $0.note, created: $0.created, modified: $0.modified, owner: $0.owner)
        }
    }

    public func encoded() -> [UInt8] { ManifestCoding.encode(self) }

    public static func decode(_ bytes: [UInt8]) throws -> DatasetsManifest { try ManifestCoding.decode(bytes) }
}

enum ManifestCoding {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Array((try? encoder.encode(value)) ?? Data())
    }

    static func decode<T: Decodable>(_ bytes: [UInt8]) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(T.self, from: Data(bytes))
    }
}
