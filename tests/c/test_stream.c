/*
 * test_stream.c: the pull API (ylokh_stream_*) from C: one thread, poll() on the streams'
 * descriptors, back-pressure, never blocking with wait 0, close at any point, cancel,
 * conversations, bad arguments. Driven by tests/c_api/stream.rs.
 *
 *   test_stream CASE BASE_URL [ARGS...]
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "check.h"

static const char *const MSGS = "[{\"role\":\"user\",\"content\":\"hi\"}]";

/* ---- Helpers ---- */

/* Checks what every event handed out by a stream promises: strings NUL-terminated,
 * UTF-8, text never NULL, and nothing left of the previous event. */
static void check_event(const ylokh_event *e) {
    REQUIRE(e != NULL);
    REQUIRE(e->text != NULL);
    CHECK(e->text[e->text_len] == '\0');
    CHECK(utf8_valid(e->text, e->text_len));
    if (e->tool_id != NULL) CHECK(e->tool_id[e->tool_id_len] == '\0');
    if (e->tool_name != NULL) CHECK(e->tool_name[e->tool_name_len] == '\0');
    /* Fields that do not apply to the kind are zero or NULL, also right after an event
     * of a kind that set them. */
    if (e->kind != YLOKH_EVENT_TOOL_CALL)
        CHECK(e->tool_index == 0 && e->tool_id == NULL && e->tool_id_len == 0 &&
              e->tool_name == NULL && e->tool_name_len == 0);
    if (e->kind != YLOKH_EVENT_USAGE)
        CHECK(e->prompt_tokens == 0 && e->completion_tokens == 0 && e->total_tokens == 0);
}

static ylokh_stream *open_stream(ylokh_client *c, const char *messages) {
    ylokh_request req;
    ylokh_stream *s = NULL;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = messages;
    REQUIRE_OK(ylokh_stream_open(c, &req, &s));
    REQUIRE(s != NULL);
    return s;
}

/* Appends the content of choice 0 to `t` (the token collector of check.h). */
static void collect(tokens *t, const ylokh_event *e) {
    if (e->kind == YLOKH_EVENT_CONTENT && e->choice == 0) {
        t->in_call = 1;
        tokens_cb(t, e->text, e->text_len);
        t->in_call = 0;
    }
}

/* Pulls to the end with a wait; returns the final status. */
static ylokh_status drain(ylokh_stream *s, tokens *t, size_t *events) {
    for (;;) {
        const ylokh_event *e = NULL;
        ylokh_status st = ylokh_stream_next(s, 5000, &e);
        if (st == YLOKH_E_AGAIN) continue;
        if (st != YLOKH_OK) return st;
        if (e == NULL) return YLOKH_OK;
        check_event(e);
        if (events) (*events)++;
        if (t) collect(t, e);
    }
}

static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident * 4; /* 4 KiB pages on the machines this runs on */
}

static void thread_switches(long *voluntary, long *involuntary) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    *voluntary = ru.ru_nvcsw;
    *involuntary = ru.ru_nivcsw;
}

/* ---- pull: one stream to its end, with the message at the end ---- */

static void case_pull(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_stream *s = open_stream(c, MSGS);
    const ylokh_event *e = (const ylokh_event *)&e; /* must be overwritten */
    tokens t;
    size_t events = 0;
    char *json = NULL;
    size_t len = 0;
    (void)argc;
    (void)argv;
    tokens_init(&t);
    CHECK_STATUS(drain(s, &t, &events), YLOKH_OK);
    /* The end says the same for ever. */
    CHECK_STATUS(ylokh_stream_next(s, 0, &e), YLOKH_OK);
    CHECK(e == NULL);
    CHECK_STATUS(ylokh_stream_next(s, 1000, &e), YLOKH_OK);
    CHECK(e == NULL);
    REQUIRE_OK(ylokh_stream_message_json(s, &json, &len));
    CHECK(json != NULL && strlen(json) == len);
    printf("MESSAGE %s\n", json);
    ylokh_string_free(json);
    tokens_print(&t, "TOKENS");
    printf("EVENTS %zu\n", events);
    tokens_free(&t);
    ylokh_stream_close(s);
    ylokh_client_free(c);
}

/* ---- poll64: 64 streams from one thread, poll() on their descriptors ---- */

#define POLL_STREAMS 64

static void case_poll64(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_stream *s[POLL_STREAMS];
    tokens t[POLL_STREAMS];
    int done[POLL_STREAMS];
    struct pollfd fds[POLL_STREAMS];
    int map[POLL_STREAMS];
    int n_tokens = argc > 0 ? atoi(argv[0]) : 100;
    int i, left = POLL_STREAMS;
    long spurious = 0, wakeups = 0, pulls = 0;
    double max_next_ms = 0, started = now_ms();
    REQUIRE(n_tokens > 0);
    for (i = 0; i < POLL_STREAMS; i++) {
        char msg[96];
        snprintf(msg, sizeof msg, "[{\"role\":\"user\",\"content\":\"stream %d\"}]", i);
        tokens_init(&t[i]);
        s[i] = open_stream(c, msg);
        done[i] = 0;
    }
    while (left > 0) {
        int n = 0, ready;
        for (i = 0; i < POLL_STREAMS; i++) {
            if (done[i]) continue;
            fds[n].fd = ylokh_stream_fd(s[i]);
            REQUIRE(fds[n].fd >= 0);
            fds[n].events = POLLIN;
            fds[n].revents = 0;
            map[n++] = i;
        }
        ready = poll(fds, (nfds_t)n, 10000);
        REQUIRE(ready > 0); /* nothing for 10 s: a lost wake-up */
        for (i = 0; i < n; i++) {
            int k = map[i], first = 1;
            if (!(fds[i].revents & POLLIN)) continue;
            wakeups++;
            /* Readable means ylokh_stream_next does not wait: drain what is there. */
            for (;;) {
                const ylokh_event *e = NULL;
                double t0 = now_ms(), dt;
                ylokh_status st = ylokh_stream_next(s[k], 0, &e);
                dt = now_ms() - t0;
                if (dt > max_next_ms) max_next_ms = dt;
                pulls++;
                if (st == YLOKH_E_AGAIN) {
                    if (first) spurious++;
                    break;
                }
                first = 0;
                if (st != YLOKH_OK) {
                    check_fail(__FILE__, __LINE__, "stream %d failed: %s: %s", k,
                               status_name(st), ylokh_last_error());
                    done[k] = 1;
                    left--;
                    break;
                }
                if (e == NULL) {
                    done[k] = 1;
                    left--;
                    break;
                }
                check_event(e);
                collect(&t[k], e);
            }
        }
    }
    /* Each stream got exactly its own reply: "s<k>t<i> " for i in 0..n_tokens. */
    for (i = 0; i < POLL_STREAMS; i++) {
        size_t want_len = 0, j;
        char *want = malloc((size_t)n_tokens * 24 + 1);
        REQUIRE(want != NULL);
        for (j = 0; j < (size_t)n_tokens; j++)
            want_len += (size_t)sprintf(want + want_len, "s%dt%zu ", i, j);
        if (!tokens_equal(&t[i], want, want_len))
            check_fail(__FILE__, __LINE__, "stream %d: %zu bytes, expected %zu", i, t[i].len,
                       want_len);
        CHECK(t[i].count == (size_t)n_tokens);
        free(want);
        tokens_free(&t[i]);
        ylokh_stream_close(s[i]);
    }
    printf("STREAMS_OK %d\n", check_failed_count() == 0 ? POLL_STREAMS : 0);
    printf("WAKEUPS %ld\nSPURIOUS %ld\nPULLS %ld\n", wakeups, spurious, pulls);
    printf("MAX_NEXT0_MS %.3f\nELAPSED_MS %.0f\n", max_next_ms, now_ms() - started);
    ylokh_client_free(c);
}

/* ---- stall: the consumer stops for 2 s in the middle of a large reply ---- */

static void case_stall(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_stream *s = open_stream(c, MSGS);
    const ylokh_event *e = NULL;
    long want = argc > 0 ? atol(argv[0]) : 0, got = 0;
    long before, after, peak;
    char expect[64];
    tokens t;
    tokens_init(&t);
    /* The first event: the reply is flowing. */
    REQUIRE_OK(ylokh_stream_next(s, 10000, &e));
    REQUIRE(e != NULL && e->kind == YLOKH_EVENT_CONTENT);
    snprintf(expect, sizeof expect, "token number %6ld ", got);
    CHECK(e->text_len == strlen(expect) && memcmp(e->text, expect, e->text_len) == 0);
    got++;
    before = rss_kb();
    peak = before;
    {
        int i;
        for (i = 0; i < 20; i++) { /* 2 s, looking at the RSS every 100 ms */
            long now;
            sleep_ms(100);
            now = rss_kb();
            if (now > peak) peak = now;
        }
    }
    after = rss_kb();
    printf("RSS_BEFORE_KB %ld\nRSS_PEAK_KB %ld\nRSS_AFTER_KB %ld\nRSS_GROWTH_KB %ld\n", before,
           peak, after, peak - before);
    /* The rest arrives, exact and in order. */
    for (;;) {
        ylokh_status st = ylokh_stream_next(s, 10000, &e);
        if (st != YLOKH_OK) {
            check_fail(__FILE__, __LINE__, "%s: %s", status_name(st), ylokh_last_error());
            break;
        }
        if (e == NULL) break;
        if (e->kind != YLOKH_EVENT_CONTENT) continue;
        snprintf(expect, sizeof expect, "token number %6ld ", got);
        if (e->text_len != strlen(expect) || memcmp(e->text, expect, e->text_len) != 0) {
            check_fail(__FILE__, __LINE__, "token %ld is wrong", got);
            break;
        }
        got++;
    }
    printf("TOKENS_COUNT %ld\n", got);
    CHECK(got == want);
    tokens_free(&t);
    ylokh_stream_close(s);
    ylokh_client_free(c);
}

/* ---- nowait: ylokh_stream_next(..., 0, ...) never blocks ----
 * Streams in every phase at once: connecting to a server that never accepts (argv[0]),
 * waiting on a server that accepted and is silent (base URL), and streaming (argv[1]).
 * Each call is timed, with the thread's context switches around it: a call that blocks
 * sleeps (a voluntary switch); one that was merely preempted on a busy machine shows an
 * involuntary switch instead. */

#define NOWAIT_EACH 8

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void case_nowait(const char *url, int argc, char **argv) {
    ylokh_client *hole, *silent, *live;
    ylokh_stream *s[3 * NOWAIT_EACH];
    int open_streams = 3 * NOWAIT_EACH, i;
    long calls = 0, slow_blocked = 0, slow_preempted = 0, events = 0, ends = 0;
    size_t cap = 400000, n = 0;
    double *times = malloc(cap * sizeof *times);
    double max_ms = 0, max_unpreempted_ms = 0, until;
    REQUIRE(times != NULL);
    REQUIRE(argc >= 2);
    hole = test_client(argv[0]);
    silent = test_client(url);
    live = test_client(argv[1]);
    for (i = 0; i < NOWAIT_EACH; i++) {
        s[i] = open_stream(hole, MSGS);
        s[NOWAIT_EACH + i] = open_stream(silent, MSGS);
        s[2 * NOWAIT_EACH + i] = open_stream(live, MSGS);
    }
    until = now_ms() + 1500;
    while (now_ms() < until) {
        for (i = 0; i < open_streams; i++) {
            const ylokh_event *e = NULL;
            long v0, iv0, v1, iv1;
            double t0, dt;
            ylokh_status st;
            thread_switches(&v0, &iv0);
            t0 = now_ms();
            st = ylokh_stream_next(s[i], 0, &e);
            dt = now_ms() - t0;
            thread_switches(&v1, &iv1);
            calls++;
            if (n < cap) times[n++] = dt;
            if (dt > max_ms) max_ms = dt;
            if (dt > 1.0) {
                if (iv1 > iv0 && v1 == v0)
                    slow_preempted++;
                else
                    slow_blocked++;
            }
            if (iv1 == iv0 && dt > max_unpreempted_ms) max_unpreempted_ms = dt;
            if (st == YLOKH_OK && e != NULL) events++;
            if (st == YLOKH_OK && e == NULL) ends++;
        }
    }
    qsort(times, n, sizeof *times, cmp_double);
    printf("NEXT0_CALLS %ld\nNEXT0_EVENTS %ld\nNEXT0_ENDS %ld\n", calls, events, ends);
    printf("NEXT0_MAX_MS %.3f\nNEXT0_P999_MS %.3f\nNEXT0_P50_MS %.4f\n", max_ms,
           times[(size_t)((double)n * 0.999)], times[n / 2]);
    printf("NEXT0_MAX_UNPREEMPTED_MS %.3f\nNEXT0_SLOW_BLOCKED %ld\nNEXT0_SLOW_PREEMPTED %ld\n",
           max_unpreempted_ms, slow_blocked, slow_preempted);
    fflush(stdout);
    CHECK(events > 0); /* the live streams delivered while being polled */
    free(times);
    {
        double t0 = now_ms();
        for (i = 0; i < open_streams; i++) ylokh_stream_close(s[i]);
        printf("CLOSE_ALL_MS %.1f\n", now_ms() - t0);
    }
    ylokh_client_free(hole);
    ylokh_client_free(silent);
    ylokh_client_free(live);
}

/* ---- close: at every point of a stream's life ---- */

static void case_close_anywhere(const char *url, int argc, char **argv) {
    static const int points[] = {-1, 0, 1, 2, 3, 5, 8, 20, 100, 1000000};
    ylokh_client *c = test_client(url);
    size_t i;
    double worst = 0;
    (void)argc;
    (void)argv;
    for (i = 0; i < sizeof points / sizeof points[0]; i++) {
        ylokh_stream *s = open_stream(c, MSGS);
        int k;
        double t0;
        if (points[i] >= 0) {
            char *json = NULL;
            for (k = 0; k < points[i]; k++) {
                const ylokh_event *e = NULL;
                ylokh_status st = ylokh_stream_next(s, 5000, &e);
                if (st != YLOKH_OK || e == NULL) break;
                check_event(e);
            }
            /* The message so far is always available. */
            REQUIRE_OK(ylokh_stream_message_json(s, &json, NULL));
            ylokh_string_free(json);
            (void)ylokh_stream_fd(s);
        }
        t0 = now_ms();
        ylokh_stream_close(s);
        if (now_ms() - t0 > worst) worst = now_ms() - t0;
    }
    printf("CLOSE_WORST_MS %.1f\n", worst);
    ylokh_client_free(c);
}

/* ---- cancel: a token triggered from another thread while next waits ---- */

typedef struct {
    ylokh_cancel *cancel;
    double at;
} trigger;

static void *trigger_later(void *arg) {
    trigger *t = arg;
    sleep_ms(200);
    t->at = now_ms();
    ylokh_cancel_trigger(t->cancel);
    return NULL;
}

static void case_cancel(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_request req;
    ylokh_stream *s = NULL;
    const ylokh_event *e = NULL;
    trigger tr;
    pthread_t th;
    ylokh_status st;
    double took;
    (void)argc;
    (void)argv;
    tr.cancel = ylokh_cancel_new();
    REQUIRE(tr.cancel != NULL);
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    req.cancel = tr.cancel;
    REQUIRE_OK(ylokh_stream_open(c, &req, &s));
    /* The stream keeps what it needs of the token. */
    REQUIRE_OK(ylokh_stream_next(s, 10000, &e));
    REQUIRE(e != NULL);
    REQUIRE(pthread_create(&th, NULL, trigger_later, &tr) == 0);
    st = ylokh_stream_next(s, 10000, &e);
    took = now_ms() - tr.at;
    pthread_join(th, NULL);
    CHECK_STATUS(st, YLOKH_E_ABORTED);
    CHECK(ylokh_stream_fd(s) >= 0);
    CHECK_STATUS(ylokh_stream_next(s, 0, &e), YLOKH_E_ABORTED);
    printf("CANCEL_MS %.1f\n", took);
    CHECK(took < 100);
    ylokh_stream_close(s);
    ylokh_cancel_free(tr.cancel);
    ylokh_client_free(c);
}

/* ---- timeout: a server that goes silent mid-reply ---- */

static void case_timeout(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_stream *s;
    tokens t;
    ylokh_status st;
    double t0 = now_ms();
    (void)argc;
    (void)argv;
    REQUIRE_OK(ylokh_client_set_timeout_ms(c, 300));
    s = open_stream(c, MSGS);
    tokens_init(&t);
    st = drain(s, &t, NULL);
    CHECK_STATUS(st, YLOKH_E_TIMEOUT);
    tokens_print(&t, "TOKENS");
    printf("TIMEOUT_AFTER_MS %.0f\n", now_ms() - t0);
    tokens_free(&t);
    ylokh_stream_close(s);
    ylokh_client_free(c);
}

/* ---- failure: an error reply, reported after the events and then for ever ---- */

static void case_failure(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_stream *s = open_stream(c, MSGS);
    const ylokh_event *e = NULL;
    tokens t;
    ylokh_status st;
    (void)argc;
    (void)argv;
    tokens_init(&t);
    st = drain(s, &t, NULL);
    print_failure(st);
    tokens_print(&t, "TOKENS");
    /* The same status and message again, with the last error set again. */
    REQUIRE_OK(ylokh_client_set_base_url(c, "http://127.0.0.1:9/v1"));
    CHECK_STATUS(ylokh_stream_next(s, 0, &e), st);
    CHECK(ylokh_last_http_status() != 0 || st != YLOKH_E_HTTP_STATUS);
    tokens_free(&t);
    ylokh_stream_close(s);
    ylokh_client_free(c);
}

/* ---- conversation: appended only on a normal end ---- */

static ylokh_stream *open_conversation(ylokh_client *c, ylokh_conversation *conv) {
    ylokh_request req;
    ylokh_stream *s = NULL;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.conversation = conv;
    REQUIRE_OK(ylokh_stream_open(c, &req, &s));
    return s;
}

static void case_conversation(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_conversation *conv = ylokh_conversation_new();
    ylokh_stream *s;
    const ylokh_event *e = NULL;
    char *json = NULL;
    (void)argc;
    (void)argv;
    REQUIRE(conv != NULL);
    /* 1: read to the end: appended when the end is reported. */
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "first"));
    s = open_conversation(c, conv);
    REQUIRE_OK(ylokh_stream_next(s, 10000, &e));
    CHECK(e != NULL);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 1);
    CHECK_STATUS(drain(s, NULL, NULL), YLOKH_OK);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 2);
    CHECK_STATUS(ylokh_stream_next(s, 0, &e), YLOKH_OK); /* appended once */
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 2);
    ylokh_stream_close(s);
    /* 2: closed early: not appended. */
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "second"));
    s = open_conversation(c, conv);
    REQUIRE_OK(ylokh_stream_next(s, 10000, &e));
    ylokh_stream_close(s);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 3);
    /* 3: failed: not appended. */
    REQUIRE_OK(ylokh_conversation_add(conv, "user", "fail"));
    s = open_conversation(c, conv);
    CHECK_STATUS(drain(s, NULL, NULL), YLOKH_E_HTTP_STATUS);
    ylokh_stream_close(s);
    CHECK_EQ_SIZE(ylokh_conversation_len(conv), 4);
    REQUIRE_OK(ylokh_conversation_to_json(conv, &json, NULL));
    printf("JSON %s\n", json);
    ylokh_string_free(json);
    ylokh_conversation_free(conv);
    ylokh_client_free(c);
}

/* ---- args: bad arguments are refused and name what was wrong ---- */

static int never_token(void *u, const char *t, size_t n) {
    (void)u;
    (void)t;
    (void)n;
    return 0;
}

static void case_args(const char *url, int argc, char **argv) {
    ylokh_client *c = test_client(url);
    ylokh_conversation *conv = ylokh_conversation_new();
    ylokh_request req;
    ylokh_stream *s = (ylokh_stream *)&req; /* must stay untouched */
    ylokh_stream *const before = s;
    const ylokh_event *e = NULL;
    char *json = NULL;
    (void)argc;
    (void)argv;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.messages_json = MSGS;
    CHECK_INVALID(ylokh_stream_open(NULL, &req, &s), "client");
    CHECK_INVALID(ylokh_stream_open(c, NULL, &s), "request");
    CHECK_INVALID(ylokh_stream_open(c, &req, NULL), "out_stream");
    req.struct_size = 0;
    CHECK_INVALID(ylokh_stream_open(c, &req, &s), "struct_size");
    req.struct_size = sizeof req;
    req.on_token = never_token;
    CHECK_INVALID(ylokh_stream_open(c, &req, &s), "callbacks");
    req.on_token = NULL;
    req.conversation = conv;
    CHECK_INVALID(ylokh_stream_open(c, &req, &s), "not both");
    req.messages_json = NULL;
    req.conversation = NULL;
    CHECK_INVALID(ylokh_stream_open(c, &req, &s), "messages_json is NULL");
    req.messages_json = "{\"not\":\"an array\"}";
    CHECK_INVALID(ylokh_stream_open(c, &req, &s), "messages");
    req.messages_json = MSGS;
    req.options_json = "[1]";
    CHECK_INVALID(ylokh_stream_open(c, &req, &s), "options");
    CHECK(s == before);
    CHECK_INVALID(ylokh_stream_next(NULL, 0, &e), "stream");
    CHECK(ylokh_stream_fd(NULL) == -1);
    CHECK_INVALID(ylokh_stream_message_json(NULL, &json, NULL), "stream");
    ylokh_stream_close(NULL);
    req.options_json = NULL;
    s = NULL;
    REQUIRE_OK(ylokh_stream_open(c, &req, &s));
    CHECK_INVALID(ylokh_stream_next(s, 0, NULL), "out_event");
    CHECK_INVALID(ylokh_stream_message_json(s, NULL, NULL), "NULL");
    ylokh_stream_close(s);
    ylokh_conversation_free(conv);
    ylokh_client_free(c);
}

int main(int argc, char **argv) {
    static const test_case cases[] = {
        {"pull", case_pull},
        {"poll64", case_poll64},
        {"stall", case_stall},
        {"nowait", case_nowait},
        {"close_anywhere", case_close_anywhere},
        {"cancel", case_cancel},
        {"timeout", case_timeout},
        {"failure", case_failure},
        {"conversation", case_conversation},
        {"args", case_args},
    };
    return run_cases(cases, sizeof cases / sizeof cases[0], argc, argv);
}
