import Foundation
import Testing
@testable import Catalog
import ModelStore

/// Lists a page at a time (the web's `limit`/`after`), each model with its counts from one statement.
extension CatalogCases {
    func listingsComeAPageAtATimeWithTheirCounts() throws {
        let (a, av) = try model("a", type: .text, versions: ["v1", "v2", "v3"])
        try model("B", type: .image)
        let (_, cv) = try model("c-Émile", type: .text, versions: ["v1"])
        for name in ["d", "e", "f"] { try model(name) }
        try catalog.markVersionReady(id: av[0].id, size: 1000, sha256: String(repeating: "a", count: 64))
        try catalog.markVersionReady(id: av[1].id, size: 234, sha256: String(repeating: "b", count: 64))
        try catalog.markVersionFailed(id: av[2].id, error: "x", size: 5000)  // counted, its bytes not
        try catalog.markVersionReady(id: cv[0].id, size: 7, sha256: String(repeating: "a", count: 64))

        // All of them, as `modelfs models` shows them: name order (bytes: "B" < "a"), counts per model.
        let all = try catalog.modelSummaries()
        #expect(all.items.map(\.model.name) == ["B", "a", "c-Émile", "d", "e", "f"] && all.next == nil)
        let first = try #require(all.items.first { $0.model.name == "a" })
        #expect((first.model, first.versions, first.readyBytes) == (a, 3, 1234))
        #expect(try catalog.modelSummary(id: a.id) == first)
        #expect(try catalog.modelSummary(id: ModelID(9999)) == nil)

        // Walked a page at a time: every model once, in order; the last page has no next.
        var seen: [String] = [], after: String? = nil, pages = 0
        repeat {
            let page = try catalog.modelSummaries(after: after, limit: 4)
            #expect(page.items.count <= 4)
            seen += page.items.map(\.model.name)
            after = page.next
            pages += 1
        } while after != nil
        #expect(seen == all.items.map(\.model.name) && pages == 2)
        #expect(try catalog.modelSummaries(limit: 6).next == nil, "no next page when the page holds the rest exactly")
        // A name no longer there pages on from where it would be.
        #expect(try catalog.modelSummaries(after: "b", limit: 2).items.map(\.model.name) == ["c-Émile", "d"])
        // With a type and a search (case folded beyond ASCII), pages fill up past rows that do not match.
        let texts = try catalog.modelSummaries(type: .text, limit: 1)
        #expect(texts.items.map(\.model.name) == ["a"] && texts.next == "a")
        #expect(try catalog.modelSummaries(type: .text, after: "a", limit: 1).items.map(\.model.name) == ["c-Émile"])
        #expect(try catalog.modelSummaries(search: "émile", limit: 1).items.map(\.model.name) == ["c-Émile"])
        #expect(try catalog.modelSummaries(search: "F", limit: 1).items.map(\.model.name) == ["f"])

        // Versions by name after `after`; writers' temporary files left out.
        _ = try catalog.insertVersion(modelID: a.id, name: ".tmp-writer", format: "", objectKey: "a/.tmp-writer")
        let v = try catalog.versions(modelID: a.id, after: nil, limit: 2)
        #expect(v.items.map(\.name) == ["v1", "v2"] && v.next == "v2")
        let rest = try catalog.versions(modelID: a.id, after: "v2", limit: 2)
        #expect(rest.items.map(\.name) == ["v3"] && rest.next == nil)
        #expect(try catalog.versions(modelID: a.id, after: "v10", limit: 5).items.map(\.name) == ["v2", "v3"])

        // The evaluations of one page's versions only.
        for (version, dataset) in [(av[0], "qa"), (av[1], "qa"), (av[1], "other")] {
            try catalog.transaction { try $0.setEvaluation(Evaluation(versionID: version.id, dataset: dataset, job: nil, metrics: ["acc": 0.5], created: Date())) }
        }
        let evaluations = try catalog.evaluations(modelID: a.id, after: "v1", through: "v2")
        #expect(evaluations.keys.sorted() == [av[1].id] && evaluations[av[1].id]?.count == 2)

        // The duplicate check: ready versions with that content, by model and version name.
        let same = try catalog.readyVersions(sha256: String(repeating: "a", count: 64))
        #expect(same.map { "\($0.0.name)/\($0.1.name)" } == ["a/v1", "c-Émile/v1"])
        #expect(same.first?.0 == a && same.first?.1.size == 1000)
        #expect(try catalog.readyVersions(sha256: String(repeating: "c", count: 64)).isEmpty)
        // …by an index of the content's hash, not by reading every version (migration 17).
        let indexes = try catalog.database.read { db in
            try db.query(catalog.database.isShared
                ? "SELECT indexname FROM pg_indexes WHERE tablename = 'versions'"
                : "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'versions'") { $0.text(0) }
        }
        #expect(indexes.contains("versions_by_sha256"), "\(indexes)")
    }
}

extension CatalogConformance {
    @Test(arguments: Backend.all) func listingsComeAPageAtATimeWithTheirCounts(_ backend: Backend) throws {
        try CatalogCases(backend).listingsComeAPageAtATimeWithTheirCounts()
    }
}
