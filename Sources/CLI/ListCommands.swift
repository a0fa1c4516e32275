import ArgumentParser
import Catalog
import Foundation
import ModelStore
import Registry

/// JSON for `--json`: sorted keys, ISO 8601 dates.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Left-aligned columns for people.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    for row in all {
        let cells = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  "))
    }
}

private let dateFormat: DateFormatter = {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    f.locale = Locale(identifier: "en_US_POSIX")
    return f
}()

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List models, by type or by a part of their name.")

    @Option(help: "Only models of this type: text, image or general.") var type: String?
    @Option(help: "Only models whose name contains this (case-insensitive).") var search: String?
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    struct Row: Encodable {
        var name: String; var type: ModelType; var note: String; var versions: Int; var bytes: Int64; var created: Date; var modified: Date
    }

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let filter = try type.map { (t) throws(StoreError) in try ModelType(parsing: t) }
            let rows = try registry.catalog.models(type: filter, search: search).map { m in
                let versions = try registry.catalog.versions(modelID: m.id)
                return Row(name: m.name, type: m.type, note: m.note, versions: versions.count,
                           bytes: versions.filter { $0.status == .ready }.reduce(0) { $0 + $1.size }, created: m.created, modified: m.modified)
            }
            if json { return try printJSON(rows) }
            printTable(["NAME", "TYPE", "VERSIONS", "SIZE", "MODIFIED", "NOTE"],
                       rows.map { [$0.name, $0.type.rawValue, "\($0.versions)", Progress.bytes($0.bytes), dateFormat.string(from: $0.modified), Names.printable($0.note)] })
        }
    }
}

struct VersionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "versions", abstract: "List a model's versions.")

    @Argument(help: "The model.") var model: String
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    struct Row: Encodable {
        var name: String; var file: String; var format: String; var size: Int64; var sha256: String?; var status: UploadStatus
        var error: String?; var note: String; var key: String; var lineage: Lineage?; var created: Date; var modified: Date
    }

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let rows = try registry.versions(of: model).map {
                Row(name: $0.name, file: $0.fileName, format: $0.format, size: $0.size, sha256: $0.sha256, status: $0.status, error: $0.error,
                    note: $0.note, key: $0.objectKey, lineage: $0.lineage.isEmpty ? nil : $0.lineage, created: $0.created, modified: $0.modified)
            }
            if json { return try printJSON(rows) }
            printTable(["FILE", "STATUS", "SIZE", "CREATED", "SHA256", "NOTE"],
                       rows.map { [$0.file, $0.status.rawValue, "\($0.size)", dateFormat.string(from: $0.created),
                                   String(($0.sha256 ?? "-").prefix(16)), Names.printable($0.error.map { "error: " + $0 } ?? $0.note)] })
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Counts: models by type, versions, datasets, bytes.")

    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let s = try registry.stats()
            if json { return try printJSON(s) }
            print("models: \(s.models) (text \(s.modelsByType["text"] ?? 0), image \(s.modelsByType["image"] ?? 0), general \(s.modelsByType["general"] ?? 0))")
            print("versions: \(s.versions) (\(s.readyVersions) ready), \(s.bytes) bytes")
            print("datasets: \(s.datasets), \(s.datasetBytes) bytes")
        }
    }
}
