import Foundation
import ModelStore

/// The `services` table: one row per service, changed only inside a write transaction (the
/// rules are the Registry's; the runner's steps are compare-and-set on the row it read).
extension Catalog {
    static let serviceColumns = """
        id, name, model_id, version_id, alias, params, owner_uid, owner_gid, status, reason, endpoint, executor, executor_id, \
        instance, node, next_version_id, next_executor_id, next_instance, refused_version_id, generation, running_generation, \
        created, modified
        """
    static func service(_ r: Row) -> Service {
        let params = (try? JSONDecoder().decode([String: String].self, from: Data(r.text(5).utf8))) ?? [:]
        var s = Service(id: ServiceID(r.text(1)), modelID: ModelID(r.int(2)), versionID: VersionID(r.int(3)), alias: r.optionalText(4),
                        params: params, owner: JobOwner(uid: UInt32(truncatingIfNeeded: r.int(6)), gid: UInt32(truncatingIfNeeded: r.int(7))),
                        status: ServiceStatus(rawValue: r.text(8)) ?? .failed, executor: r.text(11), created: r.date(21))
        s.number = r.int(0)
        s.reason = r.optionalText(9)
        s.endpoint = r.optionalText(10)
        s.executorID = r.optionalText(12)
        s.instance = r.int(13)
        s.node = r.optionalText(14)
        s.nextVersionID = r.optionalInt(15).map(VersionID.init)
        s.nextExecutorID = r.optionalText(16)
        s.nextInstance = r.optionalInt(17)
        s.refusedVersionID = r.optionalInt(18).map(VersionID.init)
        s.generation = r.int(19)
        s.runningGeneration = r.int(20)
        s.modified = r.date(22)
        return s
    }

    public func service(named name: ServiceID) throws(StoreError) -> Service? {
        try database.read { try CatalogTransaction(db: $0).service(named: name) }
    }

    public func service(number: Int64) throws(StoreError) -> Service? {
        try database.read { try $0.first("SELECT \(Catalog.serviceColumns) FROM services WHERE id = ?", [.int(number)], Catalog.service) }
    }

    public func services() throws(StoreError) -> [Service] {
        try database.read { try $0.query("SELECT \(Catalog.serviceColumns) FROM services ORDER BY id", [], Catalog.service) }
    }
}

extension CatalogTransaction {
    public func service(named name: ServiceID) throws -> Service? {
        try db.first("SELECT \(Catalog.serviceColumns) FROM services WHERE name = ?", [.text(name.rawValue)], Catalog.service)
    }

    /// Services that hold a version of the model (`versionID` nil) or that one version: starting,
    /// ready or stopping on it, or switching to it.
    public func servicesHolding(modelID: ModelID, versionID: VersionID? = nil) throws -> [Service] {
        try db.query("""
            SELECT \(Catalog.serviceColumns) FROM services
            WHERE status IN ('starting', 'ready', 'stopping') AND model_id = ?1
              AND (CAST(?2 AS BIGINT) IS NULL OR version_id = ?2 OR next_version_id = ?2)
            ORDER BY id
            """, [.int(modelID), .optional(versionID)], Catalog.service)
    }

    /// Adds a service; `EEXIST` when its name is taken.
    public func insertService(_ s: Service) throws -> Service {
        do {
            try db.execute("""
                INSERT INTO services (name, model_id, version_id, alias, params, owner_uid, owner_gid, status, executor, generation,
                                      running_generation, created, modified)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, -1, ?, ?)
                """, [.text(s.id.rawValue), .int(s.modelID), .int(s.versionID), .optional(s.alias), .text(Catalog.json(s.params)),
                      .int(Int64(s.owner.uid)), .int(Int64(s.owner.gid)), .text(s.status.rawValue), .text(s.executor),
                      .date(s.created), .date(s.created)])
        } catch let e as any SQLFailure where e.isConstraint {
            throw StoreError.exists("service \(s.id) already exists")
        }
        guard let made = try service(named: s.id) else { throw StoreError.notFound("service \(s.id) vanished") }
        return made
    }

    /// Writes every changeable column of a service read in this transaction.
    public func updateService(_ s: Service) throws {
        try db.execute("""
            UPDATE services SET version_id = ?, status = ?, reason = ?, endpoint = ?, executor_id = ?, instance = ?, node = ?,
              next_version_id = ?, next_executor_id = ?, next_instance = ?, refused_version_id = ?, generation = ?,
              running_generation = ?, modified = ?
            WHERE id = ?
            """, [.int(s.versionID), .text(s.status.rawValue), .optional(s.reason), .optional(s.endpoint), .optional(s.executorID),
                  .int(s.instance), .optional(s.node), .optional(s.nextVersionID), .optional(s.nextExecutorID), .optional(s.nextInstance),
                  .optional(s.refusedVersionID), .int(s.generation), .int(s.runningGeneration), .date(Date()), .int(s.number)])
    }
}
