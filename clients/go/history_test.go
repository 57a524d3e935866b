package livehub_test

// History, recovery and presence against the real server.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

const (
	historyChannels  = `--livehub.history-channels=["h:*"]`
	presenceChannels = `--livehub.presence-channels=["p:*"]`
)

// spy dials TCP connections for a client (Options.DialContext) and records
// the text frames the client writes, unmasked: the commands it sends.
type spy struct {
	readBuffer int // SO_RCVBUF of each connection, set before it connects; 0: the system's

	mu       sync.Mutex
	commands []string
}

func (s *spy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if s.readBuffer > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, s.readBuffer)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &spyConn{Conn: c, s: s}, nil
}

type spyConn struct {
	net.Conn
	s *spy
}

// Write sees whole frames: the client writes each frame with one Write (and
// the upgrade request, which is no frame, before them).
func (c *spyConn) Write(b []byte) (int, error) {
	c.s.record(b)
	return c.Conn.Write(b)
}

func (s *spy) record(b []byte) {
	if len(b) < 6 || b[0] != 0x81 || b[1]&0x80 == 0 {
		return // not a whole masked text frame
	}
	n, i := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		n, i = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		n, i = binary.BigEndian.Uint64(b[2:]), 10
	}
	if uint64(len(b)) != uint64(i)+4+n {
		return
	}
	key, payload := b[i:i+4], make([]byte, n)
	for j := range payload {
		payload[j] = b[i+4+j] ^ key[j&3]
	}
	s.mu.Lock()
	s.commands = append(s.commands, string(payload))
	s.mu.Unlock()
}

// count is how many commands sent so far contain all of substrings.
func (s *spy) count(substrings ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
outer:
	for _, c := range s.commands {
		for _, sub := range substrings {
			if !strings.Contains(c, sub) {
				continue outer
			}
		}
		n++
	}
	return n
}

// publisher is a trusted publisher connection to srv (loopback, no Origin,
// no API key set).
func publisher(t *testing.T, srv *chatServer) *livehub.Client {
	return dial(t, srv.wsURL(), livehub.Options{DiscardMessages: true})
}

// publishN publishes {"n":i} for i in from..to on channel, each confirmed.
func publishN(t *testing.T, pub *livehub.Client, channel string, from, to int) {
	t.Helper()
	ctx := testContext(t)
	for i := from; i <= to; i++ {
		if err := pub.Publish(ctx, channel, "m", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// expectSequence reads the publications from..to of channel, in order,
// each with its offset and {"n":offset}.
func expectSequence(t *testing.T, c *livehub.Client, channel string, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		m := next(t, c)
		if m.Channel != channel || m.Offset != i || string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) || m.Recovery != nil {
			t.Fatalf("expected offset %d of %s, got %+v (data %s)", i, channel, m, m.Data)
		}
	}
}

// nothingMore fails if c has a message after a round trip.
func nothingMore(t *testing.T, c *livehub.Client) {
	t.Helper()
	if err := c.Ping(testContext(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Messages():
		t.Errorf("unexpected message %+v (data %s)", m, m.Data)
	default:
	}
}

func TestHistoryOverHTTPAndWebSocket(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), "")
	pub := publisher(t, srv)
	sub := dial(t, srv.wsURL(), livehub.Options{})

	res, err := sub.SubscribeWith(ctx, "h:a", livehub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Offset != 0 || res.Epoch == "" || res.Recovered != nil {
		t.Errorf("subscribe result %+v", res)
	}
	if res, err := sub.SubscribeWith(ctx, "news", livehub.SubscribeOptions{}); err != nil || res != (livehub.SubscribeResult{}) {
		t.Errorf("subscribe to a channel without history: %+v %v", res, err)
	}
	publishN(t, pub, "h:a", 1, 5)
	if err := pub.Publish(ctx, "news", "m", json.RawMessage(`{"n":12345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	expectSequence(t, sub, "h:a", 1, 5)
	if m := next(t, sub); m.Channel != "news" || m.Offset != 0 || string(m.Data) != `{"n":12345678901234567890}` {
		t.Errorf("publication without history: %+v", m)
	}
	// Subscribing again: the position, nothing twice.
	again, err := sub.SubscribeWith(ctx, "h:a", livehub.SubscribeOptions{})
	if err != nil || again.Offset != 5 || again.Epoch != res.Epoch || again.Recovered != nil {
		t.Errorf("subscribing again: %+v %v", again, err)
	}
	nothingMore(t, sub)
	publishN(t, pub, "h:a", 6, 6)
	expectSequence(t, sub, "h:a", 6, 6)

	check := func(what string, page *livehub.HistoryPage, err error, offsets ...uint64) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if page.Offset != 6 || page.Epoch != res.Epoch || len(page.Publications) != len(offsets) {
			t.Fatalf("%s: offset %d epoch %q, %d publications; want 6 %q %d",
				what, page.Offset, page.Epoch, len(page.Publications), res.Epoch, len(offsets))
		}
		for i, m := range page.Publications {
			if m.Channel != "h:a" || m.Type != "m" || m.Offset != offsets[i] ||
				string(m.Data) != fmt.Sprintf(`{"n":%d}`, offsets[i]) || len(m.Raw) == 0 {
				t.Errorf("%s: publication %d: %+v (data %s)", what, i, m, m.Data)
			}
		}
	}
	page, err := api.History(ctx, "h:a", 3)
	check("HTTP, limit 3", page, err, 4, 5, 6)
	page, err = api.History(ctx, "h:a", -1)
	check("HTTP, all", page, err, 1, 2, 3, 4, 5, 6)
	page, err = api.History(ctx, "h:a", 0)
	check("HTTP, limit 0", page, err)
	page, err = sub.History(ctx, "h:a", 2)
	check("WebSocket, limit 2", page, err, 5, 6)
	page, err = sub.History(ctx, "h:a", -1)
	check("WebSocket, all", page, err, 1, 2, 3, 4, 5, 6)
	// A connection that does not subscribe reads it too.
	page, err = pub.History(ctx, "h:a", 100)
	check("WebSocket, not subscribed", page, err, 1, 2, 3, 4, 5, 6)

	// A channel nobody published to has no publications yet.
	empty, err := api.History(ctx, "h:empty", 10)
	if err != nil || empty.Offset != 0 || empty.Epoch == "" || len(empty.Publications) != 0 {
		t.Errorf("empty history: %+v %v", empty, err)
	}
	// Channels without history.
	_, err = api.History(ctx, "news", 10)
	var e *livehub.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != livehub.CodeBadCommand {
		t.Errorf("HTTP history of news: %v, want 400 bad_command", err)
	}
	if _, err := sub.History(ctx, "news", 10); livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("WebSocket history of news: %v, want bad_command", err)
	}
	nothingMore(t, sub)
}

func TestSubscribeSinceRecoversOrSaysItCannot(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels, "--livehub.history-size=3")
	ctx := testContext(t)
	pub := publisher(t, srv)
	first := dial(t, srv.wsURL(), livehub.Options{})
	res, err := first.SubscribeWith(ctx, "h:b", livehub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	epoch := res.Epoch
	publishN(t, pub, "h:b", 1, 5) // 3, 4 and 5 are kept

	// From 2: 3, 4 and 5 arrive before the reply, then live ones.
	c := dial(t, srv.wsURL(), livehub.Options{})
	res, err = c.SubscribeWith(ctx, "h:b", livehub.SubscribeOptions{Since: &livehub.Position{Offset: 2, Epoch: epoch}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovered == nil || !*res.Recovered || res.Offset != 5 || res.Epoch != epoch {
		t.Errorf("result %+v, want recovered at 5", res)
	}
	if n := len(c.Messages()); n != 3 {
		t.Errorf("%d messages waiting after the reply, want 3", n)
	}
	expectSequence(t, c, "h:b", 3, 5)
	publishN(t, pub, "h:b", 6, 6)
	expectSequence(t, c, "h:b", 6, 6)
	nothingMore(t, c)

	// From 1 (2 is no longer kept), or from another epoch: not recovered,
	// nothing from history, live publications after the reply.
	for _, since := range []livehub.Position{{Offset: 1, Epoch: epoch}, {Offset: 2, Epoch: "other"}, {Offset: 99, Epoch: epoch}} {
		c := dial(t, srv.wsURL(), livehub.Options{})
		res, err := c.SubscribeWith(ctx, "h:b", livehub.SubscribeOptions{Since: &since})
		if err != nil {
			t.Fatal(err)
		}
		if res.Recovered == nil || *res.Recovered || res.Offset != 6 || res.Epoch != epoch {
			t.Errorf("since %+v: %+v, want not recovered at 6", since, res)
		}
		nothingMore(t, c)
	}

	// since on a channel without history: bad_command, not subscribed.
	_, err = c.SubscribeWith(ctx, "news", livehub.SubscribeOptions{Since: &livehub.Position{Offset: 1, Epoch: epoch}})
	if livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("since on news: %v, want bad_command", err)
	}
	if err := pub.Publish(ctx, "news", "m", 1); err != nil {
		t.Fatal(err)
	}
	nothingMore(t, c)
}

func TestPresenceListStatsJoinAndLeave(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, presenceChannels)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), "")
	pub := publisher(t, srv)
	anon := dial(t, srv.wsURL(), livehub.Options{})
	bob := dial(t, srv.wsURL(), livehub.Options{Info: map[string]interface{}{"name": "Bob", "id": json.Number("12345678901234567890")}})
	const bobInfo = `{"id":12345678901234567890,"name":"Bob"}`
	bobID := bob.Session().Client
	if bobID == "" || bob.Session().User != "" {
		t.Fatalf("session with info: %+v", bob.Session())
	}

	presenceEvent := func(c *livehub.Client, typ string) livehub.ClientInfo {
		t.Helper()
		m := next(t, c)
		var who livehub.ClientInfo
		if m.Channel != "p:room" || m.Type != typ || json.Unmarshal(m.Data, &who) != nil {
			t.Fatalf("expected %s on p:room, got %+v (data %s)", typ, m, m.Data)
		}
		return who
	}
	if err := anon.Subscribe(ctx, "p:room"); err != nil {
		t.Fatal(err)
	}
	self := presenceEvent(anon, "join") // its own
	anonID := self.Client
	if anonID == "" || anonID == bobID || self.User != "" || string(self.Info) != "null" {
		t.Errorf("own join %+v", self)
	}
	if err := bob.Subscribe(ctx, "p:room"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*livehub.Client{anon, bob} {
		if who := presenceEvent(c, "join"); who.Client != bobID || string(who.Info) != bobInfo {
			t.Errorf("join of bob %+v", who)
		}
	}

	checkList := func(what string, list []livehub.ClientInfo, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		byID := map[string]livehub.ClientInfo{}
		for _, ci := range list {
			byID[ci.Client] = ci
		}
		if len(list) != 2 || len(byID) != 2 || byID[anonID].Info != nil || byID[anonID].User != "" ||
			string(byID[bobID].Info) != bobInfo {
			t.Errorf("%s: %+v", what, list)
		}
	}
	list, err := anon.Presence(ctx, "p:room")
	checkList("WebSocket", list, err)
	list, err = pub.Presence(ctx, "p:room") // not subscribed itself
	checkList("WebSocket, not subscribed", list, err)
	list, err = api.Presence(ctx, "p:room")
	checkList("HTTP", list, err)
	if clients, users, err := bob.PresenceStats(ctx, "p:room"); err != nil || clients != 2 || users != 2 {
		t.Errorf("stats: %d clients, %d users, %v", clients, users, err)
	}

	// Leaving: by unsubscribing, and by going away.
	if err := bob.Unsubscribe(ctx, "p:room"); err != nil {
		t.Fatal(err)
	}
	if who := presenceEvent(anon, "leave"); who.Client != bobID {
		t.Errorf("leave %+v", who)
	}
	if clients, users, err := anon.PresenceStats(ctx, "p:room"); err != nil || clients != 1 || users != 1 {
		t.Errorf("stats: %d clients, %d users, %v", clients, users, err)
	}
	if err := bob.Subscribe(ctx, "p:room"); err != nil {
		t.Fatal(err)
	}
	presenceEvent(anon, "join")
	bob.Close()
	if who := presenceEvent(anon, "leave"); who.Client != bobID {
		t.Errorf("leave on close %+v", who)
	}
	list, err = api.Presence(ctx, "p:room")
	if err != nil || len(list) != 1 || list[0].Client != anonID {
		t.Errorf("after bob left: %+v %v", list, err)
	}
	if list, err := api.Presence(ctx, "p:nobody"); err != nil || len(list) != 0 {
		t.Errorf("presence of an empty channel: %+v %v", list, err)
	}

	// join and leave are the server's: nobody publishes them there.
	if err := pub.Publish(ctx, "p:room", "join", map[string]string{"client": "fake"}); livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("publishing join: %v, want bad_command", err)
	}
	// Channels without presence.
	if _, err := anon.Presence(ctx, "news"); livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("presence of news: %v, want bad_command", err)
	}
	if _, _, err := anon.PresenceStats(ctx, "news"); livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("presence_stats of news: %v, want bad_command", err)
	}
	_, err = api.Presence(ctx, "news")
	var e *livehub.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != livehub.CodeBadCommand {
		t.Errorf("HTTP presence of news: %v, want 400 bad_command", err)
	}
	nothingMore(t, anon)
}

// deadAddress is an address nothing listens on.
func deadAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRecoveryAfterDroppedConnections(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels, "--livehub.history-size=1000")
	ctx := testContext(t)
	p := newProxy(t, srv.addr)
	sp := &spy{}
	st := newStates()
	sub := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
		MaxReconnectDelay: 50 * time.Millisecond, DialContext: sp.dial, OnStateChange: st.record})
	if err := sub.Subscribe(ctx, "h:r"); err != nil {
		t.Fatal(err)
	}
	pub := publisher(t, srv)

	const total = 600
	published := make(chan int, total)
	stop := make(chan struct{})
	pubDone := make(chan error, 1)
	go func() {
		for i := 1; i <= total; i++ {
			if err := pub.Publish(ctx, "h:r", "m", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
				pubDone <- err
				return
			}
			published <- i
			select {
			case <-stop:
				pubDone <- nil
				return
			case <-time.After(time.Millisecond):
			}
		}
		pubDone <- nil
	}()
	defer close(stop)
	waitPublished := func(n int) {
		t.Helper()
		for {
			select {
			case i := <-published:
				if i >= n {
					return
				}
			case <-time.After(wait):
				t.Fatalf("publication %d not made", n)
			}
		}
	}

	// Read everything on the side, while the connection drops.
	type result struct {
		offsets []uint64
		err     string
	}
	got := make(chan result, 1)
	go func() {
		var r result
		for len(r.offsets) < total {
			select {
			case m, ok := <-sub.Messages():
				if !ok {
					r.err = "Messages closed"
					got <- r
					return
				}
				if m.Recovery != nil || m.Offset != uint64(len(r.offsets)+1) ||
					string(m.Data) != fmt.Sprintf(`{"n":%d}`, m.Offset) {
					r.err = fmt.Sprintf("unexpected %+v (data %s): something missing or doubled", m, m.Data)
					got <- r
					return
				}
				r.offsets = append(r.offsets, m.Offset)
			case <-time.After(wait):
				r.err = "no message in time"
				got <- r
				return
			}
		}
		got <- r
	}()

	for round := 1; round <= 4; round++ {
		waitPublished(round * 100)
		if round%2 == 0 {
			// Stay away a while: publications go on without this client.
			p.setTarget(deadAddress(t))
			p.dropAll()
			waitPublished(round*100 + 50)
			p.setTarget(srv.addr)
		} else {
			p.dropAll()
		}
		if err := st.await(t, livehub.StateReconnecting); livehub.CloseCode(err) != livehub.CloseAbnormal {
			t.Errorf("round %d: dropped with %v", round, err)
		}
		st.await(t, livehub.StateOpen)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != "" {
		t.Fatalf("after %d publications: %s", len(r.offsets), r.err)
	}
	if n := sp.count(`"type":"subscribe"`, `"since":{"offset":`); n != 4 {
		t.Errorf("%d subscribes with since, want 4 (one per reconnect)", n)
	}
	nothingMore(t, sub)
}

func TestRecoveryFailureIsAMessage(t *testing.T) {
	checkGoroutines(t)
	first := startChat(t, historyChannels)
	ctx := testContext(t)
	p := newProxy(t, first.addr)
	st := newStates()
	sub := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
		MaxReconnectDelay: 50 * time.Millisecond, OnStateChange: st.record})
	res, err := sub.SubscribeWith(ctx, "h:x", livehub.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub := publisher(t, first)
	publishN(t, pub, "h:x", 1, 3)
	expectSequence(t, sub, "h:x", 1, 3)

	// A new server: a new stream, with a new epoch.
	first.stop()
	st.await(t, livehub.StateReconnecting)
	second := startChat(t, historyChannels)
	p.setTarget(second.addr)
	st.await(t, livehub.StateOpen)
	m := next(t, sub)
	if m.Type != livehub.TypeRecovery || m.Channel != "h:x" || m.Recovery == nil || m.Raw != nil {
		t.Fatalf("after the restart: %+v", m)
	}
	r := *m.Recovery
	if r.Recovered == nil || *r.Recovered || r.Offset != 0 || r.Epoch == "" || r.Epoch == res.Epoch {
		t.Errorf("recovery %+v (epoch before %s)", r, res.Epoch)
	}
	var data livehub.SubscribeResult
	if err := json.Unmarshal(m.Data, &data); err != nil || data.Epoch != r.Epoch || data.Recovered == nil || *data.Recovered {
		t.Errorf("recovery data %s", m.Data)
	}
	publishN(t, publisher(t, second), "h:x", 1, 2)
	expectSequence(t, sub, "h:x", 1, 2)
	nothingMore(t, sub)
}

func TestSlowReaderGetsGapsAndRecoversEverything(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels, "--livehub.history-size=20000", "--livehub.write-timeout=60s")
	// 20 MB through a stalled reader: far more work than the other tests,
	// and sanitizer or coverage builds of the server are several times
	// slower, so this one gets four times the usual bound.
	ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
	t.Cleanup(cancel)
	api := livehub.NewAPI(srv.httpURL(), "")
	// A small socket buffer and a one-message channel that is not read:
	// the server's queue for this connection fills up at once.
	sp := &spy{readBuffer: 4096}
	st := newStates()
	sub := dial(t, srv.wsURL(), livehub.Options{MessageBuffer: 1, DialContext: sp.dial, OnStateChange: st.record})
	if err := sub.Subscribe(ctx, "h:flood"); err != nil {
		t.Fatal(err)
	}
	pub := publisher(t, srv)
	const total = 10000
	pad := strings.Repeat("x", 2000) // 20 MB: more than socket buffers hold
	for i := 1; i <= total; i++ {
		if err := pub.PublishNoReply(ctx, "h:flood", "n", json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// Read now: everything, in order, once.
	for i := uint64(1); i <= total; i++ {
		m := next(t, sub)
		if m.Recovery != nil || m.Offset != i || !strings.HasPrefix(string(m.Data), fmt.Sprintf(`{"n":%d,`, i)) {
			t.Fatalf("message %d: %s offset %d, recovery %v", i, m.Type, m.Offset, m.Recovery)
		}
	}
	if n := sp.count(`"since":{"offset":`); n == 0 {
		t.Error("no recovery: the reader was never behind (the test proves nothing)")
	} else {
		t.Logf("%d recoveries after gaps", n)
	}
	nothingMore(t, sub)
	stats, err := api.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.SlowConsumerDisconnects != 0 || sub.State() != livehub.StateOpen {
		t.Errorf("%d slow consumer disconnects, state %v", stats.SlowConsumerDisconnects, sub.State())
	}
	for {
		select {
		case c := <-st.ch:
			if c.state != livehub.StateConnecting && c.state != livehub.StateOpen {
				t.Errorf("state change %v %v", c.state, c.err)
			}
			continue
		default:
		}
		break
	}
}
