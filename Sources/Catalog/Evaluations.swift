import Foundation
import ModelStore

extension Catalog {
    static let evaluationColumns = "version_id, dataset, job_id, metrics, created"
    static func evaluation(_ r: Row) -> Evaluation {
        let metrics = (try? JSONDecoder().decode([String: Double].self, from: Data(r.text(3).utf8))) ?? [:]
        return Evaluation(versionID: VersionID(r.int(0)), dataset: r.text(1), job: r.optionalText(2), metrics: metrics, created: r.date(4))
    }

    /// A version's evaluations, oldest first (the last is the one its xattrs show).
    public func evaluations(versionID: VersionID) throws(StoreError) -> [Evaluation] {
        try database.read { try CatalogTransaction(db: $0).evaluations(versionID: versionID) }
    }

    /// The evaluations of every version of a model, by version id.
    public func evaluations(modelID: ModelID) throws(StoreError) -> [VersionID: [Evaluation]] {
        try database.read { db in
            let all = try db.query("""
                SELECT \(Catalog.qualified(Catalog.evaluationColumns, by: "e"))
                FROM evaluations e JOIN versions v ON v.id = e.version_id WHERE v.model_id = ? ORDER BY e.created, e.dataset
                """, [.int(modelID)], Catalog.evaluation)
            return Dictionary(grouping: all, by: \.versionID)
        }
    }
}

extension CatalogTransaction {
    public func evaluations(versionID: VersionID) throws -> [Evaluation] {
        try db.query("SELECT \(Catalog.evaluationColumns) FROM evaluations WHERE version_id = ? ORDER BY created, dataset",
                     [.int(versionID)], Catalog.evaluation)
    }

    /// Records what was measured of a version on a dataset, replacing an earlier evaluation on it.
    public func setEvaluation(_ e: Evaluation) throws {
        try db.execute("""
            INSERT INTO evaluations (version_id, dataset, job_id, metrics, created) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (version_id, dataset) DO UPDATE SET job_id = excluded.job_id, metrics = excluded.metrics, created = excluded.created
            """, [.int(e.versionID), .text(e.dataset), .optional(e.job), .text(Catalog.json(e.metrics)), .date(e.created)])
    }
}
