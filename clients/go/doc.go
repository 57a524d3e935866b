// Package livehub is a Go client of livehub, the real-time WebSocket hub,
// for backends. It uses the standard library only.
//
// API speaks the HTTP API: Publish and PublishBatch (POST /api/publish),
// Stats, Channels, Healthz and Readyz. Errors the server answers are
// *Error values carrying the HTTP status and the protocol's code.
//
// Client is a WebSocket connection (RFC 6455, written here on net and
// net/http): Subscribe, Unsubscribe, Publish and Ping with ids and replies;
// Connect and Refresh with tokens; publications on a channel of Message
// whose Data is the exact JSON text the server sent; close codes as
// *CloseError values; optional reconnection with backoff that subscribes
// again and connects with a fresh token from Options.GetToken. With
// Options.APIKey a Client is a trusted publisher: a backend's one
// connection for publishing at high rates.
//
// The wire protocol is docs/protocol.md of the livehub repository.
package livehub
