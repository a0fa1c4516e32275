import ArgumentParser
import Foundation
import ModelStore
import Registry

/// `modelfs compare X v1 v2 …`: versions side by side — what they are, where they came from
/// (parent, dataset, job and its hyper-parameters), their aliases, and every metric measured of
/// them, per dataset.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare", abstract: "Show versions of a model side by side: metrics per dataset, lineage, size, sha256.",
        discussion: "Versions may be named by alias: modelfs compare BERT @production v7")

    @Argument(help: "The model.") var model: String
    @Argument(help: "Versions (v1, v2.safetensors, @production).") var versions: [String]
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    struct Compared: Encodable {
        var name: String; var file: String; var status: UploadStatus; var size: Int64; var sha256: String?
        var created: Date; var lineage: Lineage?; var params: [String: String]?; var aliases: [String]
        var evaluations: [EvaluationRow]
    }

    func run() throws {
        try reporting {
            guard !versions.isEmpty else { throw CLIError("name at least one version: modelfs compare \(model) v1 v2") }
            let registry = try store.openRegistry()
            let m = try registry.model(model)
            let aliases = try registry.aliases(of: m.name)
            var compared: [Compared] = []
            for name in versions {
                let plain = name.hasPrefix("@") ? name : ((try? Formats.splitVersion(name).name) ?? name)
                let v = try registry.resolveVersion(m.name, plain)
                let params = try v.lineage.job.flatMap { try registry.catalog.job(id: JobID($0)) }?.params
                compared.append(Compared(
                    name: v.name, file: v.fileName, status: v.status, size: v.size, sha256: v.sha256, created: v.created,
                    lineage: v.lineage.isEmpty ? nil : v.lineage, params: params,
                    aliases: aliases.filter { $0.version.id == v.id && $0.alias.isNamed }.map(\.alias.name),
                    evaluations: try registry.catalog.evaluations(versionID: v.id).map(EvaluationRow.init)))
            }
            if json {
                struct Out: Encodable { var model: String; var versions: [Compared] }
                return try printJSON(Out(model: m.name, versions: compared))
            }
            printTable([""] + compared.map(\.name), CompareCommand.rows(compared))
        }
    }

    /// One row per fact; a dash where a version has none.
    static func rows(_ c: [Compared]) -> [[String]] {
        func row(_ label: String, _ cell: (Compared) -> String?) -> [String] { [label] + c.map { cell($0) ?? "-" } }
        var out = [
            row("file") { $0.file }, row("status") { $0.status.rawValue }, row("size") { "\($0.size)" },
            row("sha256") { $0.sha256.map { String($0.prefix(16)) } }, row("created") { dateFormat.string(from: $0.created) },
            row("aliases") { $0.aliases.isEmpty ? nil : $0.aliases.joined(separator: " ") },
            row("parent") { $0.lineage?.parentVersion }, row("dataset") { $0.lineage?.dataset }, row("job") { $0.lineage?.job },
        ]
        for key in Set(c.flatMap { ($0.params ?? [:]).keys }).sorted() {
            out.append(row("param " + key) { $0.params?[key].map(Names.printable) })
        }
        // Metrics by dataset, then by name: each row compares like with like.
        let pairs = Set(c.flatMap { v in v.evaluations.flatMap { e in e.metrics.keys.map { "\(e.dataset)\u{0}\($0)" } } }).sorted()
        for pair in pairs {
            let parts = pair.split(separator: "\u{0}", maxSplits: 1).map(String.init)
            out.append(row("\(parts[1]) (\(parts[0]))") { v in
                v.evaluations.first { $0.dataset == parts[0] }?.metrics[parts[1]].map(Evaluation.text)
            })
        }
        return out
    }
}
