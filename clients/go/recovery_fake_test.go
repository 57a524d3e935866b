package livehub_test

// Recovery against the fake server, frame by frame: positions from replies
// and publications, since after a gap (and a gap during a recovery),
// duplicates dropped, recovered:false as a message.

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

func TestGapsAndDuplicatesAgainstAFakeServer(t *testing.T) {
	checkGoroutines(t)
	srv := newFakeServer(t, func(t *testing.T, c *fakeConn) {
		send := func(format string, args ...interface{}) {
			c.write(true, 0x1, []byte(fmt.Sprintf(format, args...)))
		}
		pub := func(offset int) {
			send(`{"channel":"h:f","type":"m","data":{"n":%d},"offset":%d}`, offset, offset)
		}
		// expect reads a subscribe to h:f and returns its id; since: its
		// expected "since", "" for none.
		expect := func(since string) string {
			cmd := c.command()
			if string(cmd["type"]) != `"subscribe"` || string(cmd["channel"]) != `"h:f"` || string(cmd["since"]) != since {
				t.Errorf("command %s %s since %s, want since %q", cmd["type"], cmd["channel"], cmd["since"], since)
			}
			return string(cmd["id"])
		}
		id := expect("")
		send(`{"type":"ok","id":%s,"offset":0,"epoch":"e1"}`, id)
		for _, o := range []int{1, 2, 2, 1, 3} { // a duplicate, one out of order
			pub(o)
		}
		send(`{"type":"gap","channel":"h:f","offset":3,"epoch":"e1"}`)
		id = expect(`{"offset":3,"epoch":"e1"}`)
		pub(4)
		// A gap before the reply: the client waits for the reply, then
		// recovers again.
		send(`{"type":"gap","channel":"h:f","offset":4,"epoch":"e1"}`)
		c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond)) //nolint:errcheck // then the peek fails
		if b, err := c.r.Peek(1); err == nil {
			t.Errorf("the client sent %q before the recovery's reply", b)
		}
		send(`{"type":"ok","id":%s,"recovered":true,"offset":6,"epoch":"e1"}`, id)
		id = expect(`{"offset":4,"epoch":"e1"}`)
		pub(5)
		pub(6)
		send(`{"type":"ok","id":%s,"recovered":true,"offset":6,"epoch":"e1"}`, id)
		// A recovery that fails: a message, then live from the new place.
		send(`{"type":"gap","channel":"h:f","offset":6,"epoch":"e1"}`)
		id = expect(`{"offset":6,"epoch":"e1"}`)
		send(`{"type":"ok","id":%s,"recovered":false,"offset":10,"epoch":"e2"}`, id)
		pub(11)
		// A publication whose event type is "gap" is a publication.
		send(`{"channel":"other","type":"gap","data":{"offset":1},"offset":1}`)
		send(`{"channel":"other","type":"recovery","data":null}`)
	})
	cl := dial(t, srv.wsURL(), livehub.Options{})
	res, err := cl.SubscribeWith(testContext(t), "h:f", livehub.SubscribeOptions{})
	if err != nil || res.Offset != 0 || res.Epoch != "e1" || res.Recovered != nil {
		t.Fatalf("subscribe: %+v %v", res, err)
	}
	for _, o := range []uint64{1, 2, 3, 4, 5, 6} {
		if m := next(t, cl); m.Offset != o || string(m.Data) != fmt.Sprintf(`{"n":%d}`, o) || m.Recovery != nil {
			t.Fatalf("want offset %d, got %+v", o, m)
		}
	}
	m := next(t, cl)
	if m.Type != livehub.TypeRecovery || m.Channel != "h:f" || m.Recovery == nil || m.Raw != nil ||
		m.Recovery.Recovered == nil || *m.Recovery.Recovered || m.Recovery.Offset != 10 || m.Recovery.Epoch != "e2" {
		t.Fatalf("want the recovery notice, got %+v", m)
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(m.Data, &data); err != nil || string(data["recovered"]) != "false" ||
		string(data["offset"]) != "10" || string(data["epoch"]) != `"e2"` {
		t.Errorf("notice data %s", m.Data)
	}
	if m := next(t, cl); m.Offset != 11 || m.Recovery != nil {
		t.Fatalf("want offset 11, got %+v", m)
	}
	if m := next(t, cl); m.Channel != "other" || m.Type != "gap" || string(m.Data) != `{"offset":1}` {
		t.Errorf("a publication of type gap: %+v", m)
	}
	if m := next(t, cl); m.Channel != "other" || m.Type != livehub.TypeRecovery || m.Recovery != nil || m.Raw == nil {
		t.Errorf("a publication of type recovery: %+v", m)
	}
}
