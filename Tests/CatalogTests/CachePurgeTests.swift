import Foundation
import Testing
@testable import Catalog
import ModelStore

extension CatalogCases {
    /// Every delete records, in its own transaction, what it leaves in the caches (by content and
    /// row), readable in order by another connection (another process or node); purges a day old go.
    func deletesRecordWhatTheyLeaveInTheCaches() throws {
        let other = try place.open()
        let start = try other.lastCachePurge()
        let (m, vs) = try model("m", versions: ["v1", "v2"])
        try catalog.markVersionReady(id: vs[0].id, size: 10, sha256: String(repeating: "a", count: 64))
        let d = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        _ = try catalog.transaction { try $0.deleteVersion(try #require(try $0.version(id: vs[0].id))) }
        _ = try catalog.transaction { try $0.deleteDataset(d) }
        _ = try catalog.transaction { try $0.deleteModel(m, versions: try $0.versions(modelID: m.id)) }
        let purges = try other.cachePurges(after: start)
        #expect(purges.map(\.objectKey) == ["m/v1.zip", ".datasets/qa.jsonl", "m/v2.zip"])
        #expect(purges[0].sha256 == String(repeating: "a", count: 64) && purges[0].size == 10 && purges[0].versionID == vs[0].id)
        #expect(purges[1].datasetID == d.id && purges[1].versionID == nil && purges[2].sha256 == nil)
        #expect(try other.lastCachePurge() == purges[2].id)
        #expect(try other.cachePurges(after: purges[1].id) == [purges[2]])
        // A purge older than a day is dropped by the next delete.
        try catalog.database.write { try $0.execute("UPDATE cache_purges SET created = 0") }
        let (_, more) = try model("n", versions: ["v1"])
        _ = try catalog.transaction { try $0.deleteVersion(more[0]) }
        #expect(try other.cachePurges(after: 0).map(\.objectKey) == ["n/v1.zip"])
    }
}

@Suite struct CachePurgeTests {
    @Test(arguments: Backend.all) func deletesRecordWhatTheyLeaveInTheCaches(_ backend: Backend) throws {
        try CatalogCases(backend).deletesRecordWhatTheyLeaveInTheCaches()
    }
}
