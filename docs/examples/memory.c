/* Strings the library hands out are released with ylokh_string_free, never free(). */
#include <stdio.h>
#include <ylokh.h>

int main(void) {
    ylokh_conversation *conv = ylokh_conversation_new();
    char *json = NULL;
    size_t len = 0;
    if (conv == NULL || ylokh_conversation_add(conv, "user", "Hi") != YLOKH_OK)
        return 1;
    if (ylokh_conversation_to_json(conv, &json, &len) != YLOKH_OK)
        return 1;
    printf("%zu bytes: %s\n", len, json);
    ylokh_string_free(json); /* ylokh_string_free(NULL) does nothing */
    ylokh_conversation_free(conv);
    return 0;
}
