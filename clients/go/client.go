package livehub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options configure a Client. The zero value is a client that connects
// once, anonymously, and does not reconnect.
type Options struct {
	// APIKey makes the connection a trusted publisher (livehub.api-key),
	// sent as "Authorization: Bearer APIKey" with the upgrade: it may
	// publish to any channel, "*" included, with no rate limit.
	APIKey string
	// Header holds more headers for the upgrade request (e.g. Origin).
	Header http.Header

	// Token is a JWT sent in a "connect" command as soon as each
	// connection opens (servers with livehub.token-hmac-secret or
	// livehub.token-public-key require one). Connect and Refresh replace it.
	Token string
	// GetToken, if set, is asked for a fresh token before every connection
	// (Token is then unused) and to refresh the token before it expires.
	GetToken func(ctx context.Context) (string, error)

	// Reconnect makes the client reconnect, with exponential backoff and
	// jitter, after the connection drops or the server closes it, and
	// subscribe again to its channels. Never after a close with 4001
	// (unauthorized), nor after 4002 (token expired) without GetToken.
	// With Reconnect, Dial itself also retries until ctx ends.
	Reconnect bool
	// ReconnectDelay is the backoff's first delay (default 1 s);
	// MaxReconnectDelay its cap (default 30 s). After a close with 4029 the
	// client never reconnects sooner than 1 s.
	ReconnectDelay    time.Duration
	MaxReconnectDelay time.Duration
	// MaxReconnectAttempts is how many failed attempts in a row end the
	// client (0: no limit).
	MaxReconnectAttempts int

	// RequestTimeout bounds a command's wait for its reply where ctx has
	// no deadline (default 10 s; negative: no bound).
	RequestTimeout time.Duration
	// HandshakeTimeout bounds the TCP, TLS and HTTP upgrade (default 10 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each frame's write (default 10 s).
	WriteTimeout time.Duration
	// PingInterval is how often the client pings the server (default 30 s;
	// negative: never). A connection on which nothing arrives for
	// PingInterval + PongTimeout (default 30 s) counts as dead.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// MaxMessageSize bounds an incoming message (default 16 MiB); a
	// larger one closes the connection with 1009.
	MaxMessageSize int64

	// MessageBuffer is the capacity of the Messages channel (default 256).
	// When it is full the client stops reading the socket until the
	// application catches up (the server then closes a consumer that stays
	// too slow with 4008): publications are never dropped silently.
	MessageBuffer int
	// DiscardMessages drops every publication (for a connection that only
	// publishes, which still receives publications to "*").
	DiscardMessages bool

	// Info is the connection's presence info (any value encoding/json
	// marshals, at most 1 KiB), sent in a "connect" as each connection
	// opens. For servers without a token key; with one, only the token's
	// info claim counts, and a connect without a token is refused (4001).
	Info interface{}

	// TLSConfig is used for wss:// URLs.
	TLSConfig *tls.Config
	// DialContext opens the TCP connection (default: a net.Dialer).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// OnStateChange is called with every new state, and with the error that
	// caused it (for StateReconnecting and StateClosed), from the client's
	// own goroutine: it must return quickly and must not call Close.
	OnStateChange func(state State, err error)
	// OnError is called with errors that answer no call: error frames
	// without id, subscriptions refused when they were renewed after a
	// reconnect, failed token refreshes. It may be called from several
	// goroutines and must return quickly.
	OnError func(err error)
}

// State is where a Client stands.
type State int

const (
	StateConnecting   State = iota // the first connection is being made
	StateOpen                      // connected (and identified, with a token)
	StateReconnecting              // dropped; waiting or trying again
	StateClosed                    // for good: see Err
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateOpen:
		return "open"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Message is a publication received: Data is the exact JSON text the server
// sent (numbers keep their digits: decode it with json.Decoder.UseNumber or
// into your own types). Raw is the whole frame, for fields this package does
// not know.
//
// On a presence channel (livehub.presence-channels) the server's own
// publications arrive as Messages too: Type "join" when a connection
// subscribes (itself included) and "leave" when one unsubscribes or goes
// away, with Data {"client":..,"user":..,"info":..} (decode it into a
// ClientInfo).
//
// A Message with Recovery set is no publication but the client's notice
// that it could not recover a history channel after a reconnect or a gap
// (see TypeRecovery).
type Message struct {
	Channel string
	Type    string
	Data    json.RawMessage
	// Offset is the publication's place in its channel's stream (1, 2,
	// 3, ...) on a history channel (livehub.history-channels), 0 elsewhere.
	// With a tag filter, the offsets of the publications it kept away are
	// missing.
	Offset uint64
	// Tags are the publication's tags, nil when it has none (or, from a
	// server breaking the protocol, ones that are not an object of
	// strings: Raw has them as sent).
	Tags map[string]string
	Raw  json.RawMessage
	// Recovery is nil on publications. On the client's recovery notice
	// (Type TypeRecovery, Raw nil) it holds the server's answer:
	// Recovered false, and the stream's current Offset and Epoch.
	Recovery *SubscribeResult
}

// Session is the server's answer to the last successful connect (or
// refresh): the connection's id, the token's user ("" without tokens), and
// when the token expires (zero: never, or no token).
type Session struct {
	Client  string
	User    string
	Expires time.Time
}

// SubscribeOptions are the optional fields of a subscribe.
type SubscribeOptions struct {
	// Token is a subscription token (claims sub and channel, see
	// SubscriptionToken) for a channel the connection's own token does not
	// open.
	Token string
	// Filter lets through only the publications whose tags it matches
	// (Eq, And, ..., see Filter); the zero Filter is none. Every subscribe
	// the client makes for the channel (after a reconnect, after a gap)
	// carries it. On a channel subscribed already, SubscribeWith with
	// another Filter (or none) replaces it from the server's reply on.
	Filter Filter
	// Since recovers a history channel from a position the application
	// kept (the Offset of the last Message it handled and the Epoch of the
	// SubscribeResult): the server first sends every publication after it,
	// then replies. SubscribeResult.Recovered says whether it could. On a
	// channel without history the subscribe fails with code bad_command.
	Since *Position
}

// subscription is a channel the client subscribes to (again after each
// reconnect). token and filter never change; the rest is under Client.mu.
type subscription struct {
	token  string
	filter json.RawMessage

	// The position of the last publication delivered, on a history
	// channel: the since of the next recovery.
	hasPos bool
	pos    Position
	// recoveringOn is the connection on which a recovery after a gap is
	// under way (nil: none); gapAgain: another gap came meanwhile.
	recoveringOn *wsConn
	gapAgain     bool
}

// Client is a WebSocket connection to livehub that, with
// Options.Reconnect, survives drops. Its methods are safe for concurrent
// use. Publications arrive on Messages; read it, or set DiscardMessages.
type Client struct {
	url  string
	opts Options
	dial dialer
	info json.RawMessage // Options.Info, encoded

	ctx      context.Context // ends with Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	messages chan Message
	done     chan struct{} // closed when the client is closed for good
	rng      *rand.Rand    // jitter; used by the supervisor only

	refreshKick chan struct{} // the session changed: plan the refresh again

	mu      sync.Mutex
	conn    *wsConn       // the open connection, nil while there is none
	ready   chan struct{} // closed when a connection opens
	state   State
	subs    map[string]*subscription
	token   string
	session Session
	err     error // why the client is closed; set before done is closed
}

// Dial connects to the WebSocket URL (e.g. "ws://127.0.0.1:8080/ws") and
// returns a client once the connection is open (and identified, with a
// token). With Options.Reconnect it retries failed attempts until ctx ends
// or an attempt fails for good (unauthorized, HTTP 4xx other than 429).
// The returned client runs until Close, or until its connection ends for
// good; Close it in every case.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	if _, _, err := parseURL(url); err != nil {
		return nil, err
	}
	setDefaults(&opts)
	c := &Client{
		url:         url,
		opts:        opts,
		messages:    make(chan Message, opts.MessageBuffer),
		done:        make(chan struct{}),
		rng:         newRand(),
		refreshKick: make(chan struct{}, 1),
		ready:       make(chan struct{}),
		subs:        map[string]*subscription{},
		token:       opts.Token,
	}
	if opts.Info != nil {
		info, err := encodeJSON(opts.Info)
		if err != nil {
			return nil, fmt.Errorf("livehub: Info: %w", err)
		}
		c.info = info
	}
	c.dial = dialer{tlsConfig: opts.TLSConfig, dialContext: opts.DialContext, timeout: opts.HandshakeTimeout,
		header: opts.Header.Clone()}
	if opts.APIKey != "" {
		if c.dial.header == nil {
			c.dial.header = http.Header{}
		}
		c.dial.header.Set("Authorization", "Bearer "+opts.APIKey)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.setState(StateConnecting, nil)
	conn, err := c.firstConnection(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.wg.Add(1)
	go c.supervise(conn)
	return c, nil
}

// newRand is the source of the backoff's jitter (not of masking keys,
// which come from crypto/rand).
func newRand() *rand.Rand { return rand.New(rand.NewSource(time.Now().UnixNano())) }

func setDefaults(o *Options) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ReconnectDelay, time.Second)
	def(&o.MaxReconnectDelay, 30*time.Second)
	def(&o.RequestTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.PingInterval, 30*time.Second)
	def(&o.PongTimeout, 30*time.Second)
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 16 << 20
	}
	if o.MessageBuffer <= 0 {
		o.MessageBuffer = 256
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
}

// Messages returns the channel of publications received. It is closed when
// the client is closed for good (then Err says why).
func (c *Client) Messages() <-chan Message { return c.messages }

// Done is closed when the client is closed for good.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client is closed (ErrClosed after Close; a
// *CloseError with 4001 after the server refused the token; ...), or nil
// while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State returns the client's state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Session returns the answer to the last successful connect or refresh.
func (c *Client) Session() Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Close closes the connection (close code 1000) and stops reconnecting; it
// returns once every goroutine of the client has ended. Calls waiting for a
// reply get ErrClosed, and Messages is closed.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Subscribe subscribes to channel and returns once the server confirmed it
// (from then on every publication on channel arrives on Messages), or the
// server's *Error (code forbidden, bad_channel, ...). The client subscribes
// again after each reconnect (recovering what it missed on history
// channels). A connection lost before the reply is retried on the next one.
func (c *Client) Subscribe(ctx context.Context, channel string) error {
	_, err := c.SubscribeWith(ctx, channel, SubscribeOptions{})
	return err
}

// SubscribeWith is Subscribe with a subscription token, a tag filter or a
// position to recover from. On a history channel the result holds the
// stream's position as the server answered it (Recovered is nil without
// Since); elsewhere it is zero.
//
// On a channel subscribed already, so replaces the subscription's options
// (Subscribe: with none): with another Filter (the zero Filter: none), the
// server lets publications through by the new one from its reply on, and
// sends none from before it. When the server refuses it (e.g. code
// bad_command for a filter it does not take), the subscription stays as it
// was, with its previous options.
func (c *Client) SubscribeWith(ctx context.Context, channel string, so SubscribeOptions) (SubscribeResult, error) {
	sub := &subscription{token: so.Token}
	if !so.Filter.IsZero() {
		f, err := encodeJSON(so.Filter)
		if err != nil {
			return SubscribeResult{}, fmt.Errorf("livehub: filter: %w", err)
		}
		sub.filter = f
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return SubscribeResult{}, c.closedErr()
	}
	// Subscribed already to a history channel: publications go on from
	// where it stands. With the same filter the subscribe carries since (it
	// may be behind after a gap; what comes twice is dropped). With another
	// filter it does not, and the position becomes the reply's: nothing
	// from before the change is sent, now or by a later recovery. Unless a
	// gap is being recovered: the server then sends nothing more until a
	// subscribe with since.
	old := c.subs[channel]
	again := false
	if old != nil && old.hasPos {
		sub.hasPos, sub.pos = true, old.pos
		again = bytes.Equal(old.filter, sub.filter) || old.recoveringOn != nil
	}
	if so.Since != nil {
		sub.hasPos, sub.pos = true, *so.Since
	}
	c.subs[channel] = sub
	c.mu.Unlock()
	res, err := c.subscribe(ctx, channel, sub, so.Since != nil || again, so.Since == nil)
	if so.Since == nil {
		res.Recovered = nil
	}
	if err != nil {
		c.mu.Lock()
		if c.subs[channel] == sub {
			if old != nil && ErrorCode(err) != "" {
				// Refused (e.g. a filter the server does not take): a
				// refused command changes nothing, so the server keeps the
				// subscription it had, and so does the client.
				if so.Since == nil && sub.hasPos {
					old.hasPos, old.pos = true, sub.pos
				}
				c.subs[channel] = old
			} else {
				// Not subscribed: not renewed after a reconnect either.
				delete(c.subs, channel)
			}
		}
		c.mu.Unlock()
	}
	return res, err
}

// subscribe sends sub's subscribe (with since: from its position) and
// waits for the reply, on the next connection again if the connection is
// lost first (then from the position reached meanwhile). auto: a failed
// recovery is told on Messages (see positionHook).
func (c *Client) subscribe(ctx context.Context, channel string, sub *subscription, since, auto bool) (SubscribeResult, error) {
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	for {
		conn, err := c.waitOpen(ctx)
		if err != nil {
			return SubscribeResult{}, err
		}
		cmd := c.subscribeCommand(channel, sub, since)
		raw, err := conn.requestHook(ctx, cmd, c.positionHook(channel, sub, auto && cmd.Since != nil, cmd.Since != nil))
		if errors.Is(err, ErrConnectionLost) {
			if c.opts.Reconnect {
				continue
			}
			select {
			case <-c.done:
				return SubscribeResult{}, c.closedErr()
			case <-c.ctx.Done():
				return SubscribeResult{}, ErrClosed
			default:
			}
		}
		if err != nil {
			return SubscribeResult{}, err
		}
		return parseSubscribeResult(raw)
	}
}

// Unsubscribe ends the subscription to channel (not subscribed is no
// error) and returns once the server confirmed it: no publication of
// channel follows. While disconnected it returns at once (the next
// connection does not subscribe to it).
func (c *Client) Unsubscribe(ctx context.Context, channel string) error {
	c.mu.Lock()
	delete(c.subs, channel)
	conn, err := c.conn, c.err
	c.mu.Unlock()
	if err != nil {
		return c.closedErr()
	}
	if conn == nil {
		return nil
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	_, err = conn.request(ctx, &command{Type: "unsubscribe", Channel: &channel})
	if errors.Is(err, ErrConnectionLost) {
		return nil // the subscription ended with the connection
	}
	return err
}

// Publish publishes data (any value encoding/json marshals; a
// json.RawMessage is sent as it is) on channel as event type event, and
// returns once the server accepted it, or its *Error (forbidden where the
// connection may not publish there, rate_limited, ...). Not retried: a
// connection lost before the reply gives an error that is
// ErrConnectionLost, and the publication may or may not have been made.
func (c *Client) Publish(ctx context.Context, channel, event string, data interface{}) error {
	return c.PublishWith(ctx, Publication{Channel: channel, Event: event, Data: data})
}

// PublishWith is Publish of a Publication: with its Tags, if any (the
// server refuses more than 16, or keys or values over 64 bytes, with code
// bad_command).
func (c *Client) PublishWith(ctx context.Context, p Publication) error {
	cmd, err := publishCommand(p)
	if err != nil {
		return err
	}
	_, err = c.request(ctx, cmd, false)
	return err
}

// PublishNoReply sends a publication without an id: the server answers
// nothing when it succeeds, and an error frame without id (to
// Options.OnError) when it fails. It returns once the frame is written
// (waiting, within ctx, for a connection if there is none). This is the
// high-rate path of a trusted publisher; a later Ping confirms that
// everything before it took effect.
func (c *Client) PublishNoReply(ctx context.Context, channel, event string, data interface{}) error {
	return c.PublishNoReplyWith(ctx, Publication{Channel: channel, Event: event, Data: data})
}

// PublishNoReplyWith is PublishNoReply of a Publication, with its Tags.
func (c *Client) PublishNoReplyWith(ctx context.Context, p Publication) error {
	cmd, err := publishCommand(p)
	if err != nil {
		return err
	}
	conn, err := c.waitOpen(ctx)
	if err != nil {
		return err
	}
	return conn.send(cmd)
}

// Ping sends a ping and returns when the server's pong arrives: every
// command sent before it has then taken full effect.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.request(ctx, &command{Type: "ping"}, true)
	return err
}

// Connect identifies the connection with token (a JWT) and returns the
// server's answer. The token is kept: later connections connect with it
// (unless Options.GetToken gives fresh ones). A refused token is an *Error
// with code unauthorized; the server then closes the connection with 4001
// and the client is closed for good.
func (c *Client) Connect(ctx context.Context, token string) (Session, error) {
	raw, err := c.request(ctx, &command{Type: "connect", Token: token}, false)
	if err != nil {
		return Session{}, err
	}
	return c.identified(token, raw, false)
}

// Refresh replaces the connection's token with a new one for the same user
// (before the old one expires: then the server closes with 4002) and
// returns the new expiry. A token for another user, or one that fails
// verification, is refused with code unauthorized and a close with 4001.
func (c *Client) Refresh(ctx context.Context, token string) (Session, error) {
	raw, err := c.request(ctx, &command{Type: "refresh", Token: token}, false)
	if err != nil {
		return Session{}, err
	}
	return c.identified(token, raw, true)
}

// identified keeps token and the session of a connect's or refresh's ok.
func (c *Client) identified(token string, raw json.RawMessage, refresh bool) (Session, error) {
	var ok struct {
		Client  string `json:"client"`
		User    string `json:"user"`
		Expires int64  `json:"expires"`
	}
	if err := json.Unmarshal(raw, &ok); err != nil {
		return Session{}, fmt.Errorf("livehub: reply: %w", err)
	}
	c.mu.Lock()
	c.token = token
	if !refresh {
		c.session.Client, c.session.User = ok.Client, ok.User
	}
	c.session.Expires = time.Time{}
	if ok.Expires > 0 {
		c.session.Expires = time.Unix(ok.Expires, 0)
	}
	s := c.session
	c.mu.Unlock()
	select {
	case c.refreshKick <- struct{}{}:
	default:
	}
	return s, nil
}

func publishCommand(p Publication) (*command, error) {
	text, err := encodeJSON(p.Data)
	if err != nil {
		return nil, fmt.Errorf("livehub: data: %w", err)
	}
	return &command{Type: "publish", Channel: &p.Channel, Event: p.Event, Data: text, Tags: p.Tags}, nil
}

// subscribeCommand is sub's subscribe; with since (and a known position),
// a recovery from where sub stands.
func (c *Client) subscribeCommand(channel string, sub *subscription, since bool) *command {
	cmd := &command{Type: "subscribe", Channel: &channel, Token: sub.token, Filter: sub.filter}
	c.mu.Lock()
	if since && sub.hasPos {
		p := sub.pos
		cmd.Since = &p
	}
	c.mu.Unlock()
	return cmd
}

// requestContext applies RequestTimeout where ctx has no deadline.
func (c *Client) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.opts.RequestTimeout < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.RequestTimeout)
}

// request sends cmd on the open connection (waiting for one) and returns
// the reply. retry: a connection lost before the reply is tried again on
// the next (for commands that may safely be sent twice).
func (c *Client) request(ctx context.Context, cmd *command, retry bool) (json.RawMessage, error) {
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	for {
		conn, err := c.waitOpen(ctx)
		if err != nil {
			return nil, err
		}
		raw, err := conn.request(ctx, cmd)
		if retry && errors.Is(err, ErrConnectionLost) && c.opts.Reconnect {
			continue
		}
		if errors.Is(err, ErrConnectionLost) {
			// Closed meanwhile: say so rather than "lost".
			select {
			case <-c.done:
				return nil, c.closedErr()
			case <-c.ctx.Done():
				return nil, ErrClosed
			default:
			}
		}
		return raw, err
	}
}

// waitOpen returns the open connection, waiting within ctx for one.
func (c *Client) waitOpen(ctx context.Context) (*wsConn, error) {
	for {
		c.mu.Lock()
		conn, ready, err := c.conn, c.ready, c.err
		c.mu.Unlock()
		if err != nil {
			return nil, c.closedErr()
		}
		if conn != nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		case <-c.done:
		case <-ready:
		}
	}
}

// closedErr is what calls on a closed client return: ErrClosed, wrapping
// why the client closed when that was not Close.
func (c *Client) closedErr() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err == nil || errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	return &closedError{err}
}

type closedError struct{ cause error }

func (e *closedError) Error() string        { return ErrClosed.Error() + ": " + e.cause.Error() }
func (e *closedError) Is(target error) bool { return target == ErrClosed }
func (e *closedError) Unwrap() error        { return e.cause }

func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
	if c.opts.OnStateChange != nil {
		c.opts.OnStateChange(s, err)
	}
}

// deliver hands a publication to the application; false once the client
// (or the connection, quit) is closing.
func (c *Client) deliver(m Message, quit <-chan struct{}) bool {
	if m.Offset > 0 && c.seen(m.Channel, m.Offset) {
		return true // delivered already (or out of order): never twice
	}
	if !c.opts.DiscardMessages {
		select {
		case c.messages <- m:
		case <-c.ctx.Done():
			return false
		case <-quit:
			return false
		}
	}
	if m.Offset > 0 {
		c.advance(m.Channel, m.Offset)
	}
	return true
}
