// Swift wrapper over libylokh's C API: a client whose chat returns the reply as an
// AsyncThrowingStream of tokens. Tested by Tests/YlokhTests (run by tests/swift.rs).
//
//     let client = try Client(baseURL: "http://127.0.0.1:8080/v1")
//     for try await token in client.chat([Message(role: "user", content: "Hello")]) {
//         print(token, terminator: "")
//     }
//
// Each chat runs the blocking C call on a thread of its own; the stream's context reaches
// the C callback through Unmanaged. Ending the consuming task (or breaking out of the loop)
// cancels the call through a ylokh_cancel token.

import CYlokh
import Foundation

/// A failure of the library: the status (YLOKH_E_*), the HTTP status of the reply behind it
/// (0 when there was none) and the library's message.
public struct YlokhError: Error, CustomStringConvertible, Sendable {
    public let status: Int32
    public let httpStatus: Int32
    public let message: String

    public var description: String {
        "\(String(cString: ylokh_status_str(status))): \(message)"
    }

    /// The calling thread's last error. The C library keeps it per thread: call this on the
    /// thread of the failed call, right after it.
    static func last(_ status: Int32) -> YlokhError {
        YlokhError(status: status, httpStatus: ylokh_last_http_status(),
                   message: String(cString: ylokh_last_error()))
    }
}

/// One message of a request.
public struct Message: Codable, Sendable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

func check(_ status: Int32) throws {
    if status != YLOKH_OK {
        throw YlokhError.last(status)
    }
}

/// A chat client: settings and a pool of keep-alive connections. The C client may be used
/// from many threads at once, so this class may be too.
public final class Client: @unchecked Sendable {
    let handle: OpaquePointer

    /// A client with the library's defaults (YLOKH_BASE_URL, YLOKH_API_KEY, ...), pointed at
    /// `baseURL` when given (e.g. "http://127.0.0.1:8080/v1").
    public init(baseURL: String? = nil) throws {
        guard let handle = ylokh_client_new() else {
            throw YlokhError(status: YLOKH_E_INTERNAL, httpStatus: 0,
                             message: "ylokh_client_new failed")
        }
        self.handle = handle
        if let baseURL = baseURL {
            try check(ylokh_client_set_base_url(handle, baseURL))
        }
    }

    deinit {
        ylokh_client_free(handle)
    }

    /// Sends "Authorization: Bearer <key>"; nil removes it.
    public func setAPIKey(_ key: String?) throws {
        if let key = key {
            try check(ylokh_client_set_api_key(handle, key))
        } else {
            try check(ylokh_client_set_api_key(handle, nil))
        }
    }

    /// How many times a failed attempt is retried before the first token (default 2).
    public func setMaxRetries(_ retries: UInt32) throws {
        try check(ylokh_client_set_max_retries(handle, retries))
    }

    /// Bounds connecting and every wait for more bytes (default 120 s).
    public func setTimeout(milliseconds: UInt64) throws {
        try check(ylokh_client_set_timeout_ms(handle, milliseconds))
    }

    /// Streams the reply's text. `optionsJSON` is merged over the request's defaults, e.g.
    /// `{"max_tokens":50}`. The stream throws a YlokhError when the call fails.
    public func chat(_ messages: [Message], model: String? = nil,
                     optionsJSON: String? = nil) -> AsyncThrowingStream<String, Error> {
        let json: String
        do {
            json = String(decoding: try JSONEncoder().encode(messages), as: UTF8.self)
        } catch {
            return AsyncThrowingStream { $0.finish(throwing: error) }
        }
        return chat(messagesJSON: json, model: model, optionsJSON: optionsJSON)
    }

    /// As chat(_:model:optionsJSON:), with the messages as a JSON array.
    public func chat(messagesJSON: String, model: String? = nil,
                     optionsJSON: String? = nil) -> AsyncThrowingStream<String, Error> {
        stream(messagesJSON: messagesJSON, conversation: nil, model: model,
               optionsJSON: optionsJSON)
    }

    /// Streams the reply to the conversation's messages; when the reply completes it is
    /// appended to the conversation.
    public func chat(_ conversation: Conversation, model: String? = nil,
                     optionsJSON: String? = nil) -> AsyncThrowingStream<String, Error> {
        stream(messagesJSON: nil, conversation: conversation, model: model,
               optionsJSON: optionsJSON)
    }

    /// The whole reply to the conversation (appended to it) as one string.
    public func text(_ conversation: Conversation, model: String? = nil,
                     optionsJSON: String? = nil) async throws -> String {
        var text = ""
        for try await token in chat(conversation, model: model, optionsJSON: optionsJSON) {
            text += token
        }
        return text
    }

    private func stream(messagesJSON: String?, conversation: Conversation?, model: String?,
                        optionsJSON: String?) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let context = StreamContext(continuation)
            continuation.onTermination = { _ in context.cancel() }
            // The thread holds `self`, so the client outlives the call.
            let thread = Thread {
                self.run(context, messagesJSON: messagesJSON, conversation: conversation,
                         model: model, optionsJSON: optionsJSON)
            }
            thread.start()
        }
    }

    /// The whole reply as one string.
    public func text(_ messages: [Message], model: String? = nil,
                     optionsJSON: String? = nil) async throws -> String {
        var text = ""
        for try await token in chat(messages, model: model, optionsJSON: optionsJSON) {
            text += token
        }
        return text
    }

    /// The blocking call, on the stream's own thread.
    private func run(_ context: StreamContext, messagesJSON: String?,
                     conversation: Conversation?, model: String?, optionsJSON: String?) {
        let cModel = model.flatMap { strdup($0) }
        let cMessages = messagesJSON.flatMap { strdup($0) }
        let cOptions = optionsJSON.flatMap { strdup($0) }
        defer {
            free(cModel)
            free(cMessages)
            free(cOptions)
        }
        // Retained for the duration of the call: the C callback borrows it.
        let userdata = Unmanaged.passRetained(context).toOpaque()
        defer { Unmanaged<StreamContext>.fromOpaque(userdata).release() }

        var request = ylokh_request()
        request.struct_size = MemoryLayout<ylokh_request>.size
        request.model = UnsafePointer(cModel)
        request.messages_json = UnsafePointer(cMessages)
        request.options_json = UnsafePointer(cOptions)
        request.on_token = streamOnToken
        request.userdata = userdata
        request.cancel = context.cancelToken
        let status: Int32
        if let conversation {
            status = conversation.withHandle { conversationHandle in
                request.conversation = conversationHandle
                return ylokh_chat_ex(handle, &request)
            }
        } else {
            status = ylokh_chat_ex(handle, &request)
        }
        // Same thread as the call: the thread-local error is this call's.
        let error: YlokhError? = status == YLOKH_OK ? nil : YlokhError.last(status)
        let stoppedByConsumer = context.callEnded()
        if let error = error, !(error.status == YLOKH_E_ABORTED && stoppedByConsumer) {
            context.continuation.finish(throwing: error)
        } else {
            context.continuation.finish()
        }
    }
}

/// What the C callback reaches through `userdata`, and the call's cancel token.
private final class StreamContext: @unchecked Sendable {
    let continuation: AsyncThrowingStream<String, Error>.Continuation
    private let lock = NSLock()
    private var token: OpaquePointer?
    private var cancelled = false

    init(_ continuation: AsyncThrowingStream<String, Error>.Continuation) {
        self.continuation = continuation
        self.token = ylokh_cancel_new()
    }

    /// Read by the worker before the call starts.
    var cancelToken: OpaquePointer? {
        lock.lock()
        defer { lock.unlock() }
        return token
    }

    /// The consumer went away: stop the call (from any thread).
    func cancel() {
        lock.lock()
        defer { lock.unlock() }
        cancelled = true
        if let token = token {
            _ = ylokh_cancel_trigger(token)
        }
    }

    /// The call returned: free the token (no trigger can come after this). Returns whether
    /// the consumer had cancelled.
    func callEnded() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if let token = token {
            ylokh_cancel_free(token)
        }
        token = nil
        return cancelled
    }
}

/// The C token callback: hands each token to the stream; stops when nobody listens.
private let streamOnToken: ylokh_token_cb = { userdata, token, len in
    guard let userdata = userdata, let token = token else { return 1 }
    let context = Unmanaged<StreamContext>.fromOpaque(userdata).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(token), count: len)
    if case .terminated = context.continuation.yield(String(decoding: bytes, as: UTF8.self)) {
        return 1
    }
    return 0
}
