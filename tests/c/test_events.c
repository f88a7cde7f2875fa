/*
 * test_events.c: the event API (ylokh_chat_events, ylokh_chat_ex with both callbacks)
 * and conversations with tool calls.
 *
 *   test_events CASE BASE_URL [ARGS...]
 *
 * Every event is printed as "EVENT {json}" for the Rust side, after the C side checked
 * the parts of the contract a printout cannot show (NUL terminators, NULL fields, thread).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *const MSGS = "[{\"role\":\"user\",\"content\":\"What is the weather?\"}]";

static const char *kind_name(ylokh_event_kind k) {
    switch (k) {
    case YLOKH_EVENT_CONTENT: return "content";
    case YLOKH_EVENT_REASONING: return "reasoning";
    case YLOKH_EVENT_TOOL_CALL: return "tool_call";
    case YLOKH_EVENT_FINISH: return "finish";
    case YLOKH_EVENT_USAGE: return "usage";
    default: return "(unknown kind)";
    }
}

typedef struct {
    port_thread_id thread;
    int in_call;
    size_t events;
    size_t abort_at;   /* non-zero from the event callback on this event (1-based) */
    /* For events_and_tokens: the last content event, which the token must repeat. */
    int expect_token;
    char *pending;
    size_t pending_cap;
    size_t pending_len;
    size_t tokens;
} event_state;

/* Checks a borrowed string: NUL after len bytes, UTF-8. */
static void check_text(const char *what, const char *s, size_t len) {
    if (s == NULL) {
        check_fail(__FILE__, __LINE__, "%s is NULL", what);
        return;
    }
    if (s[len] != '\0') check_fail(__FILE__, __LINE__, "%s[len] is not NUL", what);
    if (!utf8_valid(s, len)) check_fail(__FILE__, __LINE__, "%s is not UTF-8", what);
}

static int on_event(void *userdata, const ylokh_event *e) {
    event_state *st = userdata;
    st->events++;
    REQUIRE(e != NULL);
    if (!port_thread_same(port_thread_self(), st->thread))
        check_fail(__FILE__, __LINE__, "event callback on another thread");
    if (!st->in_call) check_fail(__FILE__, __LINE__, "event callback outside of the call");
    if (st->expect_token)
        check_fail(__FILE__, __LINE__, "an event came before the token of a content event");
    check_text("text", e->text, e->text_len);

    /* Fields that do not apply to the kind are zero or NULL. */
    if (e->kind != YLOKH_EVENT_TOOL_CALL) {
        CHECK(e->tool_index == 0);
        CHECK(e->tool_id == NULL && e->tool_id_len == 0);
        CHECK(e->tool_name == NULL && e->tool_name_len == 0);
    }
    if (e->kind != YLOKH_EVENT_USAGE) {
        CHECK(e->prompt_tokens == 0 && e->completion_tokens == 0 && e->total_tokens == 0);
    }
    if (e->tool_id != NULL) check_text("tool_id", e->tool_id, e->tool_id_len);
    if (e->tool_name != NULL) check_text("tool_name", e->tool_name, e->tool_name_len);

    printf("EVENT {\"kind\":\"%s\",\"choice\":%u,\"text\":", kind_name(e->kind),
           (unsigned)e->choice);
    json_print(stdout, e->text, e->text_len);
    if (e->kind == YLOKH_EVENT_TOOL_CALL) {
        printf(",\"index\":%u,\"id\":", (unsigned)e->tool_index);
        json_print_opt(stdout, e->tool_id, e->tool_id_len);
        printf(",\"name\":");
        json_print_opt(stdout, e->tool_name, e->tool_name_len);
    }
    if (e->kind == YLOKH_EVENT_USAGE) {
        printf(",\"prompt\":%llu,\"completion\":%llu,\"total\":%llu",
               (unsigned long long)e->prompt_tokens, (unsigned long long)e->completion_tokens,
               (unsigned long long)e->total_tokens);
    }
    printf("}\n");

    if (e->kind == YLOKH_EVENT_CONTENT && e->choice == 0 && st->pending != NULL) {
        /* events_and_tokens: on_token must follow with the same text. */
        REQUIRE(e->text_len <= st->pending_cap);
        memcpy(st->pending, e->text, e->text_len);
        st->pending_len = e->text_len;
        st->expect_token = 1;
    }
    return (st->abort_at != 0 && st->events == st->abort_at) ? 1 : 0;
}

static int on_token(void *userdata, const char *token, size_t len) {
    event_state *st = userdata;
    st->tokens++;
    check_text("token", token, len);
    if (!st->expect_token) {
        check_fail(__FILE__, __LINE__, "a token came without a content event just before it");
    } else if (len != st->pending_len || memcmp(token, st->pending, len) != 0) {
        check_fail(__FILE__, __LINE__, "the token differs from its content event");
    }
    st->expect_token = 0;
    printf("TOKEN ");
    json_print(stdout, token, len);
    putchar('\n');
    return 0;
}

static ylokh_client *client_for(const char *url) { return test_client(url); }

/* events [OPTIONS_JSON]: every event of the reply, in order. */
static void case_events(const char *url, int argc, char **argv) {
    ylokh_client *c = client_for(url);
    event_state st;
    memset(&st, 0, sizeof st);
    st.thread = port_thread_self();
    st.in_call = 1;
    CHECK_STATUS(ylokh_chat_events(c, "test-model", MSGS, argc > 0 ? argv[0] : NULL, on_event,
                                   &st),
                 YLOKH_OK);
    st.in_call = 0;
    CHECK(st.events > 0);
    ylokh_client_free(c);
}

/* events_abort N: the event callback stops the call on event N. */
static void case_events_abort(const char *url, int argc, char **argv) {
    ylokh_client *c = client_for(url);
    event_state st;
    REQUIRE(argc >= 1);
    memset(&st, 0, sizeof st);
    st.thread = port_thread_self();
    st.abort_at = (size_t)atoi(argv[0]);
    st.in_call = 1;
    CHECK_STATUS(ylokh_chat_events(c, NULL, MSGS, NULL, on_event, &st), YLOKH_E_ABORTED);
    st.in_call = 0;
    CHECK_EQ_SIZE(st.events, st.abort_at);
    ylokh_client_free(c);
}

/* events_and_tokens: ylokh_chat_ex with both callbacks: for each content event of choice 0,
 * on_event first, then on_token with the same text. */
static void case_events_and_tokens(const char *url, int argc, char **argv) {
    ylokh_client *c = client_for(url);
    event_state st;
    ylokh_request req;
    char pending[4096];
    (void)argc;
    (void)argv;
    memset(&st, 0, sizeof st);
    st.thread = port_thread_self();
    st.pending = pending;
    st.pending_cap = sizeof pending;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    req.on_event = on_event;
    req.on_token = on_token;
    req.userdata = &st;
    st.in_call = 1;
    CHECK_STATUS(ylokh_chat_ex(c, &req), YLOKH_OK);
    st.in_call = 0;
    CHECK(!st.expect_token);
    CHECK(st.tokens > 0);
    ylokh_client_free(c);
}

/* conversation_tools: a reply with tool calls is appended with them; the tool's result is
 * added with add_json and sent with the history in the next turn. */
static void case_conversation_tools(const char *url, int argc, char **argv) {
    ylokh_client *c = client_for(url);
    ylokh_conversation *conv = ylokh_conversation_new();
    event_state st;
    ylokh_request req;
    char *json = NULL;
    (void)argc;
    (void)argv;
    REQUIRE(conv != NULL);
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "What is the weather in Paris?"));

    memset(&st, 0, sizeof st);
    st.thread = port_thread_self();
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.conversation = conv; /* messages_json stays NULL */
    req.on_event = on_event; /* on_token may be NULL when on_event is set */
    req.userdata = &st;
    req.options_json = "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
                       "\"get_weather\",\"parameters\":{\"type\":\"object\"}}}]}";
    st.in_call = 1;
    CHECK_STATUS(ylokh_chat_ex(c, &req), YLOKH_OK);
    st.in_call = 0;
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 2);

    REQUIRE_OK(ylokh_conversation_add_json(
        conv, "{\"role\":\"tool\",\"tool_call_id\":\"call_abc\",\"content\":\"{\\\"temp\\\":21}\"}"));
    st.in_call = 1;
    CHECK_STATUS(ylokh_chat_ex(c, &req), YLOKH_OK);
    st.in_call = 0;
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 4);

    REQUIRE_OK(ylokh_conversation_to_json(conv, &json, NULL));
    printf("JSON %s\n", json);
    ylokh_string_free(json);
    ylokh_conversation_free(conv);
    ylokh_client_free(c);
}

int main(int argc, char **argv) {
    static const test_case cases[] = {
        {"events", case_events},
        {"events_abort", case_events_abort},
        {"events_and_tokens", case_events_and_tokens},
        {"conversation_tools", case_conversation_tools},
    };
    return run_cases(cases, sizeof cases / sizeof cases[0], argc, argv);
}
