package livehub_test

// Tags and filters against the real server: tags from HTTP and WebSocket
// publishers to subscribers and history, their limits, every filter
// operation, filters replaced, refused and removed, and filters applied to
// history and to recovery.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

// tagged is the publication {"n":n} with tags.
func tagged(channel string, n int, tags map[string]string) livehub.Publication {
	return livehub.Publication{Channel: channel, Event: "m", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)), Tags: tags}
}

// dataN is the n of a publication {"n":n}, -1 for anything else.
func dataN(m livehub.Message) int {
	var d struct{ N *int }
	if json.Unmarshal(m.Data, &d) != nil || d.N == nil {
		return -1
	}
	return *d.N
}

func TestTagsTravelFromPublishersToSubscribersAndHistory(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels, "--livehub.api-key="+apiKey)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	pub := dial(t, srv.wsURL(), livehub.Options{APIKey: apiKey, DiscardMessages: true})
	sub := dial(t, srv.wsURL(), livehub.Options{})
	if _, err := sub.SubscribeWith(ctx, "h:tags", livehub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}

	long := strings.Repeat("k", 64)
	want := []map[string]string{
		{"region": "eu", "empty": "", "text": `<"é">&`},
		nil,
		{"via": "batch"},
		{long: strings.Repeat("v", 64)},
		{"via": "websocket"},
		{"via": "no reply"},
	}
	if err := api.PublishWith(ctx, tagged("h:tags", 0, want[0])); err != nil {
		t.Fatalf("HTTP with tags: %v", err)
	}
	if err := api.Publish(ctx, "h:tags", "m", json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	tooMany := map[string]string{}
	for i := 0; i < 17; i++ {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	results, err := api.PublishBatch(ctx, []livehub.Publication{
		tagged("h:tags", 2, want[2]),
		tagged("h:tags", 99, tooMany),
		tagged("h:tags", 3, want[3]),
		tagged("h:tags", 99, map[string]string{long + "k": "v"}),
		tagged("h:tags", 99, map[string]string{"k": long + "v"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range []string{"", livehub.CodeBadCommand, "", livehub.CodeBadCommand, livehub.CodeBadCommand} {
		if got := livehub.ErrorCode(results[i].Err()); got != code {
			t.Errorf("batch element %d: %+v, want code %q", i, results[i], code)
		}
	}
	if err := pub.PublishWith(ctx, tagged("h:tags", 4, want[4])); err != nil {
		t.Fatalf("WebSocket with tags: %v", err)
	}
	if err := pub.PublishWith(ctx, tagged("h:tags", 99, tooMany)); livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("WebSocket with 17 tags: %v, want bad_command", err)
	}
	if err := pub.PublishNoReplyWith(ctx, tagged("h:tags", 5, want[5])); err != nil {
		t.Fatal(err)
	}
	if err := pub.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	for n, tags := range want {
		m := next(t, sub)
		if dataN(m) != n || m.Offset != uint64(n+1) || !reflect.DeepEqual(m.Tags, tags) {
			t.Errorf("publication %d: data %s offset %d tags %v, want tags %v", n, m.Data, m.Offset, m.Tags, tags)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(m.Raw, &raw); err != nil || (tags == nil) != (raw["tags"] == nil) {
			t.Errorf("publication %d: frame %s: a tags field only where there are tags", n, m.Raw)
		}
	}
	nothingMore(t, sub)

	for what, get := range map[string]func() (*livehub.HistoryPage, error){
		"HTTP":      func() (*livehub.HistoryPage, error) { return api.History(ctx, "h:tags", -1) },
		"WebSocket": func() (*livehub.HistoryPage, error) { return sub.History(ctx, "h:tags", -1) },
	} {
		page, err := get()
		if err != nil || len(page.Publications) != len(want) {
			t.Fatalf("%s history: %+v %v", what, page, err)
		}
		for n, m := range page.Publications {
			if dataN(m) != n || !reflect.DeepEqual(m.Tags, want[n]) {
				t.Errorf("%s history %d: data %s tags %v, want %v", what, n, m.Data, m.Tags, want[n])
			}
		}
	}
}

// The publications every filter of TestEachFilterOperation is tried on,
// and the end marker that tells a subscriber it has seen them all.
var filterCases = []map[string]string{
	nil,                            // 0: no tags at all
	{"lang": "en", "prio": "1"},    // 1
	{"lang": "fr", "prio": "5"},    // 2
	{"lang": "en-GB", "prio": "3"}, // 3
	{"lang": "de", "prio": "x"},    // 4: prio is not a number
	{"lang": "en", "prio": "10"},   // 5: 10 > 3 as numbers, not as strings
}

func TestEachFilterOperation(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t)
	ctx := testContext(t)
	pub := publisher(t, srv)
	sub := dial(t, srv.wsURL(), livehub.Options{})
	end := livehub.Exists("end")
	tests := []struct {
		filter livehub.Filter
		want   []int
	}{
		{livehub.Eq("lang", "en"), []int{1, 5}},
		{livehub.Neq("lang", "en"), []int{0, 2, 3, 4}},
		{livehub.StartsWith("lang", "en"), []int{1, 3, 5}},
		{livehub.Gt("prio", 3), []int{2, 5}},
		{livehub.Gte("prio", 3), []int{2, 3, 5}},
		{livehub.Lt("prio", 5), []int{1, 3}},
		{livehub.Lte("prio", 5), []int{1, 2, 3}},
		{livehub.Gt("prio", 2.5), []int{2, 3, 5}},
		{livehub.In("lang", "fr", "de"), []int{2, 4}},
		{livehub.NotIn("lang", "fr", "de"), []int{0, 1, 3, 5}},
		{livehub.Exists("prio"), []int{1, 2, 3, 4, 5}},
		{livehub.NotExists("prio"), []int{0}},
		{livehub.And(livehub.Eq("lang", "en"), livehub.Gt("prio", 3)), []int{5}},
		{livehub.Or(livehub.Eq("lang", "fr"), livehub.Lt("prio", 2)), []int{1, 2}},
		{livehub.Not(livehub.Exists("lang")), []int{0}},
		{livehub.RawFilter(json.RawMessage(`{"key":"prio","op":"gte","value":"3"}`)), []int{2, 3, 5}},
	}
	for i, tc := range tests {
		channel := fmt.Sprintf("f:%d", i)
		// Or with the end marker: it adds the marker and nothing else (no
		// case has the tag "end").
		if _, err := sub.SubscribeWith(ctx, channel, livehub.SubscribeOptions{Filter: livehub.Or(tc.filter, end)}); err != nil {
			t.Fatalf("%v: %v", tc.filter, err)
		}
	}
	for i := range tests {
		channel := fmt.Sprintf("f:%d", i)
		for n, tags := range filterCases {
			if err := pub.PublishWith(ctx, tagged(channel, n, tags)); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.PublishWith(ctx, tagged(channel, 100, map[string]string{"end": "1"})); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]int{}
	for ended := 0; ended < len(tests); {
		m := next(t, sub)
		if dataN(m) == 100 {
			ended++
			continue
		}
		got[m.Channel] = append(got[m.Channel], dataN(m))
	}
	for i, tc := range tests {
		if g := got[fmt.Sprintf("f:%d", i)]; fmt.Sprint(g) != fmt.Sprint(tc.want) {
			t.Errorf("%v let through %v, want %v", tc.filter, g, tc.want)
		}
	}
}

func TestAFilterIsReplacedRefusedAndRemoved(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels)
	ctx := testContext(t)
	pub := publisher(t, srv)
	sub := dial(t, srv.wsURL(), livehub.Options{})
	english := livehub.Eq("lang", "en")
	french := livehub.Eq("lang", "fr")
	say := func(n int, lang string) {
		t.Helper()
		if err := pub.PublishWith(ctx, tagged("h:f", n, map[string]string{"lang": lang})); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, ns ...int) {
		t.Helper()
		for _, n := range ns {
			if m := next(t, sub); dataN(m) != n {
				t.Fatalf("%s: got %s, want {\"n\":%d}", what, m.Data, n)
			}
		}
		nothingMore(t, sub)
	}

	if _, err := sub.SubscribeWith(ctx, "h:f", livehub.SubscribeOptions{Filter: english}); err != nil {
		t.Fatal(err)
	}
	say(1, "en")
	say(2, "fr")
	say(3, "en")
	expect("English", 1, 3)

	res, err := sub.SubscribeWith(ctx, "h:f", livehub.SubscribeOptions{Filter: french})
	if err != nil || res.Offset != 3 || res.Recovered != nil {
		t.Fatalf("French instead: %+v %v", res, err)
	}
	say(4, "en")
	say(5, "fr")
	expect("French, and nothing from before the change", 5)

	// Refused: the subscription stays French.
	for what, bad := range map[string]livehub.Filter{
		"unknown op": livehub.RawFilter(json.RawMessage(`{"key":"lang","op":"like","value":"e%"}`)),
		"33 nodes":   livehub.And(repeat(livehub.Exists("lang"), 32)...),
		"depth 9":    nest(livehub.Exists("lang"), 8),
		"no object":  livehub.RawFilter(json.RawMessage(`"lang=en"`)),
	} {
		if _, err := sub.SubscribeWith(ctx, "h:f", livehub.SubscribeOptions{Filter: bad}); livehub.ErrorCode(err) != livehub.CodeBadCommand {
			t.Errorf("%s: %v, want bad_command", what, err)
		}
	}
	// The largest filter allowed: 32 nodes, depth 8.
	if _, err := sub.HistoryFiltered(ctx, "h:f", 1, livehub.And(repeat(livehub.Exists("lang"), 31)...)); err != nil {
		t.Errorf("32 nodes: %v", err)
	}
	if _, err := sub.HistoryFiltered(ctx, "h:f", 1, nest(livehub.Exists("lang"), 7)); err != nil {
		t.Errorf("depth 8: %v", err)
	}
	say(6, "en")
	say(7, "fr")
	expect("still French after the refusals", 7)

	// History: with a filter of its own, and with the subscription's.
	page, err := sub.HistoryFiltered(ctx, "h:f", -1, english)
	if err != nil || fmt.Sprint(ns(page)) != "[1 3 4 6]" {
		t.Errorf("English history: %v %v", ns(page), err)
	}
	page, err = sub.History(ctx, "h:f", 2)
	if err != nil || fmt.Sprint(ns(page)) != "[5 7]" {
		t.Errorf("history with the subscription's filter: %v %v", ns(page), err)
	}
	page, err = publisher(t, srv).History(ctx, "h:f", -1) // a connection without subscription: everything
	if err != nil || fmt.Sprint(ns(page)) != "[1 2 3 4 5 6 7]" {
		t.Errorf("history without filter: %v %v", ns(page), err)
	}

	// Subscribe (no options): the filter is removed.
	if err := sub.Subscribe(ctx, "h:f"); err != nil {
		t.Fatal(err)
	}
	say(8, "en")
	say(9, "fr")
	expect("without filter", 8, 9)
}

// repeat is n times f.
func repeat(f livehub.Filter, n int) []livehub.Filter {
	out := make([]livehub.Filter, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// nest wraps f in n Nots: n+1 levels, n+1 nodes.
func nest(f livehub.Filter, n int) livehub.Filter {
	for i := 0; i < n; i++ {
		f = livehub.Not(f)
	}
	return f
}

// ns is the n of each publication of page.
func ns(page *livehub.HistoryPage) []int {
	if page == nil {
		return nil
	}
	out := []int{}
	for _, m := range page.Publications {
		out = append(out, dataN(m))
	}
	return out
}

func TestRecoveryKeepsTheFilter(t *testing.T) {
	checkGoroutines(t)
	srv := startChat(t, historyChannels)
	ctx := testContext(t)
	p := newProxy(t, srv.addr)
	st := newStates()
	sub := dial(t, p.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond,
		MaxReconnectDelay: 50 * time.Millisecond, OnStateChange: st.record})
	if _, err := sub.SubscribeWith(ctx, "h:rf", livehub.SubscribeOptions{Filter: livehub.Eq("lang", "en")}); err != nil {
		t.Fatal(err)
	}
	pub := publisher(t, srv)
	say := func(n int, lang string) {
		t.Helper()
		if err := pub.PublishWith(ctx, tagged("h:rf", n, map[string]string{"lang": lang})); err != nil {
			t.Fatal(err)
		}
	}
	say(1, "en")
	if m := next(t, sub); dataN(m) != 1 || m.Offset != 1 {
		t.Fatalf("before the cut: %+v", m)
	}

	// Cut, and keep the client away while the channel goes on.
	p.setTarget(deadAddress(t))
	p.dropAll()
	st.await(t, livehub.StateReconnecting)
	say(2, "fr")
	say(3, "en")
	say(4, "fr")
	say(5, "en")
	p.setTarget(srv.addr)
	st.await(t, livehub.StateOpen)

	// Recovered with the filter: the English ones only, then live.
	for _, want := range []struct {
		n      int
		offset uint64
	}{{3, 3}, {5, 5}} {
		if m := next(t, sub); dataN(m) != want.n || m.Offset != want.offset || m.Recovery != nil || m.Tags["lang"] != "en" {
			t.Fatalf("recovered %+v (data %s), want n %d at offset %d", m, m.Data, want.n, want.offset)
		}
	}
	say(6, "fr")
	say(7, "en")
	if m := next(t, sub); dataN(m) != 7 || m.Offset != 7 {
		t.Fatalf("live after the recovery: %+v (data %s)", m, m.Data)
	}
	nothingMore(t, sub)
}
