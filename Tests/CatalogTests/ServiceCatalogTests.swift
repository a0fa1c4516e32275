import Foundation
import Testing
@testable import Catalog
import ModelStore

/// The `services` table on every engine: names unique, every changeable column kept, and what a
/// service holds found by model and by version (the one it serves and the one it switches to).
extension CatalogCases {
    func servicesKeepEveryColumnAndAreFoundByTheVersionsTheyHold() throws {
        let (m, vs) = try model("m", versions: ["v1", "v2", "v3"])
        let new = Service(id: "m-v1-1", modelID: m.id, versionID: vs[0].id, alias: "@production", params: ["k": "v"],
                          owner: JobOwner(uid: 4242, gid: 4343), status: .starting, executor: "local",
                          created: Date(timeIntervalSince1970: 1_800_000_000))
        let s = try catalog.transaction { tx in try tx.insertService(new) }
        #expect(s.number > 0 && s.params == ["k": "v"] && s.owner == JobOwner(uid: 4242, gid: 4343) && s.alias == "@production")
        #expect(s.runningGeneration == -1 && s.generation == 0 && s.node == nil && s.endpoint == nil)
        expectStoreError(.alreadyExists) { try catalog.transaction { tx in try tx.insertService(new) } }
        #expect(try catalog.service(named: "m-v1-1")?.number == s.number)
        #expect(try catalog.service(number: s.number)?.id == s.id)
        #expect(try catalog.services().map(\.id) == [s.id])
        var changed = s
        changed.status = .ready; changed.endpoint = "http://127.0.0.1:1"; changed.executorID = "99"; changed.instance = 2
        changed.node = "n1"; changed.nextVersionID = vs[1].id; changed.nextExecutorID = "100"; changed.nextInstance = 3
        changed.refusedVersionID = vs[2].id; changed.generation = 4; changed.runningGeneration = 4; changed.reason = "why"
        try catalog.transaction { tx in try tx.updateService(changed) }
        let read = try #require(try catalog.service(named: "m-v1-1"))
        changed.modified = read.modified
        #expect(read == changed)
        let held = try catalog.transaction { tx in
            [try tx.servicesHolding(modelID: m.id), try tx.servicesHolding(modelID: m.id, versionID: vs[0].id),
             try tx.servicesHolding(modelID: m.id, versionID: vs[1].id), try tx.servicesHolding(modelID: m.id, versionID: vs[2].id)]
                .map { $0.map(\.id) }
        }
        // The model, the version it serves, the one it switches to; a refused version is not held.
        #expect(held == [[s.id], [s.id], [s.id], []])
        changed.status = .stopped
        try catalog.transaction { tx in try tx.updateService(changed) }
        #expect(try catalog.transaction { tx in try tx.servicesHolding(modelID: m.id) }.isEmpty, "a stopped service holds nothing")
    }
}

@Suite struct ServiceCatalogTests {
    @Test(arguments: Backend.all) func servicesKeepEveryColumnAndAreFoundByTheVersionsTheyHold(_ backend: Backend) throws {
        try CatalogCases(backend).servicesKeepEveryColumnAndAreFoundByTheVersionsTheyHold()
    }
}
