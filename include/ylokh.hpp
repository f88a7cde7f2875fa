/*
 * ylokh.hpp: header-only C++17 wrapper over the C API of libylokh (ylokh.h).
 *
 *   ylokh::client client;                               // RAII over ylokh_client
 *   client.set_base_url("http://127.0.0.1:8080/v1");
 *   client.chat({{"user", "The three primary colors are"}},
 *               [](std::string_view token) { std::cout << token << std::flush; });
 *
 * - Callbacks are any callable taking std::string_view (tokens) or const ylokh::event &
 *   (events), returning void (go on) or bool (false stops the reply: the call then returns
 *   false instead of true). Lambdas, function objects and std::function all work. They run
 *   on the calling thread, before the call returns; the views are valid only during the
 *   callback: copy what you keep.
 * - An exception thrown by a callback stops the request (the C library sees a non-zero
 *   return; the exception never crosses its frames) and is rethrown, unchanged, once the
 *   C call has returned.
 * - Every failure of the library throws ylokh::error, which carries the status
 *   (YLOKH_E_*), the HTTP status (0 when there was no reply) and the library's message.
 * - Threads: as in C. One ylokh::client may be used from many threads at once;
 *   a ylokh::conversation by one thread at a time; ylokh::cancel_token::trigger() from any
 *   thread.
 *
 * - Pulling instead of callbacks: `for (const ylokh::event &ev : client.stream(msgs))`, then
 *   the final message with message_json() (see ylokh::stream).
 *
 * Link with -lylokh (pkg-config --cflags --libs ylokh). Needs C++17. Since 0.1.0.
 */

#ifndef YLOKH_HPP
#define YLOKH_HPP

#if !defined(__cplusplus) || (__cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L))
#error "ylokh.hpp needs C++17 or later (C programs include ylokh.h)"
#endif

#include "ylokh.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ylokh {

/// The library's version at run time, e.g. "0.1.0" (YLOKH_VERSION is the header's).
inline std::string_view version() noexcept { return ylokh_version(); }

/// A short English description of a status code ("ok", "timed out", ...).
inline std::string_view status_string(ylokh_status status) noexcept {
    return ylokh_status_str(status);
}

/// What every failing call throws: the status (YLOKH_E_*), the HTTP status of the reply
/// behind the failure (0 when there was none), and the library's message (which includes
/// the server's own message when it sent one). what() is the message.
class error : public std::runtime_error {
public:
    error(ylokh_status status, int http_status, const std::string &message)
        : std::runtime_error(message), status_(status), http_status_(http_status) {}

    /// The status code, never YLOKH_OK.
    ylokh_status status() const noexcept { return status_; }
    /// The HTTP status, or 0 (connect errors, bad arguments, ...).
    int http_status() const noexcept { return http_status_; }
    /// The message, as ylokh_last_error() gave it.
    std::string_view message() const noexcept { return what(); }

private:
    ylokh_status status_;
    int http_status_;
};

namespace detail {

/// Throws the calling thread's last error for `status` (read right away: it is
/// thread-local and only valid until the next failing call on this thread).
[[noreturn]] inline void throw_last_error(ylokh_status status) {
    const char *message = ylokh_last_error();
    throw error(status, ylokh_last_http_status(),
                message != nullptr && message[0] != '\0' ? message
                                                         : ylokh_status_str(status));
}

inline void check(ylokh_status status) {
    if (status != YLOKH_OK) throw_last_error(status);
}

/// Releases a string handed out by the library.
struct string_deleter {
    void operator()(char *s) const noexcept { ylokh_string_free(s); }
};
using owned_string = std::unique_ptr<char, string_deleter>;

/// Appends `s` as a JSON string literal (quotes included). Bytes >= 0x80 are copied: the
/// library checks that the text is UTF-8 and refuses the call otherwise.
inline void append_json_string(std::string &out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    out += '"';
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0xf];
            } else {
                out += ch;
            }
        }
    }
    out += '"';
}

template <class T>
using is_view = std::is_same<std::decay_t<T>, std::string_view>;

} // namespace detail

/// A cancel token (RAII over ylokh_cancel): trigger() from any thread stops every call
/// given this token within about 50 ms; such a call throws ylokh::error with status
/// YLOKH_E_ABORTED. Not copyable or movable: calls hold its address.
class cancel_token {
public:
    cancel_token() : p_(ylokh_cancel_new()) {
        if (p_ == nullptr) throw std::bad_alloc();
    }
    ~cancel_token() { ylokh_cancel_free(p_); }
    cancel_token(const cancel_token &) = delete;
    cancel_token &operator=(const cancel_token &) = delete;

    /// Stops the calls using this token, and later calls at once, until reset(). Any thread.
    void trigger() const noexcept { ylokh_cancel_trigger(p_); }
    /// Makes the token usable again after trigger().
    void reset() const noexcept { ylokh_cancel_reset(p_); }
    const ylokh_cancel *get() const noexcept { return p_; }

private:
    ylokh_cancel *p_;
};

/// One message of a request.
struct message {
    std::string role;    // "system", "user", "assistant", ...
    std::string content;
};

/// Builds the JSON array the C API takes from role/content pairs.
inline std::string messages_json(const std::vector<message> &messages) {
    std::string out = "[";
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i != 0) out += ',';
        out += "{\"role\":";
        detail::append_json_string(out, messages[i].role);
        out += ",\"content\":";
        detail::append_json_string(out, messages[i].content);
        out += '}';
    }
    out += ']';
    return out;
}

/// What a chat call takes besides the messages and the callback. All optional.
struct chat_options {
    /// "" means "gpt-3.5-turbo".
    std::string model;
    /// "" or a JSON object merged over the request defaults, e.g. R"({"max_tokens":50})".
    std::string options_json;
    /// A token another thread may trigger to stop the call; not owned, must outlive the call.
    const cancel_token *cancel = nullptr;
};

/// One event of a reply (see ylokh_event in ylokh.h). The views are valid only during the
/// callback.
struct event {
    ylokh_event_kind kind;
    std::uint32_t choice;
    std::string_view text;
    std::uint32_t tool_index;
    std::optional<std::string_view> tool_id;
    std::optional<std::string_view> tool_name;
    std::uint64_t prompt_tokens;
    std::uint64_t completion_tokens;
    std::uint64_t total_tokens;

    explicit event(const ylokh_event &e) noexcept
        : kind(e.kind), choice(e.choice), text(e.text, e.text_len), tool_index(e.tool_index),
          tool_id(e.tool_id != nullptr ? std::optional<std::string_view>(
                                             std::string_view(e.tool_id, e.tool_id_len))
                                       : std::nullopt),
          tool_name(e.tool_name != nullptr ? std::optional<std::string_view>(std::string_view(
                                                 e.tool_name, e.tool_name_len))
                                           : std::nullopt),
          prompt_tokens(e.prompt_tokens), completion_tokens(e.completion_tokens),
          total_tokens(e.total_tokens) {}
};

/// Message history (RAII over ylokh_conversation). Movable, not copyable. Use it from one
/// thread at a time.
class conversation {
public:
    conversation() : p_(ylokh_conversation_new()) {
        if (p_ == nullptr) throw std::bad_alloc();
    }
    /// From a JSON array of message objects (as written by to_json()).
    static conversation from_json(const std::string &json) {
        ylokh_conversation *p = nullptr;
        detail::check(ylokh_conversation_from_json(json.c_str(), &p));
        return conversation(p);
    }
    ~conversation() { ylokh_conversation_free(p_); }
    conversation(conversation &&other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    conversation &operator=(conversation &&other) noexcept {
        if (this != &other) {
            ylokh_conversation_free(p_);
            p_ = std::exchange(other.p_, nullptr);
        }
        return *this;
    }
    conversation(const conversation &) = delete;
    conversation &operator=(const conversation &) = delete;

    /// Appends {"role": role, "content": content}.
    conversation &add(const std::string &role, const std::string &content) {
        detail::check(ylokh_conversation_add(p_, role.c_str(), content.c_str()));
        return *this;
    }
    /// Appends one message given as a JSON object (tool results, names, content parts).
    conversation &add_json(const std::string &message_json) {
        detail::check(ylokh_conversation_add_json(p_, message_json.c_str()));
        return *this;
    }
    std::size_t size() const noexcept { return ylokh_conversation_len(p_); }
    bool empty() const noexcept { return size() == 0; }
    void clear() { detail::check(ylokh_conversation_clear(p_)); }
    /// The messages as a JSON array.
    std::string to_json() const {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(ylokh_conversation_to_json(p_, &json, &len));
        detail::owned_string owned(json);
        return std::string(owned.get(), len);
    }

    ylokh_conversation *get() const noexcept { return p_; }
    /// Gives up ownership; the caller frees the handle with ylokh_conversation_free().
    ylokh_conversation *release() noexcept { return std::exchange(p_, nullptr); }

private:
    explicit conversation(ylokh_conversation *p) noexcept : p_(p) {}
    ylokh_conversation *p_;
};

/// A reply pulled event by event (RAII over ylokh_stream), made by client::stream(). Movable,
/// not copyable; use it from one thread at a time. Destroying it stops the reply if it is
/// still running and frees everything.
///
///   for (const ylokh::event &ev : client.stream(R"([{"role":"user","content":"Hi"}])"))
///       if (ev.kind == YLOKH_EVENT_CONTENT) std::cout << ev.text;
///
/// The loop blocks for each event and ends after the last one; a failure throws
/// ylokh::error from the loop (after the events before it). An event's views are valid
/// until the next event is pulled. For an event loop: fd() and next(0).
class stream {
public:
    stream(stream &&other) noexcept
        : p_(std::exchange(other.p_, nullptr)), current_(std::move(other.current_)) {}
    stream &operator=(stream &&other) noexcept {
        if (this != &other) {
            ylokh_stream_close(p_);
            p_ = std::exchange(other.p_, nullptr);
            current_ = std::move(other.current_);
        }
        return *this;
    }
    stream(const stream &) = delete;
    stream &operator=(const stream &) = delete;
    ~stream() { ylokh_stream_close(p_); }

    /// The next event, waiting at most `wait` (0: not at all). An event; std::nullopt with
    /// ended() false when nothing came within the wait; std::nullopt with ended() true at
    /// the end. Throws ylokh::error when the reply failed (every later call throws again).
    std::optional<event> next(std::chrono::milliseconds wait = std::chrono::milliseconds::max()) {
        const ylokh_event *e = nullptr;
        const auto ms = wait.count() < 0 ? 0 : static_cast<std::uint64_t>(wait.count());
        const ylokh_status st = ylokh_stream_next(p_, wait == std::chrono::milliseconds::max()
                                                          ? UINT64_MAX
                                                          : ms,
                                                  &e);
        if (st == YLOKH_E_AGAIN) return std::nullopt;
        detail::check(st);
        if (e == nullptr) {
            ended_ = true;
            return std::nullopt;
        }
        return event(*e);
    }
    /// The reply ended normally (next() said so).
    bool ended() const noexcept { return ended_; }
    /// Readable when next() would not wait (poll/epoll/select); -1 where there is none.
    int fd() const noexcept { return ylokh_stream_fd(p_); }
    /// The assistant message put together so far (the whole reply once ended()), as JSON:
    /// content, reasoning, refusal, tool_calls, finish_reason, usage.
    std::string message_json() const {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(ylokh_stream_message_json(p_, &json, &len));
        detail::owned_string owned(json);
        return std::string(owned.get(), len);
    }
    ylokh_stream *get() const noexcept { return p_; }

    /// An input iterator over the events (blocking for each).
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = event;
        using difference_type = std::ptrdiff_t;
        using pointer = const event *;
        using reference = const event &;

        iterator() noexcept = default;
        reference operator*() const noexcept { return *s_->current_; }
        pointer operator->() const noexcept { return &*s_->current_; }
        iterator &operator++() {
            s_->current_ = s_->next();
            if (!s_->current_) s_ = nullptr;
            return *this;
        }
        friend bool operator==(const iterator &a, const iterator &b) noexcept {
            return a.s_ == b.s_;
        }
        friend bool operator!=(const iterator &a, const iterator &b) noexcept {
            return a.s_ != b.s_;
        }

    private:
        friend class stream;
        explicit iterator(stream *s) noexcept : s_(s) {}
        stream *s_ = nullptr;
    };

    /// Pulls the first event (blocking); iterate once.
    iterator begin() {
        iterator it(this);
        return ++it;
    }
    iterator end() noexcept { return iterator(); }

private:
    friend class client;
    explicit stream(ylokh_stream *p) noexcept : p_(p) {}
    ylokh_stream *p_;
    std::optional<event> current_;
    bool ended_ = false;
};

/// A chat client (RAII over ylokh_client): settings and a pool of keep-alive connections.
/// Movable, not copyable; one client may be used by many threads at once.
class client {
public:
    /// Defaults as ylokh_client_new(): YLOKH_BASE_URL / YLOKH_API_KEY and the rest.
    client() : p_(ylokh_client_new()) {
        if (p_ == nullptr) throw std::bad_alloc();
    }
    explicit client(const std::string &base_url) : client() { set_base_url(base_url); }
    ~client() { ylokh_client_free(p_); }
    client(client &&other) noexcept
        : p_(std::exchange(other.p_, nullptr)), logs_(std::move(other.logs_)) {}
    client &operator=(client &&other) noexcept {
        if (this != &other) {
            ylokh_client_free(p_);
            p_ = std::exchange(other.p_, nullptr);
            logs_ = std::move(other.logs_);
        }
        return *this;
    }
    client(const client &) = delete;
    client &operator=(const client &) = delete;

    ylokh_client *get() const noexcept { return p_; }
    /// Gives up ownership; the caller frees the handle with ylokh_client_free(). A log set
    /// with set_log() must be removed first (its function is freed with this object).
    ylokh_client *release() noexcept { return std::exchange(p_, nullptr); }

    // ---- Settings (each throws ylokh::error on a bad value, leaving the setting as it was)

    client &set_base_url(const std::string &url) {
        detail::check(ylokh_client_set_base_url(p_, url.c_str()));
        return *this;
    }
    /// "" removes the key.
    client &set_api_key(const std::string &key) {
        detail::check(ylokh_client_set_api_key(p_, key.c_str()));
        return *this;
    }
    client &set_header(const std::string &name, const std::string &value) {
        detail::check(ylokh_client_set_header(p_, name.c_str(), value.c_str()));
        return *this;
    }
    client &remove_header(const std::string &name) {
        detail::check(ylokh_client_set_header(p_, name.c_str(), nullptr));
        return *this;
    }
    /// "" clears it (the proxy environment variables apply again unless turned off).
    client &set_proxy(const std::string &url) {
        detail::check(ylokh_client_set_proxy(p_, url.c_str()));
        return *this;
    }
    client &set_proxy_from_env(bool enabled) {
        detail::check(ylokh_client_set_proxy_from_env(p_, enabled ? 1 : 0));
        return *this;
    }
    /// Whether a redirect to another origin is followed (default: refused), never with
    /// the API key or the headers set here; see ylokh_client_set_cross_origin_redirects.
    client &set_cross_origin_redirects(bool allow) {
        detail::check(ylokh_client_set_cross_origin_redirects(p_, allow ? 1 : 0));
        return *this;
    }
    client &set_timeout(std::chrono::milliseconds timeout) {
        detail::check(ylokh_client_set_timeout_ms(p_, to_ms(timeout)));
        return *this;
    }
    /// 0 means no deadline.
    client &set_deadline(std::chrono::milliseconds deadline) {
        detail::check(ylokh_client_set_deadline_ms(p_, to_ms(deadline)));
        return *this;
    }
    client &set_max_retries(std::uint32_t retries) {
        detail::check(ylokh_client_set_max_retries(p_, retries));
        return *this;
    }
    client &set_retry_delay(std::chrono::milliseconds delay) {
        detail::check(ylokh_client_set_retry_delay_ms(p_, to_ms(delay)));
        return *this;
    }
    client &set_max_event_bytes(std::size_t bytes) {
        detail::check(ylokh_client_set_max_event_bytes(p_, bytes));
        return *this;
    }
    /// Trusts only the certificate authorities in this PEM file; "" goes back to the
    /// bundled roots.
    client &set_ca_file(const std::string &pem_path) {
        detail::check(
            ylokh_client_set_ca_file(p_, pem_path.empty() ? nullptr : pem_path.c_str()));
        return *this;
    }
    /// Trusts the operating system's certificate store (true) or the bundled roots (false).
    client &use_system_roots(bool enabled) {
        detail::check(ylokh_client_use_system_roots(p_, enabled ? 1 : 0));
        return *this;
    }
    /// Sets the debugging log: `on_log(line)` is called for each line (secrets redacted) on
    /// the thread running a chat; an empty function removes it. Exceptions it throws are
    /// dropped: it runs inside the library. The client keeps every function it was given
    /// until it is destroyed, so chats that started before a change may still use it.
    client &set_log(std::function<void(std::string_view)> on_log) {
        if (!on_log) {
            detail::check(ylokh_client_set_log(p_, nullptr, nullptr));
            return *this;
        }
        auto fn = std::make_unique<std::function<void(std::string_view)>>(std::move(on_log));
        logs_.reserve(logs_.size() + 1); // so that push_back below cannot throw
        detail::check(ylokh_client_set_log(p_, &log_trampoline, fn.get()));
        logs_.push_back(std::move(fn));
        return *this;
    }

    // ---- Chats. Each returns true when the reply completed, false when the callback
    // ---- returned false; throws ylokh::error on failure, or the callback's exception.

    /// Streams the reply's text (choice 0) to `on_token(std::string_view)`.
    template <class F>
    bool chat(const std::string &messages_json, F &&on_token, const chat_options &opts = {}) {
        return run<std::remove_reference_t<F>, none>(messages_json.c_str(), nullptr, opts,
                                                     &on_token, nullptr);
    }
    template <class F>
    bool chat(const std::vector<message> &messages, F &&on_token,
              const chat_options &opts = {}) {
        return chat(ylokh::messages_json(messages), std::forward<F>(on_token), opts);
    }
    /// Sends the conversation's messages; on success the reply is appended to it.
    template <class F>
    bool chat(conversation &conv, F &&on_token, const chat_options &opts = {}) {
        return run<std::remove_reference_t<F>, none>(nullptr, conv.get(), opts, &on_token,
                                                     nullptr);
    }

    /// Reports every event (content, reasoning, tool calls, finish, usage) to
    /// `on_event(const ylokh::event &)`.
    template <class F>
    bool chat_events(const std::string &messages_json, F &&on_event,
                     const chat_options &opts = {}) {
        return run<none, std::remove_reference_t<F>>(messages_json.c_str(), nullptr, opts,
                                                     nullptr, &on_event);
    }
    template <class F>
    bool chat_events(conversation &conv, F &&on_event, const chat_options &opts = {}) {
        return run<none, std::remove_reference_t<F>>(nullptr, conv.get(), opts, nullptr,
                                                     &on_event);
    }

    /// The whole reply (choice 0) as one string.
    std::string chat_text(const std::string &messages_json, const chat_options &opts = {}) {
        std::string text;
        chat(messages_json, [&text](std::string_view t) { text.append(t); }, opts);
        return text;
    }
    std::string chat_text(const std::vector<message> &messages, const chat_options &opts = {}) {
        return chat_text(ylokh::messages_json(messages), opts);
    }
    std::string chat_text(conversation &conv, const chat_options &opts = {}) {
        std::string text;
        chat(conv, [&text](std::string_view t) { text.append(t); }, opts);
        return text;
    }

    /// Starts a reply to pull event by event (see ylokh::stream); returns at once.
    ylokh::stream stream(const std::string &messages_json, const chat_options &opts = {}) {
        return open(messages_json.c_str(), nullptr, opts);
    }
    ylokh::stream stream(const std::vector<message> &messages, const chat_options &opts = {}) {
        return stream(ylokh::messages_json(messages), opts);
    }
    /// With a conversation: the reply is appended to it when the stream ends normally. The
    /// conversation must outlive the stream.
    ylokh::stream stream(conversation &conv, const chat_options &opts = {}) {
        return open(nullptr, conv.get(), opts);
    }

    /// The whole assistant message as JSON: content, reasoning, refusal, tool_calls (id,
    /// type, function name and arguments), finish_reason, usage.
    std::string chat_message_json(const std::string &messages_json,
                                  const chat_options &opts = {}) {
        char *json = nullptr;
        std::size_t len = 0;
        detail::check(ylokh_chat_message_json(
            p_, opts.model.empty() ? nullptr : opts.model.c_str(), messages_json.c_str(),
            opts.options_json.empty() ? nullptr : opts.options_json.c_str(), &json, &len));
        detail::owned_string owned(json);
        return std::string(owned.get(), len);
    }
    std::string chat_message_json(const std::vector<message> &messages,
                                  const chat_options &opts = {}) {
        return chat_message_json(ylokh::messages_json(messages), opts);
    }

private:
    ylokh::stream open(const char *messages_json, ylokh_conversation *conv,
                       const chat_options &opts) {
        ylokh_request req{};
        req.struct_size = sizeof req;
        req.model = opts.model.empty() ? nullptr : opts.model.c_str();
        req.messages_json = messages_json;
        req.options_json = opts.options_json.empty() ? nullptr : opts.options_json.c_str();
        req.conversation = conv;
        req.cancel = opts.cancel != nullptr ? opts.cancel->get() : nullptr;
        ylokh_stream *s = nullptr;
        detail::check(ylokh_stream_open(p_, &req, &s));
        return ylokh::stream(s);
    }

    static void log_trampoline(void *userdata, const char *line, std::size_t len) noexcept {
        try {
            (*static_cast<std::function<void(std::string_view)> *>(userdata))(
                std::string_view(line, len));
        } catch (...) {
        }
    }

    static std::uint64_t to_ms(std::chrono::milliseconds d) noexcept {
        return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
    }

    /// The callback type of the kind a call does not use.
    struct none {};

    /// What the C callbacks see through userdata.
    template <class TokenFn, class EventFn>
    struct context {
        TokenFn *on_token;
        EventFn *on_event;
        std::exception_ptr exception;
        bool stopped = false;
    };

    /// Calls `fn(arg)`; true means go on. void callables always go on.
    template <class Fn, class Arg>
    static bool call(Fn &fn, const Arg &arg) {
        using result = std::invoke_result_t<Fn &, const Arg &>;
        if constexpr (std::is_void_v<result>) {
            fn(arg);
            return true;
        } else {
            static_assert(std::is_convertible_v<result, bool>,
                          "a ylokh callback returns void or bool");
            return static_cast<bool>(fn(arg));
        }
    }

    template <class Ctx>
    static int token_trampoline(void *userdata, const char *token, std::size_t len) noexcept {
        auto *ctx = static_cast<Ctx *>(userdata);
        try {
            if (call(*ctx->on_token, std::string_view(token, len))) return 0;
            ctx->stopped = true;
        } catch (...) {
            ctx->exception = std::current_exception();
        }
        return 1;
    }

    template <class Ctx>
    static int event_trampoline(void *userdata, const ylokh_event *e) noexcept {
        auto *ctx = static_cast<Ctx *>(userdata);
        try {
            if (call(*ctx->on_event, event(*e))) return 0;
            ctx->stopped = true;
        } catch (...) {
            ctx->exception = std::current_exception();
        }
        return 1;
    }

    /// One ylokh_chat_ex call; the callback of type `none` is not used.
    template <class TokenFn, class EventFn>
    bool run(const char *messages, ylokh_conversation *conv, const chat_options &opts,
             TokenFn *on_token, EventFn *on_event) {
        using ctx_t = context<TokenFn, EventFn>;
        ctx_t ctx{on_token, on_event, nullptr, false};
        ylokh_request req{};
        req.struct_size = sizeof req;
        req.model = opts.model.empty() ? nullptr : opts.model.c_str();
        req.messages_json = messages;
        req.options_json = opts.options_json.empty() ? nullptr : opts.options_json.c_str();
        req.conversation = conv;
        if constexpr (!std::is_same_v<TokenFn, none>) req.on_token = &token_trampoline<ctx_t>;
        if constexpr (!std::is_same_v<EventFn, none>) req.on_event = &event_trampoline<ctx_t>;
        req.userdata = &ctx;
        req.cancel = opts.cancel != nullptr ? opts.cancel->get() : nullptr;
        const ylokh_status status = ylokh_chat_ex(p_, &req);
        if (ctx.exception) std::rethrow_exception(ctx.exception);
        if (status == YLOKH_E_ABORTED && ctx.stopped) return false;
        detail::check(status);
        return true;
    }

    ylokh_client *p_;
    /// The log functions given to set_log(), kept until the client is freed (after p_).
    std::vector<std::unique_ptr<std::function<void(std::string_view)>>> logs_;
};

} // namespace ylokh

#endif /* YLOKH_HPP */
