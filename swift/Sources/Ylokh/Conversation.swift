// A message history that grows with each successful reply (ylokh_conversation).

import CYlokh
import Foundation

/// A conversation: the messages so far. `Client.chat(_:)` with a conversation sends all of
/// them and, when the reply completes, appends it as the assistant's message; a failed or
/// stopped reply leaves the conversation unchanged.
///
/// The C conversation is used by one thread at a time: every method, and a chat from start
/// to end, holds this object's lock, so a use while a chat runs waits for the chat to end.
public final class Conversation: @unchecked Sendable {
    private let handle: OpaquePointer
    private let lock = NSLock()

    public init() throws {
        guard let handle = ylokh_conversation_new() else {
            throw YlokhError(status: YLOKH_E_INTERNAL, httpStatus: 0,
                             message: "ylokh_conversation_new failed")
        }
        self.handle = handle
    }

    deinit {
        ylokh_conversation_free(handle)
    }

    /// Appends a message ("system", "user", "assistant", ...).
    public func add(role: String, content: String) throws {
        try withHandle { try check(ylokh_conversation_add($0, role, content)) }
    }

    /// How many messages it holds.
    public var count: Int {
        withHandle { ylokh_conversation_len($0) }
    }

    /// The messages as a JSON array, which `ylokh_conversation_from_json` can load again.
    public func json() throws -> String {
        try withHandle { handle in
            var out: UnsafeMutablePointer<CChar>?
            var len = 0
            try check(ylokh_conversation_to_json(handle, &out, &len))
            defer { ylokh_string_free(out) }
            guard let out else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: out, count: len), as: UTF8.self)
        }
    }

    /// Runs `body` with the C handle, holding the lock.
    func withHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(handle)
    }
}
