// The C++ wrapper (include/ylokh.hpp) against the scripted loopback server of tests/common.
//
//   test_ylokh CASE BASE_URL
//
// Built by tests/ecosystem.rs with g++ -std=c++17 -Wall -Wextra -Werror (and more warnings);
// each case is one Rust test that starts the server the case expects (see the comments
// below). Prints "PASS <case>" and exits 0, or prints every failed check to stderr and
// exits 1.

#include "ylokh.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char *what, int line) {
    if (!ok) {
        std::fprintf(stderr, "line %d: check failed: %s\n", line, what);
        ++failures;
    }
}

#define CHECK(cond) check((cond), #cond, __LINE__)

template <class T>
void check_eq(const T &got, const T &want, const char *what, int line) {
    if (!(got == want)) {
        std::fprintf(stderr, "line %d: %s: got %s, want %s\n", line, what, std::string(got).c_str(),
                     std::string(want).c_str());
        ++failures;
    }
}

#define CHECK_EQ(got, want) check_eq<std::string>((got), (want), #got, __LINE__)

std::string join(const std::vector<std::string> &parts) {
    std::string out = "[";
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i != 0) out += ",";
        out += "\"" + parts[i] + "\"";
    }
    return out + "]";
}

const std::vector<ylokh::message> hello = {{"user", "Say hello"}};

ylokh::client make_client(const std::string &url) {
    ylokh::client c(url);
    c.set_max_retries(0).set_timeout(std::chrono::seconds(10));
    return c;
}

struct boom : std::exception {
    const char *what() const noexcept override { return "boom"; }
};

// Server: streams "Hel", "lo". Tokens arrive as string_views through a lambda, a
// std::function and a function object; a JSON string works as the messages too.
void case_stream(const std::string &url) {
    ylokh::client c = make_client(url);
    std::vector<std::string> tokens;
    bool done = c.chat(hello, [&](std::string_view t) { tokens.emplace_back(t); });
    CHECK(done);
    CHECK_EQ(join(tokens), std::string(R"(["Hel","lo"])"));

    tokens.clear();
    std::function<void(std::string_view)> fn = [&](std::string_view t) { tokens.emplace_back(t); };
    CHECK(c.chat(std::string(R"([{"role":"user","content":"hi"}])"), fn,
                 {"my-model", R"({"max_tokens":5})", nullptr}));
    CHECK_EQ(join(tokens), std::string(R"(["Hel","lo"])"));

    struct counter {
        int *n;
        bool operator()(std::string_view) const {
            ++*n;
            return true;
        }
    };
    int n = 0;
    CHECK(c.chat(hello, counter{&n}));
    CHECK(n == 2);

    // A moved-from client is empty; the moved-to one works.
    ylokh::client moved = std::move(c);
    CHECK(c.get() == nullptr);
    CHECK_EQ(moved.chat_text(hello), std::string("Hello"));
    std::printf("TOKENS %s\n", join(tokens).c_str());
}

// Server: streams "Hel", "lo". Returning false stops the reply: chat returns false.
void case_stop(const std::string &url) {
    ylokh::client c = make_client(url);
    std::vector<std::string> tokens;
    bool done = c.chat(hello, [&](std::string_view t) {
        tokens.emplace_back(t);
        return false;
    });
    CHECK(!done);
    CHECK_EQ(join(tokens), std::string(R"(["Hel"])"));
    // The client is still usable.
    CHECK_EQ(c.chat_text(hello), std::string("Hello"));
}

// Server: streams "Hel", "lo". An exception in the callback stops the call and comes out
// of chat() unchanged, after the C call returned.
void case_exception(const std::string &url) {
    ylokh::client c = make_client(url);
    int calls = 0;
    bool caught = false;
    try {
        c.chat(hello, [&](std::string_view) {
            ++calls;
            throw boom();
        });
    } catch (const boom &) {
        caught = true;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "wrong exception: %s\n", e.what());
    }
    CHECK(caught);
    CHECK(calls == 1);

    // The same through the event callback, with a standard exception type.
    caught = false;
    try {
        c.chat_events(ylokh::messages_json(hello), [](const ylokh::event &) {
            throw std::out_of_range("from the event callback");
        });
    } catch (const std::out_of_range &e) {
        caught = std::strcmp(e.what(), "from the event callback") == 0;
    }
    CHECK(caught);

    // Nothing is left behind: the next call works.
    CHECK_EQ(c.chat_text(hello), std::string("Hello"));
}

// Server: streams "Hel", "lo". Events: content pieces, then the finish reason.
void case_events(const std::string &url) {
    ylokh::client c = make_client(url);
    std::string content, finish;
    int events = 0;
    c.chat_events(ylokh::messages_json(hello), [&](const ylokh::event &e) {
        ++events;
        if (e.kind == YLOKH_EVENT_CONTENT) content.append(e.text);
        if (e.kind == YLOKH_EVENT_FINISH) finish = std::string(e.text);
        CHECK(e.choice == 0);
        CHECK(!e.tool_id.has_value());
    });
    CHECK_EQ(content, std::string("Hello"));
    CHECK_EQ(finish, std::string("stop"));
    CHECK(events >= 3);
}

// Makes a chat that must throw ylokh::error for HTTP `http_status` with `text` in its
// message, and prints "ERROR status http_status message".
void expect_http_error(ylokh::client &c, int http_status, const char *text) {
    bool caught = false;
    try {
        c.chat(hello, [](std::string_view) {});
    } catch (const ylokh::error &e) {
        caught = true;
        CHECK(e.status() == YLOKH_E_HTTP_STATUS);
        CHECK(e.http_status() == http_status);
        CHECK(std::string_view(e.what()).find(text) != std::string::npos);
        CHECK(e.message() == std::string_view(e.what()));
        std::printf("ERROR %d %d %s\n", e.status(), e.http_status(), e.what());
    }
    CHECK(caught);
}

// Server: 401 with an OpenAI error body "Invalid API key provided".
void case_http_error(const std::string &url) {
    ylokh::client c = make_client(url);
    expect_http_error(c, 401, "Invalid API key provided");
}

// Server: 307 to another origin, which streams "elsewhere". Refused (HTTP 307, naming the
// setting) until set_cross_origin_redirects(true); the key stays with the first origin.
void case_cross_origin(const std::string &url) {
    ylokh::client c = make_client(url);
    c.set_api_key("sk-cpp-secret");
    expect_http_error(c, 307, "ylokh_client_set_cross_origin_redirects");
    CHECK_EQ(c.set_cross_origin_redirects(true).chat_text(hello), std::string("elsewhere"));
}

// No server needed: bad arguments throw ylokh::error with YLOKH_E_INVALID_ARGUMENT.
void case_invalid(const std::string &url) {
    ylokh::client c = make_client(url);
    bool caught = false;
    try {
        c.set_base_url("not a url");
    } catch (const ylokh::error &e) {
        caught = e.status() == YLOKH_E_INVALID_ARGUMENT && e.http_status() == 0 &&
                 std::string_view(e.what()).size() > 0;
    }
    CHECK(caught);

    caught = false;
    try {
        c.chat(std::string("{not json"), [](std::string_view) {});
    } catch (const ylokh::error &e) {
        caught = e.status() == YLOKH_E_INVALID_ARGUMENT;
    }
    CHECK(caught);

    caught = false;
    try {
        ylokh::conversation::from_json("[1, 2]");
    } catch (const ylokh::error &e) {
        caught = e.status() == YLOKH_E_INVALID_ARGUMENT;
    }
    CHECK(caught);
    CHECK_EQ(std::string(ylokh::status_string(YLOKH_E_TIMEOUT)), std::string("timed out"));
}

// Server: streams "Hel", "lo". The conversation gets the reply appended; JSON round trip.
void case_conversation(const std::string &url) {
    ylokh::client c = make_client(url);
    ylokh::conversation conv;
    CHECK(conv.empty());
    conv.add("system", "Be \"brief\".\n").add("user", "Say hello");
    std::string text;
    CHECK(c.chat(conv, [&](std::string_view t) { text.append(t); }));
    CHECK_EQ(text, std::string("Hello"));
    CHECK(conv.size() == 3);
    std::string json = conv.to_json();
    CHECK(json.find(R"("content":"Hello")") != std::string::npos);
    CHECK(json.find(R"(Be \"brief\".\n)") != std::string::npos);

    ylokh::conversation copy = ylokh::conversation::from_json(json);
    CHECK(copy.size() == 3);
    CHECK_EQ(copy.to_json(), json);
    copy.add_json(R"({"role":"user","content":"again","name":"bob"})");
    CHECK(copy.size() == 4);
    CHECK_EQ(c.chat_text(copy), std::string("Hello"));
    CHECK(copy.size() == 5);

    // A stopped reply leaves the conversation unchanged.
    CHECK(!c.chat(copy, [](std::string_view) { return false; }));
    CHECK(copy.size() == 5);

    ylokh::conversation moved = std::move(copy);
    CHECK(copy.get() == nullptr);
    CHECK(moved.size() == 5);
    moved.clear();
    CHECK(moved.empty());
}

// Server: never answers. A cancel token triggered from another thread stops the call.
void case_cancel(const std::string &url) {
    ylokh::client c = make_client(url);
    ylokh::cancel_token cancel;
    std::thread canceller([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        cancel.trigger();
    });
    auto started = std::chrono::steady_clock::now();
    bool caught = false;
    try {
        ylokh::chat_options opts;
        opts.cancel = &cancel;
        c.chat(hello, [](std::string_view) {}, opts);
    } catch (const ylokh::error &e) {
        caught = e.status() == YLOKH_E_ABORTED;
    }
    canceller.join();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    CHECK(caught);
    CHECK(ms < 5000);
    std::printf("ELAPSED_MS %lld\n", static_cast<long long>(ms));
}

// Server: streams "Hel", "lo". One client shared by threads; errors are per thread.
void case_threads(const std::string &url) {
    ylokh::client c = make_client(url);
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&] {
            for (int j = 0; j < 5; ++j) {
                if (c.chat_text(hello) == "Hello") ++ok;
                try {
                    c.chat(std::string("[]x"), [](std::string_view) {});
                } catch (const ylokh::error &e) {
                    if (e.status() == YLOKH_E_INVALID_ARGUMENT) ++ok;
                }
            }
        });
    }
    for (auto &t : threads) t.join();
    CHECK(ok.load() == 40);
}

// Server: streams "Hel", "lo". The debugging log reaches a std::function; one that throws
// does not disturb the chat. TLS settings throw on bad input.
void case_log(const std::string &url) {
    ylokh::client c = make_client(url);
    std::vector<std::string> lines;
    c.set_log([&](std::string_view line) { lines.emplace_back(line); });
    CHECK_EQ(c.chat_text(hello), std::string("Hello"));
    CHECK(!lines.empty());
    bool mentions_url = false;
    for (const auto &l : lines) {
        mentions_url = mentions_url || l.find("/chat/completions") != std::string::npos;
    }
    CHECK(mentions_url);

    c.set_log([](std::string_view) { throw std::runtime_error("from the log"); });
    CHECK_EQ(c.chat_text(hello), std::string("Hello"));
    const std::size_t before = lines.size();
    c.set_log(nullptr);
    CHECK_EQ(c.chat_text(hello), std::string("Hello"));
    CHECK(lines.size() == before);

    bool caught = false;
    try {
        c.set_ca_file("/nonexistent/ca.pem");
    } catch (const ylokh::error &e) {
        caught = e.status() == YLOKH_E_INVALID_ARGUMENT;
    }
    CHECK(caught);
    c.use_system_roots(false).set_ca_file("");
    std::printf("LOG_LINES %zu\n", before);
}

// No server needed: the header's version macros, the library's version, the wrapper's.
void case_version(const std::string &) {
    std::string header = YLOKH_VERSION;
    CHECK_EQ(std::string(ylokh::version()), header);
    CHECK_EQ(std::to_string(YLOKH_VERSION_MAJOR) + "." + std::to_string(YLOKH_VERSION_MINOR) +
                 "." + std::to_string(YLOKH_VERSION_PATCH),
             header);
    static_assert(YLOKH_VERSION_NUMBER ==
                      YLOKH_VERSION_MAJOR * 10000 + YLOKH_VERSION_MINOR * 100 + YLOKH_VERSION_PATCH,
                  "YLOKH_VERSION_NUMBER");
    std::printf("VERSION %s %d\n", header.c_str(), YLOKH_VERSION_NUMBER);
}

} // namespace

// Server: streams "Hel", "lo" (then finish "stop"), except for the message "fail": HTTP 500.
// A range-for pulls the events; the message JSON has the whole reply; a conversation gets
// the reply at the end; a failure throws from the loop.
void case_pull(const std::string &url) {
    ylokh::client c = make_client(url);
    std::string text;
    int events = 0;
    ylokh::stream s = c.stream(hello);
    for (const ylokh::event &ev : s) {
        ++events;
        if (ev.kind == YLOKH_EVENT_CONTENT) text.append(ev.text);
    }
    CHECK(s.ended());
    CHECK_EQ(text, std::string("Hello"));
    CHECK(events == 3);
    const std::string message = s.message_json();
    CHECK(message.find(R"("content":"Hello")") != std::string::npos);
    CHECK(message.find(R"("finish_reason":"stop")") != std::string::npos);
    std::printf("MESSAGE %s\n", message.c_str());

    // A temporary in the range-for, and a move.
    text.clear();
    for (const auto &ev : c.stream(std::vector<ylokh::message>{{"user", "again"}}))
        if (ev.kind == YLOKH_EVENT_CONTENT) text.append(ev.text);
    CHECK_EQ(text, std::string("Hello"));
    ylokh::stream a = c.stream(hello);
    ylokh::stream b = std::move(a);
    CHECK(a.get() == nullptr && b.get() != nullptr);
    CHECK(b.fd() >= 0);

    // next() with waits, from an event loop.
    std::optional<ylokh::event> ev;
    int pulled = 0;
    while (!b.ended()) {
        ev = b.next(std::chrono::milliseconds(0));
        if (ev) ++pulled;
        else if (!b.ended()) ev = b.next(std::chrono::milliseconds(100)), pulled += ev ? 1 : 0;
    }
    CHECK(pulled == 3);

    ylokh::conversation conv;
    conv.add("user", "hi");
    for (const auto &e : c.stream(conv)) (void)e;
    CHECK(conv.size() == 2);

    bool threw = false;
    try {
        for (const auto &e : c.stream(std::vector<ylokh::message>{{"user", "fail"}})) (void)e;
    } catch (const ylokh::error &e) {
        threw = e.status() == YLOKH_E_HTTP_STATUS && e.http_status() == 500;
    }
    CHECK(threw);

    const std::string whole = c.chat_message_json(hello);
    CHECK(whole.find(R"("content":"Hello")") != std::string::npos);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: test_ylokh CASE BASE_URL\n");
        return 2;
    }
    const std::string name = argv[1], url = argv[2];
    const std::pair<const char *, void (*)(const std::string &)> cases[] = {
        {"stream", case_stream},       {"stop", case_stop},
        {"exception", case_exception}, {"events", case_events},
        {"http_error", case_http_error}, {"invalid", case_invalid},
        {"conversation", case_conversation}, {"cancel", case_cancel},
        {"threads", case_threads},     {"version", case_version},
        {"log", case_log},             {"pull", case_pull},
        {"cross_origin", case_cross_origin},
    };
    for (const auto &[case_name, run] : cases) {
        if (name != case_name) continue;
        try {
            run(url);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "unexpected exception: %s\n", e.what());
            ++failures;
        }
        if (failures != 0) return 1;
        std::printf("PASS %s\n", case_name);
        return 0;
    }
    std::fprintf(stderr, "unknown case %s\n", name.c_str());
    return 2;
}
