import Foundation

/// The index of a tar archive in one pass over its headers (ustar, pax extended headers, GNU
/// long names). Every member is a byte range of the archive.
public enum TarReader {
    static let block = 512
    /// A pax header or GNU long name longer than this is damage, not a name.
    static let maxExtendedHeader = 1 << 20

    public static func index(_ source: some ByteSource) throws(ArchiveError) -> ArchiveIndex {
        var members: [ArchiveMember] = []
        var problems: [String] = []
        var notes: [String] = []
        var at: Int64 = 0
        var longName: [UInt8]?
        var pax: [String: [UInt8]] = [:]
        let size = source.size
        guard size >= Int64(block) else { throw ArchiveError("not a tar archive: \(size) bytes is shorter than one header") }
        var ended = false
        scan: while !ended && at < size {
            guard at + Int64(block) <= size else { notes.append("truncated: the header at \(at) is cut short"); break }
            let header = try ZipReader.read(source, at, block)
            if header.isEmpty { break }  // the end of a stream whose size was not known ahead
            guard header.count == block else { notes.append("truncated at \(at)"); break }
            if header.allSatisfy({ $0 == 0 }) { ended = true; break }
            guard checksumMatches(header) else {
                if members.isEmpty && at == 0 { throw ArchiveError("not a tar archive: the first header's checksum is wrong") }
                problems.append("a damaged header at \(at); the rest of the archive is left out")
                break
            }
            guard let length = number(header, 124, 12), length >= 0, length <= Int64.max / 4 else {
                problems.append("a header at \(at) with an impossible size; the rest is left out")
                break
            }
            let dataStart = at + Int64(block)
            let type = header[156]
            // Where the next header starts: after this entry's data. tar and Python take its
            // length from a pax `size` record when there is one, and give links and directories
            // none whatever their size field says; a view that skipped otherwise would read other
            // headers than they do, and show other bytes under a name.
            var dataLength = length
            if ![UInt8(ascii: "x"), UInt8(ascii: "L"), UInt8(ascii: "g"), UInt8(ascii: "K")].contains(type) {
                if let recorded = pax["size"] {
                    guard let v = Int64(String(decoding: recorded, as: UTF8.self)), v >= 0, v <= Int64.max / 4 else {
                        problems.append("a pax size at \(at) that is not a size; the rest is left out")
                        break
                    }
                    dataLength = v
                }
                let named = pax["path"] ?? longName ?? field(header, 0, 100)
                // A directory of old tars: type NUL and a name ending in `/` (Python's reading).
                if [UInt8(ascii: "1"), UInt8(ascii: "2"), UInt8(ascii: "5")].contains(type) || (type == 0 && named.last == UInt8(ascii: "/")) {
                    dataLength = 0
                }
                if [UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "6")].contains(type) && dataLength > 0 {
                    // GNU tar skips a device's data, Python does not: no one reading of what follows.
                    throw ArchiveError("a device or FIFO entry with \(dataLength) bytes of data at \(at): tar tools disagree on where the next header is")
                }
            }
            let next = dataStart + (dataLength + Int64(block) - 1) / Int64(block) * Int64(block)
            defer { at = next }
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "L"):
                guard dataStart + length <= size else {
                    notes.append("truncated: the extended header at \(at) is cut short")
                    break scan
                }
                guard length <= Int64(maxExtendedHeader) else {
                    problems.append("an extended header of \(length) bytes at \(at), ignored")
                    continue
                }
                let body = try ZipReader.read(source, dataStart, Int(length))
                if type == UInt8(ascii: "L") {
                    longName = Array(body.prefix { $0 != 0 })
                } else {
                    pax = paxRecords(body)
                }
                continue
            case UInt8(ascii: "g"):
                // A global header naming or sizing members: GNU tar applies it to every member after
                // it, Python to the next one only; no one reading of the archive exists.
                guard length <= Int64(maxExtendedHeader), dataStart + length <= size else {
                    throw ArchiveError("a global pax header of \(length) bytes at \(at) that cannot be read")
                }
                let global = paxRecords(try ZipReader.read(source, dataStart, Int(length)))
                if let key = ["path", "size", "linkpath"].first(where: { global[$0] != nil }) {
                    throw ArchiveError("a global pax header at \(at) sets \(key): tar tools disagree on what it applies to")
                }
                continue  // times, comments: nothing a view shows
            case UInt8(ascii: "K"):
                continue  // GNU long link names: links are left out
            default:
                break
            }
            let ustarName = field(header, 0, 100)
            let prefix = header[257..<262].elementsEqual("ustar".utf8) ? field(header, 345, 155) : []
            let entryPax = pax
            // A sparse member (GNU's, in pax records or type S) is stored packed: its bytes are not
            // the file's, so it is left out under its real name.
            let sparse = type == UInt8(ascii: "S") || entryPax.keys.contains { $0.hasPrefix("GNU.sparse.") }
            let rawName = (sparse ? entryPax["GNU.sparse.name"] : nil) ?? entryPax["path"] ?? longName
                ?? (prefix.isEmpty ? ustarName : prefix + [UInt8(ascii: "/")] + ustarName)
            longName = nil
            pax = [:]
            let path: String
            switch MemberPaths.decode(rawName).flatMap(MemberPaths.normalize) {
            case .success(let p): path = p
            case .failure(let e): problems.append(e.reason); continue
            }
            let mode = UInt32(number(header, 100, 8) ?? 0o644) & 0o777
            let modified = entryPax["mtime"].flatMap { Double(String(decoding: $0, as: UTF8.self)) }
                ?? Double(number(header, 136, 12) ?? 0)
            if sparse {
                problems.append("\(MemberPaths.printable(path)): a sparse file (stored packed), left out")
                continue
            }
            let oldDirectory = type == 0 && rawName.last == UInt8(ascii: "/")
            switch type {
            case 0 where !oldDirectory, UInt8(ascii: "0"), UInt8(ascii: "7"):
                // A pax size is the member's (a file over 8 GiB has no other); `dataLength` is it.
                let length = dataLength
                guard dataStart + length <= size else {
                    problems.append("\(MemberPaths.printable(path)): cut short by the end of the archive (\(size - dataStart) of its "
                                    + "\(length) bytes), left out")
                    break scan
                }
                members.append(ArchiveMember(path: path, isDirectory: false, size: length, mode: mode == 0 ? 0o644 : mode,
                                             modified: modified, method: source is GzipStream ? .inflatedStream : .stored,
                                             dataOffset: dataStart, storedSize: length))
            case UInt8(ascii: "5"), 0:
                members.append(ArchiveMember(path: path, isDirectory: true, size: 0, mode: mode == 0 ? 0o755 : mode,
                                             modified: modified, dataOffset: nil, storedSize: 0))
            case UInt8(ascii: "1"): problems.append("\(path): a hard link, left out")
            case UInt8(ascii: "2"): problems.append("\(path): a symbolic link, left out")
            case UInt8(ascii: "3"), UInt8(ascii: "4"): problems.append("\(path): a device, left out")
            case UInt8(ascii: "6"): problems.append("\(path): a FIFO, left out")
            default: problems.append("\(path): an entry of type \(Character(Unicode.Scalar(type))), left out")
            }
        }
        var index = ArchiveIndex(kind: .tar, members: members, problems: problems)
        if !notes.isEmpty { index.notes = notes }
        return index
    }

    /// The header's checksum: the sum of its bytes with the checksum field read as spaces
    /// (signed sums, from old tars, accepted too).
    static func checksumMatches(_ h: [UInt8]) -> Bool {
        guard let stored = number(h, 148, 8) else { return false }
        var unsigned = 0, signed = 0
        for (i, b) in h.enumerated() {
            let v = (148..<156).contains(i) ? 32 : Int(b)
            unsigned += v
            signed += (148..<156).contains(i) ? 32 : Int(Int8(bitPattern: b))
        }
        return Int64(unsigned) == stored || Int64(signed) == stored
    }

    /// An octal field (NUL or space terminated), or GNU's base-256 for large values.
    static func number(_ h: [UInt8], _ at: Int, _ length: Int) -> Int64? {
        let field = h[at..<(at + length)]
        if let first = field.first, first & 0x80 != 0 {
            guard first & 0x40 == 0 else { return nil }  // negative
            var v: Int64 = Int64(first & 0x3f)
            for b in field.dropFirst() {
                guard v < Int64.max >> 8 else { return nil }
                v = v << 8 | Int64(b)
            }
            return v
        }
        var v: Int64 = 0
        var digits = 0
        for b in field {
            if b == 0 || b == 32 { if digits > 0 { break } else { continue } }
            guard (48...55).contains(b), v < Int64.max >> 3 else { return nil }
            v = v << 3 | Int64(b - 48)
            digits += 1
        }
        return v
    }

    /// A NUL-terminated field's bytes.
    static func field(_ h: [UInt8], _ at: Int, _ length: Int) -> [UInt8] { Array(h[at..<(at + length)].prefix { $0 != 0 }) }

    /// `"<length> <key>=<value>\n"` records; values as bytes (a name's are checked as a name's).
    static func paxRecords(_ body: [UInt8]) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        var i = 0
        while i < body.count {
            guard let space = body[i...].firstIndex(of: 32),
                  // "LEN KEY=VALUE\n": at least the length's digits, the space and the newline.
                  let length = Int(String(decoding: body[i..<space], as: UTF8.self)), length >= space - i + 2,
                  i + length <= body.count
            else { break }
            let record = body[(space + 1)..<(i + length - 1)]  // without the newline
            if let eq = record.firstIndex(of: UInt8(ascii: "=")) {
                out[String(decoding: record[record.startIndex..<eq], as: UTF8.self)] = Array(record[(eq + 1)...])
            }
            i += length
        }
        return out
    }
}
