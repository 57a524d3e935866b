package livehub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// API is a client of livehub's HTTP API: publishing (one publication or a
// batch), stats, the channel list, history, presence and the health probes. Its zero value is
// not usable: set URL, or use NewAPI. An API is safe for concurrent use.
//
// Requests are retried only where that cannot publish anything twice: GETs
// after a transport error or a 503, and publishes whose connection could
// not be made at all or that the server refused with 503 (livehub refuses a
// publication it cannot deliver; it never accepts and then drops one).
type API struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:8080".
	URL string
	// Key is the API key (livehub.api-key), sent as "Authorization: Bearer
	// Key". Empty: no header (a server without a key takes publishes from
	// loopback peers only).
	Key string
	// HTTPClient makes the requests; nil means a client with a 30 s timeout.
	// livehub keeps HTTP connections alive between requests (it closes one
	// left idle for livehub.http-idle-timeout, 5 s by default), so the
	// client's pool reuses them.
	HTTPClient *http.Client
	// MaxRetries is how many times a request that may safely be repeated is
	// tried again; 0 means 2, a negative value means never.
	MaxRetries int
}

// NewAPI returns an API for the server at baseURL with the given API key
// (empty for none).
func NewAPI(baseURL, key string) *API {
	return &API{URL: baseURL, Key: key}
}

// Publication is one publication: Data is any value encoding/json marshals
// (a json.RawMessage is sent as it is, digits and all), Event becomes the
// delivered frame's "type". Tags are optional: at most 16, keys and values
// at most 64 bytes (the server checks; code bad_command, HTTP 400), for
// subscribers' filters (see Filter), and delivered with the publication.
type Publication struct {
	Channel string
	Event   string
	Data    interface{}
	Tags    map[string]string
}

// PublishResult is the outcome of one element of a batch.
type PublishResult struct {
	OK      bool   `json:"ok"`
	Code    string `json:"code,omitempty"`
	Message string `json:"error,omitempty"`
}

// Err returns nil for a published element, else an *Error with its code.
func (r PublishResult) Err() error {
	if r.OK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// Stats is the answer of GET /api/stats (docs/protocol.md). Raw holds the
// whole object, for fields this package does not know yet.
type Stats struct {
	Connections             int64           `json:"connections"`
	Channels                int64           `json:"channels"`
	Subscriptions           int64           `json:"subscriptions"`
	ActorSubscriptions      int64           `json:"actor_subscriptions"`
	Published               int64           `json:"published"`
	Delivered               int64           `json:"delivered"`
	SlowConsumerDisconnects int64           `json:"slow_consumer_disconnects"`
	CommandErrors           int64           `json:"command_errors"`
	RejectedOrigin          int64           `json:"rejected_origin"`
	RejectedCapacity        int64           `json:"rejected_capacity"`
	RejectedRate            int64           `json:"rejected_rate"`
	UnauthorizedDisconnects int64           `json:"unauthorized_disconnects"`
	ExpiredDisconnects      int64           `json:"expired_disconnects"`
	RateLimitedDisconnects  int64           `json:"rate_limited_disconnects"`
	Raw                     json.RawMessage `json:"-"`
}

// ChannelInfo is a channel with its subscriber count (connections and
// application actors).
type ChannelInfo struct {
	Channel     string `json:"channel"`
	Subscribers int64  `json:"subscribers"`
}

// ChannelPage is one page of GET /api/channels. Next is the after of the
// next page, "" on the last page.
type ChannelPage struct {
	Channels []ChannelInfo
	Next     string
}

// Publish publishes data on channel as event type event (POST
// /api/publish). It returns nil once the server accepted the publication,
// else an *Error (Status 401 code "unauthorized", 400 "bad_channel", 503
// "unavailable", ...).
func (a *API) Publish(ctx context.Context, channel, event string, data interface{}) error {
	return a.PublishWith(ctx, Publication{Channel: channel, Event: event, Data: data})
}

// PublishWith is Publish of a Publication: with its Tags, if any.
func (a *API) PublishWith(ctx context.Context, p Publication) error {
	body, err := p.httpJSON()
	if err != nil {
		return err
	}
	_, err = a.do(ctx, http.MethodPost, "/api/publish", body, false)
	return err
}

// PublishBatch publishes every element in order with one request, and
// returns one result per element: the server judges each on its own, so
// some may be published and others not. The error is non-nil only when the
// request as a whole failed (an *Error such as 401, or a transport error).
func (a *API) PublishBatch(ctx context.Context, pubs []Publication) ([]PublishResult, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, p := range pubs {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := p.httpJSON()
		if err != nil {
			return nil, fmt.Errorf("livehub: publication %d: %w", i, err)
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	resp, err := a.do(ctx, http.MethodPost, "/api/publish", buf.Bytes(), false)
	if err != nil {
		return nil, err
	}
	var answer struct {
		Results []PublishResult `json:"results"`
	}
	if err := json.Unmarshal(resp, &answer); err != nil {
		return nil, fmt.Errorf("livehub: batch answer: %w", err)
	}
	if len(answer.Results) != len(pubs) {
		return nil, fmt.Errorf("livehub: batch answer has %d results for %d publications",
			len(answer.Results), len(pubs))
	}
	return answer.Results, nil
}

// Stats returns the server's figures (GET /api/stats).
func (a *API) Stats(ctx context.Context) (*Stats, error) {
	body, err := a.do(ctx, http.MethodGet, "/api/stats", nil, true)
	if err != nil {
		return nil, err
	}
	var s Stats
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("livehub: stats: %w", err)
	}
	s.Raw = body
	return &s, nil
}

// Channels returns one page of the channels that have subscribers, in
// bytewise name order, starting after the channel named after ("" for the
// first page); limit 0 means the server's default (100), at most 1000.
func (a *API) Channels(ctx context.Context, after string, limit int) (*ChannelPage, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/api/channels"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	body, err := a.do(ctx, http.MethodGet, path, nil, true)
	if err != nil {
		return nil, err
	}
	var page struct {
		Channels []ChannelInfo `json:"channels"`
		Next     *string       `json:"next"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("livehub: channels: %w", err)
	}
	out := &ChannelPage{Channels: page.Channels}
	if page.Next != nil {
		out.Next = *page.Next
	}
	return out, nil
}

// History returns the last limit publications of a history channel
// (livehub.history-channels), oldest first, with the stream's position
// (GET /api/history). limit is at most livehub.history-size; 0 gives only
// the position, a negative limit everything kept. A channel without
// history is an *Error with Status 400 and code bad_command.
func (a *API) History(ctx context.Context, channel string, limit int) (*HistoryPage, error) {
	q := url.Values{"channel": {channel}}
	if limit >= 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	body, err := a.do(ctx, http.MethodGet, "/api/history?"+q.Encode(), nil, true)
	if err != nil {
		return nil, err
	}
	return parseHistory(body)
}

// Presence returns the connections subscribed to a presence channel
// (livehub.presence-channels), one entry each (GET /api/presence). A
// channel without presence is an *Error with Status 400 and code
// bad_command.
func (a *API) Presence(ctx context.Context, channel string) ([]ClientInfo, error) {
	body, err := a.do(ctx, http.MethodGet, "/api/presence?"+url.Values{"channel": {channel}}.Encode(), nil, true)
	if err != nil {
		return nil, err
	}
	return parsePresence(body)
}

// Healthz returns nil while the server is up (GET /healthz answers 200).
// The probes are never retried: their answer is the point.
func (a *API) Healthz(ctx context.Context) error {
	_, err := a.once(ctx, http.MethodGet, "/healthz", nil)
	return err
}

// Readyz returns nil while the server can serve (GET /readyz answers 200),
// an *Error with Status 503 while it cannot.
func (a *API) Readyz(ctx context.Context) error {
	_, err := a.once(ctx, http.MethodGet, "/readyz", nil)
	return err
}

// httpJSON is the publication as POST /api/publish takes it.
func (p Publication) httpJSON() ([]byte, error) {
	return encodeJSON(struct {
		Channel string            `json:"channel"`
		Type    string            `json:"type"`
		Data    interface{}       `json:"data"`
		Tags    map[string]string `json:"tags,omitempty"`
	}{p.Channel, p.Event, p.Data, p.Tags})
}

// encodeJSON marshals v without encoding/json's HTML escaping (<, >, & in
// strings arrive as written) and without the trailing newline.
func encodeJSON(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// maxResponse bounds what is read of an answer (a channel page of 1000
// names of 255 bytes is about 300 KB).
const maxResponse = 8 << 20

// defaultHTTPClient keeps idle connections 4 s, less than livehub's
// http-idle-timeout (5 s by default): a POST never goes out on a connection
// the server is closing at that moment (Go does not retry a POST that fails
// so).
var defaultHTTPClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: func() http.RoundTripper {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.IdleConnTimeout = 4 * time.Second
		return t
	}(),
}

// do makes one request, with retries where safe, and returns the body of a
// 2xx answer or an *Error. idempotent: a GET that may be repeated after any
// failure; otherwise only failures that prove nothing was done are retried.
func (a *API) do(ctx context.Context, method, path string, body []byte, idempotent bool) ([]byte, error) {
	retries := a.MaxRetries
	if retries == 0 {
		retries = 2
	}
	delay := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		answer, err := a.once(ctx, method, path, body)
		if err == nil || attempt >= retries || !retryable(err, idempotent) {
			return answer, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func (a *API) once(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.URL, "/")+path, reader)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Key != "" {
		req.Header.Set("Authorization", "Bearer "+a.Key)
	}
	client := a.HTTPClient
	if client == nil {
		client = defaultHTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, httpError(resp.StatusCode, answer)
	}
	return answer, nil
}

// httpError reads an error answer: {"error":..., "code":...}, or a plain
// body (413, the probes).
func httpError(status int, body []byte) *Error {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return &Error{Status: status, Code: e.Code, Message: e.Error}
	}
	msg := e.Error
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200]
		}
	}
	return &Error{Status: status, Code: codeOfStatus(status), Message: msg}
}

func retryable(err error, idempotent bool) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if idempotent {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
