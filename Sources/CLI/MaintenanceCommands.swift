import ArgumentParser
import Catalog
import Foundation
import ModelStore
import Registry

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-read ready versions from object storage and check their size and sha256 against the catalog.")

    @Argument(help: "Only this model.") var model: String?
    @Argument(help: "Only this version.") var version: String?
    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let name = version.map { (try? Formats.splitVersion($0).name) ?? $0 }
            let results = try registry.verify(model: model, version: name)
            for r in results { print("\(r.ok ? "ok  " : "BAD ") \(r.name): \(r.detail)") }
            let bad = results.filter { !$0.ok }.count
            print("\(results.count) verified, \(bad) bad")
            if bad > 0 { throw ExitCode(1) }
        }
    }
}

struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Rebuild the SQLite catalog from the manifests in the bucket, into an empty data dir.")

    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let lock = try DataDirLock.acquire(dataDir: store.resolvedDataDir, holder: "recover", refused: { holder in
                "recover is refused while \(holder) uses the data dir \(store.resolvedDataDir): unmount it first"
            })
            defer { withExtendedLifetime(lock) {} }
            // An empty catalog takes over the id the bucket records: it is the same store.
            let registry = try store.openRegistry(adopt: true)
            let (models, versions, datasets, problems) = try registry.recoverFromManifests()
            for p in problems { print("problem: \(p)") }
            let stats = try registry.stats()
            print("recovered \(models) models, \(versions) versions (\(stats.readyVersions) ready, \(stats.bytes) bytes) and \(datasets) datasets into \(registry.catalog.location)")
        }
    }
}
