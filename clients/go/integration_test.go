package livehub_test

// Against the real server: the livehub-chat binary of $LIVEHUB_CHAT_BIN,
// started by each test on a free port.

import (
	"bytes"
	"context"
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

const apiKey = "test-api-key"

func TestHTTPPublishReachesSubscriberWithExactDigits(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t)
	sub := dial(t, srv.wsURL(), livehub.Options{})
	ctx := testContext(t)
	if err := sub.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	api := livehub.NewAPI(srv.httpURL(), "")
	sent := []string{
		`{"id":12345678901234567890,"price":1.10,"tiny":1e-400,"neg":-0.0,"name":"<Ada> & é","list":[0.10,2.50e3,true,null]}`,
		`12345678901234567890`,
		`"just a string"`,
		`[]`,
	}
	for i, data := range sent {
		if err := api.Publish(ctx, "news", fmt.Sprintf("event%d", i), json.RawMessage(data)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i, data := range sent {
		m := next(t, sub)
		if m.Channel != "news" || m.Type != fmt.Sprintf("event%d", i) {
			t.Fatalf("message %d: channel %q type %q", i, m.Channel, m.Type)
		}
		if string(m.Data) != data {
			t.Errorf("message %d: data %s, published %s", i, m.Data, data)
		}
	}
	// A Go value goes through encoding/json (no HTML escaping).
	if err := api.Publish(ctx, "news", "struct", map[string]interface{}{"text": "a<b"}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `{"text":"a<b"}` {
		t.Errorf("data %s", m.Data)
	}
}

func TestPublishBatchAnswersPerElement(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, "--livehub.api-key="+apiKey)
	sub := dial(t, srv.wsURL(), livehub.Options{})
	ctx := testContext(t)
	if err := sub.Subscribe(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	results, err := api.PublishBatch(ctx, []livehub.Publication{
		{Channel: "orders", Event: "created", Data: json.RawMessage(`{"n":1}`)},
		{Channel: "", Event: "created", Data: 2},
		{Channel: "orders", Event: "", Data: 3},
		{Channel: "orders", Event: "created", Data: json.RawMessage(`{"n":4}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCodes := []string{"", livehub.CodeBadChannel, livehub.CodeBadCommand, ""}
	for i, r := range results {
		if got := livehub.ErrorCode(r.Err()); got != wantCodes[i] || r.OK != (wantCodes[i] == "") {
			t.Errorf("result %d: %+v, want code %q", i, r, wantCodes[i])
		}
	}
	for _, want := range []string{`{"n":1}`, `{"n":4}`} {
		if m := next(t, sub); string(m.Data) != want {
			t.Errorf("received %s, want %s", m.Data, want)
		}
	}
	if results, err := api.PublishBatch(ctx, nil); err != nil || len(results) != 0 {
		t.Errorf("empty batch: %v, %v", results, err)
	}
}

func TestHTTPErrorsCarryStatusAndCode(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, "--livehub.api-key="+apiKey)
	ctx := testContext(t)
	check := func(what string, err error, status int, code string) {
		t.Helper()
		var e *livehub.Error
		if !errors.As(err, &e) || e.Status != status || e.Code != code {
			t.Errorf("%s: %v, want %d %s", what, err, status, code)
		}
	}
	wrong := livehub.NewAPI(srv.httpURL(), "not-the-key")
	check("wrong key", wrong.Publish(ctx, "news", "m", 1), http.StatusUnauthorized, livehub.CodeUnauthorized)
	_, err := wrong.PublishBatch(ctx, []livehub.Publication{{Channel: "news", Event: "m", Data: 1}})
	check("wrong key, batch", err, http.StatusUnauthorized, livehub.CodeUnauthorized)
	none := livehub.NewAPI(srv.httpURL(), "")
	check("no key", none.Publish(ctx, "news", "m", 1), http.StatusUnauthorized, livehub.CodeUnauthorized)
	if !errors.Is(none.Publish(ctx, "news", "m", 1), &livehub.Error{Code: livehub.CodeUnauthorized}) {
		t.Error("errors.Is does not match the code")
	}

	api := livehub.NewAPI(srv.httpURL(), apiKey)
	check("bad channel", api.Publish(ctx, strings.Repeat("x", 256), "m", 1), http.StatusBadRequest, livehub.CodeBadChannel)
	if err := api.Publish(ctx, "news", "m", json.RawMessage(`{"a":`)); err == nil || livehub.ErrorCode(err) != "" {
		t.Errorf("invalid JSON data: %v, want an error before sending", err)
	}
	_, err = api.Channels(ctx, "", 5000)
	check("bad limit", err, http.StatusBadRequest, livehub.CodeBadCommand)
	if err := api.Healthz(ctx); err != nil {
		t.Errorf("healthz: %v", err)
	}
	if err := api.Readyz(ctx); err != nil {
		t.Errorf("readyz: %v", err)
	}
}

func TestStatsAndChannelPages(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, "--livehub.api-key="+apiKey)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	c := dial(t, srv.wsURL(), livehub.Options{})
	for _, ch := range []string{"c", "a", "b"} {
		if err := c.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := api.Publish(ctx, "a", "m", 1); err != nil {
		t.Fatal(err)
	}
	next(t, c)
	stats, err := api.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Connections != 1 || stats.Channels != 3 || stats.Subscriptions != 3 ||
		stats.Published != 1 || stats.Delivered != 1 || !bytes.Contains(stats.Raw, []byte(`"connections":1`)) {
		t.Errorf("stats %+v", stats)
	}
	page, err := api.Channels(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Channels) != 2 || page.Channels[0] != (livehub.ChannelInfo{Channel: "a", Subscribers: 1}) ||
		page.Channels[1].Channel != "b" || page.Next != "b" {
		t.Fatalf("first page %+v", page)
	}
	page, err = api.Channels(ctx, page.Next, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Channels) != 1 || page.Channels[0].Channel != "c" || page.Next != "" {
		t.Errorf("last page %+v", page)
	}
}

func TestTrustedPublisherPublishesOverOneConnection(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, "--livehub.api-key="+apiKey)
	ctx := testContext(t)
	sub := dial(t, srv.wsURL(), livehub.Options{})
	if err := sub.Subscribe(ctx, "feed"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 10)
	pub := dial(t, srv.wsURL(), livehub.Options{APIKey: apiKey, DiscardMessages: true,
		OnError: func(err error) { errs <- err }})
	const n = 1000
	for i := 0; i < n; i++ {
		if err := pub.PublishNoReply(ctx, "feed", "tick", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, "feed", "last", json.RawMessage(`{"n":12345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if m := next(t, sub); string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) || m.Type != "tick" {
			t.Fatalf("message %d: %s %s", i, m.Type, m.Data)
		}
	}
	if m := next(t, sub); string(m.Data) != `{"n":12345678901234567890}` {
		t.Fatalf("last: %s", m.Data)
	}
	// Only a trusted publisher reaches everyone through "*".
	if err := pub.Publish(ctx, "*", "announce", "hello"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); m.Channel != "*" || string(m.Data) != `"hello"` {
		t.Errorf("broadcast: %+v", m)
	}
	if err := sub.Publish(ctx, "feed", "tick", 1); livehub.ErrorCode(err) != livehub.CodeForbidden {
		t.Errorf("an untrusted client's publish: %v, want forbidden", err)
	}
	select {
	case err := <-errs:
		t.Errorf("the publisher got an error: %v", err)
	default:
	}
}

func TestSubscribeUnsubscribeAndErrorReplies(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, "--livehub.api-key="+apiKey)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	c := dial(t, srv.wsURL(), livehub.Options{})
	for _, ch := range []string{"a", "b"} {
		if err := c.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Unsubscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe(ctx, "never-subscribed"); err != nil {
		t.Errorf("unsubscribing a channel never subscribed: %v", err)
	}
	if err := api.Publish(ctx, "a", "m", "to a"); err != nil {
		t.Fatal(err)
	}
	if err := api.Publish(ctx, "b", "m", "to b"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c); m.Channel != "b" {
		t.Errorf("received %+v after unsubscribing a", m)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"*", "", strings.Repeat("x", 256), "tab\there"} {
		err := c.Subscribe(ctx, bad)
		var e *livehub.Error
		if !errors.As(err, &e) || e.Code != livehub.CodeBadChannel || e.Status != 0 || e.Message == "" {
			t.Errorf("subscribe %q: %v, want bad_channel", bad, err)
		}
	}
	// The connection is fine after errors.
	if err := c.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Messages():
		t.Errorf("unexpected message %+v", m)
	default:
	}
}

func TestTokensConnectRefreshAndUnauthorized(t *testing.T) {
	checkGoroutines(t)
	const secret = "test-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	p := newProxy(t, srv.addr)

	c := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 20 * time.Millisecond,
		Token: userToken(t, secret, "alice", time.Hour, "news")})
	s := c.Session()
	if s.User != "alice" || s.Client == "" || time.Until(s.Expires) < 59*time.Minute {
		t.Fatalf("session %+v", s)
	}
	if err := c.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, "secret"); livehub.ErrorCode(err) != livehub.CodeForbidden {
		t.Errorf("subscribe outside the token's channels: %v", err)
	}
	if err := api.Publish(ctx, "news", "m", 1); err != nil {
		t.Fatal(err)
	}
	next(t, c)

	s2, err := c.Refresh(ctx, userToken(t, secret, "alice", 2*time.Hour, "news"))
	if err != nil {
		t.Fatal(err)
	}
	if s2.Client != s.Client || s2.User != "alice" || !s2.Expires.After(s.Expires) {
		t.Errorf("after refresh %+v, before %+v", s2, s)
	}

	// A token for another user: refused, closed with 4001, never reconnected.
	_, err = c.Refresh(ctx, userToken(t, secret, "bob", time.Hour, "news"))
	if livehub.ErrorCode(err) != livehub.CodeUnauthorized {
		t.Errorf("refresh for another user: %v", err)
	}
	err = closedFor(t, c)
	var ce *livehub.CloseError
	if !errors.As(err, &ce) || ce.Code != livehub.CloseUnauthorized {
		t.Fatalf("closed with %v, want 4001", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, livehub.ErrClosed) || livehub.CloseCode(err) != 4001 {
		t.Errorf("ping after 4001: %v", err)
	}
	if _, ok := <-c.Messages(); ok {
		t.Error("Messages still open")
	}
	if n := p.connections(); n != 1 {
		t.Errorf("%d connections, want 1 (no reconnect after 4001)", n)
	}
}

func TestDialWithBadTokenFailsWithoutRetrying(t *testing.T) {
	checkGoroutines(t)
	const secret = "test-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret)
	p := newProxy(t, srv.addr)
	for _, token := range []string{
		userToken(t, "another-secret", "alice", time.Hour), // bad signature
		userToken(t, secret, "alice", -time.Hour),          // expired
		"not.a.token",
	} {
		before := p.connections()
		_, err := livehub.Dial(testContext(t), p.wsURL(), livehub.Options{Token: token, Reconnect: true,
			ReconnectDelay: 10 * time.Millisecond})
		if livehub.CloseCode(err) != livehub.CloseUnauthorized {
			t.Errorf("token %.20s...: %v, want a close with 4001", token, err)
		}
		if n := p.connections() - before; n != 1 {
			t.Errorf("%d connection attempts, want 1", n)
		}
	}
}

func TestConnectByHandAndNoConnectMeans4001(t *testing.T) {
	checkGoroutines(t)
	const secret = "test-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret, "--livehub.connect-timeout=1s")
	ctx := testContext(t)
	p := newProxy(t, srv.addr)

	c := dial(t, p.wsURL(), livehub.Options{})
	if err := c.Subscribe(ctx, "news"); livehub.ErrorCode(err) != livehub.CodeUnauthorized {
		t.Errorf("subscribe before connect: %v", err)
	}
	s, err := c.Connect(ctx, userToken(t, secret, "carol", time.Hour, "news"))
	if err != nil || s.User != "carol" {
		t.Fatalf("connect: %+v %v", s, err)
	}
	if err := c.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}

	// A client that never connects is closed with 4001 after connect-timeout,
	// and does not come back.
	idle := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond})
	before := p.connections()
	if err := closedFor(t, idle); livehub.CloseCode(err) != livehub.CloseUnauthorized {
		t.Errorf("closed with %v, want 4001", err)
	}
	if p.connections() != before {
		t.Errorf("reconnected after 4001")
	}
}

func TestGetTokenGivesEachReconnectAFreshToken(t *testing.T) {
	checkGoroutines(t)
	const secret = "test-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	p := newProxy(t, srv.addr)
	var tokens int32
	st := newStates()
	c := dial(t, p.wsURL(), livehub.Options{
		Reconnect: true, ReconnectDelay: 20 * time.Millisecond, OnStateChange: st.record,
		GetToken: func(ctx context.Context) (string, error) {
			atomic.AddInt32(&tokens, 1)
			return userToken(t, secret, "dave", time.Hour, "news"), nil
		}})
	if err := c.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	first := c.Session().Client
	p.dropAll()
	if err := st.await(t, livehub.StateReconnecting); livehub.CloseCode(err) != livehub.CloseAbnormal {
		t.Errorf("dropped with %v, want 1006", err)
	}
	st.await(t, livehub.StateOpen)
	if n := atomic.LoadInt32(&tokens); n != 2 {
		t.Errorf("GetToken called %d times, want 2", n)
	}
	if s := c.Session(); s.Client == first || s.User != "dave" {
		t.Errorf("session after reconnect %+v (first client %s)", s, first)
	}
	if err := api.Publish(ctx, "news", "m", "again"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c); string(m.Data) != `"again"` {
		t.Errorf("after reconnect: %+v", m)
	}
}

func TestTokenIsRefreshedBeforeItExpires(t *testing.T) {
	checkGoroutines(t)
	const secret = "test-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret, "--livehub.token-leeway=0s")
	ctx := testContext(t)
	p := newProxy(t, srv.addr)
	var tokens int32
	c := dial(t, p.wsURL(), livehub.Options{
		Reconnect: true,
		GetToken: func(ctx context.Context) (string, error) {
			atomic.AddInt32(&tokens, 1)
			return userToken(t, secret, "erin", 3*time.Second, "news"), nil
		}})
	client := c.Session().Client
	// Each token lives 2 to 3 s; the client refreshes each after 1 s.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := c.Session(); s.Client != client || p.connections() != 1 {
		t.Errorf("the connection did not survive: %+v, %d connections", s, p.connections())
	}
	if n := atomic.LoadInt32(&tokens); n < 3 {
		t.Errorf("GetToken called %d times, want 3 or more", n)
	}
}

func TestExpiredTokenWithoutGetTokenIsFinal(t *testing.T) {
	checkGoroutines(t)
	const secret = "test-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret, "--livehub.token-leeway=0s")
	p := newProxy(t, srv.addr)
	c := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
		Token: userToken(t, secret, "frank", 2*time.Second)})
	if err := closedFor(t, c); livehub.CloseCode(err) != livehub.CloseTokenExpired {
		t.Errorf("closed with %v, want 4002", err)
	}
	if p.connections() != 1 {
		t.Errorf("%d connections, want 1", p.connections())
	}
}

func TestReconnectsAndResubscribesAfterServerRestart(t *testing.T) {
	checkGoroutines(t)
	first := startChat(t)
	ctx := testContext(t)
	p := newProxy(t, first.addr)
	st := newStates()
	c := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 20 * time.Millisecond,
		MaxReconnectDelay: 200 * time.Millisecond, OnStateChange: st.record})
	for _, ch := range []string{"news", "sport"} {
		if err := c.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Unsubscribe(ctx, "sport"); err != nil {
		t.Fatal(err)
	}
	first.stop()
	if err := st.await(t, livehub.StateReconnecting); livehub.CloseCode(err) != livehub.CloseGoingAway {
		t.Errorf("server stop seen as %v, want 1001", err)
	}
	second := startChat(t)
	p.setTarget(second.addr)
	st.await(t, livehub.StateOpen)
	api := livehub.NewAPI(second.httpURL(), "")
	if err := api.Publish(ctx, "sport", "m", "not subscribed"); err != nil {
		t.Fatal(err)
	}
	if err := api.Publish(ctx, "news", "m", json.RawMessage(`{"after":"restart"}`)); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c); m.Channel != "news" || string(m.Data) != `{"after":"restart"}` {
		t.Errorf("after restart: %+v", m)
	}
	stats, err := api.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Subscriptions != 1 {
		t.Errorf("%d subscriptions on the new server, want 1", stats.Subscriptions)
	}
}

func TestReconnectsAfterTheConnectionDrops(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), "")
	p := newProxy(t, srv.addr)
	st := newStates()
	c := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 20 * time.Millisecond,
		OnStateChange: st.record})
	if err := c.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		p.dropAll()
		if err := st.await(t, livehub.StateReconnecting); livehub.CloseCode(err) != livehub.CloseAbnormal {
			t.Errorf("drop seen as %v, want 1006", err)
		}
		st.await(t, livehub.StateOpen)
		// Requests wait for the connection and go out on it.
		if err := c.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := api.Publish(ctx, "news", "m", round); err != nil {
			t.Fatal(err)
		}
		if m := next(t, c); string(m.Data) != fmt.Sprint(round) {
			t.Errorf("round %d: %+v", round, m)
		}
	}
	if p.connections() != 4 {
		t.Errorf("%d connections, want 4", p.connections())
	}
}

func TestRateLimitCloseIsReportedAndReconnected(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.command-rate=1", "--livehub.command-burst=2")
	ctx := testContext(t)
	st := newStates()
	var errs int32
	c := dial(t, srv.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
		OnStateChange: st.record, OnError: func(error) { atomic.AddInt32(&errs, 1) }})
	for i := 0; i < 10; i++ {
		if err := c.PublishNoReply(ctx, "news", "m", i); err != nil {
			break // the server may close before the last
		}
	}
	if err := st.await(t, livehub.StateReconnecting); livehub.CloseCode(err) != livehub.CloseRateLimited {
		t.Errorf("closed with %v, want 4029", err)
	}
	st.await(t, livehub.StateOpen)
	if atomic.LoadInt32(&errs) == 0 {
		t.Error("no error frame reported")
	}
}

func TestCloseEndsEverything(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t)
	ctx := testContext(t)
	p := newProxy(t, srv.addr)
	for i := 0; i < 5; i++ {
		c, err := livehub.Dial(ctx, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
			GetToken: func(context.Context) (string, error) { return "", nil }})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(ctx, "news"); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			p.dropAll() // close while reconnecting
		}
		c.Close()
		c.Close()
		if err := c.Err(); !errors.Is(err, livehub.ErrClosed) {
			t.Errorf("Err after Close: %v", err)
		}
		if err := c.Subscribe(ctx, "x"); !errors.Is(err, livehub.ErrClosed) {
			t.Errorf("Subscribe after Close: %v", err)
		}
		if _, ok := <-c.Messages(); ok {
			t.Error("Messages open after Close")
		}
	}
}
