import Foundation
import Glibc
import Testing
import ModelStore
import ModelFS

/// Directory handles and their pages, as the kernel reads them: opendir, reads from offset 0 and
/// then from the offset after the last entry it took, releasedir.
@Suite struct DirectoryPagingTests {
    /// Reads the rest of open directory `handle` from `offset` in pages of `size` entries.
    func rest(_ env: FSEnv, _ handle: UInt64, from offset: Int64, pageSize size: Int) throws -> [String] {
        var names: [String] = []
        var next = offset
        while true {
            let page = try env.fs.readdir(handle, offset: next).prefix(size)
            guard let last = page.indices.last else { return names }
            names += page.map(\.name)
            next = Int64(last + 1)
        }
    }

    @Test func aThousandEntriesReadInSmallPagesComeOnceEach() throws {
        let env = try FSEnv()
        let models = (0..<1_050).map { String(format: "m%04d", $0) }
        for m in models { try env.mkdir(m) }
        let handle = try env.fs.opendir(try env.inode("models"))
        defer { env.fs.releasedir(handle) }

        let names = try rest(env, handle, from: 0, pageSize: 7)
        #expect(names.count == models.count + 2)
        #expect(Array(names.prefix(2)) == [".", ".."])
        #expect(names.dropFirst(2).sorted() == models, "each model once, none skipped")
        #expect(Set(names).count == names.count)
        #expect(try env.fs.readdir(handle, offset: Int64(names.count)).isEmpty, "past the end: nothing")
        #expect(try env.fs.readdir(handle, offset: Int64(names.count) + 50).isEmpty)
    }

    @Test func dotAndDotDotNameTheDirectoryAndItsParent() throws {
        let env = try FSEnv()
        try env.mkdir("X")
        let model = try env.inode("models/X")
        let entries = try env.fs.readdir(model)
        #expect(entries.map(\.name) == [".", ".."])
        #expect(entries[0].attributes.inode == model && entries[0].attributes.isDirectory)
        #expect(entries[1].attributes.inode == (try env.inode("models")))
        let root = try env.fs.readdir(rootInode)
        #expect(root[0].attributes.inode == rootInode && root[1].attributes.inode == rootInode,
                "the root is its own parent")
    }

    @Test func offsetsStayValidWhenEntriesChangeBetweenPages() throws {
        let env = try FSEnv()
        let before = (0..<10).map { "m\($0)" }
        for m in before { try env.mkdir(m) }
        let models = try env.inode("models")
        let handle = try env.fs.opendir(models)
        defer { env.fs.releasedir(handle) }

        let first = try env.fs.readdir(handle, offset: 0).prefix(4)
        let listed = try rest(env, handle, from: 0, pageSize: 1_000)
        let unread = listed[4...]
        // Between pages: a model added, one not yet read removed, one already read removed.
        try env.mkdir("added")
        try env.fs.rmdir(parent: models, name: bytes(unread.last!))
        try env.fs.rmdir(parent: models, name: bytes(first.last!.name))

        let again = try env.fs.readdir(handle, offset: 4)
        #expect(again.first?.name == unread.first, "offset 4 still points after the fourth entry")
        let names = first.map(\.name) + (try rest(env, handle, from: 4, pageSize: 3))
        #expect(names == listed, "the listing taken at opendir, each name once: nothing skipped or repeated")

        // A read from 0 after the first is a rewind: the directory as it is now.
        let rewound = try rest(env, handle, from: 0, pageSize: 3)
        #expect(rewound.contains("added"))
        #expect(!rewound.contains(unread.last!) && !rewound.contains(first.last!.name))
        #expect(rewound.count == listed.count - 1)
        // And a new opendir agrees.
        #expect(try env.fs.readdir(models).map(\.name) == rewound)
    }

    @Test func aClosedOrUnknownHandleIsRefused() throws {
        let env = try FSEnv()
        let handle = try env.fs.opendir(rootInode)
        #expect(try env.fs.readdir(handle, offset: 0).count >= 2)
        env.fs.releasedir(handle)
        expectStoreError(.badDescriptor) { try env.fs.readdir(handle, offset: 0) }
        expectStoreError(.badDescriptor) { try env.fs.readdir(987_654, offset: 0) }
        // A file's handle is not a directory's, nor a file a directory.
        let stats = try env.inode(".stats")
        let file = try env.fs.open(stats, flags: OpenFlags(O_RDONLY)).handle
        defer { try? env.fs.release(file) }
        expectStoreError(.badDescriptor) { try env.fs.readdir(file, offset: 0) }
        expectStoreError(.notDirectory) { try env.fs.opendir(stats) }
    }
}
