// The Redis Functions every instance calls: each load and each commit of a user's state is one call, atomic on the
// server. Their source is functions.lua beside this file (with the key layout), embedded at build time, linted with
// luacheck and tested on its own against a real redis-server; it is loaded at start with FUNCTION LOAD REPLACE
// unless a newer library is already there.

enum FunctionLibrary {
    /// The library's Lua source.
    static let source = String(decoding: PackageResources.functions_lua, as: UTF8.self)

    /// Raised whenever the functions change; an instance refuses to replace a newer library. functions.lua declares
    /// it on a line of its own (`local LIBRARY_VERSION = 12`), which its tests check is read.
    static let version: Int = {
        let prefix = "local LIBRARY_VERSION = "
        let line = source.split(separator: "\n").first { $0.hasPrefix(prefix) }
        guard let version = line.flatMap({ Int($0.dropFirst(prefix.count)) }) else {
            preconditionFailure("functions.lua declares no LIBRARY_VERSION")
        }
        return version
    }()
}
