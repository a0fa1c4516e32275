import ArgumentParser
import Foundation
import Glibc
import ModelStore
import Registry

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Upload a file as a new version of a model (the model is created if missing).")

    @Argument(help: "The file to upload; its extension is the version's format (zip, tar, tar.gz, pth, pt, ckpt, safetensors).")
    var file: String

    @Option(help: "The model.")
    var model: String

    @Option(help: "The version name; default: the model's next version (v1, v2, …).")
    var version: String?

    @Option(help: "The model's type when it is created or changed: text, image or general.")
    var type: String?

    @Option(help: "A note on the version.")
    var note: String = ""

    @Flag(help: "Continue an interrupted import of this file from the parts already uploaded.")
    var resume = false

    @Flag(help: "No progress output.")
    var quiet = false

    @OptionGroup var store: StoreOptions

    func run() throws {
        try reporting {
            let registry = try store.openRegistry()
            let path = URL(fileURLWithPath: file).standardizedFileURL.path
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw CLIError("cannot open \(file): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var st = stat()
            fstat(fd, &st)
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw CLIError("\(file) is not a regular file") }
            let size = Int64(st.st_size)
            let modelType = try type.map { (t) throws(StoreError) in try ModelType(parsing: t) }

            // Work object storage refused earlier (aborts, manifests) is retried first.
            try? registry.retryPending()

            let upload: ItemUpload
            if resume {
                let name: String
                if let version { name = version } else {
                    guard let v = try registry.interruptedVersion(model: model, sourcePath: path) else {
                        throw CLIError("no interrupted import of \(path) into \(model) to resume; give --version")
                    }
                    name = v.name
                }
                upload = try registry.resumeVersion(model: model, version: name, source: (path, size))
            } else {
                let (_, format) = try Formats.splitVersion((path as NSString).lastPathComponent)
                if try registry.catalog.model(named: model) == nil {
                    // Another import may create it meanwhile: that is the model this one wanted.
                    do { try registry.createModel(model, type: modelType ?? .general) } catch {
                        guard (error as? StoreError)?.code == .alreadyExists else { throw error }
                    }
                } else if let modelType {
                    try registry.setModel(model, type: modelType)
                }
                upload = try beginVersion(registry, format: format, source: (path, size))
            }

            let progress = Progress(label: upload.item.displayName, total: size, quiet: quiet)
            let chunk = 1 << 20
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
            defer { buffer.deallocate() }
            var done: Int64 = 0
            while true {
                let n = read(fd, buffer.baseAddress, chunk)
                if n < 0 {
                    if errno == EINTR { continue }
                    let reason = "reading \(file): \(String(cString: strerror(errno)))"
                    upload.abort(reason: reason)
                    throw CLIError(reason)
                }
                if n == 0 { break }
                try upload.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                done += Int64(n)
                progress.update(done)
            }
            if done != size {
                upload.abort(reason: "\(file) changed size while it was read")
                throw CLIError("\(file) changed size while it was read")
            }
            let v = try upload.finishVersion()
            progress.finish(done)
            print("\(model)/\(v.fileName) ready: \(v.size) bytes, sha256 \(v.sha256 ?? "")")
        }
    }

    /// The version named by --version (refused if taken), or the model's next one: when another
    /// import takes that name first, the one after it.
    private func beginVersion(_ registry: Registry, format: String, source: (path: String, size: Int64)) throws(StoreError) -> ItemUpload {
        var attempts = 0
        while true {
            let name: String
            if let version { name = version } else { name = try registry.nextVersionName(of: model) }
            do throws(StoreError) {
                return try registry.beginVersion(model: model, fileName: name + "." + format, note: note, source: source)
            } catch where error.code == .alreadyExists && version == nil && attempts < 20 {
                attempts += 1
            }
        }
    }
}
