// Shared by the libFuzzer entry points (scripts/fuzz compiles each with Sources/Archive).

/// The fuzzer's input as a byte source.
struct FuzzBytes: ByteSource {
    let bytes: [UInt8]
    var size: Int64 { Int64(bytes.count) }
    func read(at offset: Int64, count: Int) throws -> [UInt8] {
        let lower = Int(max(0, min(offset, size))), upper = Int(max(0, min(offset + Int64(max(count, 0)), size)))
        return Array(bytes[lower..<upper])
    }
}

/// What every index must be, whatever the input: names the view can show, each once, every
/// member inside the archive.
func checkIndex(_ index: ArchiveIndex, _ source: FuzzBytes, inflatedSize: Int64? = nil) {
    let limit = inflatedSize ?? source.size
    precondition(Set(index.members.map(\.path)).count == index.members.count, "a path twice")
    let paths = Set(index.members.map(\.path))
    for m in index.members {
        precondition(!m.path.isEmpty && !m.path.hasPrefix("/"), "an absolute or empty path")
        precondition(!m.path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0 == "." || $0.isEmpty })
        precondition(m.parent.isEmpty || paths.contains(m.parent), "a member without its directory")
        precondition(m.size >= 0 && m.storedSize >= 0)
        if let start = m.dataOffset { precondition(start >= 0 && start + m.storedSize <= limit, "data outside the archive") }
    }
    _ = try? ArchiveIndex.decode(index.encoded())
}

func input(_ data: UnsafePointer<UInt8>, _ size: Int) -> FuzzBytes { FuzzBytes(bytes: Array(UnsafeBufferPointer(start: data, count: size))) }
