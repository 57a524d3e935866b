package livehub_test

// Test support: the real livehub-chat server, a TCP proxy that can cut
// connections and switch servers, HS256 tokens, and waits with bounds.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

// wait is the bound of every wait for something that should happen; a
// passing test never runs into it.
const wait = 15 * time.Second

// chatServer is a running livehub-chat.
type chatServer struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:PORT
	stderr *bytes.Buffer
	exited chan struct{}
}

// startChat starts the livehub-chat binary of $LIVEHUB_CHAT_BIN on a free
// port of 127.0.0.1 with args (e.g. "--livehub.api-key=K"), and stops it
// when the test ends.
func startChat(t *testing.T, args ...string) *chatServer {
	t.Helper()
	bin := os.Getenv("LIVEHUB_CHAT_BIN")
	if bin == "" {
		t.Skip("LIVEHUB_CHAT_BIN is not set (the livehub-chat binary to test against)")
	}
	all := append([]string{"--livehub.host=127.0.0.1", "--livehub.port=0"}, args...)
	cmd := exec.Command(bin, all...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &chatServer{t: t, cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: s.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r) //nolint:errcheck // until the process ends
	}()
	go func() {
		cmd.Wait() //nolint:errcheck // a SIGTERM'd server exits 0; not checked here
		close(s.exited)
	}()
	t.Cleanup(s.stop)
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "listening on ") {
			s.stop()
			t.Fatalf("livehub-chat printed %q first; stderr: %s", line, s.stderr)
		}
		s.addr = strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	case <-time.After(wait):
		s.stop()
		t.Fatalf("livehub-chat did not say where it listens; stderr: %s", s.stderr)
	}
	return s
}

// stop ends the server with SIGTERM (it closes every connection with 1001),
// or SIGKILL if it does not exit in time. Calling it again does nothing.
func (s *chatServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited
	select {
	case <-s.exited:
	case <-time.After(wait):
		s.cmd.Process.Kill() //nolint:errcheck // it may have exited
		<-s.exited
		s.t.Errorf("livehub-chat did not exit after SIGTERM")
	}
}

func (s *chatServer) wsURL() string   { return "ws://" + s.addr + "/ws" }
func (s *chatServer) httpURL() string { return "http://" + s.addr }

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// proxy forwards TCP connections to a target that may change, and can cut
// every connection it carries: a dropped network, seen from the client.
type proxy struct {
	ln       net.Listener
	mu       sync.Mutex
	target   string
	conns    map[net.Conn]struct{}
	accepted int
	wg       sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) wsURL() string { return "ws://" + p.ln.Addr().String() + "/ws" }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		target := p.target
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(c, target)
	}
}

func (p *proxy) forward(client net.Conn, target string) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", target, wait)
	if err != nil {
		p.forget(client)
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src) //nolint:errcheck // ends with either side
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
	p.forget(client)
	p.forget(server)
}

func (p *proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// setTarget makes new connections go to addr.
func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// dropAll cuts every connection at once, without a close frame.
func (p *proxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// connections is how many connections the proxy accepted so far.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *proxy) close() {
	p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

// signToken makes an HS256 JWT with claims, as an application's backend
// would (only tests sign tokens here).
func signToken(t *testing.T, secret string, claims map[string]interface{}) string {
	t.Helper()
	enc := func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	unsigned := enc(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// userToken is a token for user with the given channel patterns, valid for
// ttl.
func userToken(t *testing.T, secret, user string, ttl time.Duration, channels ...string) string {
	now := time.Now()
	claims := map[string]interface{}{"sub": user, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if len(channels) > 0 {
		claims["channels"] = channels
	}
	return signToken(t, secret, claims)
}

// testContext is a context bounded by wait, cancelled when the test ends.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a client to url and closes it when the test ends.
func dial(t *testing.T, url string, opts livehub.Options) *livehub.Client {
	t.Helper()
	c, err := livehub.Dial(testContext(t), url, opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next publication c receives.
func next(t *testing.T, c *livehub.Client) livehub.Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatalf("client closed while waiting for a message: %v", c.Err())
		}
		return m
	case <-time.After(wait):
		t.Fatalf("no message within %v", wait)
	}
	return livehub.Message{}
}

// states records a client's state changes, for waiting on them.
type states struct {
	ch chan stateChange
}

type stateChange struct {
	state livehub.State
	err   error
}

func newStates() *states { return &states{ch: make(chan stateChange, 100)} }

func (s *states) record(state livehub.State, err error) {
	select {
	case s.ch <- stateChange{state, err}:
	default:
	}
}

// await returns the next change to state, with the error it came with.
func (s *states) await(t *testing.T, state livehub.State) error {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case c := <-s.ch:
			if c.state == state {
				return c.err
			}
		case <-deadline:
			t.Fatalf("state %v not reached within %v", state, wait)
		}
	}
}

// closedFor waits until c is closed for good and returns why.
func closedFor(t *testing.T, c *livehub.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(wait):
		t.Fatalf("client still running after %v (state %v)", wait, c.State())
	}
	return nil
}

// checkGoroutines fails the test if goroutines started during it outlive
// it (after every cleanup registered later has run).
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(wait)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines before the test, %d after:\n%s", before, n, buf)
		}
	})
}

func mustJSON(t *testing.T, v interface{}) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
