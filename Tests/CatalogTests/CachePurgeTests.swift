import Foundation
import Testing
@testable import Catalog
import ModelStore

extension CatalogCases {
    /// Every delete records, in its own transaction, what it leaves in the caches (by content and
    /// row), readable in order by another connection (another process or node); records a day
    /// old go.
    func deletesRecordWhatTheyLeaveInTheCaches() throws {
        let other = try place.open()
        let start = try other.lastCachePurge()
        let (m, vs) = try model("m", versions: ["v1", "v2"])
        let sha = String(repeating: "a", count: 64)
        try catalog.markVersionReady(id: vs[0].id, size: 10, sha256: sha)
        let d = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        _ = try catalog.transaction { try $0.deleteVersion(try #require(try $0.version(id: vs[0].id))) }
        var gone = vs[0]
        gone.sha256 = sha
        gone.size = 10
        let (first, one) = try other.cachePurges(after: start)
        #expect(one == Purge([gone]), "by content once known")
        _ = try catalog.transaction { try $0.deleteDataset(d) }
        _ = try catalog.transaction { try $0.deleteModel(m, versions: try $0.versions(modelID: m.id)) }
        let (last, two) = try other.cachePurges(after: first)
        #expect(two == Purge(objects: [d.objectIdentity, vs[1].objectIdentity], versions: [vs[1].id], datasets: [d.id]))
        #expect(try other.lastCachePurge() == last && last > first)
        #expect(try other.cachePurges(after: last) == (last, Purge()))
        // A record older than a day is dropped by the next delete.
        try catalog.database.write { try $0.execute("UPDATE cache_purges SET created = 0") }
        let (_, more) = try model("n", versions: ["v1"])
        _ = try catalog.transaction { try $0.deleteVersion(more[0]) }
        #expect(try other.cachePurges(after: 0).purge.versions == [more[0].id])
    }
}

@Suite struct CachePurgeTests {
    @Test(arguments: Backend.all) func deletesRecordWhatTheyLeaveInTheCaches(_ backend: Backend) throws {
        try CatalogCases(backend).deletesRecordWhatTheyLeaveInTheCaches()
    }
}
