/*
 * chat.c: ask one question and stream the answer to stdout, token by token.
 *
 *   chat [--model M] [--system S] [--no-stream] [--max-tokens N]
 *        [--base-url URL] [--api-key KEY] PROMPT
 *
 * The server comes from YLOKH_BASE_URL (e.g. http://127.0.0.1:8080/v1) and the key from
 * YLOKH_API_KEY, which ylokh_client_new() reads by itself; --base-url and --api-key show
 * how to set them explicitly instead.
 *
 * Exit status: 0 on success, 1 for a usage error, 2 when the request failed.
 *
 * Build: make examples   (or: cc -std=c99 -Iinclude chat.c -Ltarget/release -lylokh)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ylokh.h"

/* isatty: POSIX's unistd.h, or the Windows C runtime's io.h. */
#ifdef _WIN32
#include <io.h>
#define isatty _isatty
#define fileno _fileno
#else
#include <unistd.h>
#endif

/* ---- A growable string, and a JSON string escaper to build the messages array ---- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} strbuf;

/* Appends n bytes; returns 0, or -1 when out of memory. */
static int sb_append(strbuf *sb, const char *s, size_t n) {
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 64;
        char *data;
        while (cap < sb->len + n + 1) cap *= 2;
        data = realloc(sb->data, cap);
        if (data == NULL) return -1;
        sb->data = data;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return 0;
}

static int sb_puts(strbuf *sb, const char *s) { return sb_append(sb, s, strlen(s)); }

/*
 * Appends s as a JSON string literal, quotes included. Quotes, backslashes and control
 * characters are escaped; every other byte is copied as is, so UTF-8 text passes through
 * (the library checks that it really is UTF-8 and refuses the call otherwise).
 */
static int sb_json_string(strbuf *sb, const char *s) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    if (sb_puts(sb, "\"") != 0) return -1;
    for (; *p != '\0'; p++) {
        char esc[7];
        const char *out = esc;
        size_t n = 2;
        esc[0] = '\\';
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (*p < 0x20) { /* other control characters: \u00XX */
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 0xf];
                n = 6;
            } else {
                out = (const char *)p;
                n = 1;
            }
        }
        if (sb_append(sb, out, n) != 0) return -1;
    }
    return sb_puts(sb, "\"");
}

/* ---- The token callback ---- */

typedef struct {
    int waiting;    /* is the "[waiting ...]" indication still shown? */
    int stderr_tty; /* is it on a terminal (so it can be erased)? */
    size_t printed; /* bytes of the answer written so far */
} stream_state;

/* Removes the "[waiting ...]" indication, once. */
static void stop_waiting(stream_state *st) {
    if (st->waiting) {
        st->waiting = 0;
        if (st->stderr_tty) fputs("\r\033[K", stderr); /* erase the line on a terminal */
    }
}

/*
 * Called by the library for each piece of the answer, on this thread, before ylokh_chat
 * returns. `token` holds `len` bytes of UTF-8 (it may contain NUL bytes, so use len, not
 * strlen). Return 0 to go on, non-zero to stop the request.
 */
static int on_token(void *userdata, const char *token, size_t len) {
    stream_state *st = userdata;
    stop_waiting(st);
    if (fwrite(token, 1, len, stdout) != len || fflush(stdout) != 0) {
        return 1; /* stdout is gone (closed pipe, full disk): no point in going on */
    }
    st->printed += len;
    return 0;
}

static void usage(void) {
    fputs("usage: chat [--model M] [--system S] [--no-stream] [--max-tokens N]\n"
          "            [--base-url URL] [--api-key KEY] PROMPT\n"
          "The server is YLOKH_BASE_URL (e.g. http://127.0.0.1:8080/v1; the original\n"
          "https://chatapi.ylokh.xyz/v1 is gone), the API key YLOKH_API_KEY.\n",
          stderr);
}

int main(int argc, char **argv) {
    const char *model = NULL, *system = NULL, *prompt = NULL;
    const char *base_url = NULL, *api_key = NULL;
    int stream = 1;
    long max_tokens = 0;
    strbuf messages = {NULL, 0, 0};
    char options[96];
    stream_state st = {1, 0, 0};
    ylokh_client *client;
    ylokh_status status;
    int i, built;

    /* ---- Command line ---- */
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--model") == 0 && has_value) {
            model = argv[++i];
        } else if (strcmp(a, "--system") == 0 && has_value) {
            system = argv[++i];
        } else if (strcmp(a, "--base-url") == 0 && has_value) {
            base_url = argv[++i];
        } else if (strcmp(a, "--api-key") == 0 && has_value) {
            api_key = argv[++i];
        } else if (strcmp(a, "--no-stream") == 0) {
            stream = 0;
        } else if (strcmp(a, "--max-tokens") == 0 && has_value) {
            char *end;
            errno = 0;
            max_tokens = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || end == argv[i] || max_tokens <= 0) {
                fprintf(stderr, "chat: --max-tokens wants a positive number, not \"%s\"\n",
                        argv[i]);
                return 1;
            }
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (a[0] == '-' && a[1] != '\0' && strcmp(a, "--") != 0) {
            fprintf(stderr, "chat: unknown option or missing value: %s\n", a);
            usage();
            return 1;
        } else {
            /* "--" ends the options, for a prompt that starts with '-'. */
            if (strcmp(a, "--") == 0 && (a = argv[++i]) == NULL) break;
            if (prompt != NULL) {
                fputs("chat: give exactly one PROMPT (quote it)\n", stderr);
                usage();
                return 1;
            }
            prompt = a;
        }
    }
    if (prompt == NULL) {
        usage();
        return 1;
    }

    /* ---- The messages, as a JSON array: [{"role":"system",...},{"role":"user",...}] ---- */
    built = sb_puts(&messages, "[");
    if (built == 0 && system != NULL) {
        built = sb_puts(&messages, "{\"role\":\"system\",\"content\":");
        if (built == 0) built = sb_json_string(&messages, system);
        if (built == 0) built = sb_puts(&messages, "},");
    }
    if (built == 0) built = sb_puts(&messages, "{\"role\":\"user\",\"content\":");
    if (built == 0) built = sb_json_string(&messages, prompt);
    if (built == 0) built = sb_puts(&messages, "}]");
    if (built != 0) {
        fputs("chat: out of memory\n", stderr);
        free(messages.data);
        return 2;
    }

    /* ---- Options: a JSON object merged over the library's defaults ---- */
    if (max_tokens > 0) {
        snprintf(options, sizeof options, "{\"stream\":%s,\"max_tokens\":%ld}",
                 stream ? "true" : "false", max_tokens);
    } else {
        snprintf(options, sizeof options, "{\"stream\":%s}", stream ? "true" : "false");
    }

    /* ---- The client: reads YLOKH_BASE_URL / YLOKH_API_KEY; explicit settings win ---- */
    client = ylokh_client_new();
    if (client == NULL) {
        fputs("chat: could not create a client\n", stderr);
        free(messages.data);
        return 2;
    }
    if (base_url != NULL && ylokh_client_set_base_url(client, base_url) != YLOKH_OK) {
        /* Every failing call leaves its reason in ylokh_last_error() (per thread). */
        fprintf(stderr, "chat: bad --base-url: %s\n", ylokh_last_error());
        ylokh_client_free(client);
        free(messages.data);
        return 1;
    }
    if (api_key != NULL && ylokh_client_set_api_key(client, api_key) != YLOKH_OK) {
        fprintf(stderr, "chat: bad --api-key: %s\n", ylokh_last_error());
        ylokh_client_free(client);
        free(messages.data);
        return 1;
    }

    /* ---- The call: blocks until the answer is complete; tokens arrive meanwhile ---- */
    st.stderr_tty = isatty(fileno(stderr));
    fprintf(stderr, "[waiting for the first token...]%s", st.stderr_tty ? "" : "\n");
    fflush(stderr);
    status = ylokh_chat(client, model, messages.data, options, on_token, &st);
    stop_waiting(&st);

    if (status == YLOKH_OK) {
        putchar('\n');
    } else {
        if (st.printed > 0) putchar('\n'); /* end the partial answer before the error */
        fflush(stdout);
        /* Read the message right away, on this thread: the next failure replaces it. */
        fprintf(stderr, "chat: %s: %s", ylokh_status_str(status), ylokh_last_error());
        if (ylokh_last_http_status() != 0) fprintf(stderr, " (HTTP %d)", ylokh_last_http_status());
        fputc('\n', stderr);
    }

    ylokh_client_free(client);
    free(messages.data);
    if (fflush(stdout) != 0) return 2;
    return status == YLOKH_OK ? 0 : 2;
}
