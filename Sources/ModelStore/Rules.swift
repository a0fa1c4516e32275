/// The rules of the catalog that both the mount and the CLI obey.
public enum Rules {
    /// The suggested next version: `v1` for a new model, else `v` and one more than the highest
    /// leading number among the versions (`v3` after `v1`, `v2`, `v2.1`; `v2` after `v1_base`).
    public static func nextVersion(after names: [String]) -> String {
        var highest = 0
        for name in names {
            if let n = leadingNumber(name) { highest = max(highest, n) }
        }
        return "v\(highest + 1)"
    }

    /// The number right after an optional leading `v`/`V`: `v2.1` → 2, `12b` → 12, `base` → nil.
    static func leadingNumber(_ name: String) -> Int? {
        var s = Substring(name)
        if let first = s.first, first == "v" || first == "V" { s = s.dropFirst() }
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count < 18 else { return nil }
        return Int(digits)
    }

    /// A version may be deleted unless it is the last ready version of its model; a model is
    /// deleted with `rmdir` (all its versions) instead.
    public static func checkDeletable(version: Version, siblings: [Version], modelName: String) throws(StoreError) {
        // An empty version (`touch`) holds nothing worth keeping: it never counts as the last one.
        // Nor does a writer's temporary file.
        guard version.status == .ready, version.size > 0, !version.isScratch else { return }
        let otherReady = siblings.contains { $0.id != version.id && $0.status == .ready && $0.size > 0 && !$0.isScratch }
        if !otherReady {
            throw StoreError(.notPermitted, "\(version.fileName) is the last ready version of \(modelName); delete the model instead")
        }
    }

    /// The S3 key of a version, fixed at creation: `<model>/<version>.<ext>`.
    public static func versionKey(model: String, fileName: String) -> String { model + "/" + fileName }
    /// The S3 key of a dataset: `.datasets/<name>.<ext>`.
    public static func datasetKey(fileName: String) -> String { ".datasets/" + fileName }
    /// The S3 key of a model's manifest: `.catalog/<model>.json`.
    public static func manifestKey(model: String) -> String { ".catalog/" + model + ".json" }
    public static let manifestPrefix = ".catalog/"
    /// Where the bucket keeps one small entry per version, named by the version's object key
    /// (unique in the bucket and kept by a rename).
    public static let versionEntryPrefix = ".catalog/.versions/"
    public static func versionEntryKey(objectKey: String) -> String { versionEntryPrefix + objectKey + ".json" }
}
