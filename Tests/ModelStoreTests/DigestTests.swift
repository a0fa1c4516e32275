import Testing
@testable import ModelStore

@Suite struct DigestTests {
    @Test func sha256KnownVectors() {
        #expect(Digest.hex(Digest.sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Digest.hex(Digest.sha256([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Digest.hex(Digest.sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Digest.hex(Digest.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Digest.hex(Digest.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func hmacSHA256RFC4231Case2() {
        let mac = Digest.hmacSHA256(key: Array("Jefe".utf8), "what do ya want for nothing?")
        #expect(Digest.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func hmacSHA256RFC4231Case1() {
        let mac = Digest.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), "Hi There")
        #expect(Digest.hex(mac) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    }

    @Test func md5KnownVectors() {
        #expect(Digest.hex(Digest.md5([UInt8]())) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Digest.hex(Digest.md5(Array("abc".utf8))) == "900150983cd24fb0d6963f7d28e17f72")
    }

    @Test func hex() {
        #expect(Digest.hex([]) == "")
        #expect(Digest.hex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
    }

    static func pseudoRandom(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    @Test(arguments: [[1], [7, 1 << 20, 3], [64, 64, 64], [100_000], [0, 5, 0, 99_995]])
    func streamingEqualsOneShot(_ chunks: [Int]) {
        let data = Self.pseudoRandom(chunks.reduce(0, +))
        let h = SHA256Hasher()
        var offset = 0
        for size in chunks {
            h.update(Array(data[offset..<offset + size]))
            offset += size
        }
        #expect(h.finalize() == Digest.sha256(data))
    }

    @Test func streamingMixedInputKinds() {
        let h = SHA256Hasher()
        h.update("ab")
        Array("c".utf8).withUnsafeBytes { h.update($0) }
        h.update([UInt8]())
        #expect(Digest.hex(h.finalize()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Substrings go through the StringProtocol overload.
        #expect(Digest.sha256("xabcx".dropFirst().dropLast()) == Digest.sha256("abc"))
    }
}

@Suite struct StoreErrorTests {
    /// Exhaustive on purpose: a new case fails to compile here until it gets an errno and tests.
    static func errno(_ code: StoreError.Code) -> String {
        switch code {
        case .invalidArgument: "EINVAL"
        case .alreadyExists: "EEXIST"
        case .notFound: "ENOENT"
        case .notPermitted: "EPERM"
        case .busy: "EBUSY"
        case .notReady: "EAGAIN"
        case .crossDevice: "EXDEV"
        case .readOnly: "EROFS"
        case .io: "EIO"
        case .noSpace: "ENOSPC"
        case .notSupported: "ENOTSUP"
        case .noAttribute: "ENODATA"
        case .accessDenied: "EACCES"
        case .isDirectory: "EISDIR"
        case .notDirectory: "ENOTDIR"
        case .badDescriptor: "EBADF"
        case .nameTooLong: "ENAMETOOLONG"
        case .fileTooBig: "EFBIG"
        case .stale: "ESTALE"
        }
    }

    @Test func everyCodeIsListedWithDistinctRawValueAndErrno() {
        let all = StoreError.Code.allCases
        #expect(all.count == 19, "a new StoreError.Code needs an errno mapping and tests")
        #expect(Set(all.map(\.rawValue)).count == all.count)
        #expect(Set(all.map(Self.errno)).count == all.count)
        for code in all { #expect(StoreError.Code(rawValue: code.rawValue) == code) }
    }

    @Test(arguments: StoreError.Code.allCases)
    func errorCarriesCodeAndMessage(_ code: StoreError.Code) {
        let e = StoreError(code, "because \(code.rawValue)")
        #expect(e.code == code)
        #expect(e.description == "because \(code.rawValue)")
        #expect(e == StoreError(code, "because \(code.rawValue)"))
    }

    @Test func shorthands() {
        #expect(StoreError.invalid("x").code == .invalidArgument)
        #expect(StoreError.exists("x").code == .alreadyExists)
        #expect(StoreError.notFound("x").code == .notFound)
        #expect(StoreError.io("x").code == .io)
    }

    @Test func objectStoreErrorsMapToStoreErrors() {
        #expect(ObjectStoreError.notFound(key: "k").storeError.code == .notFound)
        #expect(ObjectStoreError.noSpace("disk").storeError.code == .noSpace)
        #expect(ObjectStoreError.server(status: 500, code: "InternalError", message: "").storeError.code == .io)
        #expect(ObjectStoreError.unreachable("down").storeError.code == .io)
        #expect(ObjectStoreError.other("x").storeError.code == .io)
        #expect(ObjectStoreError.server(status: 503, code: "SlowDown", message: "m").description.contains("503 SlowDown"))
    }
}
