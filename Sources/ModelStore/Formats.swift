/// The file formats a version or a dataset may have, and how a file name splits into name and format.
public enum Formats {
    /// Version formats, longest first so `tar.gz` wins over a bare `gz`.
    public static let version = ["tar.gz", "safetensors", "ckpt", "pth", "zip", "tar", "pt"]
    /// Dataset formats.
    public static let dataset = ["tar.gz", "parquet", "jsonl", "json", "csv", "tsv", "txt", "zip", "tar"]
    /// Dataset formats whose records are lines.
    public static let lineRecords: Set<String> = ["jsonl", "csv", "tsv", "txt"]

    /// Splits `v2.1.tar.gz` into (`v2.1`, `tar.gz`) using the allowed formats; the name is validated.
    public static func split(fileName: String, allowed: [String], what: String = "version") throws(StoreError) -> (name: String, format: String) {
        for format in allowed.sorted(by: { $0.count > $1.count }) where fileName.hasSuffix("." + format) {
            let name = String(fileName.dropLast(format.count + 1))
            try Names.validate(name, what: "\(what) name")
            return (name, format)
        }
        try Names.validate(fileName, what: "file name")
        throw .invalid("'\(Names.printable(fileName))' has an unsupported extension; use one of: \(allowed.map { "." + $0 }.joined(separator: " "))")
    }

    public static func splitVersion(_ fileName: String) throws(StoreError) -> (name: String, format: String) {
        let split = try split(fileName: fileName, allowed: version, what: "version")
        try Names.validateVersion(split.name)
        return split
    }

    public static func splitDataset(_ fileName: String) throws(StoreError) -> (name: String, format: String) {
        try split(fileName: fileName, allowed: dataset, what: "dataset")
    }
}
