/*
 * test_basic.c: the C API from C, one case per run (see check.h and tests/c_api.rs).
 *
 *   test_basic CASE BASE_URL [ARGS...]
 *
 * The Rust side starts a scripted server for the case, runs this program, and checks both
 * its exit status and what it printed (TOKENS, RESULT, ERROR, ... lines).
 */
/* POSIX 2008, and dladdr() (a GNU extension) to tell which library file was loaded;
 * GetModuleHandleExA and GetModuleFileNameA on Windows. */
#define _GNU_SOURCE

#ifndef _WIN32
#include <dlfcn.h>
#endif
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *const MSGS = "[{\"role\":\"user\",\"content\":\"Say hello\"}]";

/* Runs one ylokh_chat with the token collector around it. */
static ylokh_status chat_collect(ylokh_client *c, const char *model, const char *messages,
                                 const char *options, tokens *t) {
    ylokh_status s;
    t->in_call = 1;
    s = ylokh_chat(c, model, messages, options, tokens_cb, t);
    t->in_call = 0;
    return s;
}

/* stream [OPTIONS_JSON]: a streamed reply; the tokens are printed for the Rust side. */
static void case_stream(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    tokens_init(&t);
    CHECK_STATUS(chat_collect(c, "test-model", MSGS, argc > 0 ? argv[0] : NULL, &t), YLOKH_OK);
    tokens_print(&t, "TOKENS");
    tokens_free(&t);
    ylokh_client_free(c);
}

/* nostream: {"stream":false}; the whole reply comes in one callback (none if empty). */
static void case_nostream(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    (void)argc;
    (void)argv;
    tokens_init(&t);
    CHECK_STATUS(chat_collect(c, NULL, MSGS, "{\"stream\":false}", &t), YLOKH_OK);
    CHECK(t.count <= 1);
    tokens_print(&t, "TOKENS");
    tokens_free(&t);
    ylokh_client_free(c);
}

/* chat_text [OPTIONS_JSON]: the whole answer as one string, twice (with and without
 * out_len); failures leave the outputs untouched. */
static void case_chat_text(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    const char *options = argc > 0 ? argv[0] : NULL;
    static char sentinel_byte;
    char *const sentinel = &sentinel_byte;
    char *text = sentinel, *text2 = sentinel;
    size_t len = 12345, len2 = 777;

    CHECK_STATUS(ylokh_chat_text(c, NULL, MSGS, options, &text, &len), YLOKH_OK);
    REQUIRE(text != sentinel && text != NULL);
    CHECK(len != 12345);
    CHECK(text[len] == '\0');
    CHECK(utf8_valid(text, len));
    printf("TEXT ");
    json_print(stdout, text, len);
    printf("\nSTRLEN %zu LEN %zu\n", strlen(text), len);

    /* out_len may be NULL. */
    CHECK_STATUS(ylokh_chat_text(c, NULL, MSGS, options, &text2, NULL), YLOKH_OK);
    REQUIRE(text2 != sentinel && text2 != NULL);
    CHECK(text2 != text);
    CHECK(memcmp(text, text2, len + 1) == 0);
    ylokh_string_free(text);
    ylokh_string_free(text2);

    /* On failure the outputs are untouched. */
    text = sentinel;
    len2 = 777;
    CHECK_INVALID(ylokh_chat_text(c, NULL, "not json", options, &text, &len2),
                  "messages are not valid JSON");
    CHECK(text == sentinel && len2 == 777);
    CHECK_INVALID(ylokh_chat_text(c, NULL, MSGS, options, NULL, &len2), "out_text is NULL");
    CHECK(len2 == 777);
    ylokh_client_free(c);
}

/* Read by another thread: the last error is per thread. */
typedef struct {
    char error[256];
    int http;
} seen_error;

static void read_last_error(void *arg) {
    seen_error *seen = arg;
    snprintf(seen->error, sizeof seen->error, "%s", ylokh_last_error());
    seen->http = ylokh_last_http_status();
}

/* http_error CODE NEEDLE: a non-2xx reply gives YLOKH_E_HTTP_STATUS with the status and
 * the server's message; nothing reaches the callback; another thread sees nothing. */
static void case_http_error(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    ylokh_status s;
    seen_error seen;
    port_thread th;
    REQUIRE(argc >= 2);
    tokens_init(&t);
    s = chat_collect(c, NULL, MSGS, NULL, &t);
    print_failure(s);
    CHECK_STATUS(s, YLOKH_E_HTTP_STATUS);
    CHECK(ylokh_last_http_status() == atoi(argv[0]));
    CHECK_CONTAINS(ylokh_last_error(), argv[1]);
    CHECK_EQ_SIZE(t.count, 0);

    memset(&seen, 'x', sizeof seen);
    REQUIRE(port_thread_create(&th, read_last_error, &seen) == 0);
    port_thread_join(th);
    CHECK_STREQ(seen.error, "");
    CHECK(seen.http == 0);

    /* Calls that succeed do not clear it; the pointer stays valid until the next failure. */
    CHECK_STATUS(ylokh_client_set_timeout_ms(c, 5000), YLOKH_OK);
    CHECK_CONTAINS(ylokh_last_error(), argv[1]);
    CHECK(ylokh_last_http_status() == atoi(argv[0]));
    tokens_free(&t);
    ylokh_client_free(c);
}

/* api_error NEEDLE: an error inside a 200 stream gives YLOKH_E_API; tokens sent before
 * it stay delivered. */
static void case_api_error(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    ylokh_status s;
    REQUIRE(argc >= 1);
    tokens_init(&t);
    s = chat_collect(c, NULL, MSGS, NULL, &t);
    print_failure(s);
    tokens_print(&t, "TOKENS");
    CHECK_STATUS(s, YLOKH_E_API);
    CHECK_CONTAINS(ylokh_last_error(), argv[0]);
    tokens_free(&t);
    ylokh_client_free(c);
}

/* abort_cb N: the callback returns non-zero on token N: YLOKH_E_ABORTED at once (the
 * server stalls after the tokens, so waiting for it would take the whole timeout). Then a
 * second chat, which must succeed. */
static void case_abort_cb(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    ylokh_status s;
    double start, took;
    REQUIRE(argc >= 1);
    tokens_init(&t);
    t.abort_at = (size_t)atoi(argv[0]);
    start = now_ms();
    s = chat_collect(c, NULL, MSGS, NULL, &t);
    took = now_ms() - start;
    print_failure(s);
    tokens_print(&t, "TOKENS");
    printf("ELAPSED_MS %.1f\n", took);
    CHECK_STATUS(s, YLOKH_E_ABORTED);
    CHECK_CONTAINS(ylokh_last_error(), "callback");
    CHECK_EQ_SIZE(t.count, t.abort_at);
    CHECK(ylokh_last_http_status() == 0 || ylokh_last_http_status() == 200);
    CHECK(took < 2000.0);
    tokens_free(&t);

    /* The aborted call's connection was dropped, not pooled: the next chat works (on a
     * new connection, which the Rust side counts). */
    tokens_init(&t);
    CHECK_STATUS(chat_collect(c, NULL, MSGS, NULL, &t), YLOKH_OK);
    tokens_print(&t, "TOKENS2");
    tokens_free(&t);
    ylokh_client_free(c);
}

static int never_called(void *userdata, const char *token, size_t len) {
    (void)userdata;
    (void)token;
    (void)len;
    check_fail(__FILE__, __LINE__, "a callback was called for a refused call");
    return 1;
}

static int never_called_event(void *userdata, const ylokh_event *event) {
    (void)userdata;
    (void)event;
    check_fail(__FILE__, __LINE__, "an event callback was called for a refused call");
    return 1;
}

/* invalid_args: every bad input is refused with YLOKH_E_INVALID_ARGUMENT and a message
 * naming the problem, before anything is sent (the Rust side checks the server saw
 * nothing). */
static void case_invalid_args(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_conversation *conv = ylokh_conversation_new();
    ylokh_conversation *out = (ylokh_conversation *)&argc; /* sentinel: must stay */
    ylokh_cancel *cancel = ylokh_cancel_new();
    ylokh_request req;
    char *json = (char *)&argc;
    size_t json_len = 4242;
    const char *bad_utf8 = "caf\xc3\x28"; /* truncated two-byte sequence */
    const char *overlong = "\xc0\xaf";
    const char *surrogate = "\xed\xa0\x80";
    char msgs_bad_utf8[128];
    (void)argv;
    REQUIRE(conv != NULL && cancel != NULL);
    snprintf(msgs_bad_utf8, sizeof msgs_bad_utf8,
             "[{\"role\":\"user\",\"content\":\"%s\"}]", bad_utf8);

    /* NULL pointers. */
    CHECK_INVALID(ylokh_chat(NULL, NULL, MSGS, NULL, never_called, NULL), "client is NULL");
    CHECK_INVALID(ylokh_chat(c, NULL, NULL, NULL, never_called, NULL), "messages_json is NULL");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, NULL, NULL, NULL), "on_token is NULL");
    CHECK_INVALID(ylokh_chat_events(NULL, NULL, MSGS, NULL, never_called_event, NULL),
                  "client is NULL");
    CHECK_INVALID(ylokh_chat_events(c, NULL, MSGS, NULL, NULL, NULL), "on_event is NULL");
    CHECK_INVALID(ylokh_chat_events(c, NULL, NULL, NULL, never_called_event, NULL),
                  "messages_json is NULL");
    CHECK_INVALID(ylokh_chat_text(NULL, NULL, MSGS, NULL, &json, &json_len), "client is NULL");
    CHECK_INVALID(ylokh_chat_text(c, NULL, NULL, NULL, &json, &json_len),
                  "messages_json is NULL");
    CHECK_INVALID(ylokh_chat_ex(c, NULL), "request is NULL");
    CHECK_INVALID(ylokh_chat_ex(NULL, NULL), "is NULL");
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    CHECK_INVALID(ylokh_chat_ex(c, &req), "neither on_token nor on_event");
    req.on_token = never_called;
    req.conversation = conv;
    CHECK_INVALID(ylokh_chat_ex(c, &req), "not both");
    req.messages_json = NULL;
    req.conversation = NULL;
    CHECK_INVALID(ylokh_chat_ex(c, &req), "messages_json is NULL");
    CHECK_INVALID(ylokh_conversation_chat(c, NULL, NULL, NULL, never_called, NULL), "NULL");
    CHECK_INVALID(ylokh_conversation_chat(NULL, conv, NULL, NULL, never_called, NULL),
                  "client is NULL");
    CHECK_INVALID(ylokh_conversation_chat(c, conv, NULL, NULL, NULL, NULL), "on_token");

    /* Messages of the wrong shape. */
    CHECK_INVALID(ylokh_chat(c, NULL, "not json", NULL, never_called, NULL),
                  "messages are not valid JSON");
    CHECK_INVALID(ylokh_chat(c, NULL, "", NULL, never_called, NULL),
                  "messages are not valid JSON");
    CHECK_INVALID(ylokh_chat(c, NULL, "{\"role\":\"user\",\"content\":\"hi\"}", NULL,
                             never_called, NULL),
                  "messages must be a JSON array");
    CHECK_INVALID(ylokh_chat(c, NULL, "\"hi\"", NULL, never_called, NULL), "JSON array");
    CHECK_INVALID(ylokh_chat(c, NULL, "[1]", NULL, never_called, NULL),
                  "messages[0] is not a JSON object");
    CHECK_INVALID(ylokh_chat(c, NULL, "[{\"content\":\"hi\"}]", NULL, never_called, NULL),
                  "messages[0] has no role");
    CHECK_INVALID(ylokh_chat(c, NULL,
                             "[{\"role\":\"user\",\"content\":\"a\"},{\"content\":\"b\"}]",
                             NULL, never_called, NULL),
                  "messages[1] has no role");
    CHECK_INVALID(ylokh_chat(c, NULL, "[{\"role\":\"\"}]", NULL, never_called, NULL),
                  "messages[0].role must be a non-empty string");
    CHECK_INVALID(ylokh_chat(c, NULL, "[{\"role\":7}]", NULL, never_called, NULL),
                  "messages[0].role");
    CHECK_INVALID(ylokh_chat(c, NULL, "[{\"role\":\"user\",\"content\":5}]", NULL,
                             never_called, NULL),
                  "messages[0].content");

    /* Options of the wrong shape. */
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "[1]", never_called, NULL),
                  "options must be a JSON object");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "42", never_called, NULL),
                  "options must be a JSON object");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "{", never_called, NULL),
                  "options are not valid JSON");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "{\"stream\":\"yes\"}", never_called, NULL),
                  "options.stream");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "{\"messages\":[]}", never_called, NULL),
                  "\"messages\"");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "{\"model\":\"x\"}", never_called, NULL),
                  "\"model\"");
    CHECK_INVALID(ylokh_conversation_chat(c, conv, NULL, "[]", never_called, NULL),
                  "options must be a JSON object");

    /* Strings that are not UTF-8. */
    CHECK_INVALID(ylokh_chat(c, bad_utf8, MSGS, NULL, never_called, NULL),
                  "model is not valid UTF-8");
    CHECK_INVALID(ylokh_chat(c, NULL, msgs_bad_utf8, NULL, never_called, NULL),
                  "messages_json is not valid UTF-8");
    CHECK_INVALID(ylokh_chat(c, NULL, MSGS, "{\"user\":\"\xff\"}", never_called, NULL),
                  "options_json is not valid UTF-8");
    CHECK_INVALID(ylokh_chat(c, overlong, MSGS, NULL, never_called, NULL), "not valid UTF-8");
    CHECK_INVALID(ylokh_chat(c, surrogate, MSGS, NULL, never_called, NULL), "not valid UTF-8");
    CHECK_INVALID(ylokh_chat_text(c, NULL, msgs_bad_utf8, NULL, &json, &json_len),
                  "not valid UTF-8");
    CHECK_INVALID(ylokh_chat_events(c, bad_utf8, MSGS, NULL, never_called_event, NULL),
                  "not valid UTF-8");
    CHECK_INVALID(ylokh_client_set_base_url(c, "http://\xff/v1"), "not valid UTF-8");
    CHECK_INVALID(ylokh_client_set_api_key(c, bad_utf8), "not valid UTF-8");
    CHECK_INVALID(ylokh_client_set_proxy(c, bad_utf8), "not valid UTF-8");
    CHECK_INVALID(ylokh_client_set_header(c, bad_utf8, "v"), "not valid UTF-8");
    CHECK_INVALID(ylokh_client_set_header(c, "X-Ok", bad_utf8), "not valid UTF-8");
    CHECK_INVALID(ylokh_conversation_add(conv, bad_utf8, "hi"), "not valid UTF-8");
    CHECK_INVALID(ylokh_conversation_add(conv, "user", bad_utf8), "not valid UTF-8");
    CHECK_INVALID(ylokh_conversation_add_json(conv, msgs_bad_utf8), "not valid UTF-8");
    CHECK_INVALID(ylokh_conversation_from_json(msgs_bad_utf8, &out), "not valid UTF-8");

    /* Setters and other handles given NULL. */
    CHECK_INVALID(ylokh_client_set_base_url(NULL, url), "client is NULL");
    CHECK_INVALID(ylokh_client_set_base_url(c, NULL), "base_url is NULL");
    CHECK_INVALID(ylokh_client_set_api_key(NULL, "k"), "client is NULL");
    CHECK_INVALID(ylokh_client_set_proxy(NULL, NULL), "client is NULL");
    CHECK_INVALID(ylokh_client_set_proxy_from_env(NULL, 1), "client is NULL");
    CHECK_INVALID(ylokh_client_set_timeout_ms(NULL, 1000), "client is NULL");
    CHECK_INVALID(ylokh_client_set_deadline_ms(NULL, 1000), "client is NULL");
    CHECK_INVALID(ylokh_client_set_header(NULL, "X-A", "b"), "client is NULL");
    CHECK_INVALID(ylokh_client_set_header(c, NULL, "b"), "name is NULL");
    CHECK_INVALID(ylokh_client_set_max_retries(NULL, 1), "client is NULL");
    CHECK_INVALID(ylokh_client_set_retry_delay_ms(NULL, 1), "client is NULL");
    CHECK_INVALID(ylokh_client_set_max_event_bytes(NULL, 4096), "client is NULL");
    CHECK_INVALID(ylokh_client_set_ca_file(NULL, NULL), "client is NULL");
    CHECK_INVALID(ylokh_client_use_system_roots(NULL, 1), "client is NULL");
    CHECK_INVALID(ylokh_client_set_ca_file(c, bad_utf8), "not valid UTF-8");
    CHECK_INVALID(ylokh_conversation_add(NULL, "user", "hi"), "conversation is NULL");
    CHECK_INVALID(ylokh_conversation_add(conv, NULL, "hi"), "role is NULL");
    CHECK_INVALID(ylokh_conversation_add(conv, "user", NULL), "content is NULL");
    CHECK_INVALID(ylokh_conversation_add(conv, "", "hi"), "role");
    CHECK_INVALID(ylokh_conversation_add_json(NULL, "{\"role\":\"user\"}"),
                  "conversation is NULL");
    CHECK_INVALID(ylokh_conversation_add_json(conv, NULL), "message_json is NULL");
    CHECK_INVALID(ylokh_conversation_add_json(conv, "{"), "not valid JSON");
    CHECK_INVALID(ylokh_conversation_add_json(conv, "[]"), "is not a JSON object");
    CHECK_INVALID(ylokh_conversation_add_json(conv, "{\"content\":\"x\"}"), "has no role");
    CHECK_INVALID(ylokh_conversation_clear(NULL), "conversation is NULL");
    CHECK_INVALID(ylokh_conversation_to_json(NULL, &json, &json_len), "conversation is NULL");
    CHECK_INVALID(ylokh_conversation_to_json(conv, NULL, &json_len), "NULL");
    CHECK_INVALID(ylokh_conversation_from_json(NULL, &out), "json is NULL");
    CHECK_INVALID(ylokh_conversation_from_json("[]", NULL), "out is NULL");
    CHECK_INVALID(ylokh_conversation_from_json("{}", &out), "JSON array");
    CHECK_INVALID(ylokh_conversation_from_json("[{\"content\":\"x\"}]", &out), "has no role");
    CHECK_INVALID(ylokh_cancel_trigger(NULL), "cancel is NULL");
    CHECK_INVALID(ylokh_cancel_reset(NULL), "cancel is NULL");

    /* Outputs untouched, nothing added by the refused calls. */
    CHECK(out == (ylokh_conversation *)&argc);
    CHECK(json == (char *)&argc && json_len == 4242);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 0);

    ylokh_cancel_free(cancel);
    ylokh_conversation_free(conv);
    ylokh_client_free(c);
}

/* free_null: every _free(NULL) is a no-op; len(NULL) is 0; handles are made and freed. */
static void case_free_null(const char *url, int argc, char **argv) {
    ylokh_client *c = ylokh_client_new();
    ylokh_conversation *conv = ylokh_conversation_new();
    ylokh_cancel *cancel = ylokh_cancel_new();
    char *json = NULL;
    (void)url;
    (void)argc;
    (void)argv;
    ylokh_client_free(NULL);
    ylokh_conversation_free(NULL);
    ylokh_cancel_free(NULL);
    ylokh_string_free(NULL);
    CHECK_EQ_SIZE(ylokh_conversation_len(NULL), 0);
    CHECK(c != NULL && conv != NULL && cancel != NULL);
    CHECK_STATUS(ylokh_conversation_to_json(conv, &json, NULL), YLOKH_OK);
    CHECK_STREQ(json, "[]");
    ylokh_string_free(json);
    ylokh_cancel_free(cancel);
    ylokh_conversation_free(conv);
    ylokh_client_free(c);
}

/* status_str: a fixed description for every status, "unknown status" for the rest. */
static void case_status_str(const char *url, int argc, char **argv) {
    static const struct {
        ylokh_status s;
        const char *text;
    } known[] = {
        {YLOKH_OK, "ok"},
        {YLOKH_E_INVALID_ARGUMENT, "invalid argument"},
        {YLOKH_E_ABORTED, "aborted"},
        {YLOKH_E_CONNECT, "could not connect"},
        {YLOKH_E_TLS, "TLS error"},
        {YLOKH_E_TIMEOUT, "timed out"},
        {YLOKH_E_HTTP_STATUS, "HTTP error status"},
        {YLOKH_E_API, "server reported an error"},
        {YLOKH_E_PROTOCOL, "protocol error"},
        {YLOKH_E_IO, "I/O error"},
        {YLOKH_E_INTERNAL, "internal error"},
        {YLOKH_E_AGAIN, "nothing yet, try again"},
    };
    static const int unknown[] = {-1, 12, 100, 255, -100, INT_MIN, INT_MAX};
    size_t i;
    (void)url;
    (void)argc;
    (void)argv;
    /* The numbers are part of the ABI. */
    CHECK(YLOKH_OK == 0 && YLOKH_E_INVALID_ARGUMENT == 1 && YLOKH_E_ABORTED == 2 &&
          YLOKH_E_CONNECT == 3 && YLOKH_E_TLS == 4 && YLOKH_E_TIMEOUT == 5 &&
          YLOKH_E_HTTP_STATUS == 6 && YLOKH_E_API == 7 && YLOKH_E_PROTOCOL == 8 &&
          YLOKH_E_IO == 9 && YLOKH_E_INTERNAL == 10 && YLOKH_E_AGAIN == 11);
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        const char *got = ylokh_status_str(known[i].s);
        REQUIRE(got != NULL);
        CHECK_STREQ(got, known[i].text);
        CHECK(got == ylokh_status_str(known[i].s)); /* static */
        printf("STATUS %d ", known[i].s);
        json_print(stdout, got, strlen(got));
        putchar('\n');
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *got = ylokh_status_str(unknown[i]);
        REQUIRE(got != NULL);
        CHECK_STREQ(got, "unknown status");
    }
}

#if !defined(YLOKH_VERSION_NUMBER) || YLOKH_VERSION_NUMBER < 100
#error "YLOKH_VERSION_NUMBER must be usable in #if"
#endif

/* version: the library's version string equals the header's macros. */
static void case_version(const char *url, int argc, char **argv) {
    char expected[64];
    const char *v = ylokh_version();
    (void)url;
    (void)argc;
    (void)argv;
    REQUIRE(v != NULL);
    CHECK_STREQ(v, YLOKH_VERSION);
    snprintf(expected, sizeof expected, "%d.%d.%d", YLOKH_VERSION_MAJOR, YLOKH_VERSION_MINOR,
             YLOKH_VERSION_PATCH);
    CHECK_STREQ(v, expected);
    CHECK(YLOKH_VERSION_NUMBER ==
          YLOKH_VERSION_MAJOR * 10000 + YLOKH_VERSION_MINOR * 100 + YLOKH_VERSION_PATCH);
    CHECK(ylokh_version() == v);
    CHECK(ylokh_version_number() == YLOKH_VERSION_NUMBER);
    printf("VERSION %s\n", v);
    printf("VERSION_NUMBER %lu\n", (unsigned long)ylokh_version_number());
    {
        /* Which file the library was loaded from (the executable when linked statically):
         * the file holding the version string. (Not the address of ylokh_version: on
         * Windows that is the executable's import thunk.) */
#ifdef _WIN32
        HMODULE module = NULL;
        char path[MAX_PATH] = "";
        CHECK(GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                                     GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                                 v, &module) != 0);
        CHECK(module != NULL && GetModuleFileNameA(module, path, sizeof path) != 0);
        printf("LIBRARY %s\n", path[0] ? path : "(unknown)");
#else
        Dl_info info;
        memset(&info, 0, sizeof info);
        CHECK(dladdr(v, &info) != 0 && info.dli_fname != NULL);
        printf("LIBRARY %s\n", info.dli_fname ? info.dli_fname : "(unknown)");
#endif
    }
}

/* provider: the original provider's facts. */
static void case_provider(const char *url, int argc, char **argv) {
    const ylokh_provider_info *p = ylokh_provider();
    (void)url;
    (void)argc;
    (void)argv;
    REQUIRE(p != NULL);
    CHECK(ylokh_provider() == p);
    CHECK_STREQ(p->name, "Ylokh");
    CHECK_STREQ(p->url, "https://chat.ylokh.xyz");
    CHECK_STREQ(p->api_base, "https://chatapi.ylokh.xyz/v1");
    CHECK_STREQ(p->default_model, "gpt-3.5-turbo");
    CHECK(p->struct_size == sizeof *p);
    CHECK(YLOKH_HAS_FIELD(p, ylokh_provider_info, supports_gpt_35_turbo));
    CHECK(p->working == 0);
    CHECK(p->supports_message_history == 1);
    CHECK(p->supports_gpt_35_turbo == 1);
}

/* setters: bad values are refused and leave the settings as they were; good ones reach
 * the server (checked on the Rust side); the API key never shows in an error. */
static void case_setters(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    ylokh_status s;
    (void)argc;
    (void)argv;

    CHECK_INVALID(ylokh_client_set_base_url(c, "ftp://x"), "http:// or https://");
    CHECK_INVALID(ylokh_client_set_base_url(c, "ftp://x/v1"), "base URL");
    CHECK_INVALID(ylokh_client_set_base_url(c, "http://"), "base URL");
    CHECK_INVALID(ylokh_client_set_base_url(c, ""), "base URL");
    CHECK_INVALID(ylokh_client_set_base_url(c, "127.0.0.1:8080/v1"), "base URL");
    CHECK_INVALID(ylokh_client_set_base_url(c, "not a url"), "base URL");
    CHECK_INVALID(ylokh_client_set_header(c, "X Bad", "v"), "not a valid header name");
    CHECK_INVALID(ylokh_client_set_header(c, "", "v"), "not a valid header name");
    CHECK_INVALID(ylokh_client_set_header(c, "X:Colon", "v"), "not a valid header name");
    CHECK_INVALID(ylokh_client_set_header(c, "X-Ok", "a\r\nInjected: 1"), "is not valid");
    CHECK_INVALID(ylokh_client_set_header(c, "X-Ok", "a\nb"), "is not valid");
    CHECK_INVALID(ylokh_client_set_header(c, "X-Ok", "a\rb"), "is not valid");
    CHECK_INVALID(ylokh_client_set_timeout_ms(c, 0), "timeout");
    CHECK_INVALID(ylokh_client_set_max_event_bytes(c, 1023), "1024");
    CHECK_INVALID(ylokh_client_set_max_event_bytes(c, 0), "1024");
    CHECK_INVALID(ylokh_client_set_proxy(c, "ftp://proxy.invalid:21"), "proxy URL");
    CHECK_STATUS(ylokh_client_set_ca_file(c, "/nonexistent/ylokh-test-ca.pem"),
                 YLOKH_E_INVALID_ARGUMENT);
    CHECK_STATUS(ylokh_client_set_ca_file(c, "/dev/null"), YLOKH_E_INVALID_ARGUMENT);

    /* Good values. */
    CHECK_STATUS(ylokh_client_set_header(c, "X-Test-Header", "hello"), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_header(c, "x-test-header", "replaced"), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_header(c, "X-Removed", "gone"), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_header(c, "X-Removed", NULL), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_header(c, "Origin", NULL), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_api_key(c, "sk-test-secret-42"), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_timeout_ms(c, 5000), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_deadline_ms(c, 8000), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_deadline_ms(c, 0), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_max_retries(c, 0), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_retry_delay_ms(c, 10), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_max_event_bytes(c, 1024), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_max_event_bytes(c, 1 << 20), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_proxy(c, NULL), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_proxy(c, ""), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_proxy_from_env(c, 0), YLOKH_OK);
    CHECK_STATUS(ylokh_client_use_system_roots(c, 1), YLOKH_OK);
    CHECK_STATUS(ylokh_client_use_system_roots(c, 0), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_ca_file(c, NULL), YLOKH_OK);

    /* The refused base URLs left the good one in place: this reaches the test server. */
    tokens_init(&t);
    t.in_call = 1;
    s = ylokh_chat(c, NULL, MSGS, NULL, tokens_cb, &t);
    t.in_call = 0;
    CHECK_STATUS(s, YLOKH_OK);
    tokens_print(&t, "TOKENS");
    tokens_free(&t);

    /* The second reply is a 401 whose message repeats the key: it must be redacted. */
    tokens_init(&t);
    t.in_call = 1;
    s = ylokh_chat(c, NULL, MSGS, NULL, tokens_cb, &t);
    t.in_call = 0;
    print_failure(s);
    CHECK_STATUS(s, YLOKH_E_HTTP_STATUS);
    CHECK(ylokh_last_http_status() == 401);
    CHECK(strstr(ylokh_last_error(), "sk-test-secret-42") == NULL);
    CHECK_CONTAINS(ylokh_last_error(), "Incorrect API key");
    tokens_free(&t);

    /* NULL and "" remove the key (the third request has no Authorization header). */
    CHECK_STATUS(ylokh_client_set_api_key(c, NULL), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_api_key(c, ""), YLOKH_OK);
    tokens_init(&t);
    t.in_call = 1;
    CHECK_STATUS(ylokh_chat(c, NULL, MSGS, NULL, tokens_cb, &t), YLOKH_OK);
    t.in_call = 0;
    tokens_free(&t);
    ylokh_client_free(c);
}

/* conversation: two turns, a failed and an aborted one (both leave it unchanged), then
 * to_json / from_json / clear. */
static void case_conversation(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_conversation *conv = ylokh_conversation_new();
    ylokh_conversation *copy = NULL;
    tokens t;
    ylokh_status s;
    char *json = NULL, *json2 = NULL;
    size_t json_len = 0, json2_len = 0;
    (void)argc;
    (void)argv;
    REQUIRE(conv != NULL);

    REQUIRE_OK(ylokh_conversation_add(conv, "system", "You are terse."));
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "Hi \"there\"\n\xc3\xa9"));
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 2);

    /* Turn 1. */
    tokens_init(&t);
    t.in_call = 1;
    CHECK_STATUS(ylokh_conversation_chat(c, conv, "test-model", NULL, tokens_cb, &t), YLOKH_OK);
    t.in_call = 0;
    tokens_print(&t, "TURN1");
    tokens_free(&t);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 3);

    /* Turn 2: the whole history is sent (checked by the Rust side). */
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "And now?"));
    tokens_init(&t);
    t.in_call = 1;
    CHECK_STATUS(ylokh_conversation_chat(c, conv, "test-model", NULL, tokens_cb, &t), YLOKH_OK);
    t.in_call = 0;
    tokens_print(&t, "TURN2");
    tokens_free(&t);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 5);

    /* Turn 3 fails (HTTP 400): nothing is appended. */
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "Fail, please."));
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 6);
    tokens_init(&t);
    t.in_call = 1;
    s = ylokh_conversation_chat(c, conv, "test-model", NULL, tokens_cb, &t);
    t.in_call = 0;
    CHECK_STATUS(s, YLOKH_E_HTTP_STATUS);
    CHECK(ylokh_last_http_status() == 400);
    tokens_free(&t);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 6);

    /* Turn 4 is aborted by the callback after one token: nothing is appended either. */
    tokens_init(&t);
    t.abort_at = 1;
    t.in_call = 1;
    s = ylokh_conversation_chat(c, conv, "test-model", NULL, tokens_cb, &t);
    t.in_call = 0;
    CHECK_STATUS(s, YLOKH_E_ABORTED);
    CHECK_EQ_SIZE(t.count, 1);
    tokens_free(&t);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 6);

    /* to_json: NUL-terminated, length given, released with ylokh_string_free. */
    REQUIRE_OK(ylokh_conversation_to_json(conv, &json, &json_len));
    REQUIRE(json != NULL);
    CHECK_EQ_SIZE(strlen(json), json_len);
    printf("JSON %s\n", json);

    /* from_json reads it back to an equal conversation. */
    REQUIRE_OK(ylokh_conversation_from_json(json, &copy));
    REQUIRE(copy != NULL);
    CHECK_EQ_SIZE(ylokh_conversation_len(copy), 6);
    REQUIRE_OK(ylokh_conversation_to_json(copy, &json2, &json2_len));
    CHECK_STREQ(json2, json);
    CHECK_EQ_SIZE(json2_len, json_len);
    ylokh_string_free(json2);
    json2 = NULL;

    /* add_json, then clear. */
    CHECK_STATUS(ylokh_conversation_add_json(
                     copy, "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}"),
                 YLOKH_OK);
    CHECK_EQ_SIZE(ylokh_conversation_len(copy), 7);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 6); /* independent copies */
    CHECK_STATUS(ylokh_conversation_clear(copy), YLOKH_OK);
    CHECK_EQ_SIZE(ylokh_conversation_len(copy), 0);
    REQUIRE_OK(ylokh_conversation_to_json(copy, &json2, NULL));
    CHECK_STREQ(json2, "[]");

    ylokh_string_free(json2);
    ylokh_string_free(json);
    ylokh_conversation_free(copy);
    ylokh_conversation_free(conv);
    ylokh_client_free(c);
}

/* A callback that tries to chat again on the same thread, and uses other functions. */
typedef struct {
    tokens t;
    ylokh_client *client;
    ylokh_status nested;
    char nested_error[256];
    int calls;
} nested_state;

static int nested_cb(void *userdata, const char *token, size_t len) {
    nested_state *st = userdata;
    ylokh_conversation *conv;
    if (st->calls++ == 0) {
        st->nested = ylokh_chat(st->client, NULL, MSGS, NULL, never_called, NULL);
        snprintf(st->nested_error, sizeof st->nested_error, "%s", ylokh_last_error());
        /* Anything else is allowed. */
        conv = ylokh_conversation_new();
        CHECK_STATUS(ylokh_conversation_add(conv, "user", "x"), YLOKH_OK);
        ylokh_conversation_free(conv);
        CHECK_STATUS(ylokh_client_set_header(st->client, "X-From-Callback", "1"), YLOKH_OK);
        CHECK_STREQ(ylokh_status_str(YLOKH_OK), "ok");
    }
    return tokens_cb(&st->t, token, len);
}

/* nested: a chat started from a callback on the same thread is refused; the outer chat
 * goes on. */
static void case_nested(const char *url, int argc, char **argv) {
    nested_state st;
    (void)argc;
    (void)argv;
    memset(&st, 0, sizeof st);
    tokens_init(&st.t);
    st.client = test_client(url);
    st.t.in_call = 1;
    CHECK_STATUS(ylokh_chat(st.client, NULL, MSGS, NULL, nested_cb, &st), YLOKH_OK);
    st.t.in_call = 0;
    CHECK_STATUS(st.nested, YLOKH_E_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.nested_error, "callback");
    tokens_print(&st.t, "TOKENS");
    tokens_free(&st.t);
    ylokh_client_free(st.client);
}

/* timeout: a silent server is cut by the timeout, with YLOKH_E_TIMEOUT. */
static void case_timeout(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    ylokh_status s;
    double start, took;
    (void)argc;
    (void)argv;
    REQUIRE_OK(ylokh_client_set_timeout_ms(c, 300));
    tokens_init(&t);
    start = now_ms();
    t.in_call = 1;
    s = ylokh_chat(c, NULL, MSGS, NULL, tokens_cb, &t);
    t.in_call = 0;
    took = now_ms() - start;
    print_failure(s);
    printf("ELAPSED_MS %.1f\n", took);
    CHECK_STATUS(s, YLOKH_E_TIMEOUT);
    CHECK(took >= 250.0 && took < 3000.0);
    tokens_free(&t);
    ylokh_client_free(c);
}

/* connect: nothing listens at the URL: YLOKH_E_CONNECT, no HTTP status. */
static void case_connect(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    tokens t;
    ylokh_status s;
    (void)argc;
    (void)argv;
    tokens_init(&t);
    t.in_call = 1;
    s = ylokh_chat(c, NULL, MSGS, NULL, tokens_cb, &t);
    t.in_call = 0;
    print_failure(s);
    CHECK_STATUS(s, YLOKH_E_CONNECT);
    CHECK(ylokh_last_http_status() == 0);
    CHECK_EQ_SIZE(t.count, 0);
    tokens_free(&t);
    ylokh_client_free(c);
}

/* Parses a status given by name ("YLOKH_E_TIMEOUT") or number. */
static ylokh_status parse_status(const char *text) {
    ylokh_status s;
    for (s = YLOKH_OK; s <= YLOKH_E_INTERNAL; s++) {
        if (strcmp(text, status_name(s)) == 0) return s;
    }
    return (ylokh_status)atoi(text);
}

/* expect STATUS NEEDLE [timeout=MS] [deadline=MS] [retries=N] [retry_delay=MS]
 *        [max_event_bytes=N] [options=JSON]
 * One chat with these settings must end with STATUS and a message containing NEEDLE. */
static void case_expect(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    const char *options = NULL;
    ylokh_status want, s;
    tokens t;
    double start, took;
    int i;
    REQUIRE(argc >= 2);
    want = parse_status(argv[0]);
    for (i = 2; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *v = eq ? eq + 1 : "";
        size_t n = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        if (n == 7 && strncmp(argv[i], "timeout", n) == 0) {
            REQUIRE_OK(ylokh_client_set_timeout_ms(c, strtoull(v, NULL, 10)));
        } else if (n == 8 && strncmp(argv[i], "deadline", n) == 0) {
            REQUIRE_OK(ylokh_client_set_deadline_ms(c, strtoull(v, NULL, 10)));
        } else if (n == 7 && strncmp(argv[i], "retries", n) == 0) {
            REQUIRE_OK(ylokh_client_set_max_retries(c, (uint32_t)strtoul(v, NULL, 10)));
        } else if (n == 11 && strncmp(argv[i], "retry_delay", n) == 0) {
            REQUIRE_OK(ylokh_client_set_retry_delay_ms(c, strtoull(v, NULL, 10)));
        } else if (n == 15 && strncmp(argv[i], "max_event_bytes", n) == 0) {
            REQUIRE_OK(ylokh_client_set_max_event_bytes(c, (size_t)strtoull(v, NULL, 10)));
        } else if (n == 7 && strncmp(argv[i], "options", n) == 0) {
            options = v;
        } else {
            check_fail(__FILE__, __LINE__, "unknown setting %s", argv[i]);
            check_abort_now();
        }
    }
    tokens_init(&t);
    start = now_ms();
    s = chat_collect(c, NULL, MSGS, options, &t);
    took = now_ms() - start;
    print_failure(s);
    tokens_print(&t, "TOKENS");
    printf("ELAPSED_MS %.1f\n", took);
    CHECK_STATUS(s, want);
    if (s != YLOKH_OK) CHECK_CONTAINS(ylokh_last_error(), argv[1]);
    tokens_free(&t);
    ylokh_client_free(c);
}

/* Counts events whose struct_size is this header's sizeof(ylokh_event). */
static int sized_event_cb(void *userdata, const ylokh_event *ev) {
    int *counts = userdata;
    counts[0]++;
    if (ev->struct_size == sizeof *ev && YLOKH_HAS_FIELD(ev, ylokh_event, total_tokens))
        counts[1]++;
    return 0;
}

/* request_size: ylokh_request's struct_size is checked (0 or too small: refused); a larger
 * struct from a newer header is accepted while the fields this library does not know are
 * zero, refused once one is set; events carry their own struct_size. */
static void case_request_size(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    struct {
        ylokh_request r;
        unsigned char newer[32];
    } big;
    ylokh_request req;
    tokens t;
    int counts[2] = {0, 0};
    (void)argc;
    (void)argv;
    tokens_init(&t);

    memset(&req, 0, sizeof req);
    req.messages_json = MSGS;
    req.on_token = never_called;
    CHECK_INVALID(ylokh_chat_ex(c, &req), "struct_size is 0");
    req.struct_size = sizeof req.struct_size;
    CHECK_INVALID(ylokh_chat_ex(c, &req), "set it to sizeof(ylokh_request)");

    memset(&big, 0, sizeof big);
    big.r.struct_size = sizeof big;
    big.r.messages_json = MSGS;
    big.r.on_token = tokens_cb;
    big.r.userdata = &t;
    t.in_call = 1;
    CHECK_STATUS(ylokh_chat_ex(c, &big.r), YLOKH_OK);
    t.in_call = 0;
    tokens_print(&t, "TOKENS");
    big.newer[5] = 1;
    big.r.on_token = never_called;
    CHECK_INVALID(ylokh_chat_ex(c, &big.r), "upgrade libylokh");

    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    req.on_event = sized_event_cb;
    req.userdata = counts;
    CHECK_STATUS(ylokh_chat_ex(c, &req), YLOKH_OK);
    CHECK(counts[0] > 0 && counts[0] == counts[1]);
    printf("EVENTS %d SIZED %d\n", counts[0], counts[1]);
    tokens_free(&t);
    ylokh_client_free(c);
}

int main(int argc, char **argv) {
    static const test_case cases[] = {
        {"stream", case_stream},
        {"nostream", case_nostream},
        {"chat_text", case_chat_text},
        {"http_error", case_http_error},
        {"api_error", case_api_error},
        {"abort_cb", case_abort_cb},
        {"invalid_args", case_invalid_args},
        {"free_null", case_free_null},
        {"status_str", case_status_str},
        {"version", case_version},
        {"provider", case_provider},
        {"setters", case_setters},
        {"conversation", case_conversation},
        {"nested", case_nested},
        {"timeout", case_timeout},
        {"connect", case_connect},
        {"expect", case_expect},
        {"request_size", case_request_size},
    };
    return run_cases(cases, sizeof cases / sizeof cases[0], argc, argv);
}
