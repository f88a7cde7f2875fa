package ylokh

/*
#include "ylokh_vendored.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// The library calls these (through the trampolines in shim.c) on the goroutine that called
// Chat, with the call's cgo.Handle as userdata. A panic is recovered here, so it never
// unwinds through the C frames, and raised again by Client.chat after the C call returned.
// (runtime.Goexit, as t.Fatal calls it, cannot be caught: callbacks must not call it.)

//export ygoOnToken
func ygoOnToken(handle C.uintptr_t, token *C.char, n C.size_t) (ret C.int) {
	st := cgo.Handle(handle).Value().(*callState)
	returned := false
	defer func() {
		if !returned {
			st.panicked, st.panicVal, ret = true, recover(), 1
		}
	}()
	ret = st.deliver(func() error { return st.onToken(goString(token, n)) })
	returned = true
	return ret
}

//export ygoOnEvent
func ygoOnEvent(handle C.uintptr_t, e *C.ylokh_event) (ret C.int) {
	st := cgo.Handle(handle).Value().(*callState)
	returned := false
	defer func() {
		if !returned {
			st.panicked, st.panicVal, ret = true, recover(), 1
		}
	}()
	ev := Event{
		Kind:             EventKind(e.kind),
		Choice:           int(e.choice),
		Text:             goString(e.text, e.text_len),
		ToolIndex:        int(e.tool_index),
		ToolID:           goString(e.tool_id, e.tool_id_len),
		ToolName:         goString(e.tool_name, e.tool_name_len),
		PromptTokens:     uint64(e.prompt_tokens),
		CompletionTokens: uint64(e.completion_tokens),
		TotalTokens:      uint64(e.total_tokens),
	}
	ret = st.deliver(func() error { return st.onEvent(ev) })
	returned = true
	return ret
}

// deliver calls the user's callback unless the context is done; 1 stops the reply.
func (st *callState) deliver(call func() error) C.int {
	if st.ctx.Err() != nil {
		return 1
	}
	if err := call(); err != nil {
		st.err = err
		return 1
	}
	return 0
}

// goString copies n bytes at p (which may hold NULs); "" for NULL.
func goString(p *C.char, n C.size_t) string {
	if p == nil || n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
}

//export ygoOnLog
func ygoOnLog(handle C.uintptr_t, line *C.char, n C.size_t) {
	// A panic cannot be raised again anywhere useful: the log runs inside the library.
	defer func() { _ = recover() }()
	cgo.Handle(handle).Value().(func(string))(goString(line, n))
}
