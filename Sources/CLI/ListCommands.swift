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

let dateFormat: DateFormatter = {
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
        var owner: String; var uid: UInt32?; var gid: UInt32?; var mode: String?
    }

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let filter = try type.map { (t) throws(StoreError) in try ModelType(parsing: t) }
            let rows = try registry.catalog.modelSummaries(type: filter, search: search).items.map { s in
                let m = s.model
                return Row(name: m.name, type: m.type, note: m.note, versions: s.versions, bytes: s.readyBytes, created: m.created, modified: m.modified,
                           owner: ownerText(m.owner), uid: m.owner?.uid, gid: m.owner?.gid, mode: m.owner.map { String($0.mode, radix: 8) })
            }
            if json { return try printJSON(rows) }
            printTable(["NAME", "TYPE", "OWNER", "MODE", "VERSIONS", "SIZE", "MODIFIED", "NOTE"],
                       rows.map { [$0.name, $0.type.rawValue, $0.owner, $0.mode ?? "-", "\($0.versions)", Progress.bytes($0.bytes),
                                   dateFormat.string(from: $0.modified), Names.printable($0.note)] })
        }
    }
}

/// `alice:ml` (numbers when the names are unknown); `-` for a row from before owners.
func ownerText(_ o: Ownership?) -> String {
    guard let o else { return "-" }
    return "\(userName(o.uid)):\(groupName(o.gid))"
}

func userName(_ uid: UInt32) -> String {
    guard let pw = getpwuid(uid), let name = pw.pointee.pw_name else { return "\(uid)" }
    return String(cString: name)
}

func groupName(_ gid: UInt32) -> String {
    guard let gr = getgrgid(gid), let name = gr.pointee.gr_name else { return "\(gid)" }
    return String(cString: name)
}

struct VersionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "versions", abstract: "List a model's versions.",
        discussion: "--sort metric:accuracy orders them by what their latest evaluation (or the one on --dataset) measured; versions without that metric come last.")

    @Argument(help: "The model.") var model: String
    @Option(help: "Order: name (default), created, size, or metric:NAME.") var sort: String = "name"
    @Flag(help: "Reverse the order (metric:accuracy --reverse: the best first).") var reverse = false
    @Option(help: "The dataset whose evaluation gives the metrics (default: each version's latest).") var dataset: String?
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    struct Row: Encodable {
        var name: String; var file: String; var format: String; var size: Int64; var sha256: String?; var status: UploadStatus
        var error: String?; var note: String; var key: String; var lineage: Lineage?; var created: Date; var modified: Date
        var evaluations: [EvaluationRow]?
    }

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let m = try registry.model(model)
            let evaluations = try registry.catalog.evaluations(modelID: m.id)
            let datasetName = dataset.map { (try? Formats.splitDataset($0).name) ?? $0 }
            func shown(_ v: Version) -> Evaluation? {
                let all = evaluations[v.id] ?? []
                return datasetName.map { d in all.last { $0.dataset == d } } ?? all.last
            }
            var versions = try registry.versions(of: model)
            switch sort {
            case "name": break
            case "created": versions.sort { ($0.created, $0.id) < ($1.created, $1.id) }
            case "size": versions.sort { ($0.size, $0.id) < ($1.size, $1.id) }
            case _ where sort.hasPrefix("metric:"):
                let metric = String(sort.dropFirst("metric:".count))
                try Evaluation.validateName(metric)
                let measured = versions.filter { shown($0)?.metrics[metric] != nil }
                    .sorted { (shown($0)!.metrics[metric]!, $0.id) < (shown($1)!.metrics[metric]!, $1.id) }
                let unmeasured = versions.filter { shown($0)?.metrics[metric] == nil }
                versions = (reverse ? measured.reversed() : measured) + unmeasured
            default: throw CLIError("--sort is name, created, size or metric:NAME, not \(sort)")
            }
            if reverse && !sort.hasPrefix("metric:") { versions.reverse() }
            let rows = versions.map { v in
                Row(name: v.name, file: v.fileName, format: v.format, size: v.size, sha256: v.sha256, status: v.status, error: v.error,
                    note: v.note, key: v.objectKey, lineage: v.lineage.isEmpty ? nil : v.lineage, created: v.created, modified: v.modified,
                    evaluations: evaluations[v.id].map { $0.map(EvaluationRow.init) })
            }
            if json { return try printJSON(rows) }
            printTable(["FILE", "STATUS", "SIZE", "CREATED", "SHA256", "METRICS", "NOTE"],
                       zip(rows, versions).map { r, v in
                           [r.file, r.status.rawValue, "\(r.size)", dateFormat.string(from: r.created), String((r.sha256 ?? "-").prefix(16)),
                            shown(v).map(metricsText) ?? "-", Names.printable(r.error.map { "error: " + $0 } ?? r.note)] })
        }
    }
}

/// `accuracy=0.91 loss=0.27 (qa-test)`.
func metricsText(_ e: Evaluation) -> String {
    e.metrics.sorted { $0.key < $1.key }.map { "\($0.key)=\(Evaluation.text($0.value))" }.joined(separator: " ") + " (\(e.dataset))"
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
