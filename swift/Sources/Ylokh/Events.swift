// Pulling a reply event by event (the C pull API, ylokh_stream_*), as an AsyncSequence:
//
//     for try await event in try client.events(hello) {
//         if event.kind == .content { print(event.text, terminator: "") }
//     }
//
// Each next() waits for the library's next event on a Dispatch worker (never blocking the
// async caller's thread); cancelling the task stops the reply within about 50 ms (next()
// then throws CancellationError), and breaking out of the loop closes the stream.

import CYlokh
import Foundation

/// One event of a reply (see ylokh_event in ylokh.h), copied into Swift values.
public struct Event: Sendable, Equatable {
    /// What the event reports.
    public enum Kind: Sendable, Equatable {
        case content, reasoning, refusal, toolCall, finish, usage
    }

    public let kind: Kind
    /// The choice it belongs to (0 unless the request asked for several).
    public let choice: UInt32
    /// The content, reasoning or refusal text, the tool call's arguments piece, the finish
    /// reason, or the usage JSON.
    public let text: String
    /// .toolCall: which call of the message; its id and function name when this piece has them.
    public let toolIndex: UInt32
    public let toolID: String?
    public let toolName: String?
    /// .usage: the token counts.
    public let promptTokens: UInt64
    public let completionTokens: UInt64
    public let totalTokens: UInt64

    init(_ e: ylokh_event) {
        switch e.kind {
        case YLOKH_EVENT_REASONING: kind = .reasoning
        case YLOKH_EVENT_REFUSAL: kind = .refusal
        case YLOKH_EVENT_TOOL_CALL: kind = .toolCall
        case YLOKH_EVENT_FINISH: kind = .finish
        case YLOKH_EVENT_USAGE: kind = .usage
        default: kind = .content
        }
        func string(_ p: UnsafePointer<CChar>?, _ n: Int) -> String? {
            guard let p = p else { return nil }
            return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
        }
        choice = e.choice
        text = string(e.text, e.text_len) ?? ""
        toolIndex = e.tool_index
        toolID = string(e.tool_id, e.tool_id_len)
        toolName = string(e.tool_name, e.tool_name_len)
        promptTokens = e.prompt_tokens
        completionTokens = e.completion_tokens
        totalTokens = e.total_tokens
    }
}

/// The C stream and its cancel token; closed when the last reference goes.
final class StreamHandle: @unchecked Sendable {
    private let lock = NSLock()
    private let stream: OpaquePointer
    private let cancelToken: OpaquePointer

    init(stream: OpaquePointer, cancelToken: OpaquePointer) {
        self.stream = stream
        self.cancelToken = cancelToken
    }

    deinit {
        ylokh_stream_close(stream)
        ylokh_cancel_free(cancelToken)
    }

    /// Stops the reply (from any thread).
    func cancel() {
        ylokh_cancel_trigger(cancelToken)
    }

    /// The next event, waiting as long as it takes; nil at the end. Blocks: call it off the
    /// async thread pool.
    func next() -> Result<Event?, Error> {
        lock.lock()
        defer { lock.unlock() }
        var event: UnsafePointer<ylokh_event>? = nil
        let status = ylokh_stream_next(stream, UInt64.max, &event)
        guard status == YLOKH_OK else {
            return .failure(YlokhError.last(status))
        }
        return .success(event.map { Event($0.pointee) })
    }

    func messageJSON() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        var json: UnsafeMutablePointer<CChar>? = nil
        var length = 0
        try check(ylokh_stream_message_json(stream, &json, &length))
        defer { ylokh_string_free(json) }
        return json.map {
            String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self)
        } ?? ""
    }
}

/// A reply pulled event by event. Iterate it once.
public struct EventStream: AsyncSequence, Sendable {
    public typealias Element = Event

    let handle: StreamHandle

    public struct AsyncIterator: AsyncIteratorProtocol {
        let handle: StreamHandle
        var finished = false

        public mutating func next() async throws -> Event? {
            if finished { return nil }
            let handle = self.handle
            let result = await withTaskCancellationHandler {
                await withCheckedContinuation { (done: CheckedContinuation<Result<Event?, Error>, Never>) in
                    DispatchQueue.global().async { done.resume(returning: handle.next()) }
                }
            } onCancel: {
                handle.cancel()
            }
            switch result {
            case .success(let event?):
                return event
            case .success(nil):
                finished = true
                return nil
            case .failure(let error):
                finished = true
                if Task.isCancelled { throw CancellationError() }
                throw error
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: handle) }

    /// The assistant message put together from the events pulled so far (the whole reply at
    /// the end), as JSON: content, reasoning, refusal, tool_calls, finish_reason, usage.
    public func messageJSON() throws -> String { try handle.messageJSON() }
}

extension Client {
    /// Starts a reply to pull event by event; returns at once. Throws only for a request the
    /// library refuses before sending (bad JSON, ...); failures of the reply are thrown by
    /// the iteration.
    public func events(_ messages: [Message], model: String? = nil,
                       optionsJSON: String? = nil) throws -> EventStream {
        let json = String(decoding: try JSONEncoder().encode(messages), as: UTF8.self)
        return try events(messagesJSON: json, model: model, optionsJSON: optionsJSON)
    }

    /// As events(_:model:optionsJSON:), with the messages as a JSON array.
    public func events(messagesJSON: String, model: String? = nil,
                       optionsJSON: String? = nil) throws -> EventStream {
        guard let cancelToken = ylokh_cancel_new() else {
            throw YlokhError(status: YLOKH_E_INTERNAL, httpStatus: 0,
                             message: "ylokh_cancel_new failed")
        }
        var stream: OpaquePointer? = nil
        let status = messagesJSON.withCString { cMessages in
            (model ?? "").withCString { cModel in
                (optionsJSON ?? "").withCString { cOptions in
                    var request = ylokh_request()
                    request.struct_size = MemoryLayout<ylokh_request>.size
                    request.messages_json = cMessages
                    request.model = model == nil ? nil : cModel
                    request.options_json = optionsJSON == nil ? nil : cOptions
                    request.cancel = cancelToken
                    return ylokh_stream_open(handle, &request, &stream)
                }
            }
        }
        guard status == YLOKH_OK, let stream = stream else {
            let error = YlokhError.last(status)
            ylokh_cancel_free(cancelToken)
            throw error
        }
        return EventStream(handle: StreamHandle(stream: stream, cancelToken: cancelToken))
    }
}
