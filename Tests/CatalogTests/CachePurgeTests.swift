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
        #expect(one == Purge(objects: [gone.objectIdentity], versions: [gone.id]), "by content once known")
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

    /// A deleted version whose bytes another version or dataset still has (a `cp` of it) leaves
    /// them cached: its views go, its bytes stay until the last row with them goes.
    func aDeleteKeepsTheBytesAnotherRowStillHas() throws {
        let other = try place.open()
        let sha = String(repeating: "b", count: 64)
        let (_, vs) = try model("copies", versions: ["v1", "v2", "v3"])
        for v in vs.prefix(2) { try catalog.markVersionReady(id: v.id, size: 10, sha256: sha) }
        try catalog.markVersionReady(id: vs[2].id, size: 11, sha256: sha)  // same digest, another size: other bytes
        var d = try catalog.insertDataset(name: "same", format: "jsonl", objectKey: ".datasets/same.jsonl")
        try catalog.database.write { try $0.execute("UPDATE datasets SET sha256 = ?, size = 10 WHERE id = ?", [.text(sha), .int(d.id)]) }
        d.sha256 = sha
        d.size = 10
        func delete(_ v: Version) throws -> Purge {
            let start = try other.lastCachePurge()
            let mine = try catalog.transaction { try $0.deleteVersion(try #require(try $0.version(id: v.id))) }.purge
            #expect(try other.cachePurges(after: start).purge == mine, "every node reads what the deleting one applied")
            return mine
        }
        let identity = ObjectIdentity.id(sha256: sha, size: 10)
        #expect(try delete(vs[0]) == Purge(objects: [], versions: [vs[0].id]), "v2 and the dataset still have them")
        #expect(try delete(vs[2]) == Purge(objects: [ObjectIdentity.id(sha256: sha, size: 11)], versions: [vs[2].id]))
        #expect(try delete(vs[1]) == Purge(objects: [], versions: [vs[1].id]), "the dataset still has them")
        let start = try other.lastCachePurge()
        #expect(try catalog.transaction { try $0.deleteDataset(d) }.purge == Purge(objects: [identity], datasets: [d.id]), "the last one")
        #expect(try other.cachePurges(after: start).purge == Purge(objects: [identity], datasets: [d.id]))
    }
}

@Suite struct CachePurgeTests {
    @Test(arguments: Backend.all) func deletesRecordWhatTheyLeaveInTheCaches(_ backend: Backend) throws {
        try CatalogCases(backend).deletesRecordWhatTheyLeaveInTheCaches()
    }

    @Test(arguments: Backend.all) func aDeleteKeepsTheBytesAnotherRowStillHas(_ backend: Backend) throws {
        try CatalogCases(backend).aDeleteKeepsTheBytesAnotherRowStillHas()
    }
}
