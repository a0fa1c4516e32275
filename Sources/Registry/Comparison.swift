import Foundation
import ModelStore

/// One evaluation as `versions --json`, `compare --json` and the web give it.
public struct EvaluationRow: Encodable, Sendable {
    public var dataset: String; public var job: String?; public var metrics: [String: Double]; public var created: Date
    public init(_ e: Evaluation) { dataset = e.dataset; job = e.job; metrics = e.metrics; created = e.created }
}

/// Versions of a model side by side (`modelfs compare`, `GET …/compare`): what they are, where
/// they came from (parent, dataset, job and its hyper-parameters), their aliases, and every
/// metric measured of them, per dataset.
public struct Comparison: Encodable, Sendable {
    public struct Compared: Encodable, Sendable {
        public var name: String; public var file: String; public var status: UploadStatus; public var size: Int64; public var sha256: String?
        public var created: Date; public var lineage: Lineage?; public var params: [String: String]?; public var aliases: [String]
        public var evaluations: [EvaluationRow]
    }

    public var model: String
    public var versions: [Compared]
}

extension Registry {
    /// `versions` of `modelName` (v1, v2.safetensors, @production), compared in the order given.
    public func compare(_ modelName: String, _ versions: [String]) throws(StoreError) -> Comparison {
        let m = try model(modelName)
        let aliases = try aliases(of: m.name)
        var compared: [Comparison.Compared] = []
        for name in versions {
            let plain = name.hasPrefix("@") ? name : ((try? Formats.splitVersion(name).name) ?? name)
            let v = try resolveVersion(m.name, plain)
            let params = try v.lineage.job.map { (job) throws(StoreError) in try catalog.job(id: JobID(job)) }??.params
            compared.append(Comparison.Compared(
                name: v.name, file: v.fileName, status: v.status, size: v.size, sha256: v.sha256, created: v.created,
                lineage: v.lineage.isEmpty ? nil : v.lineage, params: params,
                aliases: aliases.filter { $0.version.id == v.id && $0.alias.isNamed }.map(\.alias.name),
                evaluations: try catalog.evaluations(versionID: v.id).map(EvaluationRow.init)))
        }
        return Comparison(model: m.name, versions: compared)
    }
}
