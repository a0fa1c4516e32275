// libFuzzer: the tar index (ustar, pax records, GNU long names, base-256 sizes).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTar(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = input(data, size)
    guard let index = try? TarReader.index(source) else { return 0 }
    checkIndex(index, source)
    for m in index.members where !m.isDirectory { precondition(m.dataOffset != nil, "a tar member is a byte range") }
    return 0
}
