/*
 * test_threads.c: cancellation from another thread, and many threads sharing one client.
 *
 *   test_threads CASE BASE_URL [ARGS...]
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *const MSGS = "[{\"role\":\"user\",\"content\":\"Tell me a long story\"}]";

/* ---- A chat on a worker thread, with a cancel token ---- */

typedef struct {
    ylokh_client *client;
    const ylokh_cancel *cancel;
    tokens t;
    ylokh_status status;
    char error[256];
    double finished_ms;
    /* Signalled on the first token, so the main thread can cancel mid-stream. */
    port_mutex lock;
    port_cond cond;
    int got_token;
} job;

static int job_token(void *userdata, const char *token, size_t len) {
    job *j = userdata;
    int rc = tokens_cb(&j->t, token, len);
    port_mutex_lock(&j->lock);
    j->got_token = 1;
    port_cond_broadcast(&j->cond);
    port_mutex_unlock(&j->lock);
    return rc;
}

static void job_run(void *arg) {
    job *j = arg;
    ylokh_request req;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    req.on_token = job_token;
    req.userdata = j;
    req.cancel = j->cancel;
    j->t.thread = port_thread_self();
    j->t.in_call = 1;
    j->status = ylokh_chat_ex(j->client, &req);
    j->t.in_call = 0;
    j->finished_ms = now_ms();
    snprintf(j->error, sizeof j->error, "%s", ylokh_last_error());
}

static void job_init(job *j, ylokh_client *c, const ylokh_cancel *cancel) {
    memset(j, 0, sizeof *j);
    j->client = c;
    j->cancel = cancel;
    tokens_init(&j->t);
    port_mutex_init(&j->lock);
    port_cond_init(&j->cond);
}

static void job_destroy(job *j) {
    tokens_free(&j->t);
    port_mutex_destroy(&j->lock);
    port_cond_destroy(&j->cond);
}

/* Waits up to `ms` for the first token; returns whether it came. */
static int wait_for_token(job *j, long ms) {
    double until = now_ms() + (double)ms;
    int got;
    port_mutex_lock(&j->lock);
    while (!j->got_token && now_ms() < until) {
        port_cond_wait_ms(&j->cond, &j->lock, (long)(until - now_ms()) + 1);
    }
    got = j->got_token;
    port_mutex_unlock(&j->lock);
    return got;
}

/* Triggers `cancel`, joins, and checks the call was aborted soon after. */
static void cancel_and_check(job *j, port_thread th, ylokh_cancel *cancel, const char *label) {
    double triggered, took;
    triggered = now_ms();
    CHECK_STATUS(ylokh_cancel_trigger(cancel), YLOKH_OK);
    CHECK_STATUS(ylokh_cancel_trigger(cancel), YLOKH_OK); /* any number of times */
    port_thread_join(th);
    took = j->finished_ms - triggered;
    printf("%s %.1f\n", label, took);
    if (j->status != YLOKH_E_ABORTED)
        check_fail(__FILE__, __LINE__, "the cancelled call returned %s: %s",
                   status_name(j->status), j->error);
    CHECK_CONTAINS(j->error, "cancel");
    CHECK(took < 1000.0);
}

/* cancel_stall [TIMEOUT_MS]: the server never answers (or never accepts the connection);
 * the cancel must not wait for the timeout. */
static void case_cancel_stall(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_cancel *cancel = ylokh_cancel_new();
    job j;
    port_thread th;
    REQUIRE(cancel != NULL);
    if (argc > 0) REQUIRE_OK(ylokh_client_set_timeout_ms(c, strtoull(argv[0], NULL, 10)));
    job_init(&j, c, cancel);
    REQUIRE(port_thread_create(&th, job_run, &j) == 0);
    sleep_ms(300);
    cancel_and_check(&j, th, cancel, "CANCEL_MS");
    CHECK_EQ_SIZE(j.t.count, 0);
    job_destroy(&j);
    ylokh_cancel_free(cancel);
    ylokh_client_free(c);
}

/* cancel_midstream: some tokens arrive, then the server stalls; the tokens stay. */
static void case_cancel_midstream(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_cancel *cancel = ylokh_cancel_new();
    job j;
    port_thread th;
    (void)argc;
    (void)argv;
    REQUIRE(cancel != NULL);
    job_init(&j, c, cancel);
    REQUIRE(port_thread_create(&th, job_run, &j) == 0);
    CHECK(wait_for_token(&j, 5000));
    sleep_ms(100); /* let the rest of what was sent arrive */
    cancel_and_check(&j, th, cancel, "CANCEL_MS");
    tokens_print(&j.t, "TOKENS");
    job_destroy(&j);
    ylokh_cancel_free(cancel);
    ylokh_client_free(c);
}

/* cancel_before: a token triggered before the call stops it at once; after a reset the
 * same token can be used again. */
static void case_cancel_before(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_cancel *cancel = ylokh_cancel_new();
    job j;
    double start, took;
    (void)argc;
    (void)argv;
    REQUIRE(cancel != NULL);
    REQUIRE_OK(ylokh_cancel_trigger(cancel));

    job_init(&j, c, cancel);
    start = now_ms();
    job_run(&j); /* on this thread */
    took = now_ms() - start;
    printf("ELAPSED_MS %.1f\n", took);
    CHECK_STATUS(j.status, YLOKH_E_ABORTED);
    CHECK_EQ_SIZE(j.t.count, 0);
    CHECK(took < 1000.0);
    job_destroy(&j);

    REQUIRE_OK(ylokh_cancel_reset(cancel));
    REQUIRE_OK(ylokh_cancel_reset(cancel));
    job_init(&j, c, cancel);
    job_run(&j);
    CHECK_STATUS(j.status, YLOKH_OK);
    tokens_print(&j.t, "TOKENS");
    job_destroy(&j);
    ylokh_cancel_free(cancel);
    ylokh_client_free(c);
}

/* cancel_before_offline: a token triggered before the call stops it at once, even when
 * the server cannot be reached (the call must not try). */
static void case_cancel_before_offline(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_cancel *cancel = ylokh_cancel_new();
    job j;
    double start, took;
    (void)argc;
    (void)argv;
    REQUIRE(cancel != NULL);
    REQUIRE_OK(ylokh_cancel_trigger(cancel));
    job_init(&j, c, cancel);
    start = now_ms();
    job_run(&j);
    took = now_ms() - start;
    printf("ELAPSED_MS %.1f\n", took);
    if (j.status != YLOKH_E_ABORTED)
        check_fail(__FILE__, __LINE__, "a call with a triggered token returned %s, not "
                   "YLOKH_E_ABORTED: %s", status_name(j.status), j.error);
    CHECK(took < 1000.0);
    job_destroy(&j);
    ylokh_cancel_free(cancel);
    ylokh_client_free(c);
}

/* cancel_shared: one token stops the calls of several threads at once. */
#define SHARED_JOBS 4
static void case_cancel_shared(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_cancel *cancel = ylokh_cancel_new();
    job jobs[SHARED_JOBS];
    port_thread th[SHARED_JOBS];
    double triggered;
    int i;
    (void)argc;
    (void)argv;
    REQUIRE(cancel != NULL);
    for (i = 0; i < SHARED_JOBS; i++) {
        job_init(&jobs[i], c, cancel);
        REQUIRE(port_thread_create(&th[i], job_run, &jobs[i]) == 0);
    }
    sleep_ms(300);
    triggered = now_ms();
    REQUIRE_OK(ylokh_cancel_trigger(cancel));
    for (i = 0; i < SHARED_JOBS; i++) {
        double took;
        port_thread_join(th[i]);
        took = jobs[i].finished_ms - triggered;
        printf("CANCEL_MS %.1f\n", took);
        if (jobs[i].status != YLOKH_E_ABORTED)
            check_fail(__FILE__, __LINE__, "job %d returned %s: %s", i,
                       status_name(jobs[i].status), jobs[i].error);
        CHECK(took < 1000.0);
        job_destroy(&jobs[i]);
    }
    ylokh_cancel_free(cancel);
    ylokh_client_free(c);
}

/* ---- threads: 8 threads share one client ---- */

#define NTHREADS 8
#define NCHATS 6

typedef struct {
    int id;
    ylokh_client *client;
    barrier *start;
    int chats_ok;
} worker;

static void json_message(char *out, size_t cap, const char *prompt) {
    snprintf(out, cap, "[{\"role\":\"user\",\"content\":\"%s\"}]", prompt);
}

static void worker_run(void *arg) {
    worker *w = arg;
    ylokh_conversation *conv = ylokh_conversation_new();
    char prompt[128], expected[160], msgs[256], bad[1024];
    int i, k;
    size_t pos;
    REQUIRE(conv != NULL);

    for (i = 0; i < NCHATS; i++) {
        tokens t;
        ylokh_status s = YLOKH_E_INTERNAL;
        snprintf(prompt, sizeof prompt, "thread %d chat %d: caf\xc3\xa9 \xe2\x9c\x93 %d", w->id, i,
                 w->id * 100 + i);
        snprintf(expected, sizeof expected, "echo: %s", prompt);
        tokens_init(&t);
        switch (i % 3) {
        case 0: /* ylokh_chat with JSON messages */
            json_message(msgs, sizeof msgs, prompt);
            t.in_call = 1;
            s = ylokh_chat(w->client, NULL, msgs, NULL, tokens_cb, &t);
            t.in_call = 0;
            break;
        case 1: { /* ylokh_chat_text */
            char *text = NULL;
            size_t len = 0;
            json_message(msgs, sizeof msgs, prompt);
            s = ylokh_chat_text(w->client, NULL, msgs, NULL, &text, &len);
            if (s == YLOKH_OK) {
                t.in_call = 1;
                tokens_cb(&t, text, len);
                t.in_call = 0;
                ylokh_string_free(text);
            }
            break;
        }
        case 2: /* a conversation of this thread's own */
            if (ylokh_conversation_add(conv, "user", prompt) != YLOKH_OK) break;
            t.in_call = 1;
            s = ylokh_conversation_chat(w->client, conv, NULL, NULL, tokens_cb, &t);
            t.in_call = 0;
            break;
        }
        if (s != YLOKH_OK) {
            check_fail(__FILE__, __LINE__, "thread %d chat %d: %s: %s", w->id, i, status_name(s),
                       ylokh_last_error());
        } else if (!tokens_equal(&t, expected, strlen(expected))) {
            check_fail(__FILE__, __LINE__, "thread %d chat %d: got \"%s\", expected \"%s\"",
                       w->id, i, t.data ? t.data : "", expected);
        } else {
            w->chats_ok++;
        }
        tokens_free(&t);
    }
    /* Each conversation turn added the user's message and the reply. */
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 2 * (NCHATS / 3));

    /* The last error is per thread: each thread fails differently, waits for the others to
     * fail too, then still sees its own message. messages[id] lacks a role. */
    pos = 0;
    bad[pos++] = '[';
    for (k = 0; k < w->id; k++) pos += (size_t)snprintf(bad + pos, sizeof bad - pos, "{\"role\":\"user\"},");
    snprintf(bad + pos, sizeof bad - pos, "{\"content\":\"x\"}]");
    CHECK_STATUS(ylokh_chat(w->client, NULL, bad, NULL, tokens_cb, NULL), YLOKH_E_INVALID_ARGUMENT);
    barrier_wait(w->start);
    snprintf(expected, sizeof expected, "messages[%d] has no role", w->id);
    CHECK_CONTAINS(ylokh_last_error(), expected);

    ylokh_conversation_free(conv);
}

/* Changes settings while the chats run: allowed, and only affects later chats. */
typedef struct {
    ylokh_client *client;
    const char *url;
    port_mutex lock;
    int stop;
    int rounds;
} churn;

static void churn_run(void *arg) {
    churn *ch = arg;
    char value[32];
    for (;;) {
        int stop;
        port_mutex_lock(&ch->lock);
        stop = ch->stop;
        port_mutex_unlock(&ch->lock);
        if (stop) break;
        snprintf(value, sizeof value, "%d", ch->rounds);
        CHECK_STATUS(ylokh_client_set_header(ch->client, "X-Churn", value), YLOKH_OK);
        CHECK_STATUS(ylokh_client_set_timeout_ms(ch->client, 10000 + (uint64_t)(ch->rounds % 7)),
                     YLOKH_OK);
        CHECK_STATUS(ylokh_client_set_base_url(ch->client, ch->url), YLOKH_OK);
        CHECK_STATUS(ylokh_client_set_max_retries(ch->client, 0), YLOKH_OK);
        ch->rounds++;
        sleep_ms(2);
    }
}

static void case_threads(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    worker workers[NTHREADS];
    port_thread th[NTHREADS], churner;
    barrier start_line;
    churn ch;
    int i, total = 0;
    double start = now_ms();
    (void)argc;
    (void)argv;
    barrier_init(&start_line, NTHREADS);
    memset(&ch, 0, sizeof ch);
    ch.client = c;
    ch.url = url;
    port_mutex_init(&ch.lock);
    REQUIRE(port_thread_create(&churner, churn_run, &ch) == 0);
    for (i = 0; i < NTHREADS; i++) {
        workers[i].id = i;
        workers[i].client = c;
        workers[i].start = &start_line;
        workers[i].chats_ok = 0;
        REQUIRE(port_thread_create(&th[i], worker_run, &workers[i]) == 0);
    }
    for (i = 0; i < NTHREADS; i++) {
        port_thread_join(th[i]);
        total += workers[i].chats_ok;
    }
    port_mutex_lock(&ch.lock);
    ch.stop = 1;
    port_mutex_unlock(&ch.lock);
    port_thread_join(churner);
    printf("CHATS_OK %d\nSETTER_ROUNDS %d\nELAPSED_MS %.1f\n", total, ch.rounds,
           now_ms() - start);
    CHECK(total == NTHREADS * NCHATS);
    CHECK(ch.rounds > 0);
    barrier_destroy(&start_line);
    port_mutex_destroy(&ch.lock);
    ylokh_client_free(c);
}

int main(int argc, char **argv) {
    static const test_case cases[] = {
        {"cancel_stall", case_cancel_stall},
        {"cancel_midstream", case_cancel_midstream},
        {"cancel_before", case_cancel_before},
        {"cancel_before_offline", case_cancel_before_offline},
        {"cancel_shared", case_cancel_shared},
        {"threads", case_threads},
    };
    return run_cases(cases, sizeof cases / sizeof cases[0], argc, argv);
}
