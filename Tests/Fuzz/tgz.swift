// libFuzzer: the .tar.gz index (gzip framing, inflate with access points, the tar inside), then
// a member read back from the nearest access point.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTgz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = input(data, size)
    guard let index = try? GzipTarReader.index(source) else { return 0 }
    checkIndex(index, FuzzBytes(bytes: []), inflatedSize: index.inflatedSize ?? 0)
    for point in index.points ?? [] {
        precondition(point.compressed >= 0 && point.compressed <= source.size && (0...7).contains(point.bits))
        // Every point restarts inflating.
        guard let restart = try? Inflate(name: "fuzz", restoring: point, from: source) else { continue }
        restart.gzipMembers = true  // as a member's reader restores it: on through later gzip members
        var out: [UInt8] = []
        try? restart.inflate(upTo: 4096, from: source, appendingTo: &out)
    }
    return 0
}
