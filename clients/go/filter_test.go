package livehub_test

// Tags and filters without the real server: the JSON each Filter is sent
// as, and against the fake server, frame by frame: the filter in every
// subscribe the client makes (also after a reconnect and a gap), a filter
// replaced, refused and removed, tags on publications received, published
// and in history pages, and over HTTP.

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

func TestFilterMarshalsToTheProtocolsJSON(t *testing.T) {
	for _, tc := range []struct {
		filter livehub.Filter
		want   string
	}{
		{livehub.Eq("lang", "en"), `{"key":"lang","op":"eq","value":"en"}`},
		{livehub.Eq("lang", ""), `{"key":"lang","op":"eq","value":""}`},
		{livehub.Neq("lang", "<fr>&"), `{"key":"lang","op":"neq","value":"<fr>&"}`},
		{livehub.StartsWith("path", "/docs/"), `{"key":"path","op":"starts","value":"/docs/"}`},
		{livehub.Gt("prio", 0), `{"key":"prio","op":"gt","value":0}`},
		{livehub.Gte("prio", 3), `{"key":"prio","op":"gte","value":3}`},
		{livehub.Lt("price", 9.99), `{"key":"price","op":"lt","value":9.99}`},
		{livehub.Lte("price", -1e21), `{"key":"price","op":"lte","value":-1e+21}`},
		{livehub.In("to", "ada", "all"), `{"key":"to","op":"in","values":["ada","all"]}`},
		{livehub.In("to"), `{"key":"to","op":"in","values":[]}`},
		{livehub.NotIn("to", "bob"), `{"key":"to","op":"nin","values":["bob"]}`},
		{livehub.Exists("urgent"), `{"key":"urgent","op":"exists"}`},
		{livehub.NotExists("draft"), `{"key":"draft","op":"nexists"}`},
		{livehub.Not(livehub.Exists("draft")), `{"not":{"key":"draft","op":"exists"}}`},
		{livehub.Or(), `{"or":[]}`},
		{
			livehub.And(livehub.Eq("lang", "en"), livehub.Or(livehub.Gte("prio", 3), livehub.In("to", "ada", "all"))),
			`{"and":[{"key":"lang","op":"eq","value":"en"},{"or":[{"key":"prio","op":"gte","value":3},` +
				`{"key":"to","op":"in","values":["ada","all"]}]}]}`,
		},
		{livehub.RawFilter(json.RawMessage(` {"key":"k", "op":"exists"} `)), `{"key":"k","op":"exists"}`},
		{livehub.Filter{}, `null`},
		{livehub.RawFilter(nil), `null`},
		{livehub.RawFilter(json.RawMessage(`null`)), `null`},
	} {
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // as the client sends it
		err := enc.Encode(tc.filter)
		if got := strings.TrimSuffix(buf.String(), "\n"); err != nil || got != tc.want {
			t.Errorf("%s: got %s %v, want %s", tc.want, got, err, tc.want)
		}
		if tc.filter.String() != tc.want {
			t.Errorf("String() = %s, want %s", tc.filter.String(), tc.want)
		}
	}
	if !livehub.RawFilter(json.RawMessage(" null ")).IsZero() || livehub.Exists("k").IsZero() {
		t.Error("IsZero")
	}
}

func TestFilterValuesThatHaveNoJSONAreErrors(t *testing.T) {
	for name, f := range map[string]livehub.Filter{
		"NaN":              livehub.Gt("prio", math.NaN()),
		"zero inside And":  livehub.And(livehub.Eq("a", "b"), livehub.Filter{}),
		"zero inside Not":  livehub.Not(livehub.Filter{}),
		"Inf deep inside":  livehub.Or(livehub.Not(livehub.Lt("x", math.Inf(1)))),
		"RawFilter broken": livehub.RawFilter(json.RawMessage(`{"key":`)),
	} {
		if b, err := json.Marshal(f); err == nil {
			t.Errorf("%s: marshalled as %s", name, b)
		}
		if !strings.HasPrefix(f.String(), "<") {
			t.Errorf("%s: String() = %s", name, f.String())
		}
	}
}

func TestAFilterThatHasNoJSONIsRefusedBeforeAnythingIsSent(t *testing.T) {
	checkGoroutines(t)
	got := make(chan map[string]json.RawMessage, 10)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		for {
			f, err := c.readFrame()
			if err != nil {
				return
			}
			if f.op == 0x8 {
				c.write(true, 0x8, f.payload) // the close handshake's answer
				return
			}
			var cmd map[string]json.RawMessage
			json.Unmarshal(f.payload, &cmd) //nolint:errcheck // checked by the test
			got <- cmd
		}
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	_, err := cl.SubscribeWith(testContext(t), "h:t", livehub.SubscribeOptions{Filter: livehub.Gt("n", math.NaN())})
	if err == nil || !strings.Contains(err.Error(), "filter") {
		t.Errorf("SubscribeWith: %v", err)
	}
	if _, err := cl.HistoryFiltered(testContext(t), "h:t", 1, livehub.Not(livehub.Filter{})); err == nil {
		t.Error("HistoryFiltered with a zero filter inside Not: no error")
	}
	select {
	case cmd := <-got:
		t.Errorf("sent %v", cmd)
	case <-time.After(100 * time.Millisecond):
	}
}

// tagsScript plays the server for TestTagsAndFiltersAgainstAFakeServer;
// it tells the test on step when the client has subscribed again on the
// second connection.
func tagsScript(step chan<- string) script {
	var conns int32
	return func(t *testing.T, c *fakeConn) {
		send := func(s string) { c.write(true, 0x1, []byte(s)) }
		// expect reads the next command, checks the given fields (absent:
		// "") and returns its id.
		expect := func(want map[string]string) string {
			t.Helper()
			cmd := c.command()
			for _, k := range []string{"type", "channel", "filter", "since", "tags", "limit"} {
				if string(cmd[k]) != want[k] {
					t.Errorf("command %v: %s is %s, want %q", cmdText(cmd), k, cmd[k], want[k])
				}
			}
			return string(cmd["id"])
		}
		sub := func(filter, since string) map[string]string {
			return map[string]string{"type": `"subscribe"`, "channel": `"h:t"`, "filter": filter, "since": since}
		}
		const (
			english = `{"key":"lang","op":"eq","value":"en"}`
			urgent  = `{"and":[{"key":"lang","op":"eq","value":"en"},{"key":"prio","op":"gte","value":3}]}`
		)
		if atomic.AddInt32(&conns, 1) == 1 {
			id := expect(sub(english, ""))
			send(`{"type":"ok","id":` + id + `,"offset":0,"epoch":"e1"}`)
			send(`{"channel":"h:t","type":"m","data":1,"tags":{"lang":"en","prio":"2"},"offset":1}`)
			send(`{"channel":"h:t","type":"m","data":2,"tags":{"lang":1},"offset":2}`) // not strings: no Tags, still delivered
			send(`{"channel":"h:t","type":"m","data":3,"offset":3}`)

			id = expect(map[string]string{"type": `"publish"`, "channel": `"h:t"`, "tags": `{"lang":"fr"}`})
			send(`{"type":"ok","id":` + id + `}`)
			if id := expect(map[string]string{"type": `"publish"`, "channel": `"h:t"`, "tags": `{"lang":"de"}`}); id != "" {
				t.Errorf("PublishNoReplyWith sent id %s", id)
			}
			id = expect(map[string]string{"type": `"history"`, "channel": `"h:t"`, "limit": "5",
				"filter": `{"key":"lang","op":"in","values":["fr","de"]}`})
			send(`{"type":"ok","id":` + id + `,"offset":5,"epoch":"e1","publications":[` +
				`{"channel":"h:t","type":"m","data":4,"tags":{"lang":"fr"},"offset":4},` +
				`{"channel":"h:t","type":"m","data":5,"offset":5}]}`)
			id = expect(map[string]string{"type": `"history"`, "channel": `"h:t"`, "limit": "5"})
			send(`{"type":"ok","id":` + id + `,"offset":5,"epoch":"e1","publications":[]}`)

			// Another filter: no since; the reply's offset is the position.
			id = expect(sub(urgent, ""))
			send(`{"type":"ok","id":` + id + `,"offset":7,"epoch":"e1"}`)
			send(`{"channel":"h:t","type":"m","data":8,"tags":{"lang":"en","prio":"5"},"offset":8}`)
			// A filter refused: the subscription stays as it was.
			id = expect(sub(`{"key":"lang","op":"like","value":"e%"}`, ""))
			send(`{"type":"error","id":` + id + `,"code":"bad_command","message":"unknown op like"}`)
			c.closeWith(livehub.CloseGoingAway, "restart")
			return
		}
		// The next connection: the kept filter, with since.
		id := expect(sub(urgent, `{"offset":8,"epoch":"e1"}`))
		send(`{"type":"ok","id":` + id + `,"recovered":true,"offset":8,"epoch":"e1"}`)
		step <- "resubscribed"
		// Subscribe without options: the filter removed, no since.
		id = expect(sub("", ""))
		send(`{"type":"ok","id":` + id + `,"offset":9,"epoch":"e1"}`)
		send(`{"channel":"h:t","type":"m","data":10,"offset":10}`)
		// A filter again, while 11 and 12 were published: the position is
		// the reply's, and a gap (10: the last offset sent) recovers from
		// there, with the filter.
		id = expect(sub(english, ""))
		send(`{"type":"ok","id":` + id + `,"offset":12,"epoch":"e1"}`)
		send(`{"type":"gap","channel":"h:t","offset":10,"epoch":"e1"}`)
		id = expect(sub(english, `{"offset":12,"epoch":"e1"}`))
		send(`{"channel":"h:t","type":"m","data":13,"tags":{"lang":"en"},"offset":13}`)
		send(`{"type":"ok","id":` + id + `,"recovered":true,"offset":13,"epoch":"e1"}`)
	}
}

func cmdText(cmd map[string]json.RawMessage) string {
	b, _ := json.Marshal(cmd)
	return string(b)
}

func TestTagsAndFiltersAgainstAFakeServer(t *testing.T) {
	checkGoroutines(t)
	step := make(chan string, 1)
	srv := newFakeServer(t, tagsScript(step))
	cl := dial(t, srv.wsURL(), livehub.Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond})
	ctx := testContext(t)

	if _, err := cl.SubscribeWith(ctx, "h:t", livehub.SubscribeOptions{Filter: livehub.Eq("lang", "en")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		offset uint64
		tags   map[string]string
	}{{1, map[string]string{"lang": "en", "prio": "2"}}, {2, nil}, {3, nil}} {
		if m := next(t, cl); m.Offset != want.offset || !reflect.DeepEqual(m.Tags, want.tags) {
			t.Errorf("got offset %d tags %v, want %d %v", m.Offset, m.Tags, want.offset, want.tags)
		}
	}

	if err := cl.PublishWith(ctx, livehub.Publication{Channel: "h:t", Event: "m", Data: 1,
		Tags: map[string]string{"lang": "fr"}}); err != nil {
		t.Errorf("PublishWith: %v", err)
	}
	if err := cl.PublishNoReplyWith(ctx, livehub.Publication{Channel: "h:t", Event: "m", Data: 2,
		Tags: map[string]string{"lang": "de"}}); err != nil {
		t.Errorf("PublishNoReplyWith: %v", err)
	}
	page, err := cl.HistoryFiltered(ctx, "h:t", 5, livehub.In("lang", "fr", "de"))
	if err != nil || len(page.Publications) != 2 || page.Publications[0].Tags["lang"] != "fr" ||
		page.Publications[1].Tags != nil {
		t.Errorf("HistoryFiltered: %+v %v", page, err)
	}
	if _, err := cl.History(ctx, "h:t", 5); err != nil {
		t.Errorf("History: %v", err)
	}

	urgent := livehub.And(livehub.Eq("lang", "en"), livehub.Gte("prio", 3))
	res, err := cl.SubscribeWith(ctx, "h:t", livehub.SubscribeOptions{Filter: urgent})
	if err != nil || res.Offset != 7 || res.Recovered != nil {
		t.Errorf("another filter: %+v %v", res, err)
	}
	if m := next(t, cl); m.Offset != 8 || m.Tags["prio"] != "5" {
		t.Errorf("after the new filter: %+v", m)
	}
	bad := livehub.RawFilter(json.RawMessage(`{"key":"lang","op":"like","value":"e%"}`))
	if _, err := cl.SubscribeWith(ctx, "h:t", livehub.SubscribeOptions{Filter: bad}); livehub.ErrorCode(err) != livehub.CodeBadCommand {
		t.Errorf("a refused filter: %v", err)
	}

	// The script closes the connection; the client subscribes again with
	// the filter it kept.
	select {
	case <-step:
	case <-time.After(wait):
		t.Fatal("not subscribed again on the next connection")
	}
	if err := cl.Subscribe(ctx, "h:t"); err != nil {
		t.Errorf("Subscribe without a filter: %v", err)
	}
	if m := next(t, cl); m.Offset != 10 || m.Tags != nil {
		t.Errorf("without a filter: %+v", m)
	}
	if res, err := cl.SubscribeWith(ctx, "h:t", livehub.SubscribeOptions{Filter: livehub.Eq("lang", "en")}); err != nil || res.Offset != 12 {
		t.Errorf("a filter again: %+v %v", res, err)
	}
	// The script sends a gap; the recovery's replay arrives.
	if m := next(t, cl); m.Offset != 13 || m.Tags["lang"] != "en" {
		t.Errorf("recovered after the gap: %+v", m)
	}
}

func TestHTTPPublishSendsTags(t *testing.T) {
	bodies := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		if strings.HasPrefix(string(b), "[") {
			io.WriteString(w, `{"results":[{"ok":true},{"ok":true}]}`) //nolint:errcheck // the test reads it
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"ok":true}`) //nolint:errcheck // the test reads it
	}))
	defer srv.Close()
	api := livehub.NewAPI(srv.URL, "")
	ctx := testContext(t)
	if err := api.PublishWith(ctx, livehub.Publication{Channel: "news", Event: "headline", Data: "x",
		Tags: map[string]string{"region": "eu", "b": "<&>"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := <-bodies, `{"channel":"news","type":"headline","data":"x","tags":{"b":"<&>","region":"eu"}}`; got != want {
		t.Errorf("PublishWith sent %s, want %s", got, want)
	}
	if _, err := api.PublishBatch(ctx, []livehub.Publication{
		{Channel: "a", Event: "e", Data: 1, Tags: map[string]string{"k": "v"}},
		{Channel: "b", Event: "e", Data: 2},
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := <-bodies, `[{"channel":"a","type":"e","data":1,"tags":{"k":"v"}},{"channel":"b","type":"e","data":2}]`; got != want {
		t.Errorf("PublishBatch sent %s, want %s", got, want)
	}
}
