/*
 * cancel.c: stop a chat from another thread.
 *
 *   cancel MS [PROMPT]
 *
 * A worker thread streams an answer with ylokh_chat_ex(); after MS milliseconds the main
 * thread triggers a ylokh_cancel token. The worker's call then returns YLOKH_E_ABORTED
 * (within about 50 ms, even if the server is silent), and the program reports how long
 * that took. If the answer was complete before MS, the status is YLOKH_OK instead.
 *
 * The server comes from YLOKH_BASE_URL, the key from YLOKH_API_KEY.
 * Exit status: 0 when the call was aborted or completed, 1 for a usage error, 2 otherwise.
 * Build with -pthread on POSIX; portable.h (beside this file) makes the thread on POSIX
 * and on Windows.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portable.h"
#include "ylokh.h"

/* What the worker needs, and what it reports back. */
typedef struct {
    ylokh_client *client;
    ylokh_conversation *conv;
    ylokh_cancel *cancel;
    ylokh_status status;
    char error[512];   /* ylokh_last_error() is per thread: the worker must copy it */
    double finished_ms; /* when ylokh_chat_ex returned */
} job;

static int on_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    fwrite(token, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void worker(void *arg) {
    job *j = arg;
    /* Zero-initialize the request and set what is needed. */
    ylokh_request req = {0};
    req.struct_size = sizeof req; /* required: see ylokh_request */
    req.conversation = j->conv; /* the messages come from the conversation */
    req.on_token = on_token;
    req.cancel = j->cancel; /* any thread may trigger it */
    j->status = ylokh_chat_ex(j->client, &req);
    j->finished_ms = port_now_ms();
    if (j->status != YLOKH_OK) {
        /* Copy the message now, on the thread that got it. */
        snprintf(j->error, sizeof j->error, "%s", ylokh_last_error());
    }
}

int main(int argc, char **argv) {
    const char *prompt = argc > 2 ? argv[2] : "Tell me a very long story.";
    job j;
    port_thread thread;
    char *end;
    long ms;
    double triggered_ms;
    int rc;

    if (argc < 2 || argc > 3) {
        fputs("usage: cancel MS [PROMPT]\n", stderr);
        return 1;
    }
    errno = 0;
    ms = strtol(argv[1], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[1] || ms < 0) {
        fprintf(stderr, "cancel: MS must be a number of milliseconds, not \"%s\"\n", argv[1]);
        return 1;
    }

    memset(&j, 0, sizeof j);
    j.client = ylokh_client_new();
    j.conv = ylokh_conversation_new();
    j.cancel = ylokh_cancel_new();
    if (j.client == NULL || j.conv == NULL || j.cancel == NULL) {
        fputs("cancel: out of memory\n", stderr);
        rc = 2;
        goto done;
    }
    if (ylokh_conversation_add(j.conv, "user", prompt) != YLOKH_OK) {
        fprintf(stderr, "cancel: %s\n", ylokh_last_error()); /* e.g. not UTF-8 */
        rc = 1;
        goto done;
    }

    if (port_thread_create(&thread, worker, &j) != 0) {
        fputs("cancel: could not start a thread\n", stderr);
        rc = 2;
        goto done;
    }

    port_sleep_ms(ms);

    triggered_ms = port_now_ms();
    if (ylokh_cancel_trigger(j.cancel) != YLOKH_OK) { /* only fails for NULL */
        fprintf(stderr, "cancel: %s\n", ylokh_last_error());
    }
    port_thread_join(thread);

    printf("\nstatus: %s (%d)\n", ylokh_status_str(j.status), j.status);
    if (j.status == YLOKH_E_ABORTED) {
        printf("cancel took effect after %.1f ms\n", j.finished_ms - triggered_ms);
    } else if (j.status == YLOKH_OK) {
        printf("the answer was complete before the cancel\n");
    } else {
        printf("error: %s\n", j.error);
    }
    /* A failed or cancelled call leaves the conversation unchanged: still 1 message. */
    printf("messages in the conversation: %zu\n", ylokh_conversation_len(j.conv));

    rc = (j.status == YLOKH_E_ABORTED || j.status == YLOKH_OK) ? 0 : 2;

done:
    /* Free the token only once no call uses it any more (the worker has been joined).
     * Every _free function accepts NULL. */
    ylokh_cancel_free(j.cancel);
    ylokh_conversation_free(j.conv);
    ylokh_client_free(j.client);
    return rc;
}
