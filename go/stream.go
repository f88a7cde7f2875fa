package ylokh

import "context"

// Stream is the channel form of Chat: receive the tokens from Tokens(), then call Err().
//
//	s := client.Stream(ctx, "", msgs, nil)
//	defer s.Close()
//	for token := range s.Tokens() {
//		fmt.Print(token)
//	}
//	if err := s.Err(); err != nil { ... }
type Stream struct {
	tokens chan string
	done   chan struct{}
	cancel context.CancelFunc
	err    error
}

// Stream starts a chat on a new goroutine and returns at once. To stop early, cancel ctx or
// call Close: a reply nobody receives from is not left running.
func (c *Client) Stream(ctx context.Context, model string, messages []Message, opts Options) *Stream {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{tokens: make(chan string), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer cancel()
		defer close(s.done)
		defer close(s.tokens)
		s.err = c.Chat(ctx, model, messages, opts, func(token string) error {
			select {
			case s.tokens <- token:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return s
}

// Tokens delivers the reply's text piece by piece; it is closed when the call ends.
func (s *Stream) Tokens() <-chan string { return s.tokens }

// Err waits for the call to end and returns its error (nil when the reply completed).
func (s *Stream) Err() error {
	<-s.done
	return s.err
}

// Close stops the call if it is still running, waits for it to end, and returns Err()
// (an *Error wrapping context.Canceled when Close stopped it).
func (s *Stream) Close() error {
	s.cancel()
	return s.Err()
}
