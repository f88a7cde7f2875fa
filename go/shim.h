/* C side of the cgo bindings: one call that runs a chat and reads the thread-local error
 * before returning to Go, so the error cannot be lost to a goroutine moving threads. */
#ifndef YLOKH_GO_SHIM_H
#define YLOKH_GO_SHIM_H

#include <stdint.h>

#include "ylokh_vendored.h"

/* What a chat call returned; `message` is NULL on success, else malloc'd (free it). */
typedef struct ygo_result {
    int status;
    int http_status;
    char *message;
} ygo_result;

enum { YGO_ON_TOKEN = 1, YGO_ON_EVENT = 2 };

/* ylokh_chat_ex with the Go callbacks selected by `callbacks` (YGO_ON_*), `handle` (a
 * runtime/cgo.Handle) as their userdata, and the error copied out on failure. */
ygo_result ygo_chat(ylokh_client *client, const char *model, const char *messages_json,
                    const char *options_json, ylokh_conversation *conversation,
                    uintptr_t handle, int callbacks, const ylokh_cancel *cancel);

/* ylokh_client_set_log with the Go log function of `handle` (a runtime/cgo.Handle), or
 * none when `handle` is 0; the error copied out on failure. */
ygo_result ygo_set_log(ylokh_client *client, uintptr_t handle);

/* The calling thread's last error, copied (free it), for calls other than chats. */
ygo_result ygo_status(int status);

#endif
