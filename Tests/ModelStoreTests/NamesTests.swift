import Testing
@testable import ModelStore

/// Asserts that `body` throws a ``StoreError`` with `code`.
func expectStoreError<R>(_ code: StoreError.Code, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> R) {
    let error = #expect(throws: StoreError.self, comment, sourceLocation: sourceLocation) { _ = try body() }
    if let error { #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation) }
}

@Suite struct NamesTests {
    static let valid: [String] = [
        "BERT-Base-Chinese",
        "千问-7B",
        "my model + 100% ? # & v2",
        "v1_base",
        "a",
        String(repeating: "a", count: 200),
        String(repeating: "千", count: 66) + "ab",   // 198 + 2 = exactly 200 bytes of UTF-8
    ]

    @Test(arguments: valid)
    func acceptsValidNames(_ name: String) throws {
        try Names.validate(name)
        #expect(try Names.decode(Array(name.utf8)) == name)
    }

    static let invalid: [String] = [
        "",
        ".hidden",
        ".",
        "..",
        String(repeating: "a", count: 201),
        String(repeating: "千", count: 67),            // 201 bytes though only 67 characters
        "/",
        "a/b",
        "a\u{0}b",
        "a\u{1}b",
        "tab\there",
        "new\nline",
        "a\u{7f}b",
        "a\u{85}b",                                   // C1 control (NEL)
        "a\u{9f}b",
    ]

    @Test(arguments: invalid)
    func refusesInvalidNames(_ name: String) {
        let code: StoreError.Code = name.utf8.count > Names.maxBytes ? .nameTooLong : .invalidArgument
        expectStoreError(code) { try Names.validate(name) }
        expectStoreError(code) { try Names.decode(Array(name.utf8)) }
    }

    @Test func messageNamesWhatWasChecked() {
        let error = #expect(throws: StoreError.self) { try Names.validate("", what: "model name") }
        #expect(error?.message.contains("model name") == true)
    }

    static let badUTF8: [[UInt8]] = [
        [0xFF],
        [0x61, 0xFE, 0x62],
        [0xC3],                 // truncated two-byte sequence
        [0xC0, 0xAF],           // overlong '/'
        [0xED, 0xA0, 0x80],     // UTF-16 surrogate
        [0xE5, 0x8D],           // truncated '千'
    ]

    @Test(arguments: badUTF8)
    func decodeRefusesInvalidUTF8(_ bytes: [UInt8]) {
        expectStoreError(.invalidArgument) { try Names.decode(bytes) }
    }

    @Test func printableEscapesControlCharacters() {
        let p = Names.printable("a\u{1}b\u{7f}")
        #expect(!p.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f })
        #expect(p.hasPrefix("a") && p.contains("b"))
        #expect(Names.printable("千问 ok") == "千问 ok")
    }

    /// `validate` refuses C1 controls (U+0080–U+009F) too, and quotes the name in its message:
    /// NEL (U+0085) must not reach a log line raw.
    @Test func printableEscapesC1Controls() {
        let error = #expect(throws: StoreError.self) { try Names.validate("evil\u{85}name") }
        do {
            let p = Names.printable("a\u{85}b\u{9b}c")
            #expect(!p.unicodeScalars.contains { (0x80...0x9F).contains($0.value) }, "\(p.unicodeScalars.map { String($0.value, radix: 16) })")
            #expect(error?.message.unicodeScalars.contains { (0x80...0x9F).contains($0.value) } == false)
        }
    }
}

@Suite struct ModelTypeTests {
    @Test(arguments: ModelType.allCases)
    func parsesEachType(_ type: ModelType) throws {
        #expect(try ModelType(parsing: type.rawValue) == type)
    }

    @Test(arguments: ["", "Text", "audio", "general "])
    func refusesOtherValues(_ value: String) {
        expectStoreError(.invalidArgument) { try ModelType(parsing: value) }
    }
}
