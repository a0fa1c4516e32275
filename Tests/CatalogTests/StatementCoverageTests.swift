import Foundation
import Testing
@testable import Catalog
import ModelStore

/// Every statement the catalog's source runs is run by the conformance suite on every engine: a
/// statement only SQLite ever runs is how "could not determine data type of parameter $2" (a
/// model's delete and rename on PostgreSQL) went unseen. Each engine records the call site
/// (file and line) of every statement it runs (``SQLSites``); this runs every conformance case
/// on each engine and compares the sites reached with the sites found in the source.
@Suite struct StatementCoverage {
    /// Each conformance case, with the engines it runs on.
    static func cases() -> [(name: String, sqliteOnly: Bool, run: (Backend) throws -> Set<SQLSite>)] {
        func c(_ name: String, sqliteOnly: Bool = false, _ body: @escaping (CatalogCases) throws -> Void)
            -> (String, Bool, (Backend) throws -> Set<SQLSite>) {
            (name, sqliteOnly, { backend in let cases = try CatalogCases(backend); try body(cases); return cases.place.reached })
        }
        func n(_ name: String, sqliteOnly: Bool = false, _ body: @escaping (NeighbourCases) throws -> Void)
            -> (String, Bool, (Backend) throws -> Set<SQLSite>) {
            (name, sqliteOnly, { backend in let cases = try NeighbourCases(backend); try body(cases); return cases.place.reached })
        }
        return [
            c("migrations") { try $0.migrationsSetUserVersionAndReopeningIsANoOp() },
            c("newer") { try $0.refusesACatalogFromANewerModelfs() },
            c("wal", sqliteOnly: true) { try $0.usesWALAndForeignKeys() },
            c("integrity") { try $0.integrityCheckIsOK() },
            c("create") { try $0.createModelAndDuplicate() },
            c("rows") { try $0.insertedRowsEqualTheirStoredRows() },
            c("filter") { try $0.modelsFilteredByTypeAndSearch() },
            c("search") { try $0.searchFoldsCaseBeyondASCII() },
            c("updateModel") { try $0.updateModelRenameTypeNoteAndClash() },
            c("deleteModel") { try $0.deleteModelCascadesToVersionsUploadsAndParts() },
            c("duplicate") { try $0.insertVersionDuplicateNameUnderAnyExtension() },
            c("keys") { try $0.objectKeysAreUnique() },
            c("ready") { try $0.markVersionReadyDropsTheUploadRecord() },
            c("failed") { try $0.markVersionFailedAbortedOrStillOpen() },
            c("uploads") { try $0.recordUploadAndParts() },
            c("updateVersion") { try $0.updateVersionRenameNoteAndClash() },
            c("dirty") { try $0.manifestDirtyFlag() },
            c("aliases") { try $0.aliasesMoveInOneStatementAndGoWithTheirModel() },
            c("evaluations") { try $0.evaluationsAreOnePerDatasetAndGoWithTheirVersion() },
            c("owners") { try $0.ownersAndTheAuditTrailAreKeptPerRow() },
            c("stats") { try $0.statsCountByTypeAndReadyBytesOnly() },
            c("shared") { try $0.twoCatalogsOnOneFileSeeEachOthersWrites() },
            c("rollback") { try $0.failedWriteRollsBackWholly() },
            c("interleave") { try $0.aCheckAndItsChangeCannotInterleaveWithAnotherConnections() },
            c("pending") { try $0.aDeletedRowsKeyStaysReservedUntilItsObjectIsGone() },
            c("refused") { try $0.aRefusedTransactionChangesNothing() },
            c("jobs") { try $0.jobsMoveOnlyFromTheStatusesGivenAndAreFoundByWhatTheyUse() },
            c("modelRules") { try $0.aModelIsDeletedAndRenamedWithTheRulesTransactionsOnEveryEngine() },
            c("datasets") { try $0.datasetsAreClaimedCompletedFailedRenamedAndDeleted() },
            c("leases") { try $0.leasesRunOutByTheDatabasesClock() },
            c("indexes") { try $0.archiveIndexesAndTensorHeadersAreKeptPerObject() },
            c("scratch") { try $0.aScratchFileIsAdoptedOnlyUnderAFreeName() },
            c("purges") { try $0.deletesRecordWhatTheyLeaveInTheCaches() },
            c("purgesKeepSharedBytes") { try $0.aDeleteKeepsTheBytesAnotherRowStillHas() },
            c("services") { try $0.servicesKeepEveryColumnAndAreFoundByTheVersionsTheyHold() },
            c("listings") { try $0.listingsComeAPageAtATimeWithTheirCounts() },
            c("webSessions") { try $0.webSessionsAreSharedEndAtTheirTimeAndTheSecretIsMadeOnce() },
            n("catalogID") { try $0.theCatalogIDIsMadeOnceAndKept() },
            n("datasetsManifest") { try $0.everyDatasetChangeMovesTheDatasetsManifestGeneration() },
            n("modelSnapshot") { try $0.aModelSnapshotTakesANewGenerationAndOnlyTheNewestClearsDirty() },
            n("versionSnapshot") { try $0.aVersionSnapshotTakesANewGenerationOfThatVersion() },
            n("writers") { try $0.writersAreRecordedPerRow() },
        ]
    }

    /// The engines' own statements (their schema version, pragmas, transactions) differ by design.
    static let engineFiles: Set<String> = ["SQLite.swift", "Postgres.swift"]

    /// Statement call sites in Sources/Catalog, as `Catalog/<file>:<line>`: each call of
    /// `execute(`, `query(`, `first(` or `executeScript(` on a connection.
    static func sourceSites() throws -> Set<SQLSite> {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/Catalog")
        let call = try Regex(#"(?:\bdb|\$0|\bc|\bconnection)\.(?:execute|query|first|executeScript)\((?!where:)"#)
        var sites = Set<SQLSite>()
        for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) where file.hasSuffix(".swift") {
            guard !engineFiles.contains(file) else { continue }
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where line.contains(call) && !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                sites.insert(SQLSite(file: "Catalog/" + file, line: UInt(i + 1)))
            }
        }
        return sites
    }

    @Test func everyStatementInTheSourceRunsOnEveryEngine() throws {
        let source = try Self.sourceSites()
        #expect(source.count > 100, "the scan found the statements: \(source.count)")
        for backend in Backend.all {
            var reached = Set<SQLSite>()
            for c in Self.cases() where backend == .sqlite || !c.sqliteOnly {
                reached.formUnion(try c.run(backend))
            }
            let missing = source.subtracting(reached).map(\.description).sorted()
            #expect(missing.isEmpty, "statements no conformance case runs on \(backend.rawValue): \(missing)")
            let unknown = reached.filter { $0.file.hasPrefix("Catalog/") && !Self.engineFiles.contains(String($0.file.dropFirst(8))) }
                .subtracting(source).map(\.description).sorted()
            #expect(unknown.isEmpty, "statements run from sites the scan did not find (fix the scan): \(unknown)")
        }
    }
}
