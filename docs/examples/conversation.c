/* A conversation: the history is sent with each call and the reply appended on success. */
#include <stdio.h>
#include <ylokh.h>

static int print_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    fwrite(token, 1, len, stdout);
    return 0;
}

int main(int argc, char **argv) {
    ylokh_client *client = ylokh_client_new();
    ylokh_conversation *conv = ylokh_conversation_new();
    char *json = NULL;
    ylokh_status st = YLOKH_E_INTERNAL;
    if (client == NULL || conv == NULL)
        goto done;
    if (argc > 1)
        ylokh_client_set_base_url(client, argv[1]);
    st = ylokh_conversation_add(conv, "system", "Answer in one word.");
    if (st == YLOKH_OK)
        st = ylokh_conversation_add(conv, "user", "Say hello");
    if (st == YLOKH_OK)
        st = ylokh_conversation_chat(client, conv, NULL, NULL, print_token, NULL);
    if (st == YLOKH_OK)
        st = ylokh_conversation_to_json(conv, &json, NULL); /* now 3 messages */
    if (st == YLOKH_OK) {
        printf("\n%zu messages: %s\n", ylokh_conversation_len(conv), json);
        ylokh_string_free(json);
    } else {
        fprintf(stderr, "%s: %s\n", ylokh_status_str(st), ylokh_last_error());
    }
done:
    ylokh_conversation_free(conv); /* NULL is fine */
    ylokh_client_free(client);
    return st == YLOKH_OK ? 0 : 1;
}
