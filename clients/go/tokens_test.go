package livehub_test

// Tokens made by ConnectionToken and SubscriptionToken: read back by a
// verifier written here, and taken by the real server.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

// verifyHS256 checks token's HS256 signature with secret and returns its
// header and claims, as livehub would read them.
func verifyHS256(t *testing.T, secret []byte, token string) (header, claims map[string]json.RawMessage) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q: %d parts", token, len(parts))
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		t.Fatalf("token %q: bad signature (%v)", token, err)
	}
	decode := func(part string) map[string]json.RawMessage {
		b, err := base64.RawURLEncoding.DecodeString(part)
		if err != nil {
			t.Fatalf("part %q: %v", part, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("part %s: %v", b, err)
		}
		return m
	}
	return decode(parts[0]), decode(parts[1])
}

func TestConnectionTokenRoundTrip(t *testing.T) {
	secret := []byte("s3cret")
	exp := time.Unix(2000000000, 0)
	nbf := time.Unix(1700000000, 0)
	iat := time.Unix(1700000001, 0)
	token, err := livehub.ConnectionToken(secret, livehub.ConnectionClaims{
		Subject:   "alice",
		ExpiresAt: exp,
		NotBefore: nbf,
		IssuedAt:  iat,
		Channels:  []string{"news", "user:alice", "room:*"},
		Publish:   []string{"room:*"},
		Info:      json.RawMessage(`{ "name": "Alice", "id": 12345678901234567890 }`),
	})
	if err != nil {
		t.Fatal(err)
	}
	header, claims := verifyHS256(t, secret, token)
	if string(header["alg"]) != `"HS256"` || string(header["typ"]) != `"JWT"` || len(header) != 2 {
		t.Errorf("header %v", header)
	}
	want := map[string]string{
		"sub":      `"alice"`,
		"exp":      "2000000000",
		"nbf":      "1700000000",
		"iat":      "1700000001",
		"channels": `["news","user:alice","room:*"]`,
		"publish":  `["room:*"]`,
		"info":     `{"name":"Alice","id":12345678901234567890}`,
	}
	for k, v := range want {
		if string(claims[k]) != v {
			t.Errorf("claim %s = %s, want %s", k, claims[k], v)
		}
	}
	if len(claims) != len(want) {
		t.Errorf("claims %v", claims)
	}

	// Zero times are left out, except iat: now.
	token, err = livehub.ConnectionToken(secret, livehub.ConnectionClaims{Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	_, claims = verifyHS256(t, secret, token)
	var got int64
	if err := json.Unmarshal(claims["iat"], &got); err != nil || abs(got-time.Now().Unix()) > 5 {
		t.Errorf("iat %s", claims["iat"])
	}
	if len(claims) != 2 || string(claims["sub"]) != `"bob"` {
		t.Errorf("claims %v", claims)
	}
}

func TestSubscriptionTokenRoundTrip(t *testing.T) {
	secret := []byte("s3cret")
	token, err := livehub.SubscriptionToken(secret, "alice", "room:42", time.Unix(2000000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, claims := verifyHS256(t, secret, token)
	if string(claims["sub"]) != `"alice"` || string(claims["channel"]) != `"room:42"` ||
		string(claims["exp"]) != "2000000000" || claims["iat"] == nil || len(claims) != 4 {
		t.Errorf("claims %v", claims)
	}
	token, err = livehub.SubscriptionToken(secret, "alice", "room:42", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, claims := verifyHS256(t, secret, token); claims["exp"] != nil {
		t.Errorf("exp %s for a zero expiry", claims["exp"])
	}
}

func TestTokenArgumentsAreChecked(t *testing.T) {
	secret := []byte("s")
	big := json.RawMessage(`"` + strings.Repeat("x", 1023) + `"`) // 1025 bytes
	for name, claims := range map[string]livehub.ConnectionClaims{
		"no subject":    {},
		"info too big":  {Subject: "a", Info: big},
		"info not JSON": {Subject: "a", Info: json.RawMessage(`{"a":`)},
		"empty pattern": {Subject: "a", Channels: []string{"news", ""}},
		"empty publish": {Subject: "a", Publish: []string{""}},
		"too long":      {Subject: strings.Repeat("a", 9000)},
	} {
		if _, err := livehub.ConnectionToken(secret, claims); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := livehub.ConnectionToken(nil, livehub.ConnectionClaims{Subject: "a"}); err == nil {
		t.Error("empty secret: no error")
	}
	// 1 KiB exactly, once compacted, is fine.
	fits := json.RawMessage(`  "` + strings.Repeat("x", 1022) + `"  `)
	if _, err := livehub.ConnectionToken(secret, livehub.ConnectionClaims{Subject: "a", Info: fits}); err != nil {
		t.Errorf("info of 1024 bytes: %v", err)
	}
	if _, err := livehub.SubscriptionToken(secret, "", "c", time.Time{}); err == nil {
		t.Error("subscription token without subject: no error")
	}
	if _, err := livehub.SubscriptionToken(secret, "a", "", time.Time{}); err == nil {
		t.Error("subscription token without channel: no error")
	}
}

func TestTokensAreAcceptedByTheServer(t *testing.T) {
	checkGoroutines(t)
	const secret = "server-secret"
	srv := startChat(t, "--livehub.api-key="+apiKey, "--livehub.token-hmac-secret="+secret,
		"--livehub.public-channels=[]", `--livehub.presence-channels=["p:*"]`)
	ctx := testContext(t)
	api := livehub.NewAPI(srv.httpURL(), apiKey)
	expires := time.Now().Add(time.Hour)
	token, err := livehub.ConnectionToken([]byte(secret), livehub.ConnectionClaims{
		Subject: "alice", ExpiresAt: expires, Channels: []string{"news", "p:*"},
		Info: json.RawMessage(`{"name":"Alice"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.wsURL(), livehub.Options{Token: token})
	if s := c.Session(); s.User != "alice" || s.Client == "" || s.Expires.Unix() != expires.Unix() {
		t.Errorf("session %+v", s)
	}
	if err := c.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	// The token's info is the connection's presence info.
	if err := c.Subscribe(ctx, "p:lobby"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c); m.Type != "join" || !bytes.Contains(m.Data, []byte(`"info":{"name":"Alice"}`)) {
		t.Errorf("join %s %s", m.Type, m.Data)
	}
	who, err := c.Presence(ctx, "p:lobby")
	if err != nil || len(who) != 1 || who[0].User != "alice" || string(who[0].Info) != `{"name":"Alice"}` {
		t.Errorf("presence %+v %v", who, err)
	}

	// A channel outside the token's channels needs a subscription token.
	if err := c.Subscribe(ctx, "private:7"); livehub.ErrorCode(err) != livehub.CodeForbidden {
		t.Errorf("without a subscription token: %v, want forbidden", err)
	}
	for _, bad := range []struct{ secret, user, channel string }{
		{secret, "bob", "private:7"},    // another user's
		{secret, "alice", "private:8"},  // another channel's
		{"wrong", "alice", "private:7"}, // badly signed
	} {
		st, err := livehub.SubscriptionToken([]byte(bad.secret), bad.user, bad.channel, expires)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SubscribeWith(ctx, "private:7", livehub.SubscribeOptions{Token: st}); livehub.ErrorCode(err) != livehub.CodeForbidden {
			t.Errorf("subscription token %+v: %v, want forbidden", bad, err)
		}
	}
	st, err := livehub.SubscriptionToken([]byte(secret), "alice", "private:7", expires)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubscribeWith(ctx, "private:7", livehub.SubscribeOptions{Token: st}); err != nil {
		t.Fatalf("with a subscription token: %v", err)
	}
	if err := api.Publish(ctx, "private:7", "m", json.RawMessage(`{"n":12345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	if m := next(t, c); m.Channel != "private:7" || string(m.Data) != `{"n":12345678901234567890}` {
		t.Errorf("received %+v", m)
	}

	// Signed with another secret: unauthorized, closed with 4001.
	wrong, err := livehub.ConnectionToken([]byte("not-the-secret"), livehub.ConnectionClaims{Subject: "mallory"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = livehub.Dial(ctx, srv.wsURL(), livehub.Options{Token: wrong})
	var ce *livehub.CloseError
	if !errors.As(err, &ce) || ce.Code != livehub.CloseUnauthorized {
		t.Errorf("wrong secret: %v, want a close with 4001", err)
	}
	// By hand: the connect's error has code unauthorized.
	byHand := dial(t, srv.wsURL(), livehub.Options{})
	if _, err := byHand.Connect(ctx, wrong); livehub.ErrorCode(err) != livehub.CodeUnauthorized {
		t.Errorf("connect with a wrong token: %v", err)
	}
	if err := closedFor(t, byHand); livehub.CloseCode(err) != livehub.CloseUnauthorized {
		t.Errorf("closed with %v, want 4001", err)
	}
	// Expired: refused too.
	old, err := livehub.ConnectionToken([]byte(secret), livehub.ConnectionClaims{Subject: "alice",
		IssuedAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := livehub.Dial(ctx, srv.wsURL(), livehub.Options{Token: old}); livehub.CloseCode(err) != livehub.CloseUnauthorized {
		t.Errorf("expired token: %v, want a close with 4001", err)
	}
	// Not yet valid: refused.
	early, err := livehub.ConnectionToken([]byte(secret), livehub.ConnectionClaims{Subject: "alice",
		NotBefore: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := livehub.Dial(ctx, srv.wsURL(), livehub.Options{Token: early}); livehub.CloseCode(err) != livehub.CloseUnauthorized {
		t.Errorf("token not yet valid: %v, want a close with 4001", err)
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
