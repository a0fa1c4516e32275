import Foundation
import Glibc
import Testing
import ModelStore
import ModelFS

@Suite struct RootTests {
    @Test func rootListsTheLayout() throws {
        let env = try FSEnv()
        let entries = try env.fs.readdir(rootInode)
        #expect(entries.map(\.name) == [".", "..", "models", "datasets", "jobs", "services", ".stats"])
        #expect(entries[0].attributes.inode == rootInode && entries[1].attributes.inode == rootInode)
        let expectedKinds: [String: (Node, Bool)] = [
            "models": (.modelsDir, true), "datasets": (.datasetsDir, true), "jobs": (.jobsDir, true), "services": (.servicesDir, true),
            ".stats": (.stats, false),
        ]
        for entry in entries.dropFirst(2) {
            let (node, isDirectory) = try #require(expectedKinds[entry.name])
            let looked = try env.fs.lookup(parent: rootInode, name: bytes(entry.name))
            #expect(looked.inode == entry.attributes.inode, "\(entry.name)")
            #expect(looked.inode == node.inode)
            #expect(looked.isDirectory == isDirectory, "\(entry.name)")
            #expect(try env.fs.getattr(looked.inode).isDirectory == isDirectory)
        }
        #expect(try env.fs.getattr(rootInode).isDirectory)
        expectStoreError(.notFound) { try env.fs.lookup(parent: rootInode, name: bytes("nope")) }
        expectStoreError(.notFound) { try env.fs.lookup(parent: rootInode, name: [0xff]) }
        expectStoreError(.notFound) { try env.fs.getattr(10) }
    }

    @Test func inodeNumbersRoundTrip() {
        let nodes: [Node] = [.root, .modelsDir, .datasetsDir, .jobsDir, .stats, .submit, .evaluate, .servicesDir, .serviceSubmit]
            + ([1, 2, 42, 1 << 40, (1 << 56) - 1] as [Int64]).flatMap { id -> [Node] in
                let nodes: [Node] = [.model(ModelID(id)), .version(VersionID(id)), .next(ModelID(id)), .dataset(DatasetID(id)), .job(id),
                                     .archive(.version(VersionID(id))), .archive(.dataset(DatasetID(id))), .alias(AliasID(id))]
                return nodes + JobFile.allCases.map { Node.jobFile(id, $0) } + [.service(id)]
                    + ServiceFile.allCases.map { Node.serviceFile(id, $0) }
            }
            + ([0, 1, 42, Node.maxMemberOwner] as [Int64]).flatMap { id -> [Node] in
                [0, 1, Node.maxMemberIndex].flatMap { i in [Node.member(.version(VersionID(id)), i), Node.member(.dataset(DatasetID(id)), i)] }
            }
        for node in nodes {
            #expect(Node(inode: node.inode) == node, "\(node)")
        }
        #expect(Set(nodes.map(\.inode)).count == nodes.count, "every node has its own inode")
        for bogus: UInt64 in [0, 10, 99, 21 << 56, UInt64.max] {
            #expect(Node(inode: bogus) == nil, "\(bogus)")
        }
        #expect(Node.model(ModelID(1)).isDirectory && Node.root.isDirectory && !Node.version(VersionID(1)).isDirectory && !Node.stats.isDirectory)
    }

    @Test func inodesAreStableAcrossLookupsRenamesAndRemounts() throws {
        let env = try FSEnv()
        try env.mkdir("A")
        let v1 = try env.put("models/A/v1.zip", pattern(1000))
        let model = try env.inode("models/A")
        #expect(try env.inode("models/A") == model)
        #expect(try env.inode("models/A/v1.zip") == v1)
        #expect(Node(inode: model).map { if case .model = $0 { true } else { false } } == true)
        #expect(Node(inode: v1).map { if case .version = $0 { true } else { false } } == true)
        try env.fs.rename(parent: try env.inode("models"), name: bytes("A"), newParent: try env.inode("models"), newName: bytes("B"))
        #expect(try env.inode("models/B") == model)
        #expect(try env.inode("models/B/v1.zip") == v1)
        // A second mount over the same catalog sees the same numbers.
        let again = FileSystem(registry: env.registry, cache: env.cache)
        #expect(try again.lookup(parent: 2, name: bytes("B")).inode == model)
        #expect(try again.lookup(parent: model, name: bytes("v1.zip")).inode == v1)
    }
}

@Suite struct MkdirTests {
    @Test func mkdirCreatesAModelDirectory() throws {
        let env = try FSEnv()
        let attributes = try env.mkdir("BERT-Base-Chinese")
        #expect(attributes.isDirectory)
        #expect(attributes.permissions == 0o755)
        let looked = try env.fs.lookup(parent: try env.inode("models"), name: bytes("BERT-Base-Chinese"))
        #expect(looked.inode == attributes.inode)
        #expect(looked.isDirectory)
        #expect(try env.names(try env.inode("models")) == [".", "..", "BERT-Base-Chinese"])
        #expect(try env.names(looked.inode) == [".", ".."])
        #expect(try env.xattr(looked.inode, "type") == "general")
        #expect(try env.catalog.model(named: "BERT-Base-Chinese") != nil)
    }

    @Test(arguments: [bytes(".x"), bytes("."), bytes(".."), bytes("a/b"), bytes("\u{1}x"), bytes("x\u{7f}"), [0xff], [0x61, 0xc3],
                      bytes(""), bytes(String(repeating: "x", count: 201))])
    func mkdirRefusesBadNames(_ name: [UInt8]) throws {
        let env = try FSEnv()
        expectStoreError(name.count > Names.maxBytes ? .nameTooLong : .invalidArgument) { try env.fs.mkdir(parent: try env.inode("models"), name: name) }
        #expect(try env.catalog.models().isEmpty)
    }

    @Test func mkdirAcceptsNamesUsersType() throws {
        let env = try FSEnv()
        for name in ["千问-7B", "a b+%?#&", String(repeating: "x", count: 200)] {
            try env.mkdir(name)
            #expect(try env.inode("models/" + name) != 0)
        }
        #expect(try env.catalog.models().count == 3)
    }

    @Test func mkdirOutsideModelsIsNotPermitted() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        for parent in ["", "datasets", "jobs", "models/X"] {
            expectStoreError(.notPermitted, "mkdir in /\(parent)") { try env.fs.mkdir(parent: try env.inode(parent), name: bytes("Y")) }
        }
        #expect(try env.catalog.models().map(\.name) == ["X"])
    }

    @Test func mkdirOfAnExistingModelFails() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        expectStoreError(.alreadyExists) { try env.mkdir("X") }
        #expect(try env.catalog.models().count == 1)
    }
}
