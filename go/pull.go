package ylokh

/*
#include <stdlib.h>
#include <string.h>
#include "ylokh_vendored.h"
#include "shim.h"

// Opens a stream, copying the error out on the same thread.
static ygo_result ygo_stream_open(ylokh_client *client, const char *model,
                                  const char *messages_json, const char *options_json,
                                  ylokh_conversation *conversation, const ylokh_cancel *cancel,
                                  ylokh_stream **out) {
    ylokh_request req;
    memset(&req, 0, sizeof req);
    req.struct_size = sizeof req;
    req.model = model;
    req.messages_json = messages_json;
    req.options_json = options_json;
    req.conversation = conversation;
    req.cancel = cancel;
    return ygo_take_error(ylokh_stream_open(client, &req, out));
}

// Waits for the next event, copying the error out on the same thread. YLOKH_E_AGAIN is
// passed through without a message.
static ygo_result ygo_stream_next(ylokh_stream *stream, uint64_t wait_ms,
                                  const ylokh_event **out) {
    ylokh_status status = ylokh_stream_next(stream, wait_ms, out);
    if (status == YLOKH_E_AGAIN) {
        ygo_result r;
        memset(&r, 0, sizeof r);
        r.status = status;
        return r;
    }
    return ygo_take_error(status);
}

// The message JSON, copied with malloc (the Go side frees it with free()).
static ygo_result ygo_stream_message(const ylokh_stream *stream, char **out, size_t *len) {
    char *json = NULL;
    ylokh_status status = ylokh_stream_message_json(stream, &json, len);
    if (status == YLOKH_OK) {
        *out = malloc(*len + 1);
        if (*out != NULL) memcpy(*out, json, *len + 1);
        ylokh_string_free(json);
    }
    return ygo_take_error(status);
}
*/
import "C"

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"unsafe"
)

// ChatStream is a reply pulled event by event, in go-openai's style:
//
//	stream, err := client.CreateStream(ctx, ylokh.Request{Messages: msgs})
//	if err != nil { ... }
//	defer stream.Close()
//	for {
//		ev, err := stream.Recv()
//		if errors.Is(err, io.EOF) {
//			break
//		}
//		if err != nil { ... }
//		if ev.Kind == ylokh.EventContent {
//			fmt.Print(ev.Text)
//		}
//	}
//
// The library receives the reply on a thread of its own into a small bounded queue; Recv
// takes the next event from it (one cgo call, no callback into Go per token). Use a
// ChatStream from one goroutine at a time.
type ChatStream struct {
	mu     sync.Mutex
	p      *C.ylokh_stream
	conv   *Conversation // locked from CreateStream until the end or Close
	ctx    context.Context
	cancel *C.ylokh_cancel
	stop   chan struct{} // closed by Close: ends the context watcher
	done   chan struct{} // closed when the watcher has ended
	err    error         // io.EOF or the failure, once Recv has seen it
}

// CreateStream starts the request and returns at once; pull its events with Recv. With
// req.Conversation, the reply is appended to it when Recv reports io.EOF (never on a
// failure or an early Close), and the conversation must not be used until then.
// Cancelling ctx stops the reply within about 50 ms: Recv then returns an *Error wrapping
// ctx.Err(). Close the stream when done with it.
func (c *Client) CreateStream(ctx context.Context, req Request) (*ChatStream, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Status: Aborted, Message: "the context is done", Err: err}
	}
	var cModel, cMessages, cOptions *C.char
	if req.Model != "" {
		cModel = C.CString(req.Model)
		defer C.free(unsafe.Pointer(cModel))
	}
	if req.Conversation == nil {
		messages := req.Messages
		if messages == nil {
			messages = []Message{}
		}
		js, err := json.Marshal(messages)
		if err != nil {
			return nil, &Error{Status: InvalidArgument, Message: "messages: " + err.Error()}
		}
		cMessages = C.CString(string(js))
		defer C.free(unsafe.Pointer(cMessages))
	}
	if opts := req.options(); opts != nil {
		js, err := json.Marshal(opts)
		if err != nil {
			return nil, &Error{Status: InvalidArgument, Message: "options: " + err.Error()}
		}
		cOptions = C.CString(string(js))
		defer C.free(unsafe.Pointer(cOptions))
	}
	s := &ChatStream{ctx: ctx, stop: make(chan struct{}), done: make(chan struct{})}
	s.cancel = C.ylokh_cancel_new()
	if s.cancel == nil {
		return nil, &Error{Status: Internal, Message: "ylokh_cancel_new failed"}
	}
	var cConv *C.ylokh_conversation
	if req.Conversation != nil {
		req.Conversation.mu.Lock()
		s.conv = req.Conversation
		cConv = req.Conversation.p
	}
	err := c.with(func(p *C.ylokh_client) error {
		return takeResult(C.ygo_stream_open(p, cModel, cMessages, cOptions, cConv, s.cancel, &s.p))
	})
	if err != nil {
		s.release()
		C.ylokh_cancel_free(s.cancel)
		return nil, err
	}
	// Cancelling the context triggers the stream's cancel token.
	go func() {
		defer close(s.done)
		select {
		case <-ctx.Done():
			C.ylokh_cancel_trigger(s.cancel)
		case <-s.stop:
		}
	}()
	return s, nil
}

// release unlocks the conversation, once.
func (s *ChatStream) release() {
	if s.conv != nil {
		s.conv.mu.Unlock()
		s.conv = nil
	}
}

// Recv waits for the next event. At the end of the reply it returns io.EOF, and again on
// every later call; a failure is an *Error (the same on every later call), after the
// events that came before it.
func (s *ChatStream) Recv() (Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Event{}, s.err
	}
	if s.p == nil {
		return Event{}, &Error{Status: InvalidArgument, Message: "the stream is closed"}
	}
	for {
		var e *C.ylokh_event
		r := C.ygo_stream_next(s.p, C.uint64_t(^uint64(0)), &e)
		if Status(r.status) == Status(C.YLOKH_E_AGAIN) {
			continue
		}
		if err := takeResult(r); err != nil {
			if ce, ok := err.(*Error); ok && ce.Status == Aborted && s.ctx.Err() != nil {
				ce.Err = s.ctx.Err()
			}
			s.err = err
			s.release()
			return Event{}, err
		}
		if e == nil {
			// The library has appended the reply to the conversation, if any.
			s.err = io.EOF
			s.release()
			return Event{}, io.EOF
		}
		return goEvent(e), nil
	}
}

// goEvent copies a library event into Go memory.
func goEvent(e *C.ylokh_event) Event {
	str := func(p *C.char, n C.size_t) string {
		if p == nil {
			return ""
		}
		return C.GoStringN(p, C.int(n))
	}
	return Event{
		Kind:             EventKind(e.kind),
		Choice:           int(e.choice),
		Text:             str(e.text, e.text_len),
		ToolIndex:        int(e.tool_index),
		ToolID:           str(e.tool_id, e.tool_id_len),
		ToolName:         str(e.tool_name, e.tool_name_len),
		PromptTokens:     uint64(e.prompt_tokens),
		CompletionTokens: uint64(e.completion_tokens),
		TotalTokens:      uint64(e.total_tokens),
	}
}

// MessageJSON is the assistant message put together from the events received so far (the
// whole reply after io.EOF), as JSON: role, content, reasoning, refusal, tool_calls (id,
// type, function name and arguments), finish_reason and usage.
func (s *ChatStream) MessageJSON() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return "", &Error{Status: InvalidArgument, Message: "the stream is closed"}
	}
	var out *C.char
	var n C.size_t
	if err := takeResult(C.ygo_stream_message(s.p, &out, &n)); err != nil {
		return "", err
	}
	if out == nil {
		return "", &Error{Status: Internal, Message: "out of memory"}
	}
	defer C.free(unsafe.Pointer(out))
	return C.GoStringN(out, C.int(n)), nil
}

// Close stops the reply if it is still running and releases the stream. It returns nil;
// later calls do nothing.
func (s *ChatStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	close(s.stop)
	<-s.done
	C.ylokh_stream_close(s.p)
	s.p = nil
	C.ylokh_cancel_free(s.cancel)
	s.cancel = nil
	s.release()
	return nil
}
