/*
 * poll.c: several replies at once from ONE thread, with poll() on the streams' descriptors
 * (the pull API: ylokh_stream_open / ylokh_stream_fd / ylokh_stream_next).
 *
 *   poll PROMPT [PROMPT...]      (base URL from YLOKH_BASE_URL, key from YLOKH_API_KEY)
 *
 * Each reply is printed when it is complete, with its finish reason, in the order they end.
 * POSIX only (poll()); on Windows, call ylokh_stream_next with a wait instead.
 */
#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ylokh.h"

#define MAX_STREAMS 64

struct reply {
    ylokh_stream *stream; /* NULL once finished */
    char *text;
    size_t len;
};

static void append(struct reply *r, const char *s, size_t n) {
    char *grown = realloc(r->text, r->len + n + 1);
    if (grown == NULL) abort();
    memcpy(grown + r->len, s, n);
    r->len += n;
    grown[r->len] = '\0';
    r->text = grown;
}

/* Pulls what a ready stream has without waiting; returns 0 while it goes on, 1 when it
 * has ended normally, -1 when it failed. */
static int drain(struct reply *r, int index) {
    for (;;) {
        const ylokh_event *e = NULL;
        ylokh_status st = ylokh_stream_next(r->stream, 0, &e);
        if (st == YLOKH_E_AGAIN) return 0; /* nothing more for now: back to poll() */
        if (st != YLOKH_OK) {
            fprintf(stderr, "[%d] %s: %s\n", index, ylokh_status_str(st), ylokh_last_error());
            return -1;
        }
        if (e == NULL) { /* the end: the whole message, as JSON, is there too */
            char *json = NULL;
            if (ylokh_stream_message_json(r->stream, &json, NULL) == YLOKH_OK) {
                const char *reason = strstr(json, "\"finish_reason\":");
                printf("[%d] %s\n    (%.40s)\n", index, r->text ? r->text : "", reason ? reason : "");
                ylokh_string_free(json);
            }
            return 1;
        }
        if (e->kind == YLOKH_EVENT_CONTENT && e->choice == 0) append(r, e->text, e->text_len);
    }
}

int main(int argc, char **argv) {
    struct reply replies[MAX_STREAMS];
    struct pollfd fds[MAX_STREAMS];
    int n = argc - 1, left, i, status = 0;
    ylokh_client *client;
    if (n < 1 || n > MAX_STREAMS) {
        fprintf(stderr, "usage: %s PROMPT [PROMPT...]  (at most %d)\n", argv[0], MAX_STREAMS);
        return 2;
    }
    client = ylokh_client_new();
    if (client == NULL) return 1;
    memset(replies, 0, sizeof replies);
    for (i = 0; i < n; i++) {
        char messages[1024];
        ylokh_request req;
        memset(&req, 0, sizeof req);
        req.struct_size = sizeof req;
        /* Prompts are used as JSON string contents: keep them free of quotes here. */
        snprintf(messages, sizeof messages, "[{\"role\":\"user\",\"content\":\"%s\"}]", argv[i + 1]);
        req.messages_json = messages;
        req.options_json = "{\"max_tokens\":32}";
        if (ylokh_stream_open(client, &req, &replies[i].stream) != YLOKH_OK) {
            fprintf(stderr, "[%d] %s\n", i, ylokh_last_error());
            replies[i].stream = NULL;
            status = 1;
        }
    }
    for (left = 0, i = 0; i < n; i++) left += replies[i].stream != NULL;
    while (left > 0) {
        int k = 0, map[MAX_STREAMS];
        for (i = 0; i < n; i++) {
            if (replies[i].stream == NULL) continue;
            fds[k].fd = ylokh_stream_fd(replies[i].stream);
            fds[k].events = POLLIN;
            fds[k].revents = 0;
            map[k++] = i;
        }
        if (poll(fds, (nfds_t)k, -1) < 0) { /* a real program also watches its own fds here */
            perror("poll");
            return 1;
        }
        for (i = 0; i < k; i++) {
            struct reply *r = &replies[map[i]];
            int ended = (fds[i].revents & POLLIN) ? drain(r, map[i]) : 0;
            if (ended != 0) {
                if (ended < 0) status = 1;
                ylokh_stream_close(r->stream);
                r->stream = NULL;
                left--;
            }
        }
    }
    for (i = 0; i < n; i++) free(replies[i].text);
    ylokh_client_free(client);
    return status;
}
