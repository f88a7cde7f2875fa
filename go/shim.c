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
    if (handle == 0) return ygo_status(ylokh_client_set_log(client, NULL, NULL));
    return ygo_status(ylokh_client_set_log(client, ygo_on_log, (void *)handle));
}

ygo_result ygo_status(int status) {
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
    return ygo_status(ylokh_chat_ex(client, &req));
}
