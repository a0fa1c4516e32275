import Foundation
import Testing
import ModelStore
import Jobs

@Suite("JobRequest.parse")
struct JobRequestTests {
    func parse(_ text: String) throws(StoreError) -> JobRequest { try JobRequest.parse(bytes(text)) }

    /// The request is refused with EINVAL; returns the message.
    @discardableResult
    func refused(_ raw: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let error = storeError(sourceLocation: sourceLocation) { try JobRequest.parse(raw) }
        // A name too long is ENAMETOOLONG; every other bad request EINVAL.
        #expect(error?.code == .invalidArgument || error?.code == .nameTooLong, "\(error?.message ?? "")", sourceLocation: sourceLocation)
        return error?.message ?? ""
    }

    @discardableResult
    func refused(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        refused(bytes(text), sourceLocation: sourceLocation)
    }

    @Test func keyValuePairsSeparatedBySpacesAndNewlines() throws {
        let r = try parse("model=BERT-Base-Chinese version=v1\n  dataset=finance-qa\tepochs=3\r\nlr=0.5\n\n")
        #expect(r == JobRequest(model: "BERT-Base-Chinese", version: "v1", dataset: "finance-qa", name: nil,
                                params: ["epochs": "3", "lr": "0.5"]))
    }

    @Test func quotedValuesKeepTheirSpaces() throws {
        let r = try parse(#"model=m version=v1 dataset=d note="two words" name="my job" empty="""#)
        #expect(r.params == ["note": "two words", "empty": ""])
        #expect(r.name == "my job")
        // A quoted whole token works too.
        #expect(try parse(#""model=a b" version=v1 dataset=d"#).model == "a b")
    }

    @Test func valuesMayContainEqualsSigns() throws {
        #expect(try parse("model=m version=v1 dataset=d expr=a=b").params == ["expr": "a=b"])
    }

    @Test func jsonObjectWithStringsAndNumbers() throws {
        let r = try parse(#"  {"model": "m", "version": "v1.safetensors", "dataset": "qa", "name": "j1", "epochs": 3, "lr": 0.5, "tag": "x y"}  "#)
        #expect(r == JobRequest(model: "m", version: "v1.safetensors", dataset: "qa", name: "j1",
                                params: ["epochs": "3", "lr": "0.5", "tag": "x y"]))
    }

    @Test func jsonRefusesNonScalarValuesAndIncompleteObjects() {
        #expect(refused(#"{"model": "m", "version": "v1", "dataset": "d", "opts": {"a": 1}}"#).contains("opts"))
        #expect(refused(#"{"model": "m", "version": "v1", "dataset": "d", "list": [1, 2]}"#).contains("list"))
        #expect(refused(#"{"model": "m", "version": "v1", "dataset": "d", "nothing": null}"#).contains("nothing"))
        refused(#"{"model": "m", "version": "v1", "dataset": "d""#)
        refused(#"{"model": "m"} trailing=1"#)
    }

    @Test(arguments: ["model", "version", "dataset"])
    func missingRequiredKeyIsNamed(_ key: String) {
        var fields = ["model": "model=m", "version": "version=v1", "dataset": "dataset=d"]
        fields[key] = nil
        let text = fields.values.sorted().joined(separator: " ") + " epochs=3"
        #expect(refused(text).contains(key))
        // An empty value is as good as none.
        fields[key] = "\(key)="
        #expect(refused(fields.values.sorted().joined(separator: " ")).contains(key))
        // Same in JSON.
        var object: [String: String] = ["model": "m", "version": "v1", "dataset": "d"]
        object[key] = nil
        let json = String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        #expect(refused(json).contains(key))
    }

    @Test func duplicateKeyIsRefused() {
        #expect(refused("model=m version=v1 dataset=d epochs=3 epochs=4").contains("epochs"))
        #expect(refused("model=m model=n version=v1 dataset=d").contains("model"))
    }

    /// `a-b`, `a_b` and `A_B` would all be MODELFS_PARAM_A_B: refused, naming both.
    @Test(arguments: ["a-b=1 a_b=2", "a_b=1 A_B=2", "x.y=1 x-y=2"])
    func keysThatWouldShareAVariableAreRefused(pairs: String) {
        let reason = refused("model=m version=v1 dataset=d " + pairs)
        let keys = pairs.split(separator: " ").map { String($0.split(separator: "=")[0]) }
        #expect(keys.allSatisfy { reason.contains($0) } && reason.contains("MODELFS_PARAM_"), "\(reason)")
    }

    /// JSON parsers keep one of two equal keys; the request is taken with one value, never both.
    @Test func duplicateKeyInJSONKeepsOneValue() throws {
        let r = try JobRequest.parse(Array(#"{"model": "m", "version": "v1", "dataset": "d", "epochs": 3, "epochs": 4}"#.utf8))
        #expect(r.params["epochs"] == "3" || r.params["epochs"] == "4")
        #expect(r.params.count == 1)
    }

    @Test(arguments: ["ep$chs=3", "e p=3", "épochs=3", "a/b=1", "a;b=1", "=3", "epochs", "\"\"=1"])
    func badKeyOrTokenIsRefused(_ token: String) {
        refused("model=m version=v1 dataset=d " + token)
    }

    @Test func keysMayUseLettersDigitsUnderscoreDashDot() throws {
        #expect(try parse("model=m version=v1 dataset=d lr_rate=1 warm-up=2 opt.beta1=3 X9=4").params
                == ["lr_rate": "1", "warm-up": "2", "opt.beta1": "3", "X9": "4"])
    }

    @Test func unclosedQuoteIsRefused() {
        #expect(refused(#"model=m version=v1 dataset=d note="two words"#).contains("quote"))
    }

    @Test(arguments: ["", " ", "\n\n", " \t\r\n "])
    func emptyRequestIsRefused(_ text: String) {
        refused(text)
    }

    @Test func sizeLimitIs64KiB() throws {
        let head = "model=m version=v1 dataset=d note="
        let exact = head + String(repeating: "x", count: JobRequest.maxBytes - head.utf8.count)
        #expect(exact.utf8.count == 64 << 10)
        #expect(try parse(exact).params["note"]?.count == JobRequest.maxBytes - head.utf8.count)
        #expect(refused(exact + "x").contains("65536"))
        refused(String(repeating: " ", count: JobRequest.maxBytes + 1))
    }

    @Test func invalidUTF8IsRefused() {
        #expect(refused(bytes("model=m version=v1 dataset=d note=") + [0xFF, 0xFE]).contains("UTF-8"))
        refused([0xC3])
    }

    @Test(arguments: ["name=.x", "name=..", "name=a/b", "name=\"a\u{1}b\"", "name=\"tab\there\"", "name=\"del\u{7F}\"", "name=\"\(String(repeating: "n", count: 201))\""])
    func invalidJobNameIsRefused(_ token: String) {
        #expect(refused("model=m version=v1 dataset=d " + token).contains("job name"))
    }

    @Test func invalidJobNameInJSONIsRefused() {
        #expect(refused(#"{"model": "m", "version": "v1", "dataset": "d", "name": "a\u0001b"}"#).contains("job name"))
        #expect(refused(#"{"model": "m", "version": "v1", "dataset": "d", "name": ".hidden"}"#).contains("job name"))
    }

    @Test func shellMetacharactersInANameAreJustAName() throws {
        let r = try parse(#"model=m version=v1 dataset=d name="x; rm -rf ~" note="$(touch PWNED)""#)
        #expect(r.name == "x; rm -rf ~")
        #expect(r.params == ["note": "$(touch PWNED)"])
        let j = try parse(#"{"model": "m", "version": "v1", "dataset": "d", "name": "x; rm -rf ~ && `id` | $HOME"}"#)
        #expect(j.name == "x; rm -rf ~ && `id` | $HOME")
        #expect(j.params.isEmpty)
    }

    @Test(arguments: JobRequest.reservedNames.sorted())
    func aControlFilesNameIsNoJobName(_ name: String) {
        let message = refused("model=m version=v1 dataset=d name=\(name)")
        #expect(message.contains("job name") && message.contains("control file"), "\(message)")
        #expect(refused(#"{"model": "m", "version": "v1", "dataset": "d", "name": "\#(name)"}"#).contains("control file"))
    }

    @Test func namesThatOnlyResembleControlFilesAreFine() throws {
        #expect(try parse("model=m version=v1 dataset=d name=submit-2").name == "submit-2")
        #expect(try parse("model=m version=v1 dataset=d name=Submit").name == "Submit")
    }

    /// NUL, escapes and newlines in a value would cut it short in the trainer's environment or
    /// forge lines in a log or a listing.
    @Test(arguments: [
        bytes("model=m version=v1 dataset=d note=a") + [0] + bytes("b\n"),
        bytes("model=m\u{1}x version=v1 dataset=d\n"),
        bytes("model=m version=v1 dataset=d note=\"red \u{1B}[31m\"\n"),
        bytes("model=m version=v1 dataset=d note=\"two\nlines\"\n"),
        bytes(#"{"model": "m", "version": "v1", "dataset": "d", "note": "a\u0000b"}"#),
        bytes(#"{"model": "m", "version": "v1\n", "dataset": "d"}"#),
        bytes(#"{"model": "m", "version": "v1", "dataset": "d\u0085"}"#),
    ])
    func controlCharactersInValuesAreRefused(_ raw: [UInt8]) {
        #expect(refused(raw).contains("control character"))
    }
}
