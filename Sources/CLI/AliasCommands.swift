import ArgumentParser
import Foundation
import ModelStore
import Registry

/// `modelfs alias set|rm|list`: the same aliases as `ln -s v3.zip models/X/@production`.
struct AliasCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "alias", abstract: "Name a version of a model (@production), move or remove the name.",
                                                    subcommands: [Set.self, Remove.self, List.self])

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Point an alias at a ready version (making the alias if needed).")
        @Argument(help: "The model.") var model: String
        @Argument(help: "The alias (production or @production).") var alias: String
        @Argument(help: "The version (v3, v3.zip; v3/ for an archive version's view; or another alias).")
        var version: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                let m = try port.model(called: model)
                let (v, view) = try port.aliasTarget(version, of: m)
                let a = try port.setAlias(in: m.id, named: alias, to: v.id, view: view, by: .now)
                print("\(model)/\(a.name) -> \(version.hasSuffix("/") ? version : VersionCommand.name(version))")
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove an alias (the version stays).")
        @Argument(help: "The model.") var model: String
        @Argument(help: "The alias.") var alias: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let port = try store.openPort()
                _ = try port.removeAlias(try port.alias(called: alias, of: try port.model(called: model)).id, by: .now)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "A model's aliases and the versions they point at.")
        @Argument(help: "The model.") var model: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var store: StoreOptions

        struct Row: Codable { var alias: String; var version: String; var file: String; var modified: Date }

        func run() throws {
            try reporting {
                let rows = try store.openRegistry().aliases(of: model).filter { $0.alias.isNamed }.map {
                    Row(alias: $0.alias.name, version: $0.version.name,
                        file: $0.version.linkTarget(view: $0.alias.view), modified: $0.alias.modified)
                }
                if json { try printJSON(rows) } else { for r in rows { print("\(r.alias) -> \(r.file)") } }
            }
        }
    }
}
