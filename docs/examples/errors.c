/* Why a call failed: the status, then the details of this thread's last failure. */
#include <stdio.h>
#include <ylokh.h>

static int ignore(void *userdata, const char *token, size_t len) {
    (void)userdata, (void)token, (void)len;
    return 0;
}

int main(int argc, char **argv) {
    ylokh_client *client;
    ylokh_status st;
    /* The library loaded may be older than the header compiled against (same SONAME,
     * an older 0.1.x): refuse to run without the functions this program needs. */
    if (ylokh_version_number() < YLOKH_VERSION_NUMBER)
        fprintf(stderr, "note: built with %s, running the older %s\n", YLOKH_VERSION,
                ylokh_version());
    client = ylokh_client_new();
    if (client == NULL)
        return 1;
    if (argc > 1)
        ylokh_client_set_base_url(client, argv[1]);
    st = ylokh_chat(client, "no-such-model", "[{\"role\":\"user\",\"content\":\"Hi\"}]", NULL,
                    ignore, NULL);
    if (st == YLOKH_E_HTTP_STATUS)
        printf("HTTP %d: %s\n", ylokh_last_http_status(), ylokh_last_error());
    else if (st != YLOKH_OK)
        printf("%s: %s\n", ylokh_status_str(st), ylokh_last_error());
    else
        printf("ok\n");
    ylokh_client_free(client);
    return 0;
}
