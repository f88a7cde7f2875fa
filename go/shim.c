#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "_cgo_export.h"

/* The library's callbacks, forwarding to the exported Go functions with the handle. */
static int ygo_on_token(void *userdata, const char *token, size_t len) {
    return ygoOnToken((uintptr_t)userdata, (char *)token, len);
}

static int ygo_on_event(void *userdata, const ylokh_event *event) {
    return ygoOnEvent((uintptr_t)userdata, (ylokh_event *)event);
}

static void ygo_on_log(void *userdata, const char *line, size_t len) {
    ygoOnLog((uintptr_t)userdata, (char *)line, len);
}

ygo_result ygo_set_log(ylokh_client *client, uintptr_t handle) {
    if (handle == 0) return ygo_take_error(ylokh_client_set_log(client, NULL, NULL));
    return ygo_take_error(ylokh_client_set_log(client, ygo_on_log, (void *)handle));
}

ygo_result ygo_take_error(int status) {
    ygo_result r;
    r.status = status;
    r.http_status = 0;
    r.message = NULL;
    if (status != YLOKH_OK) {
        r.http_status = ylokh_last_http_status();
        r.message = strdup(ylokh_last_error());
    }
    return r;
}

ygo_result ygo_chat(ylokh_client *client, const char *model, const char *messages_json,
                    const char *options_json, ylokh_conversation *conversation,
                    uintptr_t handle, int callbacks, const ylokh_cancel *cancel) {
    ylokh_request req;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.model = model;
    req.messages_json = messages_json;
    req.options_json = options_json;
    req.conversation = conversation;
    req.on_token = (callbacks & YGO_ON_TOKEN) ? ygo_on_token : NULL;
    req.on_event = (callbacks & YGO_ON_EVENT) ? ygo_on_event : NULL;
    req.userdata = (void *)handle;
    req.cancel = cancel;
    return ygo_take_error(ylokh_chat_ex(client, &req));
}

/* Each function calls the library's and copies the error on the same thread. */
ygo_result ygo_client_set_base_url(ylokh_client *client, const char *base_url) {
    return ygo_take_error(ylokh_client_set_base_url(client, base_url));
}

ygo_result ygo_client_set_api_key(ylokh_client *client, const char *api_key) {
    return ygo_take_error(ylokh_client_set_api_key(client, api_key));
}

ygo_result ygo_client_set_proxy(ylokh_client *client, const char *proxy_url) {
    return ygo_take_error(ylokh_client_set_proxy(client, proxy_url));
}

ygo_result ygo_client_set_proxy_from_env(ylokh_client *client, int enabled) {
    return ygo_take_error(ylokh_client_set_proxy_from_env(client, enabled));
}

ygo_result ygo_client_set_cross_origin_redirects(ylokh_client *client, int allow) {
    return ygo_take_error(ylokh_client_set_cross_origin_redirects(client, allow));
}

ygo_result ygo_client_set_header(ylokh_client *client, const char *name, const char *value) {
    return ygo_take_error(ylokh_client_set_header(client, name, value));
}

ygo_result ygo_client_set_ca_file(ylokh_client *client, const char *pem_path) {
    return ygo_take_error(ylokh_client_set_ca_file(client, pem_path));
}

ygo_result ygo_client_use_system_roots(ylokh_client *client, int enabled) {
    return ygo_take_error(ylokh_client_use_system_roots(client, enabled));
}

ygo_result ygo_client_set_timeout_ms(ylokh_client *client, uint64_t timeout_ms) {
    return ygo_take_error(ylokh_client_set_timeout_ms(client, timeout_ms));
}

ygo_result ygo_client_set_deadline_ms(ylokh_client *client, uint64_t deadline_ms) {
    return ygo_take_error(ylokh_client_set_deadline_ms(client, deadline_ms));
}

ygo_result ygo_client_set_max_retries(ylokh_client *client, uint32_t max_retries) {
    return ygo_take_error(ylokh_client_set_max_retries(client, max_retries));
}

ygo_result ygo_client_set_retry_delay_ms(ylokh_client *client, uint64_t delay_ms) {
    return ygo_take_error(ylokh_client_set_retry_delay_ms(client, delay_ms));
}

ygo_result ygo_client_set_max_event_bytes(ylokh_client *client, size_t max_bytes) {
    return ygo_take_error(ylokh_client_set_max_event_bytes(client, max_bytes));
}

ygo_result ygo_conversation_from_json(const char *messages_json, ylokh_conversation **out) {
    return ygo_take_error(ylokh_conversation_from_json(messages_json, out));
}

ygo_result ygo_conversation_add(ylokh_conversation *conversation, const char *role,
                                const char *content) {
    return ygo_take_error(ylokh_conversation_add(conversation, role, content));
}

ygo_result ygo_conversation_add_json(ylokh_conversation *conversation, const char *message_json) {
    return ygo_take_error(ylokh_conversation_add_json(conversation, message_json));
}

ygo_result ygo_conversation_clear(ylokh_conversation *conversation) {
    return ygo_take_error(ylokh_conversation_clear(conversation));
}

ygo_result ygo_conversation_to_json(const ylokh_conversation *conversation, char **out_json,
                                    size_t *out_len) {
    return ygo_take_error(ylokh_conversation_to_json(conversation, out_json, out_len));
}
