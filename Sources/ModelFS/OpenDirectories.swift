/// One `opendir` of a directory: the listing its reads page through.
///
/// The listing is taken at opendir (so `ENOTDIR` and the like are said there) and paged from it:
/// a read asks for the entries from an offset this listing gave, so offsets stay valid across pages
/// however the directory changes in between, and no name comes twice or goes missing. Names added
/// or removed meanwhile show at the next `opendir`, or at a read from offset 0 after the first
/// (`rewinddir`), which lists again as POSIX asks.
struct OpenDirectory: Sendable {
    let inode: UInt64
    var entries: [DirectoryEntry]
    /// Whether a page was read: a later read from offset 0 is a rewind.
    var read = false

    /// The entries from `offset` on. An entry's index in the listing is its position: the read
    /// after it asks from `index + 1`.
    func page(from offset: Int64) -> ArraySlice<DirectoryEntry> {
        entries[Int(min(max(offset, 0), Int64(entries.count)))...]
    }
}
