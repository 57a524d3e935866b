package livehub

// The client's life across connections: opening one (upgrade, connect with
// a token, subscribe again to every channel), watching it, and after it
// ends deciding between reconnecting (with backoff) and stopping for good;
// and refreshing the token before it expires.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// firstConnection makes Dial's attempts: one, or with Reconnect as many as
// ctx allows.
func (c *Client) firstConnection(ctx context.Context) (*wsConn, error) {
	for attempt := 0; ; attempt++ {
		conn, err := c.open(ctx)
		if err == nil {
			c.setState(StateOpen, nil)
			return conn, nil
		}
		if !c.opts.Reconnect || c.final(err) || ctx.Err() != nil ||
			(c.opts.MaxReconnectAttempts > 0 && attempt >= c.opts.MaxReconnectAttempts) {
			return nil, err
		}
		t := time.NewTimer(c.backoff(attempt, CloseCode(err), 1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// supervise watches each connection and replaces it when it ends, until
// the client is closed or a connection ends for good.
func (c *Client) supervise(conn *wsConn) {
	defer c.wg.Done()
	lastCode, streak := 0, 0
	for {
		opened := time.Now()
		if c.opts.GetToken != nil {
			c.wg.Add(1)
			go c.refresher(conn)
		}
		var err error
		select {
		case <-conn.done:
			err = conn.err
		case <-c.ctx.Done():
			conn.close(CloseNormal, "", time.Second)
		}
		conn.wait()
		c.mu.Lock()
		c.conn = nil
		c.ready = make(chan struct{})
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return
		}
		if !c.opts.Reconnect || c.final(err) {
			c.finish(err)
			return
		}
		code := CloseCode(err)
		if time.Since(opened) > streakReset {
			lastCode, streak = 0, 0 // a connection that lasted starts afresh
		}
		if code == lastCode {
			streak++
		} else {
			lastCode, streak = code, 1
		}
		c.setState(StateReconnecting, err)
		conn, err = c.reconnect(code, streak)
		if err != nil {
			c.finish(err)
			return
		}
	}
}

// reconnect tries until a connection opens, the client closes, an attempt
// fails for good or MaxReconnectAttempts is reached.
func (c *Client) reconnect(code, streak int) (*wsConn, error) {
	for attempt := 0; ; attempt++ {
		t := time.NewTimer(c.backoff(attempt, code, streak))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
		conn, err := c.open(c.ctx)
		if err == nil {
			c.setState(StateOpen, nil)
			return conn, nil
		}
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if c.final(err) || (c.opts.MaxReconnectAttempts > 0 && attempt+1 >= c.opts.MaxReconnectAttempts) {
			return nil, err
		}
		c.setState(StateReconnecting, err)
		code = CloseCode(err)
	}
}

// streakReset: a connection that lasted this long was a success; the
// closes before it no longer count towards the backoff.
const streakReset = time.Minute

// rateLimitedDelay: after a close with 4029 the server wants the client to
// slow down, so it never reconnects sooner, whatever the options say.
const rateLimitedDelay = time.Second

// backoff is the delay before attempt (0-based) after a close with code,
// the streak-th close with that code in a row: exponential, capped, with
// up to half of it removed at random so that many clients dropped at once
// do not come back at once.
func (c *Client) backoff(attempt, code, streak int) time.Duration {
	if code == CloseTokenExpired && streak == 1 && attempt == 0 {
		return 0 // at once, with a fresh token
	}
	n := attempt
	if streak-1 > n {
		n = streak - 1
	}
	d := c.opts.ReconnectDelay
	for i := 0; i < n && d < c.opts.MaxReconnectDelay; i++ {
		d *= 2
	}
	if d > c.opts.MaxReconnectDelay {
		d = c.opts.MaxReconnectDelay
	}
	d -= time.Duration(c.rng.Float64() * 0.5 * float64(d))
	if code == CloseRateLimited && d < rateLimitedDelay {
		d = rateLimitedDelay
	}
	return d
}

// final: err ends the client rather than calling for another attempt.
func (c *Client) final(err error) bool {
	switch CloseCode(err) {
	case CloseUnauthorized:
		return true
	case CloseTokenExpired:
		// A fixed token would be refused as expired: as final as 4001.
		return c.opts.GetToken == nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Code == CodeUnauthorized {
			return true
		}
		// A refused upgrade: only "too many" and "unavailable" may pass.
		return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests
	}
	return false
}

// open makes one connection attempt: the upgrade, the connect with a token
// (where there is one), and the subscriptions renewed. The connection it
// returns is not yet the client's: opened makes it so.
func (c *Client) open(ctx context.Context) (*wsConn, error) {
	token, err := c.connectToken(ctx)
	if err != nil {
		return nil, err
	}
	nc, br, err := c.dial.handshake(ctx, c.url)
	if err != nil {
		return nil, err
	}
	conn := newConn(nc, br, connConfig{
		maxMessage:   c.opts.MaxMessageSize,
		writeTimeout: c.opts.WriteTimeout,
		pingInterval: c.opts.PingInterval,
		pongTimeout:  c.opts.PongTimeout,
		deliver:      c.deliver,
		onError:      c.opts.OnError,
		onGap:        c.onGap,
	})
	fail := func(err error) (*wsConn, error) {
		conn.close(CloseNormal, "", time.Second)
		return nil, err
	}
	rctx, cancel := c.requestContext(ctx)
	defer cancel()
	if token != "" || c.info != nil {
		raw, err := conn.request(rctx, &command{Type: "connect", Token: token, Info: c.info})
		switch ErrorCode(err) {
		case "":
			if err != nil {
				return fail(err)
			}
			if _, err := c.identified(token, raw, false); err != nil {
				return fail(err)
			}
		case CodeUnauthorized:
			// The server closes with 4001 right after: report that close
			// where it comes in time; the refusal is final either way.
			t := time.NewTimer(2 * time.Second)
			select {
			case <-conn.done:
				if CloseCode(conn.err) == CloseUnauthorized {
					err = conn.err
				}
			case <-t.C:
			}
			t.Stop()
			return fail(err)
		case CodeUnknownCommand:
			// A server of protocol version 1: no identities, every command
			// allowed without connect. Go on anonymously.
			c.opts.OnError(err)
		default:
			return fail(err)
		}
	}
	if err := c.resubscribe(rctx, conn); err != nil {
		return fail(err)
	}
	return conn, nil
}

// connectToken is the token for a new connection: a fresh one from
// GetToken, else the last one given.
func (c *Client) connectToken(ctx context.Context) (string, error) {
	if c.opts.GetToken == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.token, nil
	}
	tctx, cancel := c.requestContext(ctx)
	defer cancel()
	token, err := c.opts.GetToken(tctx)
	if err != nil {
		return "", fmt.Errorf("livehub: GetToken: %w", err)
	}
	return token, nil
}

// resubscribe subscribes conn to every channel of the client, all at once,
// and waits for the replies; history channels recover from the position
// reached (the publications missed arrive before the reply). A channel the
// server refuses now is dropped (and reported to OnError); a lost
// connection fails the attempt.
func (c *Client) resubscribe(ctx context.Context, conn *wsConn) error {
	c.mu.Lock()
	subs := make(map[string]*subscription, len(c.subs))
	for ch, s := range c.subs {
		subs[ch] = s
	}
	c.mu.Unlock()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lost error
	)
	for ch, s := range subs {
		wg.Add(1)
		go func(ch string, s *subscription) {
			defer wg.Done()
			cmd := c.subscribeCommand(ch, s, true)
			_, err := conn.requestHook(ctx, cmd, c.positionHook(ch, s, true, cmd.Since != nil))
			if cmd.Since != nil && ErrorCode(err) == CodeBadCommand {
				// No history channel any more (the server's settings
				// changed): subscribe without recovering.
				c.opts.OnError(fmt.Errorf("livehub: recovering %q: %w", ch, err))
				c.mu.Lock()
				s.hasPos = false
				c.mu.Unlock()
				_, err = conn.requestHook(ctx, c.subscribeCommand(ch, s, false), c.positionHook(ch, s, true, false))
			}
			var refused *Error
			switch {
			case err == nil:
			case errors.As(err, &refused):
				c.mu.Lock()
				if c.subs[ch] == s {
					delete(c.subs, ch)
				}
				c.mu.Unlock()
				c.opts.OnError(fmt.Errorf("livehub: subscribing again to %q: %w", ch, err))
			default:
				mu.Lock()
				lost = err
				mu.Unlock()
			}
		}(ch, s)
	}
	wg.Wait()
	if lost != nil {
		return lost
	}
	// Make conn the client's. Channels unsubscribed while this attempt
	// subscribed them are unsubscribed here, under the lock, so that no
	// Subscribe or Unsubscribe of the application comes in between.
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range subs {
		if _, ok := c.subs[ch]; !ok {
			if err := conn.send(&command{Type: "unsubscribe", Channel: &ch}); err != nil {
				return err
			}
		}
	}
	c.conn = conn
	close(c.ready)
	return nil
}

// finish closes the client for good with err.
func (c *Client) finish(err error) {
	c.mu.Lock()
	c.err = err
	c.conn = nil
	c.mu.Unlock()
	close(c.messages) // no reader is left to send to it
	close(c.done)
	c.setState(StateClosed, err)
}

// Token refresh: at 90 % of the token's remaining lifetime, and at least
// refreshMargin before it expires, so that GetToken (often a request to the
// application's backend) and the round trip fit in before the server
// closes with 4002; never sooner than minRefreshDelay, so that a clock far
// off or tokens that are already due cannot make a tight loop.
const (
	refreshMargin   = 10 * time.Second
	minRefreshDelay = time.Second
)

func refreshDelay(remaining time.Duration) time.Duration {
	d := remaining - remaining/10 // 90 %
	if remaining-d < refreshMargin {
		d = remaining - refreshMargin
	}
	if d < minRefreshDelay {
		d = minRefreshDelay
	}
	return d
}

// refresher refreshes conn's token from GetToken before it expires, for as
// long as conn lives.
func (c *Client) refresher(conn *wsConn) {
	defer c.wg.Done()
	failures := 0
	for {
		c.mu.Lock()
		expires := c.session.Expires
		c.mu.Unlock()
		var fire <-chan time.Time
		var timer *time.Timer
		if !expires.IsZero() {
			d := refreshDelay(time.Until(expires))
			if failures > 0 {
				// Try again sooner than planned, backing off.
				retry := minRefreshDelay << uint(failures-1)
				if retry < d {
					d = retry
				}
			}
			timer = time.NewTimer(d)
			fire = timer.C
		}
		fired := false
		select {
		case <-conn.done:
		case <-c.ctx.Done():
		case <-c.refreshKick: // the session changed: plan again
		case <-fire:
			fired = true
		}
		if timer != nil {
			timer.Stop()
		}
		select {
		case <-conn.done:
			return
		case <-c.ctx.Done():
			return
		default:
		}
		if !fired {
			continue
		}
		if err := c.refreshOn(conn); err != nil {
			if failures < 6 {
				failures++
			}
			c.opts.OnError(fmt.Errorf("livehub: token refresh: %w", err))
			continue
		}
		failures = 0
	}
}

func (c *Client) refreshOn(conn *wsConn) error {
	ctx, cancel := c.requestContext(c.ctx)
	defer cancel()
	token, err := c.opts.GetToken(ctx)
	if err != nil {
		return fmt.Errorf("GetToken: %w", err)
	}
	raw, err := conn.request(ctx, &command{Type: "refresh", Token: token})
	if err != nil {
		return err
	}
	_, err = c.identified(token, raw, true)
	return err
}
