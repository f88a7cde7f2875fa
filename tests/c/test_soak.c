/*
 * test_soak.c: many calls that mix every outcome, for runs under valgrind and under
 * AddressSanitizer + UndefinedBehaviorSanitizer (tests/c_api.rs). Cases:
 *
 *   soak BASE_URL N   N calls; call i asks the server for scenario i % 6 by putting
 *                     "scenario:K" in the message, and checks the exact outcome:
 *                     0 a good stream, 1 HTTP 500, 2 an error inside the stream,
 *                     3 a stall (timeout), 4 a callback abort, 5 a whole reply as text.
 *                     Clients, conversations and cancel tokens are created and freed
 *                     along the way, so every handle type is exercised.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#define SCENARIOS 6

typedef struct {
    char text[256];
    size_t len;
    int abort_after; /* 0: never */
    int calls;
} sink;

static int on_token(void *userdata, const char *token, size_t len) {
    sink *s = userdata;
    s->calls++;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, token, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    return s->abort_after != 0 && s->calls >= s->abort_after;
}

/* The stall scenario gets a client with a short timeout so that it costs little; the others
 * a long one, so that a slow machine (valgrind, a loaded CI) never turns them into timeouts. */
static ylokh_client *new_client(const char *url, uint64_t timeout_ms) {
    ylokh_client *c = ylokh_client_new();
    REQUIRE(c != NULL);
    REQUIRE(ylokh_client_set_base_url(c, url) == YLOKH_OK);
    REQUIRE(ylokh_client_set_max_retries(c, 0) == YLOKH_OK);
    REQUIRE(ylokh_client_set_timeout_ms(c, timeout_ms) == YLOKH_OK);
    REQUIRE(ylokh_client_set_proxy_from_env(c, 0) == YLOKH_OK);
    REQUIRE(ylokh_client_set_api_key(c, "sk-soak") == YLOKH_OK);
    return c;
}

static void one_call(ylokh_client *c, ylokh_client *quick, int i) {
    int scenario = i % SCENARIOS;
    char messages[128];
    sink s;
    ylokh_status st;
    memset(&s, 0, sizeof s);
    snprintf(messages, sizeof messages, "[{\"role\":\"user\",\"content\":\"scenario:%d\"}]",
             scenario);
    switch (scenario) {
    case 0:
        st = ylokh_chat(c, NULL, messages, NULL, on_token, &s);
        CHECK_STATUS(st, YLOKH_OK);
        CHECK_STREQ(s.text, "Hello, world!");
        break;
    case 1:
        st = ylokh_chat(c, NULL, messages, NULL, on_token, &s);
        CHECK_STATUS(st, YLOKH_E_HTTP_STATUS);
        CHECK(ylokh_last_http_status() == 500);
        CHECK_CONTAINS(ylokh_last_error(), "overloaded");
        CHECK(s.calls == 0);
        break;
    case 2:
        st = ylokh_chat(c, NULL, messages, NULL, on_token, &s);
        CHECK_STATUS(st, YLOKH_E_API);
        CHECK_CONTAINS(ylokh_last_error(), "broke");
        CHECK_STREQ(s.text, "partial");
        break;
    case 3:
        st = ylokh_chat(quick, NULL, messages, NULL, on_token, &s);
        CHECK_STATUS(st, YLOKH_E_TIMEOUT);
        break;
    case 4:
        s.abort_after = 2;
        st = ylokh_chat(c, NULL, messages, NULL, on_token, &s);
        CHECK_STATUS(st, YLOKH_E_ABORTED);
        CHECK_STREQ(s.text, "Hello, world");
        break;
    default: {
        char *text = NULL;
        size_t len = 0;
        ylokh_cancel *cancel = ylokh_cancel_new();
        ylokh_conversation *conv = ylokh_conversation_new();
        ylokh_request req;
        REQUIRE(cancel != NULL && conv != NULL);
        st = ylokh_chat_text(c, NULL, messages, "{\"stream\":false}", &text, &len);
        CHECK_STATUS(st, YLOKH_OK);
        if (st == YLOKH_OK) {
            CHECK_STREQ(text, "Whole reply.");
            CHECK(len == strlen("Whole reply."));
            ylokh_string_free(text);
        }
        /* The same scenario through a conversation and a (never triggered) cancel token. */
        CHECK_STATUS(ylokh_conversation_add(conv, "user", "scenario:5"), YLOKH_OK);
        memset(&req, 0, sizeof req);
        req.struct_size = sizeof req;
        req.options_json = "{\"stream\":false}";
        req.conversation = conv;
        req.on_token = on_token;
        req.userdata = &s;
        req.cancel = cancel;
        CHECK_STATUS(ylokh_chat_ex(c, &req), YLOKH_OK);
        CHECK(ylokh_conversation_len(conv) == 2);
        ylokh_conversation_free(conv);
        ylokh_cancel_free(cancel);
        break;
    }
    }
}

static void case_soak(const char *url, int argc, char **argv) {
    int n = argc > 0 ? atoi(argv[0]) : 1000;
    int i;
    ylokh_client *c = new_client(url, 30000);
    ylokh_client *quick = new_client(url, 100);
    for (i = 0; i < n; i++) {
        /* A new client now and then: creating and freeing them must not leak either. */
        if (i > 0 && i % 100 == 0) {
            ylokh_client_free(c);
            c = new_client(url, 30000);
        }
        one_call(c, quick, i);
    }
    ylokh_client_free(quick);
    ylokh_client_free(c);
    printf("CALLS %d\n", n);
}

int main(int argc, char **argv) {
    static const test_case cases[] = {
        {"soak", case_soak},
    };
    return run_cases(cases, sizeof cases / sizeof cases[0], argc, argv);
}
