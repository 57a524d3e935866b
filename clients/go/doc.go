// Package livehub is a Go client of livehub, the real-time WebSocket hub,
// for backends. It uses the standard library only.
//
// ConnectionToken and SubscriptionToken make the HS256 tokens (JWT) a
// server with livehub.token-hmac-secret verifies: what an application's
// handler gives its logged-in users.
//
// API speaks the HTTP API: Publish, PublishWith and PublishBatch (POST
// /api/publish; a Publication may carry tags), History, Presence, Stats,
// Channels, Healthz and Readyz. Errors the server answers are *Error
// values carrying the HTTP status and the protocol's code.
//
// Client is a WebSocket connection (RFC 6455, written here on net and
// net/http): Subscribe, Unsubscribe, Publish and Ping with ids and replies;
// SubscribeWith a tag Filter (Eq, In, And, ...) that every resubscription
// carries; PublishWith tags; Connect and Refresh with tokens; History,
// HistoryFiltered, Presence and PresenceStats; publications on a channel
// of Message whose Data is the exact JSON text the server sent (whose
// Offset is its place on a history channel, and Tags its tags); close
// codes as *CloseError values; optional reconnection with backoff that
// subscribes again, recovers what was missed on history channels (also
// after a gap, when Messages was read too slowly), and connects with a
// fresh token from Options.GetToken. When a history channel cannot be
// recovered, a Message with Type TypeRecovery says so in the place of what
// was lost. With Options.APIKey a Client is a trusted publisher: a
// backend's one connection for publishing at high rates.
//
// The wire protocol is docs/protocol.md of the livehub repository.
package livehub
