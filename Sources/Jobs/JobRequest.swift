import Foundation
import ModelStore

/// What a write to `jobs/submit` or `jobs/evaluate` (or `modelfs train`) asks for: `key=value`
/// pairs separated by spaces or newlines, or one JSON object. `model`, `version` and `dataset` are
/// required; `name` and (training only) `evaluate` are optional; every other key is a free
/// hyper-parameter.
public struct JobRequest: Sendable, Equatable {
    public static let maxBytes = 64 << 10

    public var model: String
    public var version: String
    public var dataset: String
    public var name: String?
    /// A dataset to evaluate each checkpoint on, once it is a version.
    public var evaluate: String?
    public var params: [String: String]

    public init(model: String, version: String, dataset: String, name: String? = nil, evaluate: String? = nil,
                params: [String: String] = [:]) {
        self.model = model; self.version = version; self.dataset = dataset; self.name = name; self.evaluate = evaluate
        self.params = params
    }

    /// Parses a request; every refusal is `EINVAL` with a reason a person can act on.
    public static func parse(_ bytes: [UInt8]) throws(StoreError) -> JobRequest {
        var fields = try RequestFields.parse(bytes, example: "model=NAME version=v1 dataset=NAME epochs=3")
        func take(_ key: String) throws(StoreError) -> String {
            guard let v = fields.removeValue(forKey: key), !v.isEmpty else { throw .invalid("the request names no \(key)") }
            return v
        }
        let model = try take("model")
        let version = try take("version")
        let dataset = try take("dataset")
        let name = fields.removeValue(forKey: "name")
        if let name { try validateName(name) }
        let evaluate = fields.removeValue(forKey: "evaluate")
        if evaluate == "" { throw .invalid("evaluate= names no dataset") }
        try RequestFields.checkDistinctVariables(fields)
        return JobRequest(model: model, version: version, dataset: dataset, name: name, evaluate: evaluate, params: fields)
    }

    /// The environment variable a parameter reaches the trainer as: `MODELFS_PARAM_` and its
    /// key upper-cased, characters other than letters and digits as `_`.
    public static func variable(for key: String) -> String {
        "MODELFS_PARAM_" + String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// Names a job cannot take: the files next to job directories in `jobs/` (`submit`) and in
    /// a job's directory (`spec.json status log control`), so that no job shadows one of them.
    public static let reservedNames: Set<String> = ["submit", "evaluate", "spec.json", "status", "log", "control"]

    /// A job's name is its directory under `jobs/`: a valid name, and not a control file's.
    public static func validateName(_ name: String) throws(StoreError) {
        try Names.validate(name, what: "job name")
        if reservedNames.contains(name) {
            throw .invalid("job name '\(name)' is taken by a control file in jobs/; choose another name")
        }
    }

    /// Splits on whitespace, honouring double quotes: `note="two words"`.
    static func tokens(_ text: String) throws(StoreError) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        var any = false
        for ch in text {
            if ch == "\"" { quoted.toggle(); any = true; continue }
            if !quoted && ch.isWhitespace {
                if any || !current.isEmpty { out.append(current) }
                current = ""
                any = false
                continue
            }
            current.append(ch)
        }
        if quoted { throw .invalid("a quote is not closed") }
        if any || !current.isEmpty { out.append(current) }
        return out
    }
}

/// The `key=value` pairs of a request written to a control file (`jobs/submit`,
/// `services/submit`): separated by spaces or newlines (double quotes keep spaces in a value), or
/// one JSON object of strings and numbers. Keys are checked; values hold no control character.
public enum RequestFields {
    public static func parse(_ bytes: [UInt8], example: String) throws(StoreError) -> [String: String] {
        guard bytes.count <= JobRequest.maxBytes else { throw .invalid("the request is \(bytes.count) bytes; at most \(JobRequest.maxBytes) are allowed") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .invalid("the request is not UTF-8 text") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw .invalid("the request is empty; write e.g. \(example)") }
        var fields: [String: String] = [:]
        if trimmed.hasPrefix("{") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw .invalid("the request is not a complete JSON object")
            }
            for (key, value) in object {
                switch value {
                case let s as String: fields[key] = s
                case let n as NSNumber: fields[key] = n.stringValue
                default: throw .invalid("the value of \(key) must be a string or a number")
                }
            }
        } else {
            for token in try JobRequest.tokens(trimmed) {
                guard let eq = token.firstIndex(of: "="), eq != token.startIndex else {
                    throw .invalid("'\(Names.printable(token))' is not key=value")
                }
                let key = String(token[..<eq])
                if fields[key] != nil { throw .invalid("\(key) is given twice") }
                fields[key] = String(token[token.index(after: eq)...])
            }
        }
        for key in fields.keys where key.isEmpty || !key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" || $0 == ".") }) {
            throw .invalid("'\(Names.printable(key))' is not a valid parameter name (letters, digits, _ - .)")
        }
        // A value reaches the trainer's environment, spec.json and listings: NUL would cut it
        // short in the environment, and newlines or escapes would forge lines in a log or a table.
        for (key, value) in fields where key != "name" && Names.hasControlCharacter(value) {  // name: see validateName
            throw .invalid("the value of \(key) contains a control character: '\(Names.printable(value))'")
        }
        return fields
    }

    /// Each parameter is a variable of its own: `a-b`, `a_b` and `A_B` would all be
    /// MODELFS_PARAM_A_B, and the command would see one of them silently.
    public static func checkDistinctVariables(_ params: [String: String]) throws(StoreError) {
        var seen: [String: String] = [:]
        for key in params.keys.sorted() {
            let v = JobRequest.variable(for: key)
            if let other = seen[v] { throw .invalid("parameters \(other) and \(key) would both be \(v); name them apart") }
            seen[v] = key
        }
    }
}
