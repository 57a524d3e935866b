package livehub

// Making the tokens livehub verifies: HS256 JSON Web Tokens signed with the
// secret of --livehub.token-hmac-secret, as an application's backend hands
// them to its users.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ConnectionClaims are the claims of a connection token (docs/protocol.md,
// "Identity and authorization").
type ConnectionClaims struct {
	// Subject is the user (claim "sub", required).
	Subject string
	// ExpiresAt (claim "exp"): the server closes the connection with 4002
	// when it passes without a refresh. Zero: no exp, the token never
	// expires.
	ExpiresAt time.Time
	// NotBefore (claim "nbf"): refused before then. Zero: omitted.
	NotBefore time.Time
	// IssuedAt (claim "iat"). Zero: now.
	IssuedAt time.Time
	// Channels are the glob patterns of the channels the user may
	// subscribe to and read the history and presence of (claim
	// "channels"), e.g. "news", "user:42", "room:*".
	Channels []string
	// Publish are the patterns the user may publish to, beyond
	// livehub.client-publish (claim "publish").
	Publish []string
	// Info is any JSON, at most 1 KiB, shown in presence (claim "info").
	Info json.RawMessage
}

// maxTokenInfo is the largest info livehub takes (in a token or a connect).
const maxTokenInfo = 1024

// maxTokenSize is the longest token livehub takes.
const maxTokenSize = 8 * 1024

// ConnectionToken returns an HS256 JWT with claims, signed with secret
// (the server's livehub.token-hmac-secret): the token of a "connect"
// (Options.Token, Options.GetToken, Client.Connect).
func ConnectionToken(secret []byte, claims ConnectionClaims) (string, error) {
	if claims.Subject == "" {
		return "", errors.New("livehub: token: Subject (sub) is required")
	}
	if err := checkPatterns("Channels", claims.Channels); err != nil {
		return "", err
	}
	if err := checkPatterns("Publish", claims.Publish); err != nil {
		return "", err
	}
	var info json.RawMessage
	if claims.Info != nil {
		var buf bytes.Buffer
		if err := json.Compact(&buf, claims.Info); err != nil {
			return "", fmt.Errorf("livehub: token: Info is no valid JSON: %w", err)
		}
		if buf.Len() > maxTokenInfo {
			return "", fmt.Errorf("livehub: token: Info is %d bytes, at most %d", buf.Len(), maxTokenInfo)
		}
		info = buf.Bytes()
	}
	return signHS256(secret, struct {
		Sub      string          `json:"sub"`
		Exp      *int64          `json:"exp,omitempty"`
		Nbf      *int64          `json:"nbf,omitempty"`
		Iat      int64           `json:"iat"`
		Channels []string        `json:"channels,omitempty"`
		Publish  []string        `json:"publish,omitempty"`
		Info     json.RawMessage `json:"info,omitempty"`
	}{
		Sub:      claims.Subject,
		Exp:      unixOrNil(claims.ExpiresAt),
		Nbf:      unixOrNil(claims.NotBefore),
		Iat:      issuedAt(claims.IssuedAt),
		Channels: claims.Channels,
		Publish:  claims.Publish,
		Info:     info,
	})
}

// SubscriptionToken returns an HS256 JWT that lets the connection of user
// subject subscribe to channel (and read its history and presence) where
// its connection token does not: pass it as SubscribeOptions.Token.
// Claims sub, channel, exp (omitted when expiresAt is zero) and iat (now).
func SubscriptionToken(secret []byte, subject, channel string, expiresAt time.Time) (string, error) {
	if subject == "" {
		return "", errors.New("livehub: token: subject (sub) is required")
	}
	if channel == "" {
		return "", errors.New("livehub: token: channel is required")
	}
	return signHS256(secret, struct {
		Sub     string `json:"sub"`
		Channel string `json:"channel"`
		Exp     *int64 `json:"exp,omitempty"`
		Iat     int64  `json:"iat"`
	}{subject, channel, unixOrNil(expiresAt), issuedAt(time.Time{})})
}

// signHS256 is header.claims.signature, each part base64url without
// padding.
func signHS256(secret []byte, claims interface{}) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("livehub: token: empty secret")
	}
	payload, err := encodeJSON(claims)
	if err != nil {
		return "", fmt.Errorf("livehub: token: %w", err)
	}
	enc := base64.RawURLEncoding
	token := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(token))
	token += "." + enc.EncodeToString(mac.Sum(nil))
	if len(token) > maxTokenSize {
		return "", fmt.Errorf("livehub: token: %d bytes, livehub takes at most %d", len(token), maxTokenSize)
	}
	return token, nil
}

func checkPatterns(name string, patterns []string) error {
	for _, p := range patterns {
		if p == "" {
			return fmt.Errorf("livehub: token: an empty pattern in %s", name)
		}
	}
	return nil
}

func unixOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	s := t.Unix()
	return &s
}

func issuedAt(t time.Time) int64 {
	if t.IsZero() {
		return time.Now().Unix()
	}
	return t.Unix()
}
