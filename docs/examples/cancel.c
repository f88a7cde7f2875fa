/* Stopping a call from another thread: the call returns YLOKH_E_ABORTED within ~50 ms,
 * even while it connects or waits for a silent server. */
#include <pthread.h>
#include <stdio.h>
#include <ylokh.h>

static void *watchdog(void *cancel) {
    /* In a real program: a "Stop" button, a shutdown request, a timer. */
    ylokh_cancel_trigger(cancel);
    return NULL;
}

static int print_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    fwrite(token, 1, len, stdout);
    return 0;
}

int main(int argc, char **argv) {
    ylokh_client *client = ylokh_client_new();
    ylokh_cancel *cancel = ylokh_cancel_new();
    ylokh_request req = {0};
    pthread_t thread;
    ylokh_status st;
    if (client == NULL || cancel == NULL)
        return 1;
    if (argc > 1)
        ylokh_client_set_base_url(client, argv[1]);
    req.struct_size = sizeof req; /* required: see ylokh_request */
    req.messages_json = "[{\"role\":\"user\",\"content\":\"Tell me a long story\"}]";
    req.on_token = print_token;
    req.cancel = cancel;
    if (pthread_create(&thread, NULL, watchdog, cancel) != 0)
        return 1;
    st = ylokh_chat_ex(client, &req); /* YLOKH_OK if the reply was complete first */
    pthread_join(thread, NULL);
    printf("\n%s\n", ylokh_status_str(st));
    ylokh_cancel_reset(cancel); /* reusable after a reset */
    ylokh_cancel_free(cancel);
    ylokh_client_free(client);
    return st == YLOKH_OK || st == YLOKH_E_ABORTED ? 0 : 1;
}
