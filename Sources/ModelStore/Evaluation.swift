import Foundation

/// The metrics an evaluation job measured of one version on one dataset. A version has at most
/// one per dataset: evaluating it again on the same dataset replaces it.
public struct Evaluation: Sendable, Equatable, Codable {
    public var versionID: VersionID
    public var dataset: String
    /// The job that measured them; nil when they came back from a manifest without one.
    public var job: String?
    public var metrics: [String: Double]
    public var created: Date

    public init(versionID: VersionID, dataset: String, job: String?, metrics: [String: Double], created: Date) {
        self.versionID = versionID; self.dataset = dataset; self.job = job; self.metrics = metrics; self.created = created
    }

    public static let maxMetrics = 256
    public static let maxBytes = 64 << 10

    /// Parses what an evaluator wrote: one flat JSON object of finite numbers, named like
    /// hyper-parameters (letters, digits, `_ - .`). Every refusal says what to fix.
    public static func parseMetrics(_ bytes: [UInt8]) throws(StoreError) -> [String: Double] {
        guard bytes.count <= maxBytes else { throw .invalid("the metrics file is \(bytes.count) bytes; at most \(maxBytes) are allowed") }
        // JSONDecoder takes numbers only: true, "0.9", null or a nested object are refused.
        guard let object = try? JSONDecoder().decode([String: Double].self, from: Data(bytes)) else {
            throw .invalid("the metrics file is not one flat JSON object of numbers, e.g. {\"accuracy\": 0.91, \"loss\": 0.27}")
        }
        guard !object.isEmpty else { throw .invalid("the metrics file names no metric") }
        guard object.count <= maxMetrics else { throw .invalid("\(object.count) metrics; at most \(maxMetrics) are allowed") }
        var out: [String: Double] = [:]
        for (name, value) in object {
            try validateName(name)
            guard value.isFinite else { throw .invalid("metric \(Names.printable(name)) is not a finite number") }
            out[name] = value
        }
        return out
    }

    public static func validateName(_ name: String) throws(StoreError) {
        guard !name.isEmpty, name.utf8.count <= 64,
              name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) })
        else { throw .invalid("'\(Names.printable(name))' is not a metric name (1 to 64 letters, digits, _ - .)") }
        // It becomes `user.modelfs.metric.<name>`: a name of dots only (`.`, `..`) would read as
        // an empty part of that name.
        guard !name.allSatisfy({ $0 == "." }) else {
            throw .invalid("'\(name)' is not a metric name: it must have a letter, a digit, _ or -")
        }
    }

    /// Metrics as one JSON object, keys sorted: `{"accuracy":0.91,"loss":0.27}`.
    public static func json(_ metrics: [String: Double]) -> String {
        "{" + metrics.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\(text($0.value))" }.joined(separator: ",") + "}"
    }

    /// A metric's value as xattrs and tables show it: the shortest text that reads back the same.
    public static func text(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}
