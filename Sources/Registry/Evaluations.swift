import Catalog
import Foundation
import ModelStore

/// Evaluations: what an evaluation job measured of a version on a dataset. They are in the
/// version's entry in the bucket, so `recover` restores them.
extension Registry {
    /// Stores the metrics of `model/version` on `dataset`, replacing an earlier evaluation on
    /// that dataset. The version must be ready.
    @discardableResult
    public func recordEvaluation(model: String, version: String, dataset: String, job: String?,
                                 metrics: [String: Double]) throws(StoreError) -> Evaluation {
        for name in metrics.keys { try Evaluation.validateName(name) }
        let e = try catalog.transaction { tx in
            let (m, v) = try Registry.version(tx, model, version)
            guard v.status == .ready else { throw StoreError(.notReady, "\(m.name)/\(v.fileName) is \(v.status.rawValue)") }
            let e = Evaluation(versionID: v.id, dataset: dataset, job: job, metrics: metrics, created: Date())
            try tx.setEvaluation(e)
            try Registry.audit(tx, "version.evaluate", model: m.name, target: v.fileName,
                               "on \(dataset)\(job.map { " by job " + $0 } ?? ""): \(Evaluation.json(metrics))")
            return e
        }
        publishVersionEntry(e.versionID)
        return e
    }
}
