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

    func run() throws {
        try reporting {
            guard !versions.isEmpty else { throw CLIError("name at least one version: modelfs compare \(model) v1 v2") }
            let comparison = try store.openRegistry().compare(model, versions)
            if json { return try printJSON(comparison) }
            printTable([""] + comparison.versions.map(\.name), CompareCommand.rows(comparison.versions))
        }
    }

    /// One row per fact; a dash where a version has none.
    static func rows(_ c: [Comparison.Compared]) -> [[String]] {
        func row(_ label: String, _ cell: (Comparison.Compared) -> String?) -> [String] { [label] + c.map { cell($0) ?? "-" } }
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
