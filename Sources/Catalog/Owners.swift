import Foundation
import ModelStore

/// One line of the audit trail: who did what to which model or dataset, and when.
public struct AuditEntry: Sendable, Equatable, Codable {
    public var id: Int64
    public var at: Date
    public var uid: UInt32
    public var pid: Int32?
    /// `model.create`, `version.delete`, `alias.set`, `model.chmod`…
    public var action: String
    /// The model's name (nil for datasets and jobs of no model).
    public var model: String?
    /// The version, alias, dataset or job acted on.
    public var target: String?
    public var detail: String

    public init(id: Int64 = 0, at: Date = Date(), uid: UInt32, pid: Int32?, action: String, model: String?, target: String?, detail: String = "") {
        self.id = id; self.at = at; self.uid = uid; self.pid = pid; self.action = action; self.model = model; self.target = target
        self.detail = detail
    }
}

extension Catalog {
    static let auditColumns = "id, at, uid, pid, action, model, target, detail"
    static func auditEntry(_ r: Row) -> AuditEntry {
        AuditEntry(id: r.int(0), at: r.date(1), uid: UInt32(truncatingIfNeeded: r.int(2)), pid: r.optionalInt(3).map { Int32(truncatingIfNeeded: $0) },
                   action: r.text(4), model: r.optionalText(5), target: r.optionalText(6), detail: r.text(7))
    }

    /// The audit trail, oldest first: everything, or what concerns one model.
    public func audit(model: String? = nil) throws(StoreError) -> [AuditEntry] {
        try database.read { db in
            if let model {
                return try db.query("SELECT \(Catalog.auditColumns) FROM audit WHERE model = ? ORDER BY id", [.text(model)], Catalog.auditEntry)
            }
            return try db.query("SELECT \(Catalog.auditColumns) FROM audit ORDER BY id", [], Catalog.auditEntry)
        }
    }

    public func record(_ entry: AuditEntry) throws(StoreError) {
        try transaction { try $0.record(entry) }
    }
}

extension CatalogTransaction {
    public func setOwner(_ row: OwnedRow, _ o: Ownership) throws {
        let (table, id) = switch row {
        case .model(let id): ("models", id.rawValue)
        case .version(let id): ("versions", id.rawValue)
        case .dataset(let id): ("datasets", id.rawValue)
        }
        try db.execute("UPDATE \(table) SET owner_uid = ?, owner_gid = ?, mode = ? WHERE id = ?",
                       [.int(Int64(o.uid)), .int(Int64(o.gid)), .int(Int64(o.mode)), .int(id)])
    }

    public func setJobOwner(id: JobID, uid: UInt32, gid: UInt32) throws {
        try db.execute("UPDATE jobs SET owner_uid = ?, owner_gid = ? WHERE id = ?", [.int(Int64(uid)), .int(Int64(gid)), .text(id)])
    }

    /// Adds a line to the audit trail, in the transaction of the change it records.
    public func record(_ e: AuditEntry) throws {
        try db.execute("INSERT INTO audit (at, uid, pid, action, model, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [.date(e.at), .int(Int64(e.uid)), .optional(e.pid.map(Int64.init)), .text(e.action), .optional(e.model),
                        .optional(e.target), .text(e.detail)])
    }
}

extension CatalogTransaction {
    public func model(id: ModelID) throws -> Model? {
        try db.first("SELECT \(Catalog.modelColumns) FROM models WHERE id = ?", [.int(id)], Catalog.model)
    }

    public func dataset(id: DatasetID) throws -> Dataset? {
        try db.first("SELECT \(Catalog.datasetColumns) FROM datasets WHERE id = ?", [.int(id)], Catalog.dataset)
    }
}

extension CatalogTransaction {
    public func insertModel(name: String, type: ModelType, note: String) throws -> Model {
        try Catalog.insertModel(db, name: name, type: type, note: note)
    }
}
