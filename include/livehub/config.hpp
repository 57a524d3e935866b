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
#include <string>
#include <vector>

#include <caf/config_option_set.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

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

  /// Checks what a client publishes where `client_publish` allows it (not
  /// trusted publishers, not the C++ API): returns an empty string to accept,
  /// or the reason to refuse it, which the client receives as a
  /// `bad_command` error. Called from client actors, concurrently: it must
  /// be thread-safe. No CAF option (so not in the table of options); set it
  /// in code. Read by the hub, like `client_publish`. Default: accept all.
  std::function<std::string(const publication&)> client_publish_check;

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
