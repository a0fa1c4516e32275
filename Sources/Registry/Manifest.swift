import Foundation
import ModelStore

/// The per-model JSON document in the bucket (`.catalog/<model>.json`): enough to rebuild the
/// catalog from the bucket alone, and what other nodes will follow.
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
    }

    public var formatVersion = 1
    public var model: String
    public var type: ModelType
    public var note: String
    public var created: Date
    public var modified: Date
    public var versions: [Entry]

    public init(model: Model, versions: [Version]) {
        self.model = model.name
        type = model.type
        note = model.note
        created = model.created
        modified = model.modified
        self.versions = versions.map {
            Entry(name: $0.name, format: $0.format, key: $0.objectKey, size: $0.size, sha256: $0.sha256, status: $0.status,
                  error: $0.error, note: $0.note, lineage: $0.lineage.isEmpty ? nil : $0.lineage, created: $0.created, modified: $0.modified)
        }
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Array((try? encoder.encode(self)) ?? Data())
    }

    public static func decode(_ bytes: [UInt8]) throws -> Manifest {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Manifest.self, from: Data(bytes))
    }
}
