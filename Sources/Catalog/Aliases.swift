import Foundation
import ModelStore

extension Catalog {
    static let aliasColumns = "id, model_id, name, version_id, created, modified, to_view"
    static func alias(_ r: Row) -> Alias {
        Alias(id: AliasID(r.int(0)), modelID: ModelID(r.int(1)), name: r.text(2), versionID: VersionID(r.int(3)), created: r.date(4),
              modified: r.date(5), view: r.int(6) != 0)
    }

    public func aliases(modelID: ModelID) throws(StoreError) -> [Alias] {
        try database.read { try $0.query("SELECT \(Catalog.aliasColumns) FROM aliases WHERE model_id = ? ORDER BY name", [.int(modelID)], Catalog.alias) }
    }

    public func alias(id: AliasID) throws(StoreError) -> Alias? {
        try database.read { try CatalogTransaction(db: $0).alias(id: id) }
    }

    public func alias(modelID: ModelID, name: String) throws(StoreError) -> Alias? {
        try database.read {
            try $0.first("SELECT \(Catalog.aliasColumns) FROM aliases WHERE model_id = ? AND name = ?", [.int(modelID), .text(name)], Catalog.alias)
        }
    }
}

extension CatalogTransaction {
    public func alias(id: AliasID) throws -> Alias? {
        try db.first("SELECT \(Catalog.aliasColumns) FROM aliases WHERE id = ?", [.int(id)], Catalog.alias)
    }

    public func version(id: VersionID) throws -> Version? {
        try db.first("SELECT \(Catalog.versionColumns) FROM versions WHERE id = ?", [.int(id)], Catalog.version)
    }

    public func aliases(modelID: ModelID) throws -> [Alias] {
        try db.query("SELECT \(Catalog.aliasColumns) FROM aliases WHERE model_id = ? ORDER BY name", [.int(modelID)], Catalog.alias)
    }

    /// The aliases pointing at a version.
    public func aliases(versionID: VersionID) throws -> [Alias] {
        try db.query("SELECT \(Catalog.aliasColumns) FROM aliases WHERE version_id = ? ORDER BY name", [.int(versionID)], Catalog.alias)
    }

    public func alias(modelID: ModelID, name: String) throws -> Alias? {
        try db.first("SELECT \(Catalog.aliasColumns) FROM aliases WHERE model_id = ? AND name = ?", [.int(modelID), .text(name)], Catalog.alias)
    }

    /// Points alias `name` of the model at `versionID` (its archive view when `view`), making it
    /// when there is none: one statement, so a reader sees the old target or the new one, never neither.
    @discardableResult
    public func setAlias(modelID: ModelID, name: String, versionID: VersionID, view: Bool = false) throws -> Alias {
        let now = Date()
        try db.execute("""
            INSERT INTO aliases (model_id, name, version_id, created, modified, to_view) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (model_id, name) DO UPDATE SET version_id = excluded.version_id, modified = excluded.modified,
                to_view = excluded.to_view
            """, [.int(modelID), .text(name), .int(versionID), .date(now), .date(now), .int(view ? 1 : 0)])
        guard let a = try alias(modelID: modelID, name: name) else { throw StoreError.notFound("alias \(name) vanished") }
        return a
    }

    public func deleteAlias(id: AliasID) throws {
        try db.execute("DELETE FROM aliases WHERE id = ?", [.int(id)])
    }

    /// Renames an alias, replacing any alias of the new name (as `rename(2)` replaces its target).
    public func renameAlias(_ a: Alias, to name: String) throws -> Alias {
        try db.execute("DELETE FROM aliases WHERE model_id = ? AND name = ? AND id <> ?", [.int(a.modelID), .text(name), .int(a.id)])
        try db.execute("UPDATE aliases SET name = ?, modified = ? WHERE id = ?", [.text(name), .date(Date()), .int(a.id)])
        var renamed = a
        renamed.name = name
        return renamed
    }
}
