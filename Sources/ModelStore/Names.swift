/// Rules for model, version and dataset names, shared by the mount and the CLI.
public enum Names {
    public static let maxBytes = 200

    /// Names starting with `@` are aliases' (`models/X/@production`): never a version's.
    public static func validateVersion(_ name: String) throws(StoreError) {
        if name.hasPrefix("@") { throw .invalid("version names cannot start with @: \(printable(name)) would look like an alias") }
    }

    /// `production` or `@production` as the alias's name, `@production`.
    public static func alias(_ raw: String) throws(StoreError) -> String {
        let bare = raw.hasPrefix("@") ? String(raw.dropFirst()) : raw
        try validate(bare, what: "alias name")
        if bare.hasPrefix("@") || bare.hasPrefix(".") { throw .invalid("an alias name is @ and a name: \(printable(raw))") }
        return "@" + bare
    }

    /// The temporary name `ln -sfn` gives a new link before renaming it onto the alias (coreutils'
    /// `CuXXXXXX`, in the alias's directory): the one link not named `@something` a model directory takes.
    public static func isLinkTemporary(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        let alphanumeric: (UInt8) -> Bool = {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
        }
        return bytes.count == 8 && name.hasPrefix("Cu") && bytes.dropFirst(2).allSatisfy(alphanumeric)
    }

    /// Checks a model, version or dataset name: 1 to 200 bytes of UTF-8, no `/`, no NUL, no
    /// control characters, not starting with `.`.
    public static func validate(_ name: String, what: String = "name") throws(StoreError) {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { throw .invalid("\(what) is empty") }
        if bytes.count > maxBytes { throw StoreError(.nameTooLong, "\(what) is \(bytes.count) bytes; at most \(maxBytes) are allowed") }
        if bytes[0] == UInt8(ascii: ".") { throw .invalid("\(what) '\(printable(name))' starts with '.'") }
        for scalar in name.unicodeScalars {
            if scalar == "/" { throw .invalid("\(what) '\(printable(name))' contains '/'") }
            if isControl(scalar) {
                throw .invalid("\(what) '\(printable(name))' contains a control character")
            }
        }
    }

    /// A writer's temporary file in a model directory (`.tmpXYZ`, as `safetensors.save_file` and
    /// other atomic writers make before renaming it onto the real name): stored like a version,
    /// with no format until it is renamed to a version's name.
    public static func isScratch(_ name: String) -> Bool {
        guard name.hasPrefix("."), name.utf8.count > 1, name.utf8.count <= maxBytes, name != ".next", name != ".." else { return false }
        return name.unicodeScalars.allSatisfy { $0 != "/" && !isControl($0) }
    }

    /// Validates raw bytes from the kernel, which may not be UTF-8 at all.
    public static func decode(_ bytes: [UInt8], what: String = "name") throws(StoreError) -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else { throw .invalid("\(what) is not valid UTF-8") }
        try validate(s, what: what)
        return s
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    /// Whether `text` holds NUL or another control character (C0, DEL, C1).
    public static func hasControlCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains(where: isControl)
    }

    /// The name with control characters escaped, safe to put in a message.
    public static func printable(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            if isControl(scalar) { out += "\\u{" + String(scalar.value, radix: 16) + "}" }
            else { out.unicodeScalars.append(scalar) }
        }
        return out
    }
}

extension Names {
    /// A link's name: `@something`, or `ln -sfn`'s temporary name. Any other would pass for a
    /// version, or hide one's archive view (`EINVAL`).
    public static func checkLinkName(_ name: String) throws(StoreError) {
        if name.hasPrefix("@") {
            _ = try Names.alias(name)
        } else if !Names.isLinkTemporary(name) {
            throw .invalid("links in a model directory are aliases, named @something: "
                           + "\(Names.printable(name)) is not (ln -s v3.zip @production)")
        }
    }
}

extension Version {
    /// What an alias's link says: the version's file (`v3.zip`), or its archive view (`v3`).
    public func linkTarget(view: Bool) -> String { view ? name : fileName }
}
