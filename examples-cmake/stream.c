/* stream.c: stream_c BASE_URL PROMPT streams the reply to stdout (CMake example, C). */
#include <stdio.h>
#include <string.h>

#include <ylokh.h>

static int on_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    fwrite(token, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    char messages[4096];
    ylokh_client *client;
    ylokh_status st;
    if (argc != 3 || strpbrk(argv[2], "\"\\") != NULL || strlen(argv[2]) > 4000) {
        fprintf(stderr, "usage: stream_c BASE_URL PROMPT (without quotes or backslashes)\n");
        return 1;
    }
    snprintf(messages, sizeof messages, "[{\"role\":\"user\",\"content\":\"%s\"}]", argv[2]);
    client = ylokh_client_new();
    st = ylokh_client_set_base_url(client, argv[1]);
    if (st == YLOKH_OK)
        st = ylokh_chat(client, NULL, messages, "{\"max_tokens\":48}", on_token, NULL);
    if (st != YLOKH_OK)
        fprintf(stderr, "\n%s: %s\n", ylokh_status_str(st), ylokh_last_error());
    else
        printf("\n");
    ylokh_client_free(client);
    return st == YLOKH_OK ? 0 : 2;
}
