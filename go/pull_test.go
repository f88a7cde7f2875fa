package ylokh_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	ylokh "github.com/libylokh/libylokh/go"
)

// recvAll pulls every event until io.EOF or an error.
func recvAll(t *testing.T, s *ylokh.ChatStream) (string, []ylokh.Event, error) {
	t.Helper()
	var text strings.Builder
	var events []ylokh.Event
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), events, nil
		}
		if err != nil {
			return text.String(), events, err
		}
		events = append(events, ev)
		if ev.Kind == ylokh.EventContent {
			text.WriteString(ev.Text)
		}
	}
}

func TestCreateStreamRecvUntilEOF(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo", ", ", "wörld"}, time.Millisecond))
	c := newClient(t, s.URL)
	stream, err := c.CreateStream(context.Background(), ylokh.Request{Model: "m", Messages: hello, MaxTokens: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	text, events, err := recvAll(t, stream)
	if err != nil || text != "Hello, wörld" {
		t.Fatalf("text %q, err %v", text, err)
	}
	if last := events[len(events)-1]; last.Kind != ylokh.EventFinish || last.Text != "stop" {
		t.Fatalf("last event %+v", last)
	}
	// io.EOF again, and the whole message.
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v", err)
	}
	msg, err := stream.MessageJSON()
	if err != nil || !strings.Contains(msg, `"content":"Hello, wörld"`) || !strings.Contains(msg, `"finish_reason":"stop"`) {
		t.Fatalf("message %s, err %v", msg, err)
	}
	if b := s.requests()[0]; b["model"] != "m" || b["max_tokens"] != float64(9) {
		t.Fatalf("request body %v", b)
	}
	if err := stream.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatal("Recv after Close succeeded")
	}
}

func TestCreateStreamErrorsAndCancel(t *testing.T) {
	s := serve(t, errorReply(404, "no such model"))
	c := newClient(t, s.URL)
	stream, err := c.CreateStream(context.Background(), ylokh.Request{Messages: hello})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	var e *ylokh.Error
	if !errors.As(err, &e) || e.Status != ylokh.HTTPStatus || e.HTTPStatus != 404 || !strings.Contains(e.Message, "no such model") {
		t.Fatalf("error %v", err)
	}
	if _, again := stream.Recv(); again != err {
		t.Fatalf("a second Recv gave %v", again)
	}
	stream.Close()

	done := make(chan struct{})
	defer close(done)
	silent := serve(t, stall(done))
	c2 := newClient(t, silent.URL)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err = c2.CreateStream(ctx, ylokh.Request{Messages: hello})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	started := time.Now()
	_, err = stream.Recv()
	if !errors.Is(err, context.Canceled) || time.Since(started) > 2*time.Second {
		t.Fatalf("after cancel: %v in %v", err, time.Since(started))
	}

	if _, err := c.CreateStream(context.Background(), ylokh.Request{Messages: hello, MaxTokens: -1}); err == nil {
		t.Fatal("a bad request was accepted")
	}
}

func TestCreateStreamConversationAndEarlyClose(t *testing.T) {
	s := serve(t, sse([]string{"Hi", "!"}, time.Millisecond))
	c := newClient(t, s.URL)
	conv := ylokh.NewConversation()
	defer conv.Close()
	if err := conv.Add("user", "hello"); err != nil {
		t.Fatal(err)
	}
	stream, err := c.CreateStream(context.Background(), ylokh.Request{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if text, _, err := recvAll(t, stream); err != nil || text != "Hi!" {
		t.Fatalf("%q %v", text, err)
	}
	stream.Close()
	if conv.Len() != 2 {
		t.Fatalf("conversation has %d messages", conv.Len())
	}
	// Closed before the end: nothing appended.
	stream, err = c.CreateStream(context.Background(), ylokh.Request{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stream.Close()
	if conv.Len() != 2 {
		t.Fatalf("conversation has %d messages after an early close", conv.Len())
	}
}

func TestManyStreamsFromOneGoroutine(t *testing.T) {
	s := serve(t, sse([]string{"a", "b", "c"}, time.Millisecond))
	c := newClient(t, s.URL)
	var streams []*ylokh.ChatStream
	for i := 0; i < 16; i++ {
		stream, err := c.CreateStream(context.Background(), ylokh.Request{Messages: hello})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, stream)
	}
	for i, stream := range streams {
		text, _, err := recvAll(t, stream)
		if err != nil || text != "abc" {
			t.Fatalf("stream %d: %q %v", i, text, err)
		}
		stream.Close()
	}
}
