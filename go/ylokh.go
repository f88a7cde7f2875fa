// Package ylokh streams chat completions from OpenAI-compatible servers (llama.cpp, vLLM,
// Ollama, OpenAI, ...) token by token, through libylokh's C API.
//
//	import ylokh "github.com/libylokh/libylokh/go"
//
// It needs cgo and libylokh installed (`make install` in the repository): the linker flags
// come from pkg-config (set PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a prefix pkg-config
// does not search), or from CGO_LDFLAGS when built with -tags ylokh_nopkgconfig. The C
// header is vendored in this module (ylokh_vendored.h, a copy of the repository's
// include/ylokh.h, named apart so that an installed ylokh.h of another version is never
// picked instead), so `go get` and `go mod vendor` need nothing else.
//
// Every chat blocks until the reply is complete; callbacks run on the calling goroutine.
// Cancelling the context stops a chat within about 50 ms, even while the server is silent.
// Failures are *Error values with the library's status, the HTTP status and the message.
package ylokh

/*
#include <stdlib.h>
#include "ylokh_vendored.h"
#include "shim.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// The version of the header this package was built with (see Version for the library's).
const (
	VersionMajor = C.YLOKH_VERSION_MAJOR
	VersionMinor = C.YLOKH_VERSION_MINOR
	VersionPatch = C.YLOKH_VERSION_PATCH
)

// Version is the library's version at run time, such as "0.1.0".
func Version() string { return C.GoString(C.ylokh_version()) }

// Status is a status code of the C API; OK is success.
type Status int

// The status codes; the numbers are fixed.
const (
	OK              Status = C.YLOKH_OK
	InvalidArgument Status = C.YLOKH_E_INVALID_ARGUMENT
	Aborted         Status = C.YLOKH_E_ABORTED
	Connect         Status = C.YLOKH_E_CONNECT
	TLS             Status = C.YLOKH_E_TLS
	Timeout         Status = C.YLOKH_E_TIMEOUT
	HTTPStatus      Status = C.YLOKH_E_HTTP_STATUS
	API             Status = C.YLOKH_E_API
	Protocol        Status = C.YLOKH_E_PROTOCOL
	IO              Status = C.YLOKH_E_IO
	Internal        Status = C.YLOKH_E_INTERNAL
)

// String is the library's description of the status ("ok", "timed out", ...).
func (s Status) String() string { return C.GoString(C.ylokh_status_str(C.ylokh_status(s))) }

// Error is a failure of the library.
//
// Status says what kind; HTTPStatus is the status of the reply behind it (0 when there was
// none); Message is the library's message, with the server's own message when it sent one.
// When a call was stopped by its context or by an error of the callback, Status is Aborted
// and Err is ctx.Err() or the callback's error: errors.Is(err, context.Canceled) and
// errors.Is(err, yourError) work.
type Error struct {
	Status     Status
	HTTPStatus int
	Message    string
	Err        error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Status.String()
	}
	if e.Err != nil {
		return fmt.Sprintf("ylokh: %s: %v", msg, e.Err)
	}
	return "ylokh: " + msg
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// takeResult turns a result of the C shim into nil or an *Error, freeing its message.
//
// The library's error is thread-local and a goroutine may change OS threads between two
// cgo calls, so every call that can fail goes through a function of the shim (shim.h) that
// calls it and copies the error in the same cgo call: takeResult(C.ygo_...(...)), never the
// library's function followed by a second cgo call for its error.
func takeResult(r C.ygo_result) error {
	if r.message != nil {
		defer C.free(unsafe.Pointer(r.message))
	}
	if Status(r.status) == OK {
		return nil
	}
	e := &Error{Status: Status(r.status), HTTPStatus: int(r.http_status)}
	if r.message != nil {
		e.Message = C.GoString(r.message)
	}
	return e
}

// Message is one message of a request. Use a Conversation for messages with more fields.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Options are fields merged over the request's defaults, e.g. {"max_tokens": 50,
// "temperature": 0.2}; {"stream": false} asks for the whole reply in one piece. nil for
// none. They may not contain "messages" or "model".
type Options map[string]any

// EventKind says what an Event reports.
type EventKind int

// The kinds of events.
const (
	EventContent   EventKind = C.YLOKH_EVENT_CONTENT
	EventReasoning EventKind = C.YLOKH_EVENT_REASONING
	EventToolCall  EventKind = C.YLOKH_EVENT_TOOL_CALL
	EventFinish    EventKind = C.YLOKH_EVENT_FINISH
	EventUsage     EventKind = C.YLOKH_EVENT_USAGE
	EventRefusal   EventKind = C.YLOKH_EVENT_REFUSAL
)

// Event is one event of a reply (see ylokh_event in ylokh.h).
type Event struct {
	Kind   EventKind
	Choice int
	// The content, reasoning or refusal text, the tool call's arguments fragment, the
	// finish reason, or the usage JSON.
	Text      string
	ToolIndex int
	// Set in the pieces of a tool call that carry them: the first one, or (for some
	// servers) every one; keep the first non-empty value.
	ToolID, ToolName string
	// EventUsage only.
	PromptTokens, CompletionTokens, TotalTokens uint64
}

// Client holds settings and a pool of keep-alive connections. It is safe for concurrent
// use by many goroutines. Close it when done.
type Client struct {
	mu sync.RWMutex // guards p against Close while in use
	p  *C.ylokh_client

	logMu sync.Mutex
	logs  []cgo.Handle // every log function set, released by Close
}

// NewClient creates a client with the library's defaults (YLOKH_BASE_URL, YLOKH_API_KEY,
// timeout 120 s, 2 retries, ...).
func NewClient() (*Client, error) {
	p := C.ylokh_client_new()
	if p == nil {
		return nil, &Error{Status: Internal, Message: "ylokh_client_new failed"}
	}
	c := &Client{p: p}
	runtime.SetFinalizer(c, (*Client).Close)
	return c, nil
}

// Close releases the client. It waits for chats in progress; later calls fail with
// InvalidArgument.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		C.ylokh_client_free(c.p)
		c.p = nil
	}
	c.logMu.Lock()
	for _, h := range c.logs {
		h.Delete()
	}
	c.logs = nil
	c.logMu.Unlock()
	runtime.SetFinalizer(c, nil)
	return nil
}

// with runs f with the client's handle held against Close.
func (c *Client) with(f func(p *C.ylokh_client) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.p == nil {
		return &Error{Status: InvalidArgument, Message: "the client is closed"}
	}
	return f(c.p)
}

func (c *Client) setString(set func(*C.ylokh_client, *C.char) C.ygo_result, value string) error {
	cs := C.CString(value)
	defer C.free(unsafe.Pointer(cs))
	return c.with(func(p *C.ylokh_client) error { return takeResult(set(p, cs)) })
}

// SetBaseURL sets where requests go, e.g. "http://127.0.0.1:8080/v1".
func (c *Client) SetBaseURL(url string) error {
	return c.setString(func(p *C.ylokh_client, s *C.char) C.ygo_result {
		return C.ygo_client_set_base_url(p, s)
	}, url)
}

// SetAPIKey sets the key sent as "Authorization: Bearer <key>"; "" removes it.
func (c *Client) SetAPIKey(key string) error {
	return c.setString(func(p *C.ylokh_client, s *C.char) C.ygo_result {
		return C.ygo_client_set_api_key(p, s)
	}, key)
}

// SetProxy sends requests through a proxy ("http://", "https://" or "socks5://"); ""
// clears it.
func (c *Client) SetProxy(url string) error {
	return c.setString(func(p *C.ylokh_client, s *C.char) C.ygo_result {
		return C.ygo_client_set_proxy(p, s)
	}, url)
}

// SetHeader sets a request header, replacing an earlier value of the same name.
func (c *Client) SetHeader(name, value string) error {
	cn, cv := C.CString(name), C.CString(value)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cv))
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_header(p, cn, cv)) })
}

// RemoveHeader removes a request header (also the default Origin and Referer).
func (c *Client) RemoveHeader(name string) error {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_header(p, cn, nil)) })
}

// SetProxyFromEnv says whether the proxy environment variables apply when no proxy is set.
func (c *Client) SetProxyFromEnv(enabled bool) error {
	v := C.int(0)
	if enabled {
		v = 1
	}
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_proxy_from_env(p, v)) })
}

// SetCrossOriginRedirects says whether a redirect to another origin (scheme, host or port)
// is followed; by default it is refused with an HTTPStatus error naming the location. A
// followed one never carries the API key nor the headers set with SetHeader.
func (c *Client) SetCrossOriginRedirects(allow bool) error {
	v := C.int(0)
	if allow {
		v = 1
	}
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_cross_origin_redirects(p, v)) })
}

func millis(d time.Duration) C.uint64_t {
	if d <= 0 {
		return 0
	}
	return C.uint64_t((d + time.Millisecond - 1) / time.Millisecond)
}

// SetCAFile trusts only the certificate authorities in a PEM file; "" goes back to the
// bundled roots.
func (c *Client) SetCAFile(pemPath string) error {
	if pemPath == "" {
		return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_ca_file(p, nil)) })
	}
	return c.setString(func(p *C.ylokh_client, s *C.char) C.ygo_result {
		return C.ygo_client_set_ca_file(p, s)
	}, pemPath)
}

// UseSystemRoots trusts the operating system's certificate store (true) or the bundled
// roots (false).
func (c *Client) UseSystemRoots(enabled bool) error {
	v := C.int(0)
	if enabled {
		v = 1
	}
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_use_system_roots(p, v)) })
}

// SetLog sets the debugging log: onLog is called with each line (secrets redacted) on the
// goroutine running a chat. nil removes it. A panic in onLog is recovered and dropped.
// Chats that started before a change may still call the previous function.
func (c *Client) SetLog(onLog func(line string)) error {
	var h cgo.Handle
	if onLog != nil {
		h = cgo.NewHandle(onLog)
		c.logMu.Lock()
		c.logs = append(c.logs, h)
		c.logMu.Unlock()
	}
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_set_log(p, C.uintptr_t(h))) })
}

// SetTimeout bounds connecting and every wait for more bytes (default 120 s).
func (c *Client) SetTimeout(d time.Duration) error {
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_timeout_ms(p, millis(d))) })
}

// SetDeadline bounds a whole call, retries included; 0 means none (the default). A
// context deadline does the same per call.
func (c *Client) SetDeadline(d time.Duration) error {
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_deadline_ms(p, millis(d))) })
}

// SetMaxRetries sets how many times a failed attempt is retried before the first token
// (default 2).
func (c *Client) SetMaxRetries(n int) error {
	if n < 0 {
		n = 0
	}
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_max_retries(p, C.uint32_t(n))) })
}

// SetRetryDelay sets the first retry's backoff (default 500 ms).
func (c *Client) SetRetryDelay(d time.Duration) error {
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_retry_delay_ms(p, millis(d))) })
}

// SetMaxEventBytes sets the longest line, event or non-streaming reply accepted.
func (c *Client) SetMaxEventBytes(n int) error {
	if n < 0 {
		n = 0
	}
	return c.with(func(p *C.ylokh_client) error { return takeResult(C.ygo_client_set_max_event_bytes(p, C.size_t(n))) })
}

// Chat sends messages and calls onToken with each piece of the reply's text, on the calling
// goroutine, until the reply is complete. model "" means "gpt-3.5-turbo"; opts may be nil.
//
// A non-nil error from onToken stops the reply; Chat then returns an *Error (Status
// Aborted) that wraps it. A panic in onToken stops the reply and is raised again from Chat.
// Cancelling ctx stops the call, even while the server is silent.
func (c *Client) Chat(ctx context.Context, model string, messages []Message, opts Options, onToken func(token string) error) error {
	if onToken == nil {
		return &Error{Status: InvalidArgument, Message: "onToken is nil"}
	}
	return c.chat(ctx, model, messages, nil, opts, &callState{onToken: onToken})
}

// ChatEvents is Chat with every event of the reply: content, reasoning, tool calls, finish
// reasons and usage.
func (c *Client) ChatEvents(ctx context.Context, model string, messages []Message, opts Options, onEvent func(Event) error) error {
	if onEvent == nil {
		return &Error{Status: InvalidArgument, Message: "onEvent is nil"}
	}
	return c.chat(ctx, model, messages, nil, opts, &callState{onEvent: onEvent})
}

// ChatText returns the whole reply.
func (c *Client) ChatText(ctx context.Context, model string, messages []Message, opts Options) (string, error) {
	var b strings.Builder
	err := c.Chat(ctx, model, messages, opts, func(t string) error {
		b.WriteString(t)
		return nil
	})
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

// ChatConversation sends the conversation's messages and streams the reply to onToken; on
// success the reply is appended to the conversation, on any failure it is unchanged.
func (c *Client) ChatConversation(ctx context.Context, conv *Conversation, model string, opts Options, onToken func(token string) error) error {
	if conv == nil || onToken == nil {
		return &Error{Status: InvalidArgument, Message: "conversation or onToken is nil"}
	}
	return c.chat(ctx, model, nil, conv, opts, &callState{onToken: onToken})
}

// callState is what the exported callbacks reach through the cgo.Handle.
type callState struct {
	ctx      context.Context
	onToken  func(string) error
	onEvent  func(Event) error
	err      error // the callback's error, if it stopped the call
	panicked bool
	panicVal any
}

func (c *Client) chat(ctx context.Context, model string, messages []Message, conv *Conversation, opts Options, st *callState) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return &Error{Status: Aborted, Message: "the context is done", Err: err}
	}
	st.ctx = ctx

	var cModel, cMessages, cOptions *C.char
	if model != "" {
		cModel = C.CString(model)
		defer C.free(unsafe.Pointer(cModel))
	}
	if conv == nil {
		if messages == nil {
			messages = []Message{}
		}
		js, err := json.Marshal(messages)
		if err != nil {
			return &Error{Status: InvalidArgument, Message: "messages: " + err.Error()}
		}
		cMessages = C.CString(string(js))
		defer C.free(unsafe.Pointer(cMessages))
	}
	if opts != nil {
		js, err := json.Marshal(opts)
		if err != nil {
			return &Error{Status: InvalidArgument, Message: "options: " + err.Error()}
		}
		cOptions = C.CString(string(js))
		defer C.free(unsafe.Pointer(cOptions))
	}
	callbacks := C.int(0)
	if st.onToken != nil {
		callbacks |= C.YGO_ON_TOKEN
	}
	if st.onEvent != nil {
		callbacks |= C.YGO_ON_EVENT
	}

	// Cancelling the context triggers the library's cancel token from another goroutine.
	var cancel *C.ylokh_cancel
	if ctx.Done() != nil {
		cancel = C.ylokh_cancel_new()
		if cancel == nil {
			return &Error{Status: Internal, Message: "ylokh_cancel_new failed"}
		}
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			select {
			case <-ctx.Done():
				C.ylokh_cancel_trigger(cancel)
			case <-stop:
			}
		}()
		defer func() {
			close(stop)
			<-stopped
			C.ylokh_cancel_free(cancel)
		}()
	}

	h := cgo.NewHandle(st)
	defer h.Delete()

	err := c.with(func(p *C.ylokh_client) error {
		if conv == nil {
			return takeResult(C.ygo_chat(p, cModel, cMessages, cOptions, nil, C.uintptr_t(h), callbacks, cancel))
		}
		return conv.with(func(cp *C.ylokh_conversation) error {
			return takeResult(C.ygo_chat(p, cModel, cMessages, cOptions, cp, C.uintptr_t(h), callbacks, cancel))
		})
	})

	// A panic of the callback was recovered before it could cross the C frames; raise it
	// again here, now that the C call has returned.
	if st.panicked {
		panic(st.panicVal)
	}
	var e *Error
	if errors.As(err, &e) && e.Status == Aborted {
		if st.err != nil {
			e.Err = st.err
		} else if ctxErr := ctx.Err(); ctxErr != nil {
			e.Err = ctxErr
		}
	}
	return err
}
