/*
 * multiturn.c: a conversation that remembers what was said.
 *
 *   multiturn [--model M] [--system S] [TURN...]
 *
 * Each TURN (or, without TURNs, each line read from stdin) is sent as the user's next
 * message together with the whole history; the answer is streamed to stdout and kept in
 * the history. At the end the conversation is printed as JSON (ylokh_conversation_to_json),
 * which ylokh_conversation_from_json can load again later.
 *
 * The server comes from YLOKH_BASE_URL, the key from YLOKH_API_KEY.
 * Exit status: 0 on success, 1 for a usage error, 2 when a request failed.
 */
#define _POSIX_C_SOURCE 200809L

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

/* Reads one line of any length into *buf (grown as needed), without its line end.
 * Returns its length, or -1 at the end of input or when out of memory. (POSIX has
 * getline(); this is the C99 way, which also works with MSVC.) */
static long read_line(FILE *f, char **buf, size_t *cap) {
    size_t len = 0;
    if (*buf == NULL) {
        *cap = 128;
        *buf = malloc(*cap);
        if (*buf == NULL) return -1;
    }
    for (;;) {
        if (fgets(*buf + len, (int)(*cap - len), f) == NULL) {
            if (len == 0) return -1; /* nothing before the end of input */
            break;
        }
        len += strlen(*buf + len);
        if (len > 0 && (*buf)[len - 1] == '\n') break;
        if (len + 1 == *cap) { /* the line goes on: grow and read more */
            char *bigger = realloc(*buf, *cap * 2);
            if (bigger == NULL) return -1;
            *buf = bigger;
            *cap *= 2;
        }
    }
    while (len > 0 && ((*buf)[len - 1] == '\n' || (*buf)[len - 1] == '\r')) (*buf)[--len] = '\0';
    return (long)len;
}

/* Streams each piece of the answer to stdout (len is authoritative: tokens may hold NULs). */
static int on_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    if (fwrite(token, 1, len, stdout) != len || fflush(stdout) != 0) return 1; /* stop */
    return 0;
}

/* One turn: add the user's message, send the whole history, print the answer. */
static int turn(ylokh_client *client, ylokh_conversation *conv, const char *model,
                const char *text) {
    ylokh_status status = ylokh_conversation_add(conv, "user", text);
    if (status != YLOKH_OK) {
        fprintf(stderr, "multiturn: %s: %s\n", ylokh_status_str(status), ylokh_last_error());
        return -1;
    }
    printf("assistant> ");
    fflush(stdout);
    /* On success the library appends the assistant's reply to the conversation; on failure
     * the conversation is left exactly as it was (the user's message is still last). */
    status = ylokh_conversation_chat(client, conv, model, NULL, on_token, NULL);
    putchar('\n');
    if (status != YLOKH_OK) {
        fflush(stdout);
        fprintf(stderr, "multiturn: %s: %s", ylokh_status_str(status), ylokh_last_error());
        if (ylokh_last_http_status() != 0) fprintf(stderr, " (HTTP %d)", ylokh_last_http_status());
        fputc('\n', stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *system = NULL;
    ylokh_client *client;
    ylokh_conversation *conv;
    char *json = NULL;
    size_t json_len = 0;
    int i, first_turn, failed = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--system") == 0 && i + 1 < argc) {
            system = argv[++i];
        } else if (argv[i][0] == '-') {
            fputs("usage: multiturn [--model M] [--system S] [TURN...]\n"
                  "Without TURNs, one turn is read per line of stdin.\n",
                  stderr);
            return 1;
        } else {
            break;
        }
    }
    first_turn = i;

    client = ylokh_client_new(); /* base URL and key from the environment */
    conv = ylokh_conversation_new();
    if (client == NULL || conv == NULL) {
        fputs("multiturn: out of memory\n", stderr);
        ylokh_client_free(client); /* both accept NULL */
        ylokh_conversation_free(conv);
        return 2;
    }
    if (system != NULL && ylokh_conversation_add(conv, "system", system) != YLOKH_OK) {
        fprintf(stderr, "multiturn: %s\n", ylokh_last_error());
        failed = 1;
    }

    if (first_turn < argc) {
        /* Turns from the command line. */
        for (i = first_turn; i < argc && !failed; i++) {
            printf("you> %s\n", argv[i]);
            failed = turn(client, conv, model, argv[i]) != 0;
        }
    } else {
        /* Turns from stdin, one per line; an empty line is skipped. */
        char *line = NULL;
        size_t cap = 0;
        long n;
        int interactive = isatty(fileno(stdin));
        while (!failed) {
            if (interactive) {
                fputs("you> ", stderr);
                fflush(stderr);
            }
            n = read_line(stdin, &line, &cap);
            if (n < 0) break; /* end of input */
            if (n == 0) continue;
            if (!interactive) printf("you> %s\n", line);
            failed = turn(client, conv, model, line) != 0;
        }
        free(line);
    }

    /* The history as JSON: a string owned by the library, released with ylokh_string_free. */
    if (ylokh_conversation_to_json(conv, &json, &json_len) == YLOKH_OK) {
        printf("--- conversation (%zu messages) ---\n", ylokh_conversation_len(conv));
        fwrite(json, 1, json_len, stdout);
        putchar('\n');
        ylokh_string_free(json);
    } else {
        fprintf(stderr, "multiturn: %s\n", ylokh_last_error());
        failed = 1;
    }

    ylokh_conversation_free(conv);
    ylokh_client_free(client);
    if (fflush(stdout) != 0) return 2;
    return failed ? 2 : 0;
}
