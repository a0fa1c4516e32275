import Foundation
import Testing
@testable import Catalog
import ModelStore

/// The catalog's id, writers, and manifest generations (migration 3).
final class NeighbourCases: @unchecked Sendable {
    let place: CatalogPlace
    var dir: String { (place.location as NSString).deletingLastPathComponent }

    init(_ backend: Backend) throws { place = try CatalogPlace(backend) }

    func open() throws -> Catalog { try place.open() }
    func open(_ name: String) throws -> Catalog { try place.other(name) }

    func theCatalogIDIsMadeOnceAndKept() throws {
        let catalog = try open()
        let id = try catalog.catalogID()
        #expect(UUID(uuidString: id) != nil)
        #expect(try catalog.catalogID() == id)
        #expect(try open().catalogID() == id, "kept in the file")
        #expect(try open("other.sqlite").catalogID() != id)
        try catalog.adoptCatalogID("0f1e2d3c-0000-4000-8000-000000000000")
        #expect(try catalog.catalogID() == "0f1e2d3c-0000-4000-8000-000000000000")
    }

    func everyDatasetChangeMovesTheDatasetsManifestGeneration() throws {
        let catalog = try open()
        #expect(try !catalog.datasetsManifestBehind())
        let d = try catalog.insertDataset(name: "qa", format: "jsonl", objectKey: ".datasets/qa.jsonl")
        #expect(try catalog.datasetsManifestBehind())
        let first = try catalog.datasetsSnapshot()
        #expect(try catalog.markDatasetsManifestWritten(generation: first.generation))
        #expect(try !catalog.datasetsManifestBehind())
        for change in [{ try catalog.markDatasetReady(id: d.id, size: 1, sha256: "x", records: 1) },
                       { try catalog.renameDataset(id: d.id, to: "qa2") },
                       { try catalog.deleteDataset(id: d.id) }] as [() throws -> Void] {
            let before = try catalog.datasetsSnapshot().generation
            try change()
            #expect(try catalog.datasetsSnapshot().generation > before)
            #expect(try catalog.datasetsManifestBehind())
            // A manifest of an older generation written late never counts as the newest.
            #expect(try !catalog.markDatasetsManifestWritten(generation: before))
            #expect(try catalog.datasetsManifestBehind(), "still behind: it must be written again")
            #expect(try catalog.markDatasetsManifestWritten(generation: try catalog.datasetsSnapshot().generation))
            #expect(try !catalog.datasetsManifestBehind())
        }
    }

    func aModelSnapshotTakesANewGenerationAndOnlyTheNewestClearsDirty() throws {
        let catalog = try open()
        let m = try catalog.createModel(name: "m")
        _ = try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "m/v1.zip")
        let a = try #require(try catalog.modelSnapshot(id: m.id))
        let b = try #require(try catalog.modelSnapshot(id: m.id))
        #expect(b.generation == a.generation + 1 && b.versions.map(\.name) == ["v1"])
        try catalog.setManifestDirty(modelID: m.id)
        #expect(try !catalog.markManifestWritten(modelID: m.id, generation: a.generation), "a newer snapshot was taken")
        #expect(try !catalog.markManifestWritten(modelID: m.id, generation: b.generation), "marked dirty after the snapshot")
        #expect(try catalog.dirtyManifestModels().map(\.name) == ["m"])
        let c = try #require(try catalog.modelSnapshot(id: m.id))
        #expect(c.dirty && c.generation > b.generation)
        #expect(try catalog.markManifestWritten(modelID: m.id, generation: c.generation))
        #expect(try catalog.dirtyManifestModels().isEmpty)
        #expect(try catalog.modelSnapshot(id: ModelID(999)) == nil)
        // A rename leaves every version entry behind (they name the model): the model is dirty.
        try catalog.transaction { tx in try tx.updateModel(id: m.id, name: "m2") }
        #expect(try catalog.dirtyManifestModels().map(\.name) == ["m2"])
    }

    func aVersionSnapshotTakesANewGenerationOfThatVersion() throws {
        let catalog = try open()
        let m = try catalog.createModel(name: "m")
        let v1 = try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "m/v1.zip")
        let v2 = try catalog.insertVersion(modelID: m.id, name: "v2", format: "zip", objectKey: "m/v2.zip")
        let a = try #require(try catalog.versionSnapshot(id: v1.id))
        #expect(a.model.name == "m" && a.version.objectKey == "m/v1.zip")
        #expect(try catalog.versionEntryGeneration(id: v1.id) == a.generation)
        _ = try catalog.versionSnapshot(id: v2.id)
        #expect(try catalog.versionEntryGeneration(id: v1.id) == a.generation, "another version's snapshot leaves v1's alone")
        let b = try #require(try catalog.versionSnapshot(id: v1.id))
        #expect(b.generation == a.generation + 1)
        try catalog.deleteVersion(id: v1.id)
        #expect(try catalog.versionEntryGeneration(id: v1.id) == nil)
        #expect(try catalog.versionSnapshot(id: v1.id) == nil)
    }

    func writersAreRecordedPerRow() throws {
        let catalog = try open()
        let m = try catalog.createModel(name: "m")
        let v = try catalog.insertVersion(modelID: m.id, name: "v1", format: "zip", objectKey: "m/v1.zip")
        let d = try catalog.insertDataset(name: "qa", format: "csv", objectKey: ".datasets/qa.csv")
        #expect(try catalog.writer(versionID: v.id) == nil && catalog.writer(datasetID: d.id) == nil)
        try catalog.setWriter(versionID: v.id, "host 1 2")
        try catalog.setWriter(datasetID: d.id, "host 3 4")
        #expect(try catalog.writer(versionID: v.id) == "host 1 2" && catalog.writer(datasetID: d.id) == "host 3 4")
    }

    func aCatalogFromBeforeWithDatasetsHasItsDatasetsManifestBehind() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/old.sqlite"
        let old = try SQLiteEngine(path: path)
        try old.write { db in
            for script in Migrations.all.prefix(2) { try db.executeScript(script) }
            try db.execute("PRAGMA user_version = 2")
            try db.execute("""
                INSERT INTO datasets (name, format, object_key, status, created, modified) VALUES ('qa', 'csv', '.datasets/qa.csv', 'ready', 0, 0)
                """)
        }
        let catalog = try Catalog(path: path)
        #expect(try catalog.schemaVersion == Migrations.all.count)
        #expect(try catalog.datasetsManifestBehind(), "the first mount or gc writes the datasets manifest")
    }
}

@Suite struct NeighbourCatalogConformance {
    @Test(arguments: Backend.all) func theCatalogIDIsMadeOnceAndKept(_ backend: Backend) throws { try NeighbourCases(backend).theCatalogIDIsMadeOnceAndKept() }
    @Test(arguments: Backend.all) func everyDatasetChangeMovesTheDatasetsManifestGeneration(_ backend: Backend) throws { try NeighbourCases(backend).everyDatasetChangeMovesTheDatasetsManifestGeneration() }
    @Test(arguments: Backend.all) func aModelSnapshotTakesANewGenerationAndOnlyTheNewestClearsDirty(_ backend: Backend) throws { try NeighbourCases(backend).aModelSnapshotTakesANewGenerationAndOnlyTheNewestClearsDirty() }
    @Test(arguments: Backend.all) func aVersionSnapshotTakesANewGenerationOfThatVersion(_ backend: Backend) throws { try NeighbourCases(backend).aVersionSnapshotTakesANewGenerationOfThatVersion() }
    @Test(arguments: Backend.all) func writersAreRecordedPerRow(_ backend: Backend) throws { try NeighbourCases(backend).writersAreRecordedPerRow() }
    @Test(arguments: [Backend.sqlite]) func aCatalogFromBeforeWithDatasetsHasItsDatasetsManifestBehind(_ backend: Backend) throws { try NeighbourCases(backend).aCatalogFromBeforeWithDatasetsHasItsDatasetsManifestBehind() }
}
