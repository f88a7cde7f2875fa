package ylokh

import (
	"context"
	"strings"
)

// Request is a chat request with typed fields, in the style of go-openai's
// ChatCompletionRequest:
//
//	req := ylokh.Request{
//		Model:       "gpt-4o-mini",
//		Messages:    []ylokh.Message{{Role: "user", Content: "Hello"}},
//		MaxTokens:   64,
//		Temperature: ylokh.Float(0.2),
//	}
//	err := client.Do(ctx, req, func(token string) error { fmt.Print(token); return nil })
//
// Fields left at their zero value are not sent, so the library's defaults apply (see the
// README: temperature 1, top_p 1, ...). Options adds any other field of the
// chat-completions request ({"seed": 7, "stream": false}, ...); a key set both in Options
// and by a typed field takes the value in Options.
type Request struct {
	// "" means "gpt-3.5-turbo".
	Model string
	// The messages to send. Exactly one of Messages and Conversation.
	Messages []Message
	// A conversation: its messages are sent, and the reply is appended when it completes.
	Conversation *Conversation
	// max_tokens: the longest reply, in tokens; 0 is not sent.
	MaxTokens int
	// temperature and top_p; nil is not sent. ylokh.Float(0) sends 0.
	Temperature *float64
	TopP        *float64
	// stop: up to 4 sequences where the server stops; nil is not sent.
	Stop []string
	// Any other fields, merged last.
	Options Options
}

// Float returns a pointer to v, for Request.Temperature and Request.TopP.
func Float(v float64) *float64 { return &v }

// options merges the typed fields under Options; nil when there is nothing to send.
func (r *Request) options() Options {
	opts := Options{}
	if r.MaxTokens != 0 {
		opts["max_tokens"] = r.MaxTokens
	}
	if r.Temperature != nil {
		opts["temperature"] = *r.Temperature
	}
	if r.TopP != nil {
		opts["top_p"] = *r.TopP
	}
	if r.Stop != nil {
		opts["stop"] = r.Stop
	}
	for k, v := range r.Options {
		opts[k] = v
	}
	if len(opts) == 0 {
		return nil
	}
	return opts
}

// check says what is wrong with the request's shape before anything is sent.
func (r *Request) check() error {
	var problems []string
	if r.Conversation != nil && r.Messages != nil {
		problems = append(problems, "set Messages or Conversation, not both")
	}
	if r.MaxTokens < 0 {
		problems = append(problems, "MaxTokens is negative")
	}
	if len(problems) > 0 {
		return &Error{Status: InvalidArgument, Message: "request: " + strings.Join(problems, "; ")}
	}
	return nil
}

// Do sends the request and calls onToken with each piece of the reply's text, as Chat
// does (on the calling goroutine; a non-nil error from onToken stops the reply; cancelling
// ctx stops the call). With req.Conversation, the reply is appended to it on success.
func (c *Client) Do(ctx context.Context, req Request, onToken func(token string) error) error {
	if onToken == nil {
		return &Error{Status: InvalidArgument, Message: "onToken is nil"}
	}
	return c.do(ctx, &req, &callState{onToken: onToken})
}

// DoEvents is Do with every event of the reply, as ChatEvents.
func (c *Client) DoEvents(ctx context.Context, req Request, onEvent func(Event) error) error {
	if onEvent == nil {
		return &Error{Status: InvalidArgument, Message: "onEvent is nil"}
	}
	return c.do(ctx, &req, &callState{onEvent: onEvent})
}

// Text sends the request and returns the whole reply.
func (c *Client) Text(ctx context.Context, req Request) (string, error) {
	var b strings.Builder
	err := c.Do(ctx, req, func(t string) error {
		b.WriteString(t)
		return nil
	})
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

func (c *Client) do(ctx context.Context, req *Request, st *callState) error {
	if err := req.check(); err != nil {
		return err
	}
	return c.chat(ctx, req.Model, req.Messages, req.Conversation, req.options(), st)
}
