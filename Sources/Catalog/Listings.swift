import Foundation
import ModelStore

/// A model with what a list of models shows of its versions, counted by the catalog in the
/// statement that reads the model (not by reading every version of every model).
public struct ModelSummary: Sendable, Equatable {
    public var model: Model
    /// Its versions in any status (as `modelfs models` counts them).
    public var versions: Int
    /// The bytes of its ready versions.
    public var readyBytes: Int64

    public init(model: Model, versions: Int, readyBytes: Int64) { self.model = model; self.versions = versions; self.readyBytes = readyBytes }
}

/// One page of a listing in name order: at most the limit asked for, and the name to list
/// after for the next page when more exist (keyset paging: a page costs its own rows only).
public struct CatalogPage<Item: Sendable>: Sendable {
    public var items: [Item]
    public var next: String?
}

extension Catalog {
    /// Models in name order after `after`, at most `limit` (all when nil), optionally of one type
    /// and whose name contains `search` (case-insensitive), with their version counts and bytes.
    public func modelSummaries(type: ModelType? = nil, search: String? = nil, after: String? = nil,
                               limit: Int? = nil) throws(StoreError) -> CatalogPage<ModelSummary> {
        let needle = search.flatMap { $0.isEmpty ? nil : $0.lowercased() }
        // The search is matched here (SQLite's lower() folds ASCII only), so with one the rows
        // are read in batches until the page is full.
        let batch = limit.map { needle == nil ? $0 + 1 : max($0 + 1, 500) }
        var items: [ModelSummary] = []
        var cursor = after
        while true {
            var filter = "m.name > ?"
            var args: [SQLValue] = [.text(cursor ?? "")]
            if let type { filter += " AND m.type = ?"; args.append(.text(type.rawValue)) }
            let rows = try summaries(where: filter, args, limit: batch)
            items += rows.filter { needle == nil || $0.model.name.lowercased().contains(needle!) }
            guard let batch, let limit, items.count <= limit, rows.count == batch, let last = rows.last else { break }
            cursor = last.model.name
        }
        guard let limit, items.count > limit else { return CatalogPage(items: items, next: nil) }
        items.removeLast(items.count - limit)
        return CatalogPage(items: items, next: items.last?.model.name)
    }

    /// One model with its version count and bytes.
    public func modelSummary(id: ModelID) throws(StoreError) -> ModelSummary? {
        try summaries(where: "m.id = ?", [.int(id)], limit: nil).first
    }

    /// Each model's counts by subqueries on `versions_by_model`: an index look-up per model.
    private func summaries(where filter: String, _ args: [SQLValue], limit: Int?) throws(StoreError) -> [ModelSummary] {
        let sql = """
            SELECT \(Catalog.qualified(Catalog.modelColumns, by: "m")), (SELECT count(*) FROM versions v WHERE v.model_id = m.id),
              (SELECT coalesce(sum(v.size), 0) FROM versions v WHERE v.model_id = m.id AND v.status = 'ready')
            FROM models m WHERE \(filter) ORDER BY m.name\(limit == nil ? "" : " LIMIT ?")
            """
        let bound = args + (limit.map { [SQLValue.int(Int64($0))] } ?? [])
        return try database.read { db in
            try db.query(sql, bound) { r in ModelSummary(model: Catalog.model(r), versions: Int(r.int(9)), readyBytes: r.int(10)) }
        }
    }

    /// A model's versions in their listing order (by name) after `after`, at most `limit`;
    /// writers' temporary files (no format yet) left out.
    public func versions(modelID: ModelID, after: String?, limit: Int) throws(StoreError) -> CatalogPage<Version> {
        var items = try database.read {
            try $0.query("""
                SELECT \(Catalog.versionColumns) FROM versions WHERE model_id = ? AND name > ? AND format <> '' ORDER BY name LIMIT ?
                """, [.int(modelID), .text(after ?? ""), .int(Int64(limit) + 1)], Catalog.version)
        }
        guard items.count > limit else { return CatalogPage(items: items, next: nil) }
        items.removeLast(items.count - limit)
        return CatalogPage(items: items, next: items.last?.name)
    }

    /// The evaluations of a model's versions named after `after` up to `through` (a page of
    /// ``versions(modelID:after:limit:)``), by version id, oldest first.
    public func evaluations(modelID: ModelID, after: String?, through: String) throws(StoreError) -> [VersionID: [Evaluation]] {
        let all = try database.read {
            try $0.query("""
                SELECT \(Catalog.qualified(Catalog.evaluationColumns, by: "e")) FROM evaluations e JOIN versions v ON v.id = e.version_id
                WHERE v.model_id = ? AND v.name > ? AND v.name <= ? ORDER BY e.created, e.dataset
                """, [.int(modelID), .text(after ?? ""), .text(through)], Catalog.evaluation)
        }
        return Dictionary(grouping: all, by: \.versionID)
    }

    /// Ready versions whose content has this sha256, with their models, by model and version name.
    public func readyVersions(sha256: String) throws(StoreError) -> [(Model, Version)] {
        let versionColumns = Catalog.qualified(Catalog.versionColumns, by: "v")
        let modelColumns = Catalog.qualified(Catalog.modelColumns, by: "m")
        let modelsAt = Int32(versionColumns.split(separator: ",").count)
        return try database.read {
            try $0.query("""
                SELECT \(versionColumns), \(modelColumns) FROM versions v JOIN models m ON m.id = v.model_id
                WHERE v.sha256 = ? AND v.status = 'ready' AND v.format <> '' ORDER BY m.name, v.name
                """, [.text(sha256)]) { r in
                (Catalog.model(Row(cells: Shifted(row: r, by: modelsAt))), Catalog.version(r))
            }
        }
    }
}

extension Catalog {
    /// `a, b` as `t.a, t.b`: a table's columns in a join.
    static func qualified(_ columns: String, by table: String) -> String {
        columns.split(separator: ",").map { table + "." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", ")
    }
}

/// A row's cells from column `by` on: a join's second table read by the reader of that table.
private struct Shifted: RowCells {
    let row: Row
    let by: Int32
    func int(_ i: Int32) -> Int64 { row.int(i + by) }
    func double(_ i: Int32) -> Double { row.double(i + by) }
    func isNull(_ i: Int32) -> Bool { row.isNull(i + by) }
    func optionalText(_ i: Int32) -> String? { row.optionalText(i + by) }
}
