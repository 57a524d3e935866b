package livehub

// One open WebSocket connection: its reader goroutine (frames in, replies to
// the requests waiting for them, publications out), its writes (one at a
// time, each frame in one write), its keepalive pings and its close
// handshake. The Client above it reconnects; a wsConn never comes back.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// reply is the answer to a request: the frame, or the server's error.
type reply struct {
	raw json.RawMessage
	err error
}

// connConfig is what a connection takes from the client's options.
type connConfig struct {
	maxMessage   int64
	writeTimeout time.Duration
	pingInterval time.Duration // <= 0: no pings of our own
	pongTimeout  time.Duration
	// deliver hands a publication on, unless quit is closed first; false
	// stops the reader (the client or this connection is closing).
	deliver func(m Message, quit <-chan struct{}) bool
	// onError gets the server's error frames that answer no request.
	onError func(error)
	// onGap gets the server's "gap" frames (a history channel whose
	// publications stopped for this connection until it recovers).
	onGap func(conn *wsConn, channel string, offset uint64, epoch string)
}

// replyHook sees a request's reply on the reader goroutine, before any
// later frame is handled (quit: as for deliver). It runs even when the
// request no longer waits (its ctx ended), never when the connection ends
// first.
type replyHook func(raw json.RawMessage, err error, quit <-chan struct{})

// pendingRequest is a request waiting for its reply.
type pendingRequest struct {
	ch   chan reply // capacity 1
	hook replyHook  // nil: none
}

type wsConn struct {
	nc  net.Conn
	br  *bufio.Reader
	cfg connConfig

	writeMu   sync.Mutex
	closeSent bool // under writeMu
	wbuf      []byte

	nextID uint64 // atomic

	mu      sync.Mutex
	pending map[string]pendingRequest

	done     chan struct{} // closed once the reader ended and the socket is closed
	err      error         // why it ended; set before done is closed
	wg       sync.WaitGroup
	quit     chan struct{} // closed by close: a delivery waits no longer
	quitOnce sync.Once
}

func newConn(nc net.Conn, br *bufio.Reader, cfg connConfig) *wsConn {
	c := &wsConn{nc: nc, br: br, cfg: cfg, pending: map[string]pendingRequest{},
		done: make(chan struct{}), quit: make(chan struct{})}
	c.wg.Add(1)
	go c.readLoop()
	if cfg.pingInterval > 0 {
		c.wg.Add(1)
		go c.pingLoop()
	}
	return c
}

// wait blocks until the connection's goroutines have ended.
func (c *wsConn) wait() {
	<-c.done
	c.wg.Wait()
}

// readLoop reads until the connection ends, then fails what still waits.
func (c *wsConn) readLoop() {
	defer c.wg.Done()
	err := c.read()
	var pe *protocolError
	switch {
	case errors.As(err, &pe):
		// The server broke the protocol: say so with the matching code.
		c.sendClose(pe.code, pe.msg)
		err = &CloseError{Code: pe.code, Reason: pe.msg}
	case errors.Is(err, ErrClosed), errors.As(err, new(*CloseError)):
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && c.cfg.pingInterval > 0 {
			err = &CloseError{Code: CloseAbnormal, Reason: "no answer to pings"}
		} else {
			err = &CloseError{Code: CloseAbnormal, Reason: err.Error()}
		}
	}
	c.nc.Close()
	c.mu.Lock()
	c.err = err
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
}

func (c *wsConn) read() error {
	var extend func()
	if c.cfg.pingInterval > 0 {
		// Any frame (the pongs to our pings at least) proves the server is
		// there; nothing for this long means the connection is dead.
		extend = func() {
			c.nc.SetReadDeadline(time.Now().Add(c.cfg.pingInterval + c.cfg.pongTimeout)) //nolint:errcheck // then the read fails
		}
	}
	for {
		_, payload, err := readMessage(c.br, c.cfg.maxMessage, extend, c.control)
		if err != nil {
			return err
		}
		if !c.dispatch(payload) {
			return ErrClosed
		}
	}
}

// control answers the server's control frames: pings with pongs, a close
// with the close echoed back (then the reader ends with the close's code).
func (c *wsConn) control(op byte, payload []byte) error {
	switch op {
	case opPing:
		c.writeFrame(opPong, payload) //nolint:errcheck // a failed write ends the reader soon
	case opClose:
		code, reason, err := parseClose(payload)
		if err != nil {
			return err
		}
		c.sendClose(code, "")
		return &CloseError{Code: code, Reason: reason}
	}
	return nil
}

// inFrame is every server frame this client reads: a publication has a
// "channel"; replies and pongs have none.
type inFrame struct {
	Type    string          `json:"type"`
	Channel *string         `json:"channel"`
	ID      json.RawMessage `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
	Offset  uint64          `json:"offset"`
	Epoch   *string         `json:"epoch"`
	Tags    json.RawMessage `json:"tags"` // read by parseTags: a bad one costs the tags, not the publication
}

// dispatch handles one message; false when the client no longer takes
// publications.
func (c *wsConn) dispatch(payload []byte) bool {
	var f inFrame
	if err := json.Unmarshal(payload, &f); err != nil {
		c.cfg.onError(fmt.Errorf("livehub: unreadable frame from the server: %w", err))
		return true
	}
	if f.Channel != nil {
		if f.Type == "gap" && f.Epoch != nil && f.Data == nil && len(f.ID) == 0 {
			// No publication (those always have "data"): the server
			// stopped sending this channel until the client recovers.
			if c.cfg.onGap != nil {
				c.cfg.onGap(c, *f.Channel, f.Offset, *f.Epoch)
			}
			return true
		}
		// A publication: Data is the exact JSON text the server sent.
		return c.cfg.deliver(Message{Channel: *f.Channel, Type: f.Type, Data: f.Data, Offset: f.Offset,
			Tags: parseTags(f.Tags), Raw: payload}, c.quit)
	}
	var err error
	if f.Type == "error" {
		err = &Error{Code: f.Code, Message: f.Message}
	}
	if len(f.ID) == 0 {
		if err != nil {
			c.cfg.onError(err)
		}
		return true
	}
	c.mu.Lock()
	p, ok := c.pending[string(f.ID)]
	delete(c.pending, string(f.ID))
	c.mu.Unlock()
	if !ok {
		return true
	}
	if p.hook != nil {
		p.hook(payload, err, c.quit)
	}
	p.ch <- reply{raw: payload, err: err}
	return true
}

// parseTags reads a publication's "tags": nil when there are none, or when
// they are not an object of strings.
func parseTags(raw json.RawMessage) map[string]string {
	if len(raw) == 0 {
		return nil
	}
	var tags map[string]string
	if json.Unmarshal(raw, &tags) != nil || len(tags) == 0 {
		return nil
	}
	return tags
}

// request sends cmd with a fresh id and waits for its reply. A connection
// that ends first gives an error that is ErrConnectionLost.
func (c *wsConn) request(ctx context.Context, cmd *command) (json.RawMessage, error) {
	return c.requestHook(ctx, cmd, nil)
}

// requestHook is request with a hook that sees the reply on the reader
// goroutine (even after ctx ended).
func (c *wsConn) requestHook(ctx context.Context, cmd *command, hook replyHook) (json.RawMessage, error) {
	cmd.ID = atomic.AddUint64(&c.nextID, 1)
	key := strconv.FormatUint(cmd.ID, 10)
	text, err := encodeJSON(cmd)
	if err != nil {
		return nil, err
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return nil, &lostError{err}
	}
	c.pending[key] = pendingRequest{ch: ch, hook: hook}
	c.mu.Unlock()
	if err := c.writeFrame(opText, text); err != nil {
		c.forget(key)
		c.nc.Close() // a frame may be half written: this connection is done
		return nil, &lostError{err}
	}
	select {
	case r := <-ch:
		return r.raw, r.err
	case <-c.done:
		select {
		case r := <-ch: // answered just before the end
			return r.raw, r.err
		default:
		}
		return nil, &lostError{c.err}
	case <-ctx.Done():
		if hook == nil {
			c.forget(key)
		} // else the hook still gets the reply (ch has room for it)
		return nil, ctx.Err()
	}
}

func (c *wsConn) forget(key string) {
	c.mu.Lock()
	delete(c.pending, key)
	c.mu.Unlock()
}

// send writes cmd without an id: no reply on success.
func (c *wsConn) send(cmd *command) error {
	text, err := encodeJSON(cmd)
	if err != nil {
		return err
	}
	if err := c.writeFrame(opText, text); err != nil {
		c.nc.Close()
		return &lostError{err}
	}
	return nil
}

// writeFrame writes one masked frame, whole, within the write timeout.
func (c *wsConn) writeFrame(op byte, payload []byte) error {
	key, err := newMaskKey()
	if err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return errors.New("livehub: connection closing")
	}
	return c.writeLocked(op, payload, key)
}

func (c *wsConn) writeLocked(op byte, payload []byte, key [4]byte) error {
	c.wbuf = appendFrame(c.wbuf[:0], op, payload, key)
	if c.cfg.writeTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.cfg.writeTimeout)) //nolint:errcheck // then the write fails
	}
	_, err := c.nc.Write(c.wbuf)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil // keep no large buffer for a connection's life
	}
	return err
}

// sendClose starts (or answers) the close handshake, once.
func (c *wsConn) sendClose(code int, reason string) {
	key, err := newMaskKey()
	if err != nil {
		return
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return
	}
	c.closeSent = true
	c.writeLocked(opClose, closePayload(code, reason), key) //nolint:errcheck // the socket closes anyway
}

// close ends the connection from this side: a close frame, then up to
// timeout for the server's answer, then the socket. It returns once the
// connection's goroutines have ended.
func (c *wsConn) close(code int, reason string, timeout time.Duration) {
	c.quitOnce.Do(func() { close(c.quit) })
	c.sendClose(code, reason)
	t := time.NewTimer(timeout)
	select {
	case <-c.done:
	case <-t.C:
		c.nc.Close()
	}
	t.Stop()
	c.wait()
}

// pingLoop sends a ping every interval; the reader's deadline does the rest.
func (c *wsConn) pingLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.writeFrame(opPing, nil) != nil {
				return
			}
		}
	}
}

// lostError: the connection ended before the reply. It is ErrConnectionLost
// and unwraps to why the connection ended (often a *CloseError).
type lostError struct{ cause error }

func (e *lostError) Error() string {
	if e.cause == nil {
		return ErrConnectionLost.Error()
	}
	return ErrConnectionLost.Error() + ": " + e.cause.Error()
}
func (e *lostError) Is(target error) bool { return target == ErrConnectionLost }
func (e *lostError) Unwrap() error        { return e.cause }

// command is every command this client sends.
type command struct {
	Type    string            `json:"type"`
	Channel *string           `json:"channel,omitempty"` // present (even "") where the command has one
	Event   string            `json:"event,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
	Token   string            `json:"token,omitempty"`
	Info    json.RawMessage   `json:"info,omitempty"`
	Filter  json.RawMessage   `json:"filter,omitempty"`
	Since   *Position         `json:"since,omitempty"`
	Limit   *uint64           `json:"limit,omitempty"`
	ID      uint64            `json:"id,omitempty"`
}
