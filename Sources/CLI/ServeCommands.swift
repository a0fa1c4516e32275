import ArgumentParser
import Foundation
import Glibc
import Jobs
import ModelStore
import Registry

/// Flags that choose how a mount runs services.
struct ServeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The command every service runs, through /bin/sh, as the user who asked, with MODELFS_MODEL_PATH, MODELFS_HOST and MODELFS_PORT (env MODELFS_SERVE_COMMAND).", valueName: "cmd"))
    var serveCommand: String?

    @Option(help: "The path asked of a server until it answers 200: then it is ready.")
    var serveHealth = ProcessInfo.processInfo.environment["MODELFS_SERVE_HEALTH"] ?? "/health"

    @Option(help: "Seconds a server has to become ready before it is failed.")
    var serveTimeout = Double(ProcessInfo.processInfo.environment["MODELFS_SERVE_TIMEOUT"] ?? "") ?? 120

    @Option(help: "Seconds the old server keeps serving after a service following an alias switched to the new one.")
    var serveDrain = 3.0

    func runner(_ registry: Registry, executor: any JobExecutor, dataDir: String, mountpoint: String) -> ServiceRunner {
        var configuration = ServiceRunner.Configuration(directory: dataDir + "/services",
                                                        command: serveCommand ?? ProcessInfo.processInfo.environment["MODELFS_SERVE_COMMAND"])
        configuration.healthPath = serveHealth.hasPrefix("/") ? serveHealth : "/" + serveHealth
        configuration.timeout = max(1, serveTimeout)
        configuration.drain = max(0, serveDrain)
        configuration.mountpoint = mountpoint
        return ServiceRunner(registry: registry, executor: executor, configuration: configuration, logger: Log.logger)
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Inference services on model versions: start, stop, restart, list, logs.",
        discussion: "A mount of the store with --serve-command runs them; see docs/SERVING.md.",
        subcommands: [Start.self, Stop.self, Restart.self, List.self, Logs.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a service on a version, or on an alias (@production) that it then follows.")
        @Option(help: "The model.") var model: String
        @Option(help: "The version (v1) or an alias (@production).") var version: String
        @Option(help: "The service's name (default <model>-<version>-<n>).") var name: String?
        @Flag(help: "Wait until the service is ready (or failed), then print its endpoint.") var wait = false
        @Argument(help: "Parameters as KEY=VALUE (the command sees MODELFS_PARAM_KEY).") var params: [String] = []
        @OptionGroup var store: StoreOptions

        func run() throws {
            try reporting {
                let registry = try store.openRegistry()
                var fields = ["model": model, "version": version]
                if let name { fields["name"] = name }
                // The same checks as services/submit: the request goes through ServiceRequest.parse.
                let request = try ServiceRequest.parse(try requestBytes(fields, params))
                let who = Actor.process
                let s = try registry.startService(request, executor: "local", owner: JobOwner(uid: who.uid, gid: who.gid),
                                                  requester: who.requester)
                print(s.id.rawValue)
                guard wait else { return }
                while true {
                    guard let now = try registry.service(named: s.id) else { throw CLIError("service \(s.id) is gone") }
                    switch now.status {
                    case .ready: print(now.endpoint ?? ""); return
                    case .failed, .stopped: throw CLIError("service \(s.id) \(now.status.rawValue)\(now.reason.map { ": " + $0 } ?? "")")
                    default: usleep(50_000)
                    }
                }
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a service (its owner or root).")
        @Argument(help: "The service.") var name: String
        @OptionGroup var store: StoreOptions
        func run() throws {
            try reporting {
                let s = try store.openRegistry().stopService(ServiceID(name), requester: Actor.process.requester)
                print("service \(s.id) \(s.status.rawValue)")
            }
        }
    }

    struct Restart: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a service again (its owner or root).")
        @Argument(help: "The service.") var name: String
        @OptionGroup var store: StoreOptions
        func run() throws {
            try reporting {
                let s = try store.openRegistry().restartService(ServiceID(name), requester: Actor.process.requester)
                print("service \(s.id) \(s.status.rawValue)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List services.")
        @Flag(help: "One JSON array.") var json = false
        @OptionGroup var store: StoreOptions
        func run() throws {
            try reporting {
                let registry = try store.openRegistry()
                let rows = try registry.services().map { s -> [String: Any] in
                    // Each looked up alone: a stopped service's version may be gone, its model not.
                    let m = (try? registry.model(s.modelID)) ?? nil, v = (try? registry.version(s.versionID)) ?? nil
                    return ["name": s.id.rawValue, "model": m?.name ?? "", "version": v?.fileName ?? "", "alias": s.alias ?? NSNull(),
                            "status": s.status.rawValue, "reason": s.reason ?? NSNull(), "endpoint": s.endpoint ?? NSNull(),
                            "executor": s.executor, "node": s.node ?? NSNull(), "owner": ["uid": s.owner.uid, "gid": s.owner.gid],
                            "created": ISO8601DateFormatter().string(from: s.created)]
                }
                if json {
                    let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                    print(String(decoding: data, as: UTF8.self))
                    return
                }
                print(["NAME", "MODEL", "VERSION", "ALIAS", "STATUS", "ENDPOINT", "OWNER"].joined(separator: "\t"))
                for r in rows {
                    let owner = (r["owner"] as? [String: UInt32])?["uid"].map(String.init) ?? ""
                    print([r["name"], r["model"], r["version"], r["alias"], r["status"], r["endpoint"]]
                        .map { v -> String in (v as? String).map { Names.printable($0) } ?? "-" }.joined(separator: "\t") + "\t" + owner)
                }
            }
        }
    }

    struct Logs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a service's log (on the node that runs it).")
        @Argument(help: "The service.") var name: String
        @OptionGroup var store: StoreOptions
        func run() throws {
            try reporting {
                let registry = try store.openRegistry()
                guard try registry.service(named: ServiceID(name)) != nil else { throw CLIError("no service \(name)") }
                let path = store.resolvedDataDir + "/services/" + name + "/log"
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw CLIError("no log of service \(name) here: it is on the node that runs it")
                }
                FileHandle.standardOutput.write(data)
            }
        }
    }
}
