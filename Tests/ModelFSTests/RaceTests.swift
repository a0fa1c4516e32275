import Foundation
import Glibc
import Testing
import BlobStore
import Catalog
import ModelStore
import ModelFS

/// Two nodes (two ``FileSystem``s on one catalog and one bucket) racing for the same rows. Node
/// one's operation reads what it acts on, then is held at its write transaction's door while node
/// two renames and re-creates; then it goes on. Every round forces the interleaving the issue
/// names, so a test fails every round while an operation acts on "whatever holds the name now".
/// `MODELFS_RACE_ROUNDS=50` for the soak; CI runs a few.
@Suite("Races between two nodes", .serialized)
struct RaceTests {
    final class Nodes: @unchecked Sendable {
        let place: SharedCatalog
        let gated: GatedEngine
        /// The node whose write is held.
        let one: FSEnv
        /// The node that changes the catalog meanwhile.
        let two: FSEnv

        init(_ engine: Engine) throws {
            place = try SharedCatalog(engine)
            let store = MemoryObjectStore()
            gated = GatedEngine(try place.openEngine())
            one = try FSEnv(catalog: try Catalog(engine: gated), store: store)
            two = try FSEnv(catalog: try place.open(), store: store)
        }
    }

    /// Succeeded, or found its row gone (ENOENT): what an operation on a row another node just
    /// changed may answer.
    static func expectDoneOrGone<T>(_ r: Result<T, StoreError>, _ what: String) {
        if case .failure(let e) = r { #expect(e.code == .notFound, "\(what): \(e.message)") }
    }

    /// `rm v1` on node one has found v1 (row A); node two renames it to v1-old and writes a new v1
    /// (row B). The unlink acts on A or finds it gone, never removes B.
    @Test(arguments: Engine.all)
    func unlinkThroughTheOldRowNeverRemovesTheNewName(_ engine: Engine) throws {
        let n = try Nodes(engine)
        for round in 0..<raceRounds() {
            let model = "m\(round)", dir = "models/\(model)"
            let new = pattern(70_000, seed: UInt64(round) + 1000)
            try n.two.mkdir(model)
            try n.two.put(dir + "/keep.pt", pattern(10, seed: 7))  // the last-ready-version rule never decides here
            try n.two.put(dir + "/v1.pt", pattern(50_000, seed: UInt64(round)))
            let parent = try n.one.inode(dir)
            let one = n.one
            let r = try n.gated.race({ try one.fs.unlink(parent: parent, name: bytes("v1.pt")) }) {
                let (p, name) = try n.two.split(dir + "/v1.pt")
                try n.two.fs.rename(parent: p, name: name, newParent: p, newName: bytes("v1-old.pt"))
                try n.two.put(dir + "/v1.pt", new)
            }
            Self.expectDoneOrGone(r, "round \(round): unlink")
            let left = try n.two.names(try n.two.inode(dir))
            #expect(left.contains("v1.pt"), "round \(round): the new v1 is there: \(left)")
            if left.contains("v1.pt") { expectSame(try n.two.readAll(try n.two.inode(dir + "/v1.pt")), new, "round \(round)") }
        }
    }

    /// A writer on node one creates v2 in model `m` (found by its inode); node two renames `m` to
    /// `m-old` and makes a new `m`. The new version lands in the model the writer found (now
    /// `m-old`), or is refused: never in the new `m`.
    @Test(arguments: Engine.all)
    func createInARenamedModelNeverLandsInTheNewOneOfItsName(_ engine: Engine) throws {
        let n = try Nodes(engine)
        for round in 0..<raceRounds() {
            let model = "m\(round)"
            try n.two.mkdir(model)
            let parent = try n.one.inode("models/" + model)
            let one = n.one
            let r = try n.gated.race({ try one.fs.create(parent: parent, name: bytes("v2.pt"), flags: OpenFlags(O_WRONLY | O_CREAT | O_TRUNC),
                                                   pid: FSEnv.writerPid).1.handle }) {
                let (p, name) = try n.two.split("models/" + model)
                try n.two.fs.rename(parent: p, name: name, newParent: p, newName: bytes(model + "-old"))
                try n.two.mkdir(model)
            }
            Self.expectDoneOrGone(r, "round \(round): create")
            if case .success(let handle) = r {
                try n.one.writeAll(handle, pattern(1000, seed: 3))
                try n.one.fs.flush(handle, pid: FSEnv.writerPid)
                try n.one.fs.release(handle)
                #expect(try n.two.names(try n.two.inode("models/\(model)-old")).contains("v2.pt"), "round \(round)")
            }
            #expect(try n.two.names(try n.two.inode("models/" + model)).filter { !$0.hasPrefix(".") }.isEmpty,
                    "round \(round): the new \(model) stays empty")
        }
    }

    /// Node one renames `m` to `a`; meanwhile node two renamed `m` to `b` and made a new `m`. Node
    /// one's rename moves the model it found (now `b`) or finds it gone: the new `m` keeps its name.
    @Test(arguments: Engine.all)
    func twoNodesRenamingOneModelLeaveTheNewOneAlone(_ engine: Engine) throws {
        let n = try Nodes(engine)
        for round in 0..<raceRounds() {
            let (m, a, b) = ("m\(round)", "a\(round)", "b\(round)")
            try n.two.mkdir(m)
            try n.two.put("models/\(m)/v1.pt", pattern(1000, seed: UInt64(round)))
            let models = try n.one.inode("models")
            let one = n.one
            let r = try n.gated.race({ try one.fs.rename(parent: models, name: bytes(m), newParent: models, newName: bytes(a)) }) {
                try n.two.fs.rename(parent: models, name: bytes(m), newParent: models, newName: bytes(b))
                try n.two.mkdir(m)
            }
            Self.expectDoneOrGone(r, "round \(round): rename")
            let names = try n.two.names(models)
            #expect(names.contains(m), "round \(round): the new \(m) keeps its name: \(names)")
            if names.contains(m) { #expect(try n.two.names(try n.two.inode("models/" + m)).filter { !$0.hasPrefix(".") }.isEmpty, "round \(round)") }
            // The first model is under one of the two names it was given, with its version.
            let first = names.contains(a) ? a : b
            #expect(names.contains(first) && !(names.contains(a) && names.contains(b)), "round \(round): \(names)")
            #expect(try n.two.names(try n.two.inode("models/" + first)).contains("v1.pt"), "round \(round)")
        }
    }
}
