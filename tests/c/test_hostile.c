/*
 * test_hostile.c: lifetimes C programmers get wrong (SECURITY.md, "The calling program"),
 * run plainly, under valgrind and under AddressSanitizer by tests/c_api.rs.
 *
 *   test_hostile CASE BASE_URL
 *
 * free_cancel_while_waiting  a worker's call sleeps between retries (the server answers
 *                            503 with Retry-After: 1); the main thread frees the cancel
 *                            token the call holds. The call goes on, unharmed, to its end.
 * trigger_then_free          the main thread triggers the token and frees it at once,
 *                            while the worker's call waits: the call returns ABORTED.
 * cancel_in_callback         the token callback triggers the call's own token: no token
 *                            after it, and the call returns ABORTED.
 * last_error_after_success   the pointer from ylokh_last_error() stays valid, with the
 *                            same text, across later successful calls on the thread.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *const MSGS = "[{\"role\":\"user\",\"content\":\"hi\"}]";

typedef struct {
    ylokh_client *client;
    ylokh_cancel *cancel;
    ylokh_status status;
    char error[512];
    int tokens;
} job;

static int count_token(void *userdata, const char *token, size_t len) {
    job *j = userdata;
    (void)token;
    (void)len;
    j->tokens++;
    return 0;
}

static void *job_run(void *arg) {
    job *j = arg;
    ylokh_request req;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    req.on_token = count_token;
    req.userdata = j;
    req.cancel = j->cancel;
    j->status = ylokh_chat_ex(j->client, &req);
    snprintf(j->error, sizeof j->error, "%s", ylokh_last_error());
    return NULL;
}

static ylokh_client *new_client(const char *url) {
    ylokh_client *c = ylokh_client_new();
    REQUIRE(c != NULL);
    REQUIRE_OK(ylokh_client_set_base_url(c, url));
    REQUIRE_OK(ylokh_client_set_proxy_from_env(c, 0));
    REQUIRE_OK(ylokh_client_set_timeout_ms(c, 5000));
    return c;
}

/* The server answers the first request 503 (Retry-After: 1) and the second with "ok". */
static void case_free_cancel_while_waiting(const char *url) {
    job j;
    pthread_t worker;
    memset(&j, 0, sizeof j);
    j.client = new_client(url);
    REQUIRE_OK(ylokh_client_set_max_retries(j.client, 1));
    j.cancel = ylokh_cancel_new();
    REQUIRE(j.cancel != NULL);
    REQUIRE(pthread_create(&worker, NULL, job_run, &j) == 0);
    /* The 503 comes at once; the call then sleeps about 1 s before its retry. */
    sleep_ms(400);
    ylokh_cancel_free(j.cancel);
    pthread_join(worker, NULL);
    if (j.status != YLOKH_OK) check_fail(__FILE__, __LINE__, "status %s: %s", status_name(j.status), j.error);
    CHECK(j.tokens == 1);
    ylokh_client_free(j.client);
}

/* The server never answers. */
static void case_trigger_then_free(const char *url) {
    job j;
    pthread_t worker;
    double started;
    memset(&j, 0, sizeof j);
    j.client = new_client(url);
    j.cancel = ylokh_cancel_new();
    REQUIRE(j.cancel != NULL);
    REQUIRE(pthread_create(&worker, NULL, job_run, &j) == 0);
    sleep_ms(300);
    started = now_ms();
    REQUIRE_OK(ylokh_cancel_trigger(j.cancel));
    ylokh_cancel_free(j.cancel);
    pthread_join(worker, NULL);
    CHECK_STATUS(j.status, YLOKH_E_ABORTED);
    printf("CANCEL_MS %.1f\n", now_ms() - started);
    ylokh_client_free(j.client);
}

typedef struct {
    ylokh_cancel *cancel;
    int tokens;
} self_cancel;

static int cancel_own_call(void *userdata, const char *token, size_t len) {
    self_cancel *s = userdata;
    (void)token;
    (void)len;
    s->tokens++;
    CHECK_STATUS(ylokh_cancel_trigger(s->cancel), YLOKH_OK);
    return 0;
}

/* The server sends several tokens in one write. */
static void case_cancel_in_callback(const char *url) {
    ylokh_client *c = new_client(url);
    self_cancel s;
    ylokh_request req;
    s.cancel = ylokh_cancel_new();
    s.tokens = 0;
    REQUIRE(s.cancel != NULL);
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    req.on_token = cancel_own_call;
    req.userdata = &s;
    req.cancel = s.cancel;
    CHECK_STATUS(ylokh_chat_ex(c, &req), YLOKH_E_ABORTED);
    CHECK(s.tokens == 1);
    ylokh_cancel_free(s.cancel);
    ylokh_client_free(c);
}

static int ignore_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    (void)token;
    (void)len;
    return 0;
}

/* The server answers every request with a short stream. */
static void case_last_error_after_success(const char *url) {
    ylokh_client *c = new_client(url);
    const char *message;
    char copy[512];
    CHECK_STATUS(ylokh_client_set_base_url(c, "not a url"), YLOKH_E_INVALID_ARGUMENT);
    message = ylokh_last_error();
    snprintf(copy, sizeof copy, "%s", message);
    CHECK_STATUS(ylokh_chat(c, NULL, MSGS, NULL, ignore_token, NULL), YLOKH_OK);
    CHECK_STATUS(ylokh_client_set_timeout_ms(c, 1000), YLOKH_OK);
    CHECK_STREQ(message, copy);
    CHECK(ylokh_last_error() == message);
    ylokh_client_free(c);
}

int main(int argc, char **argv) {
    const char *name, *url;
    if (argc < 3) {
        fprintf(stderr, "usage: %s CASE BASE_URL\n", argv[0]);
        return 2;
    }
    name = argv[1];
    url = argv[2];
    if (strcmp(name, "free_cancel_while_waiting") == 0) case_free_cancel_while_waiting(url);
    else if (strcmp(name, "trigger_then_free") == 0) case_trigger_then_free(url);
    else if (strcmp(name, "cancel_in_callback") == 0) case_cancel_in_callback(url);
    else if (strcmp(name, "last_error_after_success") == 0) case_last_error_after_success(url);
    else {
        fprintf(stderr, "unknown case %s\n", name);
        return 2;
    }
    if (check_failed_count() != 0) return 1;
    printf("PASS %s\n", name);
    return 0;
}
