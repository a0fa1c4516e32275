import Glibc
import ModelStore

/// Thin POSIX helpers that turn errno into ``ObjectStoreError``.
enum FileIO {
    static func error(_ what: String) -> ObjectStoreError {
        let code = errno
        let text = String(cString: strerror(code))
        if code == ENOSPC || code == EDQUOT { return .noSpace("\(what): \(text)") }
        return .other("\(what): \(text)")
    }

    static func open(_ path: String, _ flags: Int32, key: String, mode: mode_t = 0o644) throws(ObjectStoreError) -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { throw .notFound(key: key) }
            throw error("open \(key)")
        }
        return fd
    }

    static func size(_ fd: Int32) throws(ObjectStoreError) -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("fstat") }
        return Int64(st.st_size)
    }

    static func read(_ fd: Int32, offset: Int64, count: Int) throws(ObjectStoreError) -> [UInt8] {
        var failure: ObjectStoreError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(ObjectStoreError) {
                initialized = try read(fd, offset: offset, into: UnsafeMutableRawBufferPointer(buffer))
            } catch { failure = error; initialized = 0 }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Fills `buffer` from `offset`, stopping early only at the end of the file.
    static func read(_ fd: Int32, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 { if errno == EINTR { continue }; throw error("read") }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func readAll(_ path: String) throws(ObjectStoreError) -> [UInt8] {
        let fd = try open(path, O_RDONLY, key: path)
        defer { close(fd) }
        return try read(fd, offset: 0, count: Int(try size(fd)))
    }

    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(ObjectStoreError) {
        var done = 0
        while done < buffer.count {
            let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 { if errno == EINTR { continue }; throw error("write") }
            done += n
        }
    }

    static func createTemp(in dir: String) throws(ObjectStoreError) -> (fd: Int32, path: String) {
        let path = dir + "/" + randomHex(12)
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw error("create temporary file in \(dir)") }
        return (fd, path)
    }

    /// Writes bytes to a new temporary file (fsynced unless `sync` is false) and returns its path.
    static func writeTemp(in dir: String, _ bytes: [UInt8], sync: Bool = true) throws(ObjectStoreError) -> String {
        let (fd, path) = try createTemp(in: dir)
        do throws(ObjectStoreError) {
            try bytes.withUnsafeBytes { b in Result { () throws(ObjectStoreError) in try writeAll(fd, b) } }.get()
            if sync, fsync(fd) != 0 { throw error("fsync") }
        } catch {
            close(fd); unlink(path)
            throw error
        }
        close(fd)
        return path
    }

    static func makeDirectories(_ path: String) throws(ObjectStoreError) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw error("mkdir \(current)") }
        }
    }

    static func entries(_ dir: String) throws(ObjectStoreError) -> [String] {
        guard let d = opendir(dir) else {
            if errno == ENOENT { return [] }
            throw error("opendir \(dir)")
        }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? entries(path)) ?? [] { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    static func randomHex(_ bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return Digest.hex((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}
