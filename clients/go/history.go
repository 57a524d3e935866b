package livehub

// History, recovery and presence (docs/protocol.md, "History and recovery"
// and "Presence"): the history and presence commands, and the positions a
// Client keeps on history channels so that it recovers what it missed
// after a reconnect or a gap.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Position is a place in a history channel's stream: the offset of a
// publication (0: before the first) and the stream's epoch. Offsets mean
// something only with their epoch, which changes whenever the stream
// starts from nothing (e.g. the server restarted).
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// SubscribeResult is the server's answer to a subscribe on a history
// channel: the offset of the channel's last publication and its epoch, and
// with SubscribeOptions.Since whether every publication after it was sent
// (Recovered true) or not (false: the application must reload its state
// another way; live publications follow from Offset+1). Recovered is nil
// without Since, and the whole result is zero on other channels.
type SubscribeResult struct {
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered,omitempty"`
}

// TypeRecovery is the Type of the Message a Client puts on Messages when it
// resubscribed to a history channel by itself (after a reconnect, or after
// the server reported a gap because Messages was read too slowly) and the
// server could not send what was missed (it is no longer kept, or the
// stream's epoch changed): Recovery holds the answer (Recovered false,
// Offset, Epoch) and Data the same as JSON. Publications that were missed
// are lost; those after Recovery.Offset follow. Tell it from a
// publication whose event type happens to be "recovery" by Recovery being
// set (and Raw nil).
const TypeRecovery = "recovery"

// HistoryPage is the answer of a history request: the channel's last
// publications, oldest first (each with its Offset), and the stream's
// position (Offset: of the last publication, 0 when none).
type HistoryPage struct {
	Publications []Message
	Offset       uint64
	Epoch        string
}

// ClientInfo is a connection subscribed to a presence channel: its id
// (Session.Client of that connection), its user ("" when anonymous) and
// its info (from the token's info claim or a connect's Options.Info; nil
// when none).
type ClientInfo struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info"`
}

// History returns the last limit publications of a history channel
// (livehub.history-channels), oldest first, and its position. limit is at
// most livehub.history-size; 0 gives only the position, a negative limit
// everything kept. Allowed where subscribing is; on a channel without
// history the error has code bad_command. Where this connection subscribed
// to the channel with a Filter, the server applies it (see
// HistoryFiltered).
func (c *Client) History(ctx context.Context, channel string, limit int) (*HistoryPage, error) {
	return c.HistoryFiltered(ctx, channel, limit, Filter{})
}

// HistoryFiltered is History of the publications that filter lets through:
// the last limit of those. The zero Filter is as History: the server then
// applies the connection's subscription filter of the channel, if any.
func (c *Client) HistoryFiltered(ctx context.Context, channel string, limit int, filter Filter) (*HistoryPage, error) {
	n := uint64(maxHistoryLimit)
	if limit >= 0 && limit < maxHistoryLimit {
		n = uint64(limit)
	}
	cmd := &command{Type: "history", Channel: &channel, Limit: &n}
	if !filter.IsZero() {
		f, err := encodeJSON(filter)
		if err != nil {
			return nil, fmt.Errorf("livehub: filter: %w", err)
		}
		cmd.Filter = f
	}
	raw, err := c.request(ctx, cmd, true)
	if err != nil {
		return nil, err
	}
	return parseHistory(raw)
}

// maxHistoryLimit is the largest livehub.history-size.
const maxHistoryLimit = 100000

// Presence returns the connections subscribed to a presence channel
// (livehub.presence-channels), one entry each. Allowed where subscribing
// is; on a channel without presence the error has code bad_command.
func (c *Client) Presence(ctx context.Context, channel string) ([]ClientInfo, error) {
	raw, err := c.request(ctx, &command{Type: "presence", Channel: &channel}, true)
	if err != nil {
		return nil, err
	}
	return parsePresence(raw)
}

// PresenceStats returns how many connections are subscribed to a presence
// channel, and how many users they are (distinct non-empty users, plus one
// per anonymous connection).
func (c *Client) PresenceStats(ctx context.Context, channel string) (clients, users int, err error) {
	raw, err := c.request(ctx, &command{Type: "presence_stats", Channel: &channel}, true)
	if err != nil {
		return 0, 0, err
	}
	var stats struct {
		Clients int `json:"clients"`
		Users   int `json:"users"`
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		return 0, 0, fmt.Errorf("livehub: presence_stats reply: %w", err)
	}
	return stats.Clients, stats.Users, nil
}

// parseHistory reads {"publications":[...],"offset":O,"epoch":"E"}.
func parseHistory(raw []byte) (*HistoryPage, error) {
	var page struct {
		Publications []json.RawMessage `json:"publications"`
		Offset       uint64            `json:"offset"`
		Epoch        string            `json:"epoch"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, fmt.Errorf("livehub: history: %w", err)
	}
	out := &HistoryPage{Publications: make([]Message, 0, len(page.Publications)),
		Offset: page.Offset, Epoch: page.Epoch}
	for _, p := range page.Publications {
		var f struct {
			Channel string          `json:"channel"`
			Type    string          `json:"type"`
			Data    json.RawMessage `json:"data"`
			Offset  uint64          `json:"offset"`
			Tags    json.RawMessage `json:"tags"`
		}
		if err := json.Unmarshal(p, &f); err != nil {
			return nil, fmt.Errorf("livehub: history: %w", err)
		}
		out.Publications = append(out.Publications,
			Message{Channel: f.Channel, Type: f.Type, Data: f.Data, Offset: f.Offset, Tags: parseTags(f.Tags), Raw: p})
	}
	return out, nil
}

// parsePresence reads {"clients":[...]}.
func parsePresence(raw []byte) ([]ClientInfo, error) {
	var answer struct {
		Clients []ClientInfo `json:"clients"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, fmt.Errorf("livehub: presence: %w", err)
	}
	clients := make([]ClientInfo, 0, len(answer.Clients))
	for _, ci := range answer.Clients {
		if string(ci.Info) == "null" {
			ci.Info = nil
		}
		clients = append(clients, ci)
	}
	return clients, nil
}

// parseSubscribeResult reads a subscribe's ok (offset, epoch and recovered
// on history channels; nothing elsewhere).
func parseSubscribeResult(raw []byte) (SubscribeResult, error) {
	var r SubscribeResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return SubscribeResult{}, fmt.Errorf("livehub: subscribe reply: %w", err)
	}
	return r, nil
}

// positionHook keeps sub's position from the reply to its subscribe, on the
// reader goroutine (so before any publication after the reply). auto: a
// recovery the client made by itself, whose failure the application learns
// of through a TypeRecovery message. since: the subscribe carried since;
// the reply to one without is the position (after a filter change, from
// where the new filter applies).
func (c *Client) positionHook(channel string, sub *subscription, auto, since bool) replyHook {
	return func(raw json.RawMessage, err error, quit <-chan struct{}) {
		if err != nil {
			return
		}
		var r struct {
			SubscribeResult
			Epoch *string `json:"epoch"`
		}
		if json.Unmarshal(raw, &r) != nil || r.Epoch == nil {
			return // no history channel
		}
		r.SubscribeResult.Epoch = *r.Epoch
		now := Position{Offset: r.Offset, Epoch: *r.Epoch}
		lost := r.Recovered != nil && !*r.Recovered
		c.mu.Lock()
		if c.subs[channel] != sub {
			c.mu.Unlock()
			return
		}
		switch {
		case lost:
			// Nothing was sent from history: live from now.Offset+1.
			sub.pos = now
		case !since || !sub.hasPos || sub.pos.Epoch != now.Epoch:
			sub.pos = now
		default:
			// Recovered, or subscribed again: the publications delivered
			// so far say where the connection stands (some may still be on
			// their way after the reply).
		}
		sub.hasPos = true
		c.mu.Unlock()
		if lost && auto {
			res := r.SubscribeResult
			data, _ := json.Marshal(res)
			c.deliver(Message{Channel: channel, Type: TypeRecovery, Data: data, Recovery: &res}, quit)
		}
	}
}

// seen: a publication at offset of channel is not above the last one
// delivered. Within a stream offsets only grow, and the stream's epoch
// changes only with a recovery's reply, which sets the position.
func (c *Client) seen(channel string, offset uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.subs[channel]
	return s != nil && s.hasPos && offset <= s.pos.Offset
}

// advance notes that the publication at offset of channel was delivered.
func (c *Client) advance(channel string, offset uint64) {
	c.mu.Lock()
	if s := c.subs[channel]; s != nil && s.hasPos {
		s.pos.Offset = offset
	}
	c.mu.Unlock()
}

// onGap handles a gap frame of conn (on its reader goroutine): the server
// sends nothing more of channel until the client subscribes again with
// since, which a goroutine does (one at a time per channel and connection).
func (c *Client) onGap(conn *wsConn, channel string, offset uint64, epoch string) {
	c.mu.Lock()
	s := c.subs[channel]
	if s == nil {
		c.mu.Unlock()
		return // unsubscribed meanwhile
	}
	if s.hasPos && s.pos.Epoch == epoch {
		// Every publication up to offset was sent before the gap, and so
		// delivered (with a tag filter, some of them were not sent).
		if offset > s.pos.Offset {
			s.pos.Offset = offset
		}
	} else {
		s.hasPos, s.pos = true, Position{Offset: offset, Epoch: epoch}
	}
	if s.recoveringOn == conn {
		s.gapAgain = true // the recovery under way goes on after its reply
		c.mu.Unlock()
		return
	}
	s.recoveringOn, s.gapAgain = conn, false
	c.mu.Unlock()
	c.wg.Add(1)
	go c.recoverGap(conn, channel, s)
}

// recoverGap subscribes conn to channel again since the position reached,
// until no gap came during the last recovery. No timeout: a second
// recovery sent while the first one's publications are still on their way
// would have them sent twice. The connection ending ends it (the next
// connection recovers anyway).
func (c *Client) recoverGap(conn *wsConn, channel string, s *subscription) {
	defer c.wg.Done()
	done := func() {
		c.mu.Lock()
		if s.recoveringOn == conn {
			s.recoveringOn = nil
		}
		c.mu.Unlock()
	}
	for {
		c.mu.Lock()
		if c.subs[channel] != s || s.recoveringOn != conn {
			c.mu.Unlock()
			return
		}
		s.gapAgain = false
		c.mu.Unlock()
		cmd := c.subscribeCommand(channel, s, true)
		_, err := conn.requestHook(c.ctx, cmd, c.positionHook(channel, s, true, cmd.Since != nil))
		if ErrorCode(err) == CodeRateLimited {
			t := time.NewTimer(rateLimitedDelay)
			select {
			case <-t.C:
				continue
			case <-conn.done:
			case <-c.ctx.Done():
			}
			t.Stop()
			done()
			return
		}
		if err != nil {
			if ErrorCode(err) != "" {
				c.opts.OnError(fmt.Errorf("livehub: recovering %q after a gap: %w", channel, err))
			}
			done()
			return
		}
		c.mu.Lock()
		if _, ok := c.subs[channel]; !ok {
			// Unsubscribed while this subscribed again: unsubscribe, under
			// the lock, so that no Subscribe comes in between.
			conn.send(&command{Type: "unsubscribe", Channel: &channel}) //nolint:errcheck // a lost connection ends it too
		}
		again := s.gapAgain && s.recoveringOn == conn
		if !again && s.recoveringOn == conn {
			s.recoveringOn = nil
		}
		c.mu.Unlock()
		if !again {
			return
		}
	}
}
