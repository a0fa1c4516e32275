import ArgumentParser
import Catalog
import Foundation
import ModelStore

/// `modelfs log [MODEL]`: the audit trail — who created, deleted, renamed, re-aliased,
/// evaluated or re-shared what, and when.
struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log", abstract: "Who changed what, and when: the audit trail of the store, or of one model.")

    @Argument(help: "Only this model's lines.") var model: String?
    @Flag(help: "JSON output.") var json = false
    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let entries = try registry.catalog.audit(model: model)
            if json { return try printJSON(entries) }
            printTable(["WHEN", "USER", "PID", "ACTION", "MODEL", "TARGET", "DETAIL"],
                       entries.map { [dateFormat.string(from: $0.at), userName($0.uid), $0.pid.map(String.init) ?? "-", $0.action,
                                      Names.printable($0.model ?? "-"), Names.printable($0.target ?? "-"), Names.printable($0.detail)] })
        }
    }
}
