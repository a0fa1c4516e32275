import Testing
@testable import ModelStore

struct SplitCase: Sendable, CustomTestStringConvertible {
    let file: String, name: String, format: String
    init(_ file: String, _ name: String, _ format: String) { self.file = file; self.name = name; self.format = format }
    var testDescription: String { file }
}

@Suite struct FormatsTests {
    @Test(arguments: [
        SplitCase("v2.1.tar.gz", "v2.1", "tar.gz"),
        SplitCase("v1.zip", "v1", "zip"),
        SplitCase("model.safetensors", "model", "safetensors"),
        SplitCase("x.tar", "x", "tar"),
        SplitCase("x.tar.gz", "x", "tar.gz"),
        SplitCase("v3.pt", "v3", "pt"),
        SplitCase("v3.pth", "v3", "pth"),
        SplitCase("final.ckpt", "final", "ckpt"),
        SplitCase("v 1+%?#&.zip", "v 1+%?#&", "zip"),
        SplitCase("千问.tar.gz", "千问", "tar.gz"),
        SplitCase("a.zip.zip", "a.zip", "zip"),
    ])
    func splitsVersionFileNames(_ c: SplitCase) throws {
        let (name, format) = try Formats.splitVersion(c.file)
        #expect(name == c.name)
        #expect(format == c.format)
    }

    @Test(arguments: ["v1.exe", "v1.gz", "v1", "zip", "v1.", "v1.ZIP", "v1.jsonl", ".zip", ".tar.gz", "", "a/b.zip", "v\u{1}.zip"])
    func refusesBadVersionFileNames(_ file: String) {
        expectStoreError(.invalidArgument) { try Formats.splitVersion(file) }
    }

    @Test func unsupportedExtensionMessageListsAllowedOnes() {
        let error = #expect(throws: StoreError.self) { try Formats.splitVersion("v1.exe") }
        #expect(error?.message.contains(".safetensors") == true)
    }

    @Test(arguments: [
        SplitCase("finance-qa.jsonl", "finance-qa", "jsonl"),
        SplitCase("d.json", "d", "json"),
        SplitCase("d.csv", "d", "csv"),
        SplitCase("d.tsv", "d", "tsv"),
        SplitCase("d.txt", "d", "txt"),
        SplitCase("d.parquet", "d", "parquet"),
        SplitCase("d.zip", "d", "zip"),
        SplitCase("d.tar", "d", "tar"),
        SplitCase("d.v2.tar.gz", "d.v2", "tar.gz"),
    ])
    func splitsDatasetFileNames(_ c: SplitCase) throws {
        let (name, format) = try Formats.splitDataset(c.file)
        #expect(name == c.name)
        #expect(format == c.format)
    }

    @Test(arguments: ["d.pth", "d.safetensors", "d.exe", ".jsonl", "d"])
    func refusesBadDatasetFileNames(_ file: String) {
        expectStoreError(.invalidArgument) { try Formats.splitDataset(file) }
    }

    @Test func lineRecordFormatsAreDatasetFormats() {
        #expect(Formats.lineRecords.isSubset(of: Set(Formats.dataset)))
        #expect(Set(Formats.version) == ["zip", "tar", "tar.gz", "pth", "pt", "ckpt", "safetensors"])
    }
}

@Suite struct RulesTests {
    struct NextCase: Sendable, CustomTestStringConvertible {
        let names: [String], next: String
        var testDescription: String { "\(names) → \(next)" }
    }

    @Test(arguments: [
        NextCase(names: [], next: "v1"),
        NextCase(names: ["v1", "v2", "v2.1"], next: "v3"),
        NextCase(names: ["v1_base"], next: "v2"),
        NextCase(names: ["base", "final", "version2"], next: "v1"),
        NextCase(names: ["V7"], next: "v8"),
        NextCase(names: ["v9", "v10"], next: "v11"),        // numeric, not lexicographic
        NextCase(names: ["12b", "v3"], next: "v13"),
        NextCase(names: ["v007"], next: "v8"),
        NextCase(names: ["v2", "v99999999999999999999999999", "v" + String(repeating: "9", count: 40)], next: "v3"),
        NextCase(names: ["v99999999999999999"], next: "v100000000000000000"),
    ])
    func nextVersion(_ c: NextCase) {
        #expect(Rules.nextVersion(after: c.names) == c.next)
    }

    @Test func nextVersionNeverCrashesOnHugeNumbers() {
        // Int.max and beyond, at every length around the cut-off.
        for digits in 15...25 {
            let next = Rules.nextVersion(after: ["v" + String(repeating: "9", count: digits)])
            #expect(next.hasPrefix("v"))
            #expect(Int(next.dropFirst()) != nil)
        }
    }

    static func version(_ id: Int64, _ status: UploadStatus, name: String? = nil) -> Version {
        Version(id: VersionID(id), modelID: ModelID(1), name: name ?? "v\(id)", format: "zip", objectKey: "m/v\(id).zip", size: 1, sha256: nil,
                status: status, error: nil, note: "", lineage: Lineage(), created: .now, modified: .now)
    }

    @Test func lastReadyVersionIsNotDeletable() {
        let v1 = Self.version(1, .ready)
        expectStoreError(.notPermitted) { try Rules.checkDeletable(version: v1, siblings: [v1], modelName: "m") }
        expectStoreError(.notPermitted) { try Rules.checkDeletable(version: v1, siblings: [], modelName: "m") }
    }

    @Test func uploadingAndFailedSiblingsDoNotCount() {
        let v1 = Self.version(1, .ready)
        let siblings = [v1, Self.version(2, .uploading), Self.version(3, .failed)]
        let error = #expect(throws: StoreError.self) { try Rules.checkDeletable(version: v1, siblings: siblings, modelName: "m") }
        #expect(error?.code == .notPermitted)
        #expect(error?.message.contains("v1.zip") == true)
    }

    @Test func readyVersionWithAnotherReadyIsDeletable() throws {
        let v1 = Self.version(1, .ready), v2 = Self.version(2, .ready)
        try Rules.checkDeletable(version: v1, siblings: [v1, v2, Self.version(3, .failed)], modelName: "m")
    }

    @Test func failedVersionIsAlwaysDeletable() throws {
        let failed = Self.version(3, .failed)
        try Rules.checkDeletable(version: failed, siblings: [failed], modelName: "m")
        try Rules.checkDeletable(version: failed, siblings: [failed, Self.version(1, .ready)], modelName: "m")
        try Rules.checkDeletable(version: failed, siblings: [], modelName: "m")
    }

    @Test func keys() {
        #expect(Rules.versionKey(model: "千问-7B", fileName: "v1.zip") == "千问-7B/v1.zip")
        #expect(Rules.datasetKey(fileName: "qa.jsonl") == ".datasets/qa.jsonl")
        #expect(Rules.manifestKey(model: "BERT") == ".catalog/BERT.json")
        #expect(Rules.manifestKey(model: "BERT").hasPrefix(Rules.manifestPrefix))
    }
}
