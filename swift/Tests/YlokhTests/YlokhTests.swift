// The Swift package against the loopback servers that tests/swift.rs starts (one per
// behaviour; their base URLs come in YLOKH_SWIFT_TEST_* variables). tests/swift.rs also
// checks, on the server side, what these requests carried.

import CYlokh
import Foundation
import Testing
import Ylokh

/// The base URL of the server for `name`, e.g. "STREAM".
func serverURL(_ name: String) throws -> String {
    let key = "YLOKH_SWIFT_TEST_\(name)"
    return try #require(ProcessInfo.processInfo.environment[key],
                        "\(key) is not set: run these tests through `cargo test --test swift`")
}

/// A client for a test server: no retries, so a failure shows at once.
func client(_ name: String) throws -> Client {
    let client = try Client(baseURL: try serverURL(name))
    try client.setMaxRetries(0)
    try client.setTimeout(milliseconds: 10_000)
    return client
}

let hello = [Message(role: "user", content: "Say hello")]

/// What the STREAM server sends, token by token (multi-byte characters split across
/// HTTP chunks on the wire).
let streamTokens = ["Hel", "lo", ", w\u{f6}rld", " \u{1F600}", " \u{65E5}\u{672C}\u{8A9E}"]

@Test func tokensArriveInOrderAndExact() async throws {
    var tokens: [String] = []
    for try await token in try client("STREAM").chat(hello, model: "swift-model",
                                                      optionsJSON: #"{"max_tokens":16}"#) {
        tokens.append(token)
    }
    #expect(tokens == streamTokens)
}

@Test func wholeReplyAsOneString() async throws {
    let text = try await client("STREAM").text(hello)
    #expect(text == streamTokens.joined())
}

@Test func httpErrorIsThrownAsYlokhError() async throws {
    var tokens = 0
    do {
        for try await _ in try client("ERROR").chat(hello) {
            tokens += 1
        }
        Issue.record("the chat did not throw")
    } catch let error as YlokhError {
        #expect(error.status == YLOKH_E_HTTP_STATUS)
        #expect(error.httpStatus == 404)
        #expect(error.message.contains("The model `gpt-9` does not exist"))
        #expect(String(describing: error).contains("404"))
    }
    #expect(tokens == 0)
}

@Test func unreachableServerIsAConnectError() async throws {
    do {
        _ = try await client("CLOSED").text(hello)
        Issue.record("the chat did not throw")
    } catch let error as YlokhError {
        #expect(error.status == YLOKH_E_CONNECT)
        #expect(error.httpStatus == 0)
    }
}

@Test func breakingOutOfTheLoopStopsTheRequest() async throws {
    // STALL sends three tokens and then nothing, holding the connection open. Breaking after
    // the last one leaves the call waiting for more: only the cancellation can end it.
    var tokens: [String] = []
    for try await token in try client("STALL").chat(hello) {
        tokens.append(token)
        if tokens.count == 3 {
            break
        }
    }
    #expect(tokens == ["one", "two", "three"])
    try await expectHungUp("PROBE")
}

/// The probe answers "disconnected" once its stalling server has seen this client hang up
/// (it waits up to 2 s for that), "still connected" otherwise.
func expectHungUp(_ probe: String) async throws {
    let started = ContinuousClock.now
    let answer = try await client(probe).text(hello)
    #expect(answer == "disconnected")
    #expect(ContinuousClock.now - started < .seconds(2))
}

@Test func cancellingTheTaskStopsTheRequest() async throws {
    let stall = try client("STALL_TASK")
    let task = Task {
        var count = 0
        for try await _ in stall.chat(hello) {
            count += 1
        }
        return count
    }
    try await Task.sleep(for: .milliseconds(200))
    task.cancel()
    // The stream ends without an error (the consumer stopped it) and without more tokens.
    let count = try await task.value
    #expect(count == 3)
    try await expectHungUp("PROBE_TASK")
}

@Test func conversationKeepsTheHistory() async throws {
    let echo = try client("ECHO")
    let conversation = try Conversation()
    try conversation.add(role: "system", content: "Be brief.")
    try conversation.add(role: "user", content: "Hello")
    var reply = ""
    for try await token in echo.chat(conversation) {
        reply += token
    }
    #expect(reply == "echo: Hello")
    #expect(conversation.count == 3)

    try conversation.add(role: "user", content: "How are \"you\"?")
    #expect(try await echo.text(conversation) == "echo: How are \"you\"?")
    #expect(conversation.count == 5)

    // A failed chat leaves the conversation as it was.
    await #expect(throws: YlokhError.self) {
        _ = try await client("ERROR").text(conversation)
    }
    #expect(conversation.count == 5)

    let json = try conversation.json()
    let messages = try #require(
        try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: String]])
    #expect(messages.map { $0["role"] ?? "" } ==
            ["system", "user", "assistant", "user", "assistant"])
    #expect(messages.last?["content"] == "echo: How are \"you\"?")
}

@Test func versionOfTheLoadedLibrary() {
    #expect(String(cString: ylokh_version()) == "\(YLOKH_VERSION_MAJOR).\(YLOKH_VERSION_MINOR).\(YLOKH_VERSION_PATCH)")
}
