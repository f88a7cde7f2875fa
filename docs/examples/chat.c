/* Streaming a reply token by token, then the same request as one string. */
#include <stdio.h>
#include <ylokh.h>

static int print_token(void *userdata, const char *token, size_t len) {
    size_t *count = userdata;
    ++*count;
    fwrite(token, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop the reply: the call then returns YLOKH_E_ABORTED */
}

int main(int argc, char **argv) {
    const char *messages = "[{\"role\":\"user\",\"content\":\"Say hello\"}]";
    ylokh_client *client = ylokh_client_new();
    size_t tokens = 0;
    char *text = NULL;
    size_t len = 0;
    ylokh_status st;
    if (client == NULL)
        return 1;
    if (argc > 1)
        ylokh_client_set_base_url(client, argv[1]);
    st = ylokh_chat(client, NULL, messages, "{\"max_tokens\":32}", print_token, &tokens);
    if (st == YLOKH_OK) {
        printf("\n(%zu tokens)\n", tokens);
        st = ylokh_chat_text(client, NULL, messages, NULL, &text, &len);
    }
    if (st == YLOKH_OK) {
        printf("whole: %s\n", text);
        ylokh_string_free(text);
    } else {
        fprintf(stderr, "%s: %s\n", ylokh_status_str(st), ylokh_last_error());
    }
    ylokh_client_free(client);
    return st == YLOKH_OK ? 0 : 1;
}
