// The pull API as an AsyncSequence of events (client.events(...)), against the servers
// tests/swift.rs starts for it: EVENTS (tokens, then finish and usage), EVENTS_ERROR (404),
// EVENTS_STALL (three tokens, then silence; tests/swift.rs checks the hang-ups).

import CYlokh
import Foundation
import Testing
import Ylokh

@Test func eventsArriveInOrderWithTheWholeMessage() async throws {
    let events = try client("EVENTS").events(hello, optionsJSON: #"{"max_tokens":8}"#)
    var text = ""
    var kinds: [Event.Kind] = []
    for try await event in events {
        kinds.append(event.kind)
        if event.kind == .content {
            text += event.text
        }
    }
    #expect(text == streamTokens.joined())
    #expect(kinds.last == .finish)
    let message = try events.messageJSON()
    #expect(message.contains(#""finish_reason":"stop""#))
    #expect(message.contains(#""role":"assistant""#))
}

@Test func eventsThrowTheHTTPErrorAsYlokhError() async throws {
    do {
        for try await _ in try client("EVENTS_ERROR").events(hello) {
            Issue.record("an event came")
        }
        Issue.record("the stream did not throw")
    } catch let error as YlokhError {
        #expect(error.status == YLOKH_E_HTTP_STATUS)
        #expect(error.httpStatus == 404)
    }
}

@Test func breakingOutOfTheEventsClosesTheStream() async throws {
    var count = 0
    for try await event in try client("EVENTS_STALL").events(hello) {
        if event.kind == .content {
            count += 1
        }
        if count == 3 {
            break
        }
    }
    #expect(count == 3)
}

@Test func cancellingTheTaskStopsTheEvents() async throws {
    let events = try client("EVENTS_STALL").events(hello)
    let task = Task { () -> Int in
        var count = 0
        do {
            for try await event in events where event.kind == .content {
                count += 1
            }
        } catch is CancellationError {
            return -count
        }
        return count
    }
    try await Task.sleep(nanoseconds: 300_000_000)
    let started = Date()
    task.cancel()
    let result = try await task.value
    #expect(result == -3, "three tokens, then CancellationError")
    #expect(Date().timeIntervalSince(started) < 2)
}
