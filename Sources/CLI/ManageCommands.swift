import ArgumentParser
import Catalog
import Foundation
import ModelStore
import Registry

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model", abstract: "Create, change, rename or delete a model.",
                                                    subcommands: [Create.self, Set.self, Rename.self, Remove.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a model.")
        @Argument(help: "The model's name.") var name: String
        @Option(help: "text, image or general.") var type: String = "general"
        @Option(help: "A note.") var note: String = ""
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let registry = try store.openRegistry()
                try registry.createModel(name, type: try ModelType(parsing: type), note: note)
                print("created model \(name)")
            }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Change a model's type or note.")
        @Argument(help: "The model.") var name: String
        @Option(help: "text, image or general.") var type: String?
        @Option(help: "A note.") var note: String?
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                let t = try type.map { (t) throws(StoreError) in try ModelType(parsing: t) }
                _ = try port.setModel(try port.model(called: name).id, type: t, note: note, by: .now)
            }
        }
    }

    struct Rename: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a model (metadata only).")
        @Argument(help: "The model.") var name: String
        @Argument(help: "Its new name.") var newName: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.renameModel(try port.model(called: name).id, to: newName, by: .now)
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a model with all its versions.")
        @Argument(help: "The model.") var name: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.deleteModel(try port.model(called: name).id, by: .now)
                print("deleted model \(name)")
            }
        }
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Delete, rename or annotate a version.",
                                                    subcommands: [Remove.self, Rename.self, Note.self, Next.self])

    static func name(_ s: String) -> String { (try? Formats.splitVersion(s).name) ?? s }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a version (never the last ready one).")
        @Argument(help: "The model.") var model: String
        @Argument(help: "The version (v1 or v1.zip).") var version: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.deleteVersion(try port.version(called: version, of: model).id, by: .now)
                print("deleted \(model)/\(version)")
            }
        }
    }

    struct Rename: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a version within its model (metadata only).")
        @Argument(help: "The model.") var model: String
        @Argument(help: "The version.") var version: String
        @Argument(help: "Its new name.") var newName: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.renameVersion(try port.version(called: version, of: model).id, to: VersionCommand.name(newName), by: .now)
            }
        }
    }

    struct Note: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "note", abstract: "Set a version's note.")
        @Argument(help: "The model.") var model: String
        @Argument(help: "The version.") var version: String
        @Argument(help: "The note.") var note: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.setVersionNote(try port.version(called: version, of: model).id, note: note, by: .now)
            }
        }
    }

    struct Next: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "next", abstract: "Print the suggested next version name.")
        @Argument(help: "The model.") var model: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting { print(try store.openRegistry().nextVersionName(of: model)) }
        }
    }
}

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Abort multipart uploads nothing will finish and rewrite manifests object storage missed.")

    @Option(help: "Also abort multipart uploads the catalog does not know that are older than this many minutes (0: all).")
    var olderThan: Int = 60

    @Flag(help: "Delete objects no version, dataset or manifest owns (older than --older-than); without it they are listed.")
    var deleteOrphans = false

    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            // Deleting objects, or aborting multipart uploads however young, could take a live
            // mount's upload for garbage: refused while a mount holds the data dir.
            let destructive = deleteOrphans || olderThan == 0
            let what = deleteOrphans ? "gc --delete-orphans" : "gc --older-than 0"
            let lock = destructive ? try DataDirLock.acquire(dataDir: store.resolvedDataDir, holder: "gc", refused: { holder in
                "\(what) is refused while \(holder) uses the data dir \(store.resolvedDataDir): it could take a live upload for garbage; unmount first"
            }) : nil
            defer { withExtendedLifetime(lock) {} }
            let (registry, claim) = try store.openStore()
            if deleteOrphans && claim == .claimed {
                throw CLIError("the bucket belonged to no catalog until now (it is this one's from now on): --delete-orphans deletes only in a bucket this catalog already owned; check what `modelfs gc` lists, then run it again")
            }
            let aborted = try registry.retryAbandonedUploads()
            try registry.retryPending()
            let known = Swift.Set(try registry.catalog.uploads().map(\.uploadID))
            var orphans = 0
            let cutoff = Date().addingTimeInterval(-Double(olderThan) * 60)
            do {
                for upload in try registry.objects.listMultipartUploads(prefix: "") where !known.contains(upload.uploadID) {
                    guard olderThan == 0 || (upload.initiated ?? .distantPast) < cutoff else { continue }
                    try registry.objects.abortMultipartUpload(upload.key, uploadID: upload.uploadID)
                    orphans += 1
                }
            } catch let e as ObjectStoreError {
                throw e.storeError
            }
            print("aborted \(aborted) failed upload(s) and \(orphans) unknown multipart upload(s)")
            // Objects nothing owns: left by a crash between an object's write and its row. A failed
            // version or dataset vouches for no bytes, so an object under its key (a completion
            // that landed after it was counted failed) is garbage too.
            var owned = Swift.Set<String>()
            for m in try registry.catalog.models() {
                owned.insert(Rules.manifestKey(model: m.name))
                for v in try registry.catalog.versions(modelID: m.id) {
                    owned.insert(Rules.versionEntryKey(objectKey: v.objectKey))
                    if v.status != .failed { owned.insert(v.objectKey) }
                }
            }
            for d in try registry.catalog.datasets() where d.status != .failed { owned.insert(d.objectKey) }
            owned.formUnion([Rules.datasetsManifestKey, Rules.ownerKey])
            if deleteOrphans {
                // Checked again just before deleting: never in a bucket another catalog owns.
                guard try registry.bucketOwner()?.catalog == registry.catalog.catalogID() else {
                    throw CLIError("the bucket no longer records this catalog as its owner: nothing deleted")
                }
            }
            var found = 0
            do {
                for object in try registry.objects.list(prefix: "") where !owned.contains(object.key) {
                    guard olderThan == 0 || (object.lastModified ?? .distantPast) < cutoff else { continue }
                    found += 1
                    if deleteOrphans {
                        try registry.objects.delete(object.key)
                        print("deleted orphan \(object.key) (\(object.size) bytes)")
                    } else {
                        print("orphan \(object.key) (\(object.size) bytes)")
                    }
                }
            } catch let e as ObjectStoreError {
                throw e.storeError
            }
            print("\(found) orphan object(s)\(deleteOrphans ? " deleted" : "; --delete-orphans removes them")")
        }
    }
}
