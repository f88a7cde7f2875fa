/* Pulling a reply event by event (here waiting for each; an event loop would poll() on
 * ylokh_stream_fd and pull with a wait of 0), then the whole message as JSON. */
#include <stdint.h>
#include <stdio.h>
#include <ylokh.h>

int main(int argc, char **argv) {
    ylokh_client *client = ylokh_client_new();
    ylokh_request req = {0};
    ylokh_stream *stream = NULL;
    const ylokh_event *ev = NULL;
    char *message = NULL;
    ylokh_status st;
    if (client == NULL)
        return 1;
    if (argc > 1)
        ylokh_client_set_base_url(client, argv[1]);
    req.struct_size = sizeof req;
    req.messages_json = "[{\"role\":\"user\",\"content\":\"Say hello\"}]";
    st = ylokh_stream_open(client, &req, &stream); /* returns at once */
    while (st == YLOKH_OK) {
        st = ylokh_stream_next(stream, UINT64_MAX, &ev); /* wait as long as it takes */
        if (st != YLOKH_OK || ev == NULL)
            break; /* a failure, or the end */
        if (ev->kind == YLOKH_EVENT_CONTENT)
            fwrite(ev->text, 1, ev->text_len, stdout); /* valid until the next call */
    }
    if (st == YLOKH_OK && ylokh_stream_message_json(stream, &message, NULL) == YLOKH_OK) {
        printf("\n%s\n", message); /* content, tool_calls, finish_reason, usage, ... */
        ylokh_string_free(message);
    } else if (st != YLOKH_OK) {
        fprintf(stderr, "%s: %s\n", ylokh_status_str(st), ylokh_last_error());
    }
    ylokh_stream_close(stream); /* NULL is fine */
    ylokh_client_free(client);
    return st == YLOKH_OK ? 0 : 1;
}
