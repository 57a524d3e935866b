package livehub_test

// An in-process fake server for the framing tests: net/http's server
// hijacks the upgrade request, and each test then plays the server's side
// frame by frame (written here independently of the client's framing).

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeServer runs script on every WebSocket connection it accepts.
type fakeServer struct {
	*httptest.Server
	// requests gets each upgrade request's headers.
	requests chan http.Header
}

type script func(t *testing.T, c *fakeConn)

// newFakeServer serves upgrades on any path with script; respond, when
// set, answers instead of upgrading (to test refused upgrades).
func newFakeServer(t *testing.T, run script) *fakeServer {
	return newFakeServerWith(t, run, nil, false)
}

func newFakeServerWith(t *testing.T, run script, respond http.HandlerFunc, tls bool) *fakeServer {
	t.Helper()
	fs := &fakeServer{requests: make(chan http.Header, 16)}
	done := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case fs.requests <- r.Header.Clone():
		default:
		}
		if respond != nil {
			respond(w, r)
			return
		}
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
			r.Header.Get("Sec-WebSocket-Version") != "13" || r.Header.Get("Sec-WebSocket-Key") == "" {
			http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
			return
		}
		nc, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer nc.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\n\r\n", accept(r.Header.Get("Sec-WebSocket-Key")))
		if err := rw.Flush(); err != nil {
			return
		}
		c := &fakeConn{t: t, nc: nc, r: rw.Reader}
		run(t, c)
		// Stay until the client goes, or the test ends.
		select {
		case <-done:
		case <-c.closedByPeer():
		}
	})
	if tls {
		fs.Server = httptest.NewTLSServer(handler)
	} else {
		fs.Server = httptest.NewServer(handler)
	}
	t.Cleanup(func() {
		close(done)
		fs.CloseClientConnections()
		fs.Close()
	})
	return fs
}

func (fs *fakeServer) wsURL() string { return "ws" + strings.TrimPrefix(fs.URL, "http") + "/ws" }

func accept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// fakeConn is the server's side of one connection.
type fakeConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// clientFrame is a frame as the client sent it.
type clientFrame struct {
	fin     bool
	op      byte
	header  []byte // as on the wire, mask key excluded
	key     [4]byte
	payload []byte // unmasked
}

// readFrame reads one frame from the client, which must be masked.
func (c *fakeConn) readFrame() (clientFrame, error) {
	c.nc.SetReadDeadline(time.Now().Add(wait)) //nolint:errcheck // then the read fails
	var f clientFrame
	head := make([]byte, 2)
	if _, err := io.ReadFull(c.r, head); err != nil {
		return f, err
	}
	f.fin, f.op = head[0]&0x80 != 0, head[0]&0x0F
	if head[1]&0x80 == 0 {
		return f, fmt.Errorf("unmasked client frame")
	}
	n := uint64(head[1] & 0x7F)
	f.header = head
	switch n {
	case 126:
		ext := make([]byte, 2)
		if _, err := io.ReadFull(c.r, ext); err != nil {
			return f, err
		}
		f.header = append(f.header, ext...)
		n = uint64(binary.BigEndian.Uint16(ext))
	case 127:
		ext := make([]byte, 8)
		if _, err := io.ReadFull(c.r, ext); err != nil {
			return f, err
		}
		f.header = append(f.header, ext...)
		n = binary.BigEndian.Uint64(ext)
	}
	if _, err := io.ReadFull(c.r, f.key[:]); err != nil {
		return f, err
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= f.key[i%4]
	}
	return f, nil
}

// mustRead reads the next frame, skipping the client's keepalive pings.
func (c *fakeConn) mustRead() clientFrame {
	for {
		f, err := c.readFrame()
		if err != nil {
			c.t.Errorf("fake server: reading a frame: %v", err)
			return f
		}
		if f.op != 0x9 {
			return f
		}
	}
}

// writeRaw writes bytes as they are.
func (c *fakeConn) writeRaw(b []byte) {
	if _, err := c.nc.Write(b); err != nil {
		c.t.Errorf("fake server: write: %v", err)
	}
}

// serverFrame encodes a server frame (unmasked unless masked is set).
func serverFrame(fin bool, op byte, payload []byte, masked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	n := len(payload)
	switch {
	case n <= 125:
		out = append(out, maskBit|byte(n))
	case n <= 0xFFFF:
		out = append(out, maskBit|126, byte(n>>8), byte(n))
	default:
		out = append(out, maskBit|127)
		var ext [8]byte
		binary.BigEndian.PutUint64(ext[:], uint64(n))
		out = append(out, ext[:]...)
	}
	if masked {
		key := []byte{1, 2, 3, 4}
		out = append(out, key...)
		for i, b := range payload {
			out = append(out, b^key[i%4])
		}
		return out
	}
	return append(out, payload...)
}

func (c *fakeConn) write(fin bool, op byte, payload []byte) {
	c.writeRaw(serverFrame(fin, op, payload, false))
}

// publish sends a publication frame.
func (c *fakeConn) publish(channel, data string) {
	c.write(true, 0x1, []byte(fmt.Sprintf(`{"channel":%q,"type":"m","data":%s}`, channel, data)))
}

// closeWith sends a close frame with code and reason.
func (c *fakeConn) closeWith(code int, reason string) {
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	c.write(true, 0x8, append(p, reason...))
}

// closedByPeer is closed when the client has gone: it answers the client's
// close frame (the script's reads are over by then) or drops the TCP
// connection.
func (c *fakeConn) closedByPeer() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for {
			f, err := c.readFrame()
			if err != nil {
				return
			}
			if f.op == 0x8 {
				c.nc.Write(serverFrame(true, 0x8, f.payload, false)) //nolint:errcheck // it may be gone
				return
			}
		}
	}()
	return ch
}

// command reads the client's next command.
func (c *fakeConn) command() map[string]json.RawMessage {
	f := c.mustRead()
	var cmd map[string]json.RawMessage
	if err := json.Unmarshal(f.payload, &cmd); err != nil {
		c.t.Errorf("fake server: command %q: %v", f.payload, err)
	}
	return cmd
}
