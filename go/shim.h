/* C side of the cgo bindings. The library's error (ylokh_last_error, ylokh_last_http_status)
 * is thread-local, and a goroutine may run on another OS thread at its next cgo call: every
 * function of the library that can fail is called from Go through one of the functions
 * below, which calls it and copies its error out before returning to Go, in one cgo call.
 * Go code never calls the failing function and reads the error in two cgo calls
 * (TestNoSecondCgoCallForTheError in ylokh_test.go checks the Go sources). */
#ifndef YLOKH_GO_SHIM_H
#define YLOKH_GO_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "ylokh_vendored.h"

/* What a call returned; `message` is NULL on success, else malloc'd (free it). */
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

/* For C code only, in the same C function as the call that returned `status`: the
 * calling thread's last error, copied (free it). Never call it from Go. */
ygo_result ygo_take_error(int status);

/* The library's setters and conversation functions, each with its error copied out. */
ygo_result ygo_client_set_base_url(ylokh_client *client, const char *base_url);
ygo_result ygo_client_set_api_key(ylokh_client *client, const char *api_key);
ygo_result ygo_client_set_proxy(ylokh_client *client, const char *proxy_url);
ygo_result ygo_client_set_proxy_from_env(ylokh_client *client, int enabled);
ygo_result ygo_client_set_cross_origin_redirects(ylokh_client *client, int allow);
ygo_result ygo_client_set_header(ylokh_client *client, const char *name, const char *value);
ygo_result ygo_client_set_ca_file(ylokh_client *client, const char *pem_path);
ygo_result ygo_client_use_system_roots(ylokh_client *client, int enabled);
ygo_result ygo_client_set_timeout_ms(ylokh_client *client, uint64_t timeout_ms);
ygo_result ygo_client_set_deadline_ms(ylokh_client *client, uint64_t deadline_ms);
ygo_result ygo_client_set_max_retries(ylokh_client *client, uint32_t max_retries);
ygo_result ygo_client_set_retry_delay_ms(ylokh_client *client, uint64_t delay_ms);
ygo_result ygo_client_set_max_event_bytes(ylokh_client *client, size_t max_bytes);
ygo_result ygo_conversation_from_json(const char *messages_json, ylokh_conversation **out);
ygo_result ygo_conversation_add(ylokh_conversation *conversation, const char *role,
                                const char *content);
ygo_result ygo_conversation_add_json(ylokh_conversation *conversation, const char *message_json);
ygo_result ygo_conversation_clear(ylokh_conversation *conversation);
ygo_result ygo_conversation_to_json(const ylokh_conversation *conversation, char **out_json,
                                    size_t *out_len);

#endif
