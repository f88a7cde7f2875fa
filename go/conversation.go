package ylokh

/*
#include <stdlib.h>
#include "ylokh_vendored.h"
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Conversation is a message history. Client.ChatConversation sends it and appends the
// reply on success. Use it from one goroutine at a time; Close it when done.
type Conversation struct {
	mu sync.Mutex
	p  *C.ylokh_conversation
}

// NewConversation creates an empty conversation.
func NewConversation() *Conversation {
	p := C.ylokh_conversation_new()
	if p == nil {
		panic("ylokh: ylokh_conversation_new failed")
	}
	return newConversation(p)
}

// ConversationFromJSON creates a conversation from a JSON array of message objects, as
// JSON writes it.
func ConversationFromJSON(js string) (*Conversation, error) {
	cs := C.CString(js)
	defer C.free(unsafe.Pointer(cs))
	var p *C.ylokh_conversation
	if err := takeResult(C.ygo_conversation_from_json(cs, &p)); err != nil {
		return nil, err
	}
	return newConversation(p), nil
}

func newConversation(p *C.ylokh_conversation) *Conversation {
	c := &Conversation{p: p}
	runtime.SetFinalizer(c, (*Conversation).Close)
	return c
}

// Close releases the conversation.
func (c *Conversation) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		C.ylokh_conversation_free(c.p)
		c.p = nil
	}
	runtime.SetFinalizer(c, nil)
	return nil
}

func (c *Conversation) with(f func(p *C.ylokh_conversation) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return &Error{Status: InvalidArgument, Message: "the conversation is closed"}
	}
	return f(c.p)
}

// Add appends {"role": role, "content": content}.
func (c *Conversation) Add(role, content string) error {
	cr, cc := C.CString(role), C.CString(content)
	defer C.free(unsafe.Pointer(cr))
	defer C.free(unsafe.Pointer(cc))
	return c.with(func(p *C.ylokh_conversation) error { return takeResult(C.ygo_conversation_add(p, cr, cc)) })
}

// AddJSON appends one message given as a JSON object (tool results, names, content parts).
func (c *Conversation) AddJSON(message string) error {
	cm := C.CString(message)
	defer C.free(unsafe.Pointer(cm))
	return c.with(func(p *C.ylokh_conversation) error { return takeResult(C.ygo_conversation_add_json(p, cm)) })
}

// Len is the number of messages.
func (c *Conversation) Len() int {
	n := 0
	_ = c.with(func(p *C.ylokh_conversation) error {
		n = int(C.ylokh_conversation_len(p))
		return nil
	})
	return n
}

// Clear removes every message.
func (c *Conversation) Clear() error {
	return c.with(func(p *C.ylokh_conversation) error { return takeResult(C.ygo_conversation_clear(p)) })
}

// JSON returns the messages as a JSON array.
func (c *Conversation) JSON() (string, error) {
	var out string
	err := c.with(func(p *C.ylokh_conversation) error {
		var s *C.char
		var n C.size_t
		if err := takeResult(C.ygo_conversation_to_json(p, &s, &n)); err != nil {
			return err
		}
		defer C.ylokh_string_free(s)
		out = goString(s, n)
		return nil
	})
	return out, err
}
