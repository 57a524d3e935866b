// hub_config: every setting of a hub and its server, with the seed hub's
// defaults, and the CAF option names (`livehub.*`) that set them. The defaults
// are written only here: the table in transport/config.cpp derives the
// options, their help and their validation from these fields, and
// tests/config_test.cpp checks docs/configuration.md against it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/config_option_set.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include "livehub/http.hpp"
#include "livehub/identity.hpp"
#include "livehub/observer.hpp"

namespace livehub {

struct publication;

/// All settings of a hub and of the server that binds it to a port. Each field
/// has a CAF option `livehub.<name>`; the name is given in its comment. The
/// server (server::start) reads every setting except those read by the hub
/// (spawn_hub), whose comments say so.
struct hub_config {
  // -- network -------------------------------------------------------------

  /// `livehub.host`: address the server binds to.
  std::string host = "127.0.0.1";

  /// `livehub.port`: TCP port; 0 picks a free one (see server::port()).
  uint16_t port = 8080;

  /// `livehub.path`: the WebSocket upgrade path.
  std::string path = "/ws";

  /// `livehub.web-root`: directory served as static files; empty: none.
  std::string web_root;

  // -- keepalive -----------------------------------------------------------

  /// `livehub.ping-interval`: a WebSocket ping is sent this often.
  caf::timespan ping_interval = std::chrono::seconds(54);

  /// `livehub.pong-timeout`: a connection that answers no ping within this
  /// time is closed.
  caf::timespan pong_timeout = std::chrono::seconds(60);

  /// `livehub.write-timeout`: a connection whose queued frames make no
  /// progress for this long is closed (4008).
  caf::timespan write_timeout = std::chrono::seconds(10);

  // -- HTTP keep-alive -----------------------------------------------------

  /// `livehub.http-idle-timeout`: how long a kept-alive HTTP connection may
  /// wait for its next request's first byte; then the server closes it.
  caf::timespan http_idle_timeout = std::chrono::seconds(5);

  /// `livehub.http-max-requests`: plain HTTP requests one connection may
  /// carry; the response to the last one says `Connection: close` and the
  /// connection closes. 1 turns keep-alive off.
  size_t http_max_requests = 1000;

  // -- limits --------------------------------------------------------------

  /// `livehub.max-message-size`: largest incoming message (bytes, after
  /// reassembling fragments) and HTTP publish body; larger: close 1009 / 413.
  size_t max_message_size = 512 * 1024;

  /// `livehub.send-queue-limit`: frames queued for one connection before it
  /// counts as a slow consumer and is closed with 4008.
  size_t send_queue_limit = 256;

  /// `livehub.send-queue-bytes`: bytes queued for one connection before it
  /// counts as a slow consumer and is closed with 4008.
  size_t send_queue_bytes = 16 * 1024 * 1024;

  /// `livehub.max-subscriptions`: channels one connection may subscribe to;
  /// more: error `too_many_subscriptions`. Read by the hub (spawn_hub), whose
  /// client actors enforce it for every server bound to it.
  size_t max_subscriptions = 1024;

  /// `livehub.max-connections`: open WebSocket connections; more: HTTP 503.
  /// Capped at run time by the process's open-file limit (less a reserve).
  size_t max_connections = 50000;

  /// `livehub.max-pending-commands`: commands of one connection received but
  /// not yet processed; past it the server stops reading that connection
  /// until its client actor catches up (TCP pushes back).
  size_t max_pending_commands = 64;

  // -- security ------------------------------------------------------------

  /// `livehub.allowed-origins`: browser origins allowed to connect and to
  /// publish over HTTP, e.g. ["https://app.example.com"]; ["*"] allows all.
  /// Empty (default): only requests without Origin or whose Origin is the
  /// request's own Host.
  std::vector<std::string> allowed_origins;

  /// `livehub.api-key`: when set, `POST /api/publish` and trusted publisher
  /// WebSocket connections need `Authorization: Bearer <key>`. When empty,
  /// only loopback peers (without Origin, for WebSockets) have that right.
  std::string api_key;

  /// `livehub.client-publish`: channel patterns (`*` matches any run of
  /// characters, e.g. "room:*") on which any client may publish. Empty
  /// (default): clients may not publish. Read by the hub (spawn_hub), whose
  /// client actors enforce it for every server bound to it.
  std::vector<std::string> client_publish;

  /// Checks what a client publishes where it may publish (not trusted
  /// publishers, not the C++ API), given who publishes: returns an empty
  /// string to accept, or the reason to refuse it, which the client receives
  /// as a `bad_command` error. Called from client actors, concurrently: it
  /// must be thread-safe. No CAF option (so not in the table of options); set
  /// it in code. Read by the hub, like `client_publish`. Default: accept all.
  std::function<std::string(const publication&, const identity&)>
    client_publish_check;

  // -- identity (tokens) ---------------------------------------------------

  /// `livehub.token-hmac-secret`: the HS256 secret of connection and
  /// subscription tokens (JWT). When this or `token_public_key` is set, every
  /// connection but trusted publishers must send `connect` with a valid
  /// token first. Read by the hub.
  std::string token_hmac_secret;

  /// `livehub.token-public-key`: path of a PEM public key (RSA: RS256, or
  /// EC P-256: ES256) that verifies tokens. Read by the hub.
  std::string token_public_key;

  /// `livehub.token-leeway`: tolerance for `exp`, `nbf` and `iat`, for
  /// clocks that differ. Read by the hub.
  caf::timespan token_leeway = std::chrono::seconds(5);

  /// `livehub.connect-timeout`: with a token key set, a connection that has
  /// not sent a successful `connect` within this time is closed with 4001.
  /// Read by the hub.
  caf::timespan connect_timeout = std::chrono::seconds(10);

  /// `livehub.public-channels`: channel patterns anyone may subscribe to (and
  /// read the history and presence of). Unset (default): ["*"] without a
  /// token key, [] with one. Read by the hub.
  std::optional<std::vector<std::string>> public_channels;

  /// The application's authorizer, asked `(authorize_atom, identity, action,
  /// channel) -> bool` when nothing else decides whether a connection may
  /// subscribe or publish (see docs/security.md). No CAF option; set it in
  /// code. Default: none (nothing else decides: denied). Read by the hub.
  authorizer_actor authorizer;

  /// `livehub.authorize-timeout`: how long the authorizer may take; no
  /// answer within it is a denial. Read by the hub.
  caf::timespan authorize_timeout = std::chrono::seconds(2);

  // -- history -------------------------------------------------------------

  /// `livehub.history-channels`: channel patterns whose publications carry
  /// offsets and are kept for recovery (`subscribe` with `since`, the
  /// `history` command). Default: none. Read by the hub.
  std::vector<std::string> history_channels;

  /// `livehub.history-size`: publications kept per history channel. Read by
  /// the hub.
  size_t history_size = 100;

  /// `livehub.history-ttl`: how long a publication is kept; a channel's
  /// history outlives its last subscriber until then. Read by the hub.
  caf::timespan history_ttl = std::chrono::seconds(300);

  // -- presence ------------------------------------------------------------

  /// `livehub.presence-channels`: channel patterns whose subscribers are
  /// known (the presence and presence_stats commands, GET /api/presence) and
  /// announced (join and leave publications). Default: none. Read by the
  /// hub.
  std::vector<std::string> presence_channels;

  // -- rate limits ---------------------------------------------------------

  /// `livehub.command-rate`: commands per second one connection may send
  /// (a token bucket; trusted publishers are exempt). Over it: error
  /// `rate_limited`; more than `command_burst` refused in a row: close 4029.
  /// Read by the hub.
  size_t command_rate = 100;

  /// `livehub.command-burst`: the command bucket's size. Read by the hub.
  size_t command_burst = 200;

  /// `livehub.client-publish-rate`: publications per second one (untrusted)
  /// connection may send; burst twice that. Read by the hub.
  size_t client_publish_rate = 20;

  /// `livehub.max-connections-per-ip`: WebSocket connections (upgrading or
  /// open) from one peer address, loopback included, not counting those
  /// carrying the API key; more: HTTP 429.
  size_t max_connections_per_ip = 1000;

  // -- TLS -----------------------------------------------------------------

  /// `livehub.tls-cert-file`: PEM certificate (a chain may follow). With
  /// `tls_key_file`, the port serves only wss:// and https://, TLS 1.2+.
  std::string tls_cert_file;

  /// `livehub.tls-key-file`: PEM private key of `tls_cert_file`.
  std::string tls_key_file;

  /// True when a token key is set (connections must `connect`).
  bool tokens_enabled() const {
    return !token_hmac_secret.empty() || !token_public_key.empty();
  }

  /// The public channel patterns in effect (see `public_channels`).
  std::vector<std::string> effective_public_channels() const {
    if (public_channels)
      return *public_channels;
    if (tokens_enabled())
      return {};
    return {"*"};
  }

  /// An application actor that observes connections: connected,
  /// disconnected (with the close code), subscribed, unsubscribed and
  /// refused (origin, capacity, rate, auth) events. Read by the hub (its
  /// client actors report what connections do) and by server::start (it
  /// reports refused upgrades): give both the same config. No CAF option;
  /// set it in code. Default: none.
  observer_actor observer;

  // -- application routes --------------------------------------------------

  /// Answers HTTP requests that livehub's own endpoints do not take (any
  /// path but the WebSocket path, /api/publish, /api/stats, /api/channels,
  /// /metrics, /healthz and /readyz), before static files: returns a reply,
  /// or none to let livehub go on (static files, else 404). Requests whose
  /// Origin is not allowed never reach it (403). Runs on an I/O thread,
  /// concurrently with other requests: it must be quick and thread-safe (send
  /// slow work to an actor and answer from what it already knows). No CAF
  /// option; set it in code. Default: none.
  std::function<std::optional<http_reply>(const http_request&)> http_handler;

  // -- several nodes -------------------------------------------------------

  /// `livehub.broker`: `local` (one node, the default) or `redis` (every
  /// node of a cluster publishes through Redis; see docs/cluster.md). Read
  /// by the hub (spawn_hub makes the broker).
  std::string broker = "local";

  /// `livehub.redis-urls`: `redis://[[user]:password@]host[:port][/db]`,
  /// one or more; several spread channels over them by a stable hash of the
  /// channel name. Read by the hub, with broker = redis.
  std::vector<std::string> redis_urls = {"redis://127.0.0.1:6379"};

  /// `livehub.redis-prefix`: the prefix of livehub's Redis channel names,
  /// so that several clusters may share one Redis. Read by the hub.
  std::string redis_prefix = "livehub";

  // -- threads -------------------------------------------------------------

  /// `livehub.io-threads`: threads running the WebSocket and HTTP I/O. Each
  /// runs its own io_context; connections are dealt to them round-robin and
  /// stay on theirs. One thread suits 2 to 4 cores (see worker_threads).
  size_t io_threads = 1;

  /// Checks every value; returns a clear error for the first invalid one.
  caf::error validate() const;
};

/// CAF scheduler threads that leave one core to each I/O thread: the cores
/// less `cfg.io_threads`, at least 1. (On 2 cores, 1 worker + 1 I/O thread
/// delivered 1.0-1.4x the fan-out of 2 workers + 1 I/O thread, bench/run.)
/// Set it as `scheduler.max-threads` before the actor system starts.
size_t worker_threads(const hub_config& cfg);

/// Declares every `livehub.*` option in `opts`. Call it from the constructor
/// of your `caf::actor_system_config` subclass:
/// `livehub::add_options(custom_options_);`
void add_options(caf::config_option_set& opts);

/// Reads the `livehub.*` values of a loaded `cfg` (defaults where unset) and
/// validates them.
caf::expected<hub_config> read_config(const caf::actor_system_config& cfg);

} // namespace livehub
