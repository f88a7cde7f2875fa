/* A client configured for a local server: one client per program, shared by its threads. */
#include <stdio.h>
#include <ylokh.h>

static int print_token(void *userdata, const char *token, size_t len) {
    (void)userdata;
    fwrite(token, 1, len, stdout);
    return 0;
}

int main(int argc, char **argv) {
    ylokh_client *client = ylokh_client_new(); /* NULL only when out of memory */
    ylokh_status st;
    if (client == NULL)
        return 1;
    /* Each setter checks its argument: a bad URL is refused here, not at the first chat. */
    st = ylokh_client_set_base_url(client, argc > 1 ? argv[1] : "http://127.0.0.1:8080/v1");
    if (st == YLOKH_OK)
        st = ylokh_client_set_timeout_ms(client, 30000); /* silence longer than 30 s fails */
    if (st == YLOKH_OK)
        st = ylokh_client_set_max_retries(client, 1);
    if (st == YLOKH_OK)
        st = ylokh_client_set_header(client, "X-Request-Source", "docs-example");
    if (st == YLOKH_OK)
        st = ylokh_chat(client, NULL, "[{\"role\":\"user\",\"content\":\"Hi\"}]", NULL,
                        print_token, NULL);
    if (st != YLOKH_OK)
        fprintf(stderr, "%s: %s\n", ylokh_status_str(st), ylokh_last_error());
    else
        putchar('\n');
    ylokh_client_free(client);
    return st == YLOKH_OK ? 0 : 1;
}
