/*
 * check.h: small helpers for the C tests of libylokh (driven by tests/c_api.rs).
 *
 * Each test program takes a case name and a base URL on argv, runs the case, and exits 0
 * with "PASS <case>" on stdout, or 1 after printing every failed check to stderr. Lines
 * such as "TOKENS [...]" on stdout are read by the Rust side for its own assertions.
 *
 * Include after defining _POSIX_C_SOURCE. Everything here is static inline so that a
 * program that uses only part of it still compiles with -Wall -Wextra -Werror. Threads,
 * locks and clocks come from examples-c/portable.h, so the tests build for Windows too
 * (tests/windows.rs runs them under Wine).
 */
#ifndef YLOKH_TEST_CHECK_H
#define YLOKH_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../examples-c/portable.h"
#include "ylokh.h"

/* ---- Failure accounting (thread-safe) ---- */

/* Initialized by run_cases before any case runs (Windows has no static initializer). */
static port_mutex check_lock;
static int check_failures = 0;

static inline void check_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    port_mutex_lock(&check_lock);
    check_failures++;
    fprintf(stderr, "%s:%d: FAILED: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    port_mutex_unlock(&check_lock);
}

static inline int check_failed_count(void) {
    int n;
    port_mutex_lock(&check_lock);
    n = check_failures;
    port_mutex_unlock(&check_lock);
    return n;
}

/* Stops the program at once (for checks later steps depend on). */
static inline void check_abort_now(void) {
    fprintf(stderr, "stopping: a required check failed\n");
    exit(1);
}

/* A symbolic name for a status, for messages. */
static inline const char *status_name(ylokh_status s) {
    switch (s) {
    case YLOKH_OK: return "YLOKH_OK";
    case YLOKH_E_INVALID_ARGUMENT: return "YLOKH_E_INVALID_ARGUMENT";
    case YLOKH_E_ABORTED: return "YLOKH_E_ABORTED";
    case YLOKH_E_CONNECT: return "YLOKH_E_CONNECT";
    case YLOKH_E_TLS: return "YLOKH_E_TLS";
    case YLOKH_E_TIMEOUT: return "YLOKH_E_TIMEOUT";
    case YLOKH_E_HTTP_STATUS: return "YLOKH_E_HTTP_STATUS";
    case YLOKH_E_API: return "YLOKH_E_API";
    case YLOKH_E_PROTOCOL: return "YLOKH_E_PROTOCOL";
    case YLOKH_E_IO: return "YLOKH_E_IO";
    case YLOKH_E_INTERNAL: return "YLOKH_E_INTERNAL";
    case YLOKH_E_AGAIN: return "YLOKH_E_AGAIN";
    default: return "(unknown status)";
    }
}

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) check_fail(__FILE__, __LINE__, "%s", #cond);                      \
    } while (0)

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            check_fail(__FILE__, __LINE__, "%s", #cond);                               \
            check_abort_now();                                                         \
        }                                                                              \
    } while (0)

/* Evaluates `expr` once; on a mismatch shows both statuses and the last error. */
#define CHECK_STATUS(expr, expected)                                                   \
    do {                                                                               \
        ylokh_status check_got_ = (expr);                                              \
        ylokh_status check_want_ = (expected);                                         \
        if (check_got_ != check_want_)                                                 \
            check_fail(__FILE__, __LINE__, "%s returned %s (%d), expected %s (%d); "   \
                       "last error: \"%s\", http %d",                                  \
                       #expr, status_name(check_got_), check_got_,                     \
                       status_name(check_want_), check_want_, ylokh_last_error(),      \
                       ylokh_last_http_status());                                      \
    } while (0)

#define REQUIRE_OK(expr)                                                               \
    do {                                                                               \
        int check_before_ = check_failed_count();                                      \
        CHECK_STATUS(expr, YLOKH_OK);                                                  \
        if (check_failed_count() != check_before_) check_abort_now();                  \
    } while (0)

/* Compares NUL-terminated strings; NULL matches only NULL. */
#define CHECK_STREQ(got, want)                                                         \
    do {                                                                               \
        const char *check_g_ = (got);                                                  \
        const char *check_w_ = (want);                                                 \
        if (check_g_ == NULL || check_w_ == NULL ? check_g_ != check_w_                \
                                                 : strcmp(check_g_, check_w_) != 0)    \
            check_fail(__FILE__, __LINE__, "%s is \"%s\", expected \"%s\"", #got,      \
                       check_g_ ? check_g_ : "(null)", check_w_ ? check_w_ : "(null)"); \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                    \
    do {                                                                               \
        const char *check_h_ = (hay);                                                  \
        const char *check_n_ = (needle);                                               \
        if (check_h_ == NULL || strstr(check_h_, check_n_) == NULL)                    \
            check_fail(__FILE__, __LINE__, "%s = \"%s\" does not contain \"%s\"", #hay, \
                       check_h_ ? check_h_ : "(null)", check_n_);                      \
    } while (0)

#define CHECK_EQ_SIZE(got, want)                                                       \
    do {                                                                               \
        size_t check_g_ = (got);                                                       \
        size_t check_w_ = (want);                                                      \
        if (check_g_ != check_w_)                                                      \
            check_fail(__FILE__, __LINE__, "%s is %zu, expected %zu", #got, check_g_,  \
                       check_w_);                                                      \
    } while (0)

/*
 * A call that must be refused as a bad argument, without a reply behind it, with a
 * message containing `needle` (the library names the problem).
 */
#define CHECK_INVALID(expr, needle)                                                    \
    do {                                                                               \
        CHECK_STATUS(expr, YLOKH_E_INVALID_ARGUMENT);                                  \
        CHECK_CONTAINS(ylokh_last_error(), needle);                                    \
        CHECK(ylokh_last_http_status() == 0);                                          \
    } while (0)

/* ---- Time ---- */

static inline double now_ms(void) { return port_now_ms(); }

static inline void sleep_ms(long ms) { port_sleep_ms(ms); }

/* ---- A barrier: n threads wait until all n have arrived ---- */

typedef struct {
    port_mutex lock;
    port_cond all_here;
    int waiting, count;
} barrier;

static inline void barrier_init(barrier *b, int count) {
    port_mutex_init(&b->lock);
    port_cond_init(&b->all_here);
    b->waiting = 0;
    b->count = count;
}

/* Used once per barrier: the threads that arrive wait for the last one. */
static inline void barrier_wait(barrier *b) {
    port_mutex_lock(&b->lock);
    if (++b->waiting >= b->count)
        port_cond_broadcast(&b->all_here);
    else
        while (b->waiting < b->count) port_cond_wait(&b->all_here, &b->lock);
    port_mutex_unlock(&b->lock);
}

static inline void barrier_destroy(barrier *b) {
    port_cond_destroy(&b->all_here);
    port_mutex_destroy(&b->lock);
}

/* ---- UTF-8 and JSON output ---- */

/* Strict UTF-8 check (no overlongs, surrogates or code points past U+10FFFF). */
static inline int utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n, k;
        unsigned long cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n) return 0; /* truncated sequence */
        for (k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Writes `len` bytes as a JSON string literal (NULs and control characters escaped). */
static inline void json_print(FILE *f, const char *s, size_t len) {
    size_t i;
    fputc('"', f);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* JSON for a possibly NULL string. */
static inline void json_print_opt(FILE *f, const char *s, size_t len) {
    if (s == NULL)
        fputs("null", f);
    else
        json_print(f, s, len);
}

/* ---- Collecting tokens ---- */

typedef struct {
    char *data;         /* the tokens, concatenated (NUL-terminated for convenience) */
    size_t len;
    size_t *ends;       /* end offset of each token in data */
    size_t count;
    size_t cap_tokens;
    size_t cap_data;
    port_thread_id thread; /* the thread that made the call: callbacks must run on it */
    int in_call;        /* set around the chat call: no callback outside it */
    size_t abort_at;    /* return non-zero from the callback on this token (1-based); 0: never */
    int broken;         /* an invariant of the callback contract was broken */
} tokens;

static inline void tokens_init(tokens *t) {
    memset(t, 0, sizeof *t);
    t->thread = port_thread_self();
}

static inline void tokens_free(tokens *t) {
    free(t->data);
    free(t->ends);
    memset(t, 0, sizeof *t);
}

/* The token callback: checks the callback contract and records the token. */
static inline int tokens_cb(void *userdata, const char *token, size_t len) {
    tokens *t = userdata;
    if (token == NULL) {
        check_fail(__FILE__, __LINE__, "token is NULL");
        t->broken = 1;
        return 1;
    }
    if (len == 0) check_fail(__FILE__, __LINE__, "an empty token was delivered");
    if (token[len] != '\0') check_fail(__FILE__, __LINE__, "token[len] is not NUL");
    if (!utf8_valid(token, len)) check_fail(__FILE__, __LINE__, "token is not valid UTF-8");
    if (!port_thread_same(port_thread_self(), t->thread))
        check_fail(__FILE__, __LINE__, "callback on another thread than the caller's");
    if (!t->in_call) check_fail(__FILE__, __LINE__, "callback outside of the chat call");
    if (t->count == t->cap_tokens) {
        t->cap_tokens = t->cap_tokens ? 2 * t->cap_tokens : 16;
        t->ends = realloc(t->ends, t->cap_tokens * sizeof *t->ends);
        if (t->ends == NULL) abort();
    }
    if (t->len + len + 1 > t->cap_data) {
        while (t->len + len + 1 > t->cap_data) t->cap_data = t->cap_data ? 2 * t->cap_data : 256;
        t->data = realloc(t->data, t->cap_data);
        if (t->data == NULL) abort();
    }
    memcpy(t->data + t->len, token, len);
    t->len += len;
    t->data[t->len] = '\0';
    t->ends[t->count++] = t->len;
    return (t->abort_at != 0 && t->count == t->abort_at) ? 1 : 0;
}

/* Prints "TOKENS [..]": every token as a JSON string, for the Rust side. */
static inline void tokens_print(const tokens *t, const char *label) {
    size_t i, start = 0;
    printf("%s [", label);
    for (i = 0; i < t->count; i++) {
        if (i) putchar(',');
        json_print(stdout, t->data + start, t->ends[i] - start);
        start = t->ends[i];
    }
    printf("]\n");
    fflush(stdout);
}

/* Does the concatenation equal these `len` bytes? */
static inline int tokens_equal(const tokens *t, const char *want, size_t len) {
    return t->len == len && (len == 0 || memcmp(t->data, want, len) == 0);
}

/* Prints "RESULT <status> <http>" and "ERROR <json message>" for the Rust side. */
static inline void print_failure(ylokh_status status) {
    printf("RESULT %s %d\nERROR ", status_name(status), ylokh_last_http_status());
    json_print(stdout, ylokh_last_error(), strlen(ylokh_last_error()));
    putchar('\n');
    fflush(stdout);
}

/* A client for the test server: no proxy from the environment, no retries, and a
 * timeout short enough that a hang shows up as YLOKH_E_TIMEOUT, not as a killed test. */
static inline ylokh_client *test_client(const char *base_url) {
    ylokh_client *c = ylokh_client_new();
    REQUIRE(c != NULL);
    REQUIRE_OK(ylokh_client_set_proxy_from_env(c, 0));
    REQUIRE_OK(ylokh_client_set_base_url(c, base_url));
    REQUIRE_OK(ylokh_client_set_max_retries(c, 0));
    REQUIRE_OK(ylokh_client_set_timeout_ms(c, 10000));
    return c;
}

/* ---- Case dispatch ---- */

typedef struct {
    const char *name;
    void (*run)(const char *base_url, int argc, char **argv);
} test_case;

/* argv: PROGRAM CASE [BASE_URL [EXTRA...]]; EXTRA is passed on as argc/argv. */
static inline int run_cases(const test_case *cases, size_t n, int argc, char **argv) {
    size_t i;
    const char *url = argc > 2 ? argv[2] : "http://127.0.0.1:9/v1";
    port_mutex_init(&check_lock);
    if (argc < 2) {
        fprintf(stderr, "usage: %s CASE [BASE_URL [ARGS...]]\ncases:", argv[0]);
        for (i = 0; i < n; i++) fprintf(stderr, " %s", cases[i].name);
        fputc('\n', stderr);
        return 2;
    }
    for (i = 0; i < n; i++) {
        if (strcmp(cases[i].name, argv[1]) == 0) {
            cases[i].run(url, argc > 3 ? argc - 3 : 0, argv + (argc > 3 ? 3 : argc));
            fflush(stdout);
            if (check_failed_count() != 0) {
                fprintf(stderr, "FAIL %s: %d check(s) failed\n", argv[1], check_failed_count());
                return 1;
            }
            printf("PASS %s\n", argv[1]);
            return 0;
        }
    }
    fprintf(stderr, "unknown case \"%s\"\n", argv[1]);
    return 2;
}

#endif /* YLOKH_TEST_CHECK_H */
