package ylokh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	ylokh "github.com/libylokh/libylokh/go"
)

// ---- A loopback OpenAI-style server --------------------------------------------------------

func chunk(delta string, finish string) string {
	return fmt.Sprintf(`data: {"id":"chatcmpl-go","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`+"\n\n", delta, finish)
}

// sse streams tokens (each flushed on its own, after gap), then finish "stop" and [DONE].
func sse(tokens []string, gap time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		flusher := w.(http.Flusher)
		_, _ = io.WriteString(w, chunk(`{"role":"assistant","content":""}`, "null"))
		flusher.Flush()
		for _, t := range tokens {
			if gap > 0 {
				select {
				case <-time.After(gap):
				case <-r.Context().Done():
					return
				}
			}
			js, _ := json.Marshal(t)
			_, _ = io.WriteString(w, chunk(`{"content":`+string(js)+`}`, "null"))
			flusher.Flush()
		}
		_, _ = io.WriteString(w, chunk(`{}`, `"stop"`))
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
	}
}

func errorReply(status int, message string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		js, _ := json.Marshal(message)
		_, _ = io.WriteString(w, `{"error":{"message":`+string(js)+`,"type":"invalid_request_error","param":null,"code":null}}`)
	}
}

// stall never answers; it returns when the client goes away or the test ends.
func stall(done <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}
}

type server struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
}

func serve(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(raw)))
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.bodies...)
}

func newClient(t *testing.T, url string) *ylokh.Client {
	t.Helper()
	c, err := ylokh.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for _, err := range []error{
		c.SetBaseURL(url + "/v1"),
		c.SetMaxRetries(0),
		c.SetTimeout(10 * time.Second),
		c.SetProxyFromEnv(false),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

var hello = []ylokh.Message{{Role: "user", Content: "Say hello"}}

// ---- Tests ------------------------------------------------------------------------------------

func TestVersion(t *testing.T) {
	want := fmt.Sprintf("%d.%d.%d", ylokh.VersionMajor, ylokh.VersionMinor, ylokh.VersionPatch)
	if got := ylokh.Version(); got != want {
		t.Fatalf("library version %q, header %q", got, want)
	}
	if ylokh.Timeout.String() != "timed out" || ylokh.OK.String() != "ok" {
		t.Fatalf("status strings: %q %q", ylokh.Timeout, ylokh.OK)
	}
}

func TestChatStreamsTokens(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo"}, 0))
	c := newClient(t, s.URL)
	var tokens []string
	err := c.Chat(context.Background(), "my-model", hello, ylokh.Options{"max_tokens": 5}, func(tok string) error {
		tokens = append(tokens, tok)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tokens, "|") != "Hel|lo" {
		t.Fatalf("tokens %q", tokens)
	}
	body := s.requests()[0]
	if body["model"] != "my-model" || body["max_tokens"] != float64(5) || body["stream"] != true {
		t.Fatalf("request body %v", body)
	}
	msgs, _ := json.Marshal(body["messages"])
	if string(msgs) != `[{"content":"Say hello","role":"user"}]` {
		t.Fatalf("messages %s", msgs)
	}
}

func TestChatTextAndEvents(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo"}, 0))
	c := newClient(t, s.URL)
	text, err := c.ChatText(context.Background(), "", hello, nil)
	if err != nil || text != "Hello" {
		t.Fatalf("ChatText = %q, %v", text, err)
	}
	if s.requests()[0]["model"] != "gpt-3.5-turbo" {
		t.Fatalf("default model: %v", s.requests()[0]["model"])
	}
	var content, finish string
	err = c.ChatEvents(context.Background(), "", hello, nil, func(e ylokh.Event) error {
		switch e.Kind {
		case ylokh.EventContent:
			content += e.Text
		case ylokh.EventFinish:
			finish = e.Text
		}
		return nil
	})
	if err != nil || content != "Hello" || finish != "stop" {
		t.Fatalf("events: content %q finish %q err %v", content, finish, err)
	}
}

func TestCallbackErrorStopsTheReply(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo"}, 0))
	c := newClient(t, s.URL)
	errStop := errors.New("enough")
	calls := 0
	err := c.Chat(context.Background(), "", hello, nil, func(string) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("error %v does not wrap the callback's", err)
	}
	var e *ylokh.Error
	if !errors.As(err, &e) || e.Status != ylokh.Aborted {
		t.Fatalf("error %#v is not an Aborted *ylokh.Error", err)
	}
	if calls != 1 {
		t.Fatalf("callback called %d times after asking to stop", calls)
	}
}

func TestCallbackPanicIsRaisedAfterTheCall(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo"}, 0))
	c := newClient(t, s.URL)
	calls := 0
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the callback's panic", r)
			}
		}()
		_ = c.Chat(context.Background(), "", hello, nil, func(string) error {
			calls++
			panic("boom")
		})
		t.Fatal("Chat returned instead of panicking")
	}()
	if calls != 1 {
		t.Fatalf("callback called %d times", calls)
	}
	// The client is fine afterwards.
	if text, err := c.ChatText(context.Background(), "", hello, nil); err != nil || text != "Hello" {
		t.Fatalf("after the panic: %q, %v", text, err)
	}
}

func TestContextCancelStopsASilentServer(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	s := serve(t, stall(done))
	c := newClient(t, s.URL)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	start := time.Now()
	err := c.Chat(ctx, "", hello, nil, func(string) error { return nil })
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v does not wrap context.Canceled", err)
	}
	var e *ylokh.Error
	if !errors.As(err, &e) || e.Status != ylokh.Aborted {
		t.Fatalf("error %#v", err)
	}
	if elapsed > 5*time.Second {
		t.Fatalf("cancel took %v", elapsed)
	}
}

func TestContextDeadline(t *testing.T) {
	// Tokens every 300 ms, 2.4 s in all; the deadline comes after the first few.
	s := serve(t, sse([]string{"a", "b", "c", "d", "e", "f", "g", "h"}, 300*time.Millisecond))
	c := newClient(t, s.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var got []string
	err := c.Chat(ctx, "", hello, nil, func(tok string) error {
		got = append(got, tok)
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v (tokens %q)", err, got)
	}
	if len(got) == 0 || len(got) == 8 {
		t.Fatalf("tokens %q: want some, not all", got)
	}
	// A context that is already done sends nothing.
	before := len(s.requests())
	if err := c.Chat(ctx, "", hello, nil, func(string) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("done context: %v", err)
	}
	if len(s.requests()) != before {
		t.Fatal("a request was sent with a done context")
	}
}

func TestHTTPErrorCarriesStatusAndMessage(t *testing.T) {
	s := serve(t, errorReply(401, "Invalid API key provided"))
	c := newClient(t, s.URL)
	err := c.Chat(context.Background(), "", hello, nil, func(string) error { return nil })
	var e *ylokh.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %#v is not a *ylokh.Error", err)
	}
	if e.Status != ylokh.HTTPStatus || e.HTTPStatus != 401 || !strings.Contains(e.Message, "Invalid API key provided") {
		t.Fatalf("error %#v", e)
	}
	if !strings.Contains(err.Error(), "Invalid API key provided") {
		t.Fatalf("Error() = %q", err.Error())
	}
}

func TestCrossOriginRedirectsAreRefusedUntilAllowedAndCarryNoKey(t *testing.T) {
	keysElsewhere := make(chan string, 4)
	other := serve(t, func(w http.ResponseWriter, r *http.Request) {
		keysElsewhere <- r.Header.Get("Authorization")
		sse([]string{"else", "where"}, 0)(w, r)
	})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") != "Bearer sk-go-secret" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, other.URL+"/v1/chat/completions", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(origin.Close)
	c := newClient(t, origin.URL)
	if err := c.SetAPIKey("sk-go-secret"); err != nil {
		t.Fatal(err)
	}
	_, err := c.ChatText(context.Background(), "", hello, nil)
	var e *ylokh.Error
	if !errors.As(err, &e) || e.Status != ylokh.HTTPStatus || e.HTTPStatus != 307 ||
		!strings.Contains(e.Message, "another origin") {
		t.Fatalf("refused redirect: %#v", err)
	}
	if n := len(other.requests()); n != 0 {
		t.Fatalf("%d requests reached the other origin before it was allowed", n)
	}
	if err := c.SetCrossOriginRedirects(true); err != nil {
		t.Fatal(err)
	}
	text, err := c.ChatText(context.Background(), "", hello, nil)
	if err != nil || text != "elsewhere" {
		t.Fatalf("allowed redirect: %q, %v", text, err)
	}
	if key := <-keysElsewhere; key != "" {
		t.Fatalf("the key reached the other origin: %q", key)
	}
}

func TestInvalidArguments(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:9")
	var e *ylokh.Error
	if err := c.SetBaseURL("not a url"); !errors.As(err, &e) || e.Status != ylokh.InvalidArgument || e.Message == "" {
		t.Fatalf("SetBaseURL: %#v", err)
	}
	err := c.Chat(context.Background(), "", hello, ylokh.Options{"messages": 1}, func(string) error { return nil })
	if !errors.As(err, &e) || e.Status != ylokh.InvalidArgument {
		t.Fatalf("options with messages: %#v", err)
	}
	if _, err := ylokh.ConversationFromJSON("[1]"); !errors.As(err, &e) || e.Status != ylokh.InvalidArgument {
		t.Fatalf("ConversationFromJSON: %#v", err)
	}
	_ = c.Close()
	if err := c.SetBaseURL("http://127.0.0.1:9/v1"); !errors.As(err, &e) || e.Status != ylokh.InvalidArgument {
		t.Fatalf("closed client: %#v", err)
	}
}

// Errors are thread-local in C; goroutines move between threads. Many goroutines failing
// differently at once must each get their own error.
func TestErrorsBelongToTheirCall(t *testing.T) {
	s401 := serve(t, errorReply(401, "key rejected"))
	s403 := serve(t, errorReply(403, "model forbidden"))
	c401, c403 := newClient(t, s401.URL), newClient(t, s403.URL)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, status, msg := c401, 401, "key rejected"
			if i%2 == 1 {
				c, status, msg = c403, 403, "model forbidden"
			}
			for j := 0; j < 4; j++ {
				runtime.Gosched()
				err := c.Chat(context.Background(), "", hello, nil, func(string) error { return nil })
				var e *ylokh.Error
				if !errors.As(err, &e) || e.HTTPStatus != status || !strings.Contains(e.Message, msg) {
					errs <- fmt.Errorf("goroutine %d: want %d %q, got %#v", i, status, msg, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The same for calls other than chats: setters and conversations fail on many goroutines at
// once, each with a message naming its own argument. (Reading the error in a second cgo
// call, after the goroutine may have moved to another thread, gave other calls' messages.)
func TestSetterErrorsBelongToTheirCall(t *testing.T) {
	c := newClient(t, "http://127.0.0.1:9")
	conv := make([]*ylokh.Conversation, 8)
	for i := range conv {
		conv[i] = ylokh.NewConversation()
		defer conv[i].Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(conv))
	for i := range conv {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 300; j++ {
				mark := fmt.Sprintf("g%d-i%d", i, j)
				want := func(what string, err error, mark string) bool {
					var e *ylokh.Error
					if errors.As(err, &e) && e.Status == ylokh.InvalidArgument && strings.Contains(e.Message, mark) {
						return true
					}
					errs <- fmt.Errorf("goroutine %d, %s: want InvalidArgument with %q, got %#v", i, what, mark, err)
					return false
				}
				// JSON's parse error names only the column: a message whose error is at a
				// column of its own, every one with 4 digits (1009 to 3408).
				bad := `{"role":` + strings.Repeat(" ", 1000+i*300+j) + `}`
				if !want("SetHeader", c.SetHeader("bad name "+mark, "v"), mark) ||
					!want("SetBaseURL", c.SetBaseURL("ftp://"+mark+".invalid/v1"), mark) ||
					!want("Conversation.AddJSON", conv[i].AddJSON(bad), fmt.Sprintf("column %d", len(bad))) {
					return
				}
				if j%8 == 0 {
					runtime.Gosched()
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The Go sources never call a function of the library that returns a status and then read
// the thread-local error in a cgo call of their own: such functions are called through the
// shim (shim.c, or a cgo preamble), which copies the error in the same cgo call. A call from
// Go is allowed only when its status is discarded (ylokh_cancel_trigger).
func TestNoSecondCgoCallForTheError(t *testing.T) {
	header, err := os.ReadFile("ylokh_vendored.h")
	if err != nil {
		t.Fatal(err)
	}
	statusFns := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^ylokh_status (ylokh_[a-z_]+)\(`).FindAllStringSubmatch(string(header), -1) {
		statusFns[m[1]] = true
	}
	if !statusFns["ylokh_client_set_base_url"] || !statusFns["ylokh_conversation_add_json"] {
		t.Fatalf("status functions not found in ylokh_vendored.h: %v", statusFns)
	}
	errorReaders := map[string]bool{
		"ylokh_last_error": true, "ylokh_last_http_status": true, "ylokh_last_finish_reason": true,
		"ygo_take_error": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) < 5 {
		t.Fatalf("Go files: %v %v", files, err)
	}
	fset := token.NewFileSet()
	calls := 0
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		discarded := map[ast.Expr]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := n.(*ast.ExprStmt); ok {
				discarded[s.X] = true
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "C" {
				return true
			}
			if errorReaders[sel.Sel.Name] {
				t.Errorf("%s: Go reads the library's error with C.%s, in a cgo call of its own", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "C" {
				return true
			}
			if strings.HasPrefix(sel.Sel.Name, "ygo_") {
				calls++
			}
			if statusFns[sel.Sel.Name] && !discarded[call] {
				t.Errorf("%s: C.%s is called from Go and its status used: call it through the shim (shim.h), which copies the error in the same cgo call", fset.Position(call.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
	if calls < 15 {
		t.Fatalf("only %d calls of the shim found: is the scan looking at the package?", calls)
	}
}

func TestStreamChannel(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo", "!"}, 0))
	c := newClient(t, s.URL)
	st := c.Stream(context.Background(), "", hello, nil)
	var tokens []string
	for tok := range st.Tokens() {
		tokens = append(tokens, tok)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tokens, "|") != "Hel|lo|!" {
		t.Fatalf("tokens %q", tokens)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close after the end: %v", err)
	}
}

func TestStreamCloseStopsEarly(t *testing.T) {
	many := make([]string, 50)
	for i := range many {
		many[i] = fmt.Sprint(i, " ")
	}
	s := serve(t, sse(many, 20*time.Millisecond))
	c := newClient(t, s.URL)
	st := c.Stream(context.Background(), "", hello, nil)
	first := <-st.Tokens()
	start := time.Now()
	err := st.Close()
	if first != "0 " || !errors.Is(err, context.Canceled) {
		t.Fatalf("first %q, Close: %v", first, err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Close took %v", time.Since(start))
	}
	if _, ok := <-st.Tokens(); ok {
		// A token may have been in flight; the channel must be closed right after.
		if _, ok := <-st.Tokens(); ok {
			t.Fatal("tokens still coming after Close")
		}
	}
}

func TestConversation(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo"}, 0))
	c := newClient(t, s.URL)
	conv := ylokh.NewConversation()
	defer conv.Close()
	if err := conv.Add("system", "Be \"brief\"."); err != nil {
		t.Fatal(err)
	}
	if err := conv.Add("user", "Say hello"); err != nil {
		t.Fatal(err)
	}
	var text string
	err := c.ChatConversation(context.Background(), conv, "", nil, func(tok string) error {
		text += tok
		return nil
	})
	if err != nil || text != "Hello" || conv.Len() != 3 {
		t.Fatalf("text %q, len %d, err %v", text, conv.Len(), err)
	}
	js, err := conv.JSON()
	if err != nil || !strings.Contains(js, `"content":"Hello"`) {
		t.Fatalf("JSON %s, %v", js, err)
	}
	if got, _ := json.Marshal(s.requests()[0]["messages"]); !strings.Contains(string(got), `Be \"brief\".`) {
		t.Fatalf("sent messages %s", got)
	}

	again, err := ylokh.ConversationFromJSON(js)
	if err != nil || again.Len() != 3 {
		t.Fatalf("FromJSON: %v", err)
	}
	defer again.Close()
	if err := again.AddJSON(`{"role":"user","content":"more","name":"bob"}`); err != nil {
		t.Fatal(err)
	}
	// A failed (stopped) reply leaves the conversation unchanged.
	errStop := errors.New("stop")
	if err := c.ChatConversation(context.Background(), again, "", nil, func(string) error { return errStop }); !errors.Is(err, errStop) {
		t.Fatal(err)
	}
	if again.Len() != 4 {
		t.Fatalf("len %d after a stopped reply", again.Len())
	}
	if err := again.Clear(); err != nil || again.Len() != 0 {
		t.Fatalf("Clear: %v, len %d", err, again.Len())
	}
}

func TestLogAndTLSSettings(t *testing.T) {
	s := serve(t, sse([]string{"Hel", "lo"}, 0))
	c := newClient(t, s.URL)
	var mu sync.Mutex
	var lines []string
	if err := c.SetLog(func(line string) {
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if text, err := c.ChatText(context.Background(), "", hello, nil); err != nil || text != "Hello" {
		t.Fatalf("%q, %v", text, err)
	}
	mu.Lock()
	joined := strings.Join(lines, "\n")
	mu.Unlock()
	if !strings.Contains(joined, "/chat/completions") {
		t.Fatalf("log lines:\n%s", joined)
	}
	// A panicking log function does not disturb the chat.
	if err := c.SetLog(func(string) { panic("from the log") }); err != nil {
		t.Fatal(err)
	}
	if text, err := c.ChatText(context.Background(), "", hello, nil); err != nil || text != "Hello" {
		t.Fatalf("with a panicking log: %q, %v", text, err)
	}
	if err := c.SetLog(nil); err != nil {
		t.Fatal(err)
	}

	var e *ylokh.Error
	if err := c.SetCAFile("/nonexistent/ca.pem"); !errors.As(err, &e) || e.Status != ylokh.InvalidArgument {
		t.Fatalf("SetCAFile: %#v", err)
	}
	if err := c.UseSystemRoots(false); err != nil {
		t.Fatal(err)
	}
	if err := c.SetCAFile(""); err != nil {
		t.Fatal(err)
	}
}

// ---- The typed request ----------------------------------------------------------------------

func TestRequestSendsTypedFieldsAndOptions(t *testing.T) {
	s := serve(t, sse([]string{"Typed", " reply"}, 0))
	c := newClient(t, s.URL)
	var got []string
	err := c.Do(context.Background(), ylokh.Request{
		Model:       "typed-model",
		Messages:    hello,
		MaxTokens:   64,
		Temperature: ylokh.Float(0),
		Stop:        []string{"\n\n"},
		Options:     ylokh.Options{"seed": 7, "max_tokens": 32},
	}, func(tok string) error {
		got = append(got, tok)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "Typed| reply" {
		t.Fatalf("tokens %q", got)
	}
	body := s.requests()[0]
	// Temperature 0 is sent (a pointer, not omitted); Options wins over MaxTokens; TopP
	// unset keeps the library's default.
	want := map[string]any{"model": "typed-model", "max_tokens": 32.0, "temperature": 0.0,
		"top_p": 1.0, "seed": 7.0, "stream": true}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("%s = %#v, want %#v (body %v)", k, body[k], v, body)
		}
	}
	if stop, _ := json.Marshal(body["stop"]); string(stop) != `["\n\n"]` {
		t.Errorf("stop = %s", stop)
	}
	if msgs, _ := json.Marshal(body["messages"]); string(msgs) != `[{"content":"Say hello","role":"user"}]` {
		t.Errorf("messages = %s", msgs)
	}

	// Nothing typed set: only the library's defaults.
	text, err := c.Text(context.Background(), ylokh.Request{Messages: hello})
	if err != nil || text != "Typed reply" {
		t.Fatalf("Text: %q, %v", text, err)
	}
	body = s.requests()[1]
	if body["model"] != "gpt-3.5-turbo" || body["temperature"] != 1.0 || body["max_tokens"] != nil {
		t.Fatalf("defaults: %v", body)
	}
}

func TestRequestWithAConversation(t *testing.T) {
	s := serve(t, sse([]string{"Hi", " there"}, 0))
	c := newClient(t, s.URL)
	conv := ylokh.NewConversation()
	defer conv.Close()
	if err := conv.Add("user", "Hello"); err != nil {
		t.Fatal(err)
	}
	var events []ylokh.Event
	err := c.DoEvents(context.Background(), ylokh.Request{Conversation: conv, MaxTokens: 5},
		func(ev ylokh.Event) error {
			events = append(events, ev)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 2 || events[0].Text != "Hi" || events[1].Text != " there" {
		t.Fatalf("events %+v", events)
	}
	if conv.Len() != 2 {
		t.Fatalf("conversation has %d messages, want 2", conv.Len())
	}
	if body := s.requests()[0]; body["max_tokens"] != 5.0 {
		t.Fatalf("body %v", body)
	}
}

func TestRequestShapeIsCheckedBeforeSending(t *testing.T) {
	s := serve(t, sse([]string{"never"}, 0))
	c := newClient(t, s.URL)
	conv := ylokh.NewConversation()
	defer conv.Close()
	var e *ylokh.Error
	err := c.Do(context.Background(), ylokh.Request{Messages: hello, Conversation: conv},
		func(string) error { return nil })
	if !errors.As(err, &e) || e.Status != ylokh.InvalidArgument || !strings.Contains(e.Message, "not both") {
		t.Fatalf("both Messages and Conversation: %#v", err)
	}
	_, err = c.Text(context.Background(), ylokh.Request{Messages: hello, MaxTokens: -1})
	if !errors.As(err, &e) || e.Status != ylokh.InvalidArgument {
		t.Fatalf("negative MaxTokens: %#v", err)
	}
	err = c.Do(context.Background(), ylokh.Request{Messages: hello, Options: ylokh.Options{"model": "x"}},
		func(string) error { return nil })
	if !errors.As(err, &e) || e.Status != ylokh.InvalidArgument {
		t.Fatalf("model in Options: %#v", err)
	}
	if n := len(s.requests()); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
}
