package livehub

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// acceptGUID is the constant of RFC 6455 4.2.2 that the server appends to
// the key before hashing it into Sec-WebSocket-Accept.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is the Sec-WebSocket-Accept a server must answer to key.
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// dialer is what the handshake needs of the options.
type dialer struct {
	header      http.Header
	tlsConfig   *tls.Config
	dialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout     time.Duration
}

// handshake opens a TCP (or TLS) connection to rawURL (ws://, wss://, or
// http://, https:// for the same) and upgrades it. It returns the
// connection and the reader to go on reading frames from (it may hold bytes
// read past the response). A refused upgrade is an *Error with the
// response's status and code.
func (d *dialer) handshake(ctx context.Context, rawURL string) (net.Conn, *bufio.Reader, error) {
	u, secure, err := parseURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	dial := d.dialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	// Until the upgrade is done, ctx bounds every read and write: its end
	// interrupts them through the deadline.
	stop := make(chan struct{})
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case <-ctx.Done():
			nc.SetDeadline(time.Unix(1, 0)) //nolint:errcheck // best effort
		case <-stop:
		}
	}()
	nc, br, err := upgrade(ctx, nc, u, secure, d)
	close(stop)
	<-watcher
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, br, nil
}

// parseURL checks a WebSocket URL; secure: wss or https.
func parseURL(rawURL string) (*url.URL, bool, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, false, fmt.Errorf("livehub: bad URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "http":
		return u, false, nil
	case "wss", "https":
		return u, true, nil
	}
	return nil, false, fmt.Errorf("livehub: URL scheme %q is not ws, wss, http or https", u.Scheme)
}

func upgrade(ctx context.Context, nc net.Conn, u *url.URL, secure bool, d *dialer) (net.Conn, *bufio.Reader, error) {
	if deadline, ok := ctx.Deadline(); ok {
		nc.SetDeadline(deadline) //nolint:errcheck // checked by the reads
	}
	if secure {
		cfg := d.tlsConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nc, nil, err
		}
		nc = tc
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nc, nil, err
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       u.Host,
	}
	if req.URL.Path == "" {
		req.URL.Path = "/"
	}
	for k, vs := range d.header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := req.Write(nc); err != nil {
		return nc, nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nc, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nc, nil, httpError(resp.StatusCode, body)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		!headerHasToken(resp.Header, "Connection", "upgrade") {
		return nc, nil, errors.New("livehub: the server answered 101 without upgrading to websocket")
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return nc, nil, errors.New("livehub: the server's Sec-WebSocket-Accept does not match the key")
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return nc, nil, fmt.Errorf("livehub: the server chose extension %q, which was not offered", ext)
	}
	return nc, br, nil
}

// headerHasToken: one of the comma-separated values of header name is token
// (case-insensitive), e.g. "Connection: keep-alive, Upgrade".
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
