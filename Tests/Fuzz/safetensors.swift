// libFuzzer: the safetensors header (its length, the JSON, every tensor's range).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let source = input(data, size)
    guard let header = try? SafetensorsHeader.read(source) else { return 0 }
    var end = header.dataStart
    for t in header.tensors {
        precondition(t.begin >= end && t.end >= t.begin && t.end <= source.size, "tensor ranges in order, inside, not overlapping")
        end = t.end
    }
    precondition(header.parameters >= 0)
    return 0
}
