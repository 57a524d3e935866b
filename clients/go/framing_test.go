package livehub_test

// RFC 6455 framing, tested against the fake server: what the client writes
// (masked, each length encoding), what it reads (each length encoding,
// fragments with control frames between them), the close handshake, close
// codes as errors, and the server's protocol violations.

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

// publishOfSize is a PublishNoReply whose frame payload is exactly n bytes.
func publishOfSize(n int) string {
	frame := func(s string) string {
		return fmt.Sprintf(`{"type":"publish","channel":"c","event":"e","data":%q}`, s)
	}
	return strings.Repeat("x", n-len(frame("")))
}

func TestClientFramesAreMaskedInEachLengthEncoding(t *testing.T) {
	checkGoroutines(t)
	sizes := []int{125, 126, 65535, 65536, 200000}
	wantHeader := map[int][]byte{
		125:    {0x81, 0x80 | 125},
		126:    {0x81, 0x80 | 126, 0x00, 126},
		65535:  {0x81, 0x80 | 126, 0xFF, 0xFF},
		65536:  {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0},
		200000: {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x03, 0x0D, 0x40},
	}
	got := make(chan clientFrame, len(sizes))
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		for range sizes {
			got <- c.mustRead()
		}
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	ctx := testContext(t)
	for _, n := range sizes {
		if err := cl.PublishNoReply(ctx, "c", "e", publishOfSize(n)); err != nil {
			t.Fatal(err)
		}
	}
	keys := map[[4]byte]bool{}
	for _, n := range sizes {
		f := <-got
		if !bytes.Equal(f.header, wantHeader[n]) {
			t.Errorf("%d bytes: header % x, want % x", n, f.header, wantHeader[n])
		}
		var cmd struct{ Type, Channel, Event, Data string }
		if err := json.Unmarshal(f.payload, &cmd); err != nil || len(f.payload) != n ||
			cmd.Type != "publish" || cmd.Data != publishOfSize(n) {
			t.Errorf("%d bytes: unmasked payload of %d bytes does not read back: %v", n, len(f.payload), err)
		}
		keys[f.key] = true
	}
	if len(keys) < len(sizes)-1 { // a repeated random key is possible, two are not plausible
		t.Errorf("masking keys repeat: %v", keys)
	}
}

func TestReadsEachLengthEncoding(t *testing.T) {
	checkGoroutines(t)
	sizes := []int{36, 125, 126, 127, 65535, 65536, 1 << 20}
	dataOf := func(n int) string {
		// A JSON string whose frame is n bytes long, at least "".
		base := len(`{"channel":"c","type":"m","data":""}`)
		if n < base {
			return `""`
		}
		return `"` + strings.Repeat("y", n-base) + `"`
	}
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		for _, n := range sizes {
			c.publish("c", dataOf(n))
		}
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	for _, n := range sizes {
		if m := next(t, cl); string(m.Data) != dataOf(n) || m.Channel != "c" || m.Type != "m" {
			t.Errorf("%d bytes: got %d bytes of data", n, len(m.Data))
		}
	}
}

func TestFragmentsWithControlFramesBetweenThem(t *testing.T) {
	checkGoroutines(t)
	pong := make(chan clientFrame, 1)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		c.write(false, 0x1, []byte(`{"channel":"c","ty`))
		c.write(true, 0x9, []byte("are you there?"))
		c.write(false, 0x0, []byte(`pe":"m","data":[1,`))
		c.write(true, 0xA, []byte("unsolicited pong")) // allowed, ignored
		c.write(false, 0x0, nil)                       // an empty fragment
		c.write(true, 0x0, []byte(`2.50]}`))
		pong <- c.mustRead()
		c.publish("c", `"after"`)
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	if m := next(t, cl); string(m.Data) != `[1,2.50]` {
		t.Errorf("reassembled data %s", m.Data)
	}
	if f := <-pong; f.op != 0xA || string(f.payload) != "are you there?" || !f.fin {
		t.Errorf("answer to ping: op %#x payload %q", f.op, f.payload)
	}
	if m := next(t, cl); string(m.Data) != `"after"` {
		t.Errorf("next message %s", m.Data)
	}
}

func TestServerCloseCodesBecomeErrors(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		code   int
		reason string
	}{
		{livehub.CloseUnauthorized, "unauthorized"},
		{livehub.CloseTokenExpired, "token expired"},
		{livehub.CloseSlowConsumer, "slow consumer"},
		{livehub.CloseRateLimited, "rate limited"},
		{livehub.CloseGoingAway, ""},
	} {
		echo := make(chan clientFrame, 1)
		srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
			c.closeWith(tc.code, tc.reason)
			echo <- c.mustRead()
		})
		cl := dial(t, srv.wsURL(), livehub.Options{})
		err := closedFor(t, cl)
		var ce *livehub.CloseError
		if !errors.As(err, &ce) || ce.Code != tc.code || ce.Reason != tc.reason {
			t.Errorf("close %d %q: client error %v", tc.code, tc.reason, err)
		}
		if !errors.Is(err, &livehub.CloseError{Code: tc.code}) {
			t.Errorf("errors.Is does not match close code %d", tc.code)
		}
		if f := <-echo; f.op != 0x8 || len(f.payload) < 2 || int(binary.BigEndian.Uint16(f.payload)) != tc.code {
			t.Errorf("close %d: echoed op %#x payload % x", tc.code, f.op, f.payload)
		}
	}
}

func TestProtocolViolationsCloseTheConnection(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int
	}{
		{"masked server frame", serverFrame(true, 0x1, []byte(`{}`), true), livehub.CloseProtocolError},
		{"reserved bit", append([]byte{0x80 | 0x40 | 0x1, 2}, `{}`...), livehub.CloseProtocolError},
		{"unknown opcode", serverFrame(true, 0x3, []byte("x"), false), livehub.CloseProtocolError},
		{"control frame over 125 bytes", serverFrame(true, 0x9, bytes.Repeat([]byte("p"), 126), false), livehub.CloseProtocolError},
		{"fragmented control frame", serverFrame(false, 0x9, []byte("p"), false), livehub.CloseProtocolError},
		{"continuation without a message", serverFrame(true, 0x0, []byte("x"), false), livehub.CloseProtocolError},
		{"message inside a fragmented one", append(serverFrame(false, 0x1, []byte(`{`), false),
			serverFrame(true, 0x1, []byte(`{}`), false)...), livehub.CloseProtocolError},
		{"close frame of one byte", serverFrame(true, 0x8, []byte{3}, false), livehub.CloseProtocolError},
		{"invalid close code", serverFrame(true, 0x8, []byte{0x03, 0xED}, false), livehub.CloseProtocolError}, // 1005
		{"invalid UTF-8", serverFrame(true, 0x1, []byte("{\"channel\":\"\xff\"}"), false), livehub.CloseInvalidPayload},
		{"invalid UTF-8 across fragments", append(serverFrame(false, 0x1, []byte("\"\xc3"), false),
			serverFrame(true, 0x0, []byte("\xc3\""), false)...), livehub.CloseInvalidPayload},
		{"message over MaxMessageSize", serverFrame(true, 0x1, bytes.Repeat([]byte(" "), 2000), false), livehub.CloseTooBig},
		{"fragments over MaxMessageSize", append(serverFrame(false, 0x1, bytes.Repeat([]byte(" "), 600), false),
			serverFrame(true, 0x0, bytes.Repeat([]byte(" "), 600), false)...), livehub.CloseTooBig},
	} {
		closing := make(chan clientFrame, 1)
		srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
			c.writeRaw(tc.frame)
			closing <- c.mustRead()
		})
		cl := dial(t, srv.wsURL(), livehub.Options{MaxMessageSize: 1000})
		if err := closedFor(t, cl); livehub.CloseCode(err) != tc.code {
			t.Errorf("%s: client error %v, want close %d", tc.name, err, tc.code)
		}
		if f := <-closing; f.op != 0x8 || len(f.payload) < 2 || int(binary.BigEndian.Uint16(f.payload)) != tc.code {
			t.Errorf("%s: client sent op %#x payload %q, want close %d", tc.name, f.op, f.payload, tc.code)
		}
	}
}

func TestCloseHandshakeFromTheClient(t *testing.T) {
	checkGoroutines(t)
	closing := make(chan clientFrame, 1)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		f := c.mustRead()
		closing <- f
		c.write(true, 0x8, f.payload) // echo
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	cl.Close()
	if f := <-closing; f.op != 0x8 || !bytes.Equal(f.payload, []byte{0x03, 0xE8}) {
		t.Errorf("client closed with op %#x payload % x, want 1000", f.op, f.payload)
	}
	if !errors.Is(cl.Err(), livehub.ErrClosed) || cl.State() != livehub.StateClosed {
		t.Errorf("after Close: %v, %v", cl.Err(), cl.State())
	}
}

func TestRequestsGetTheirRepliesByID(t *testing.T) {
	checkGoroutines(t)
	errs := make(chan error, 1)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		// Subscribe and ping, in whichever order they come.
		byType := map[string]map[string]json.RawMessage{}
		for i := 0; i < 2; i++ {
			cmd := c.command()
			byType[string(cmd["type"])] = cmd
		}
		sub, ping := byType[`"subscribe"`], byType[`"ping"`]
		// Replies out of order, a publication and an error without id between.
		c.write(true, 0x1, []byte(`{"type":"pong","id":`+string(ping["id"])+`}`))
		c.write(true, 0x1, []byte(`{"channel":"x","type":"ok","data":{"a":1}}`))
		c.write(true, 0x1, []byte(`{"type":"error","code":"bad_json","message":"nope"}`))
		c.write(true, 0x1, []byte(`{"type":"error","id":`+string(sub["id"])+`,"code":"forbidden","message":"no"}`))
		pub := c.command()
		c.write(true, 0x1, []byte(`{"type":"ok","id":`+string(pub["id"])+`}`))
		if string(pub["data"]) != `{"n":12345678901234567890,"p":1.10}` || string(pub["event"]) != `"e"` {
			t.Errorf("publish command %s", pub)
		}
	})
	cl := dial(t, srv.wsURL(), livehub.Options{OnError: func(err error) { errs <- err }})
	ctx := testContext(t)
	subErr := make(chan error, 1)
	go func() { subErr <- cl.Subscribe(ctx, "x") }()
	if err := cl.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	var e *livehub.Error
	if err := <-subErr; !errors.As(err, &e) || e.Code != livehub.CodeForbidden || e.Message != "no" {
		t.Errorf("subscribe: %v", err)
	}
	// A publication whose type happens to be "ok" is still a publication.
	if m := next(t, cl); m.Channel != "x" || m.Type != "ok" || string(m.Data) != `{"a":1}` {
		t.Errorf("message %+v", m)
	}
	if err := <-errs; livehub.ErrorCode(err) != livehub.CodeBadJSON {
		t.Errorf("error without id: %v", err)
	}
	if err := cl.Publish(ctx, "x", "e", json.RawMessage(`{"n":12345678901234567890,"p":1.10}`)); err != nil {
		t.Errorf("publish: %v", err)
	}
}

func TestPendingRequestFailsWhenTheConnectionDrops(t *testing.T) {
	checkGoroutines(t)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		c.command()
		c.nc.Close()
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	err := cl.Publish(testContext(t), "x", "e", 1)
	if !errors.Is(err, livehub.ErrConnectionLost) && !errors.Is(err, livehub.ErrClosed) {
		t.Errorf("publish on a dropped connection: %v", err)
	}
	if err := closedFor(t, cl); livehub.CloseCode(err) != livehub.CloseAbnormal {
		t.Errorf("closed with %v, want 1006", err)
	}
}

func TestKeepaliveDetectsASilentServer(t *testing.T) {
	checkGoroutines(t)
	pings := make(chan struct{}, 100)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		for {
			f, err := c.readFrame() // never answered
			if err != nil {
				return
			}
			if f.op == 0x9 {
				pings <- struct{}{}
			}
		}
	})
	cl := dial(t, srv.wsURL(), livehub.Options{PingInterval: 50 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
	err := closedFor(t, cl)
	if livehub.CloseCode(err) != livehub.CloseAbnormal || !strings.Contains(err.Error(), "pings") {
		t.Errorf("closed with %v", err)
	}
	if len(pings) == 0 {
		t.Error("the client sent no ping")
	}
}

func TestKeepaliveKeepsAnAnsweringServer(t *testing.T) {
	checkGoroutines(t)
	pings := make(chan struct{}, 1000)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		// Only pongs for a while: far longer than PingInterval + PongTimeout
		// (which is not tighter, so that a loaded machine's pauses do not
		// count as a silent server).
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			f, err := c.readFrame()
			if err != nil {
				return
			}
			if f.op == 0x9 {
				pings <- struct{}{}
				c.write(true, 0xA, f.payload)
			}
		}
		c.publish("c", `"still here"`)
	})
	cl := dial(t, srv.wsURL(), livehub.Options{PingInterval: 50 * time.Millisecond, PongTimeout: 400 * time.Millisecond})
	if m := next(t, cl); string(m.Data) != `"still here"` {
		t.Errorf("message %+v", m)
	}
	if len(pings) < 3 {
		t.Errorf("%d pings", len(pings))
	}
}

func TestUpgradeRequestAndRefusals(t *testing.T) {
	checkGoroutines(t)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {})
	cl := dial(t, srv.wsURL()+"?x=1", livehub.Options{APIKey: "K", Header: http.Header{"X-Extra": {"yes"}}})
	h := <-srv.requests
	if h.Get("Authorization") != "Bearer K" || h.Get("X-Extra") != "yes" || h.Get("Origin") != "" {
		t.Errorf("upgrade headers %v", h)
	}
	cl.Close()

	refuse := func(status int, body string) *fakeServer {
		return newFakeServerWith(t, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}, false)
	}
	for _, tc := range []struct {
		status int
		body   string
		code   string
	}{
		{429, `{"error":"too many connections from this address","code":"rate_limited"}`, livehub.CodeRateLimited},
		{403, `{"error":"origin not allowed","code":"forbidden"}`, livehub.CodeForbidden},
		{503, `not json`, livehub.CodeUnavailable},
	} {
		_, err := livehub.Dial(testContext(t), refuse(tc.status, tc.body).wsURL(), livehub.Options{})
		var e *livehub.Error
		if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code {
			t.Errorf("%d: %v, want code %s", tc.status, err, tc.code)
		}
	}

	// A 101 with the wrong Sec-WebSocket-Accept is not a WebSocket.
	liar := newFakeServerWith(t, nil, func(w http.ResponseWriter, r *http.Request) {
		nc, rw, _ := w.(http.Hijacker).Hijack()
		defer nc.Close()
		fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n")
		rw.Flush()
	}, false)
	if _, err := livehub.Dial(testContext(t), liar.wsURL(), livehub.Options{}); err == nil ||
		!strings.Contains(err.Error(), "Sec-WebSocket-Accept") {
		t.Errorf("wrong accept key: %v", err)
	}
	if _, err := livehub.Dial(testContext(t), "ftp://example.com/ws", livehub.Options{}); err == nil {
		t.Error("ftp URL accepted")
	}
}

func TestSecureWebSocket(t *testing.T) {
	checkGoroutines(t)
	srv := newFakeServerWith(t, func(t *testing.T, c *fakeConn) {
		c.publish("tls", `"secret"`)
	}, nil, true)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConfig.RootCAs = pool
	cl := dial(t, "wss"+strings.TrimPrefix(srv.URL, "https")+"/ws", livehub.Options{TLSConfig: tlsConfig})
	if m := next(t, cl); string(m.Data) != `"secret"` {
		t.Errorf("over TLS: %+v", m)
	}
}

func TestAutomaticReconnectAgainstTheFake(t *testing.T) {
	checkGoroutines(t)
	subscribed := make(chan string, 10)
	var conns int32
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		n := atomic.AddInt32(&conns, 1)
		cmd := c.command()
		subscribed <- string(cmd["channel"])
		c.write(true, 0x1, []byte(`{"type":"ok","id":`+string(cmd["id"])+`}`))
		if n == 1 {
			c.closeWith(livehub.CloseSlowConsumer, "slow consumer")
			c.mustRead()
			return
		}
		c.publish("room", `"back"`)
	})
	st := newStates()
	cl := dial(t, srv.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
		OnStateChange: st.record})
	if err := cl.Subscribe(testContext(t), "room"); err != nil {
		t.Fatal(err)
	}
	if err := st.await(t, livehub.StateReconnecting); livehub.CloseCode(err) != livehub.CloseSlowConsumer {
		t.Errorf("reconnecting after %v, want 4008", err)
	}
	if m := next(t, cl); string(m.Data) != `"back"` {
		t.Errorf("after reconnect %+v", m)
	}
	if a, b := <-subscribed, <-subscribed; a != `"room"` || b != `"room"` {
		t.Errorf("subscribed %s then %s", a, b)
	}
}
