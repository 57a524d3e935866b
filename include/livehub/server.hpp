// livehub::server: binds a hub to a TCP port (WebSocket + HTTP endpoints).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include "livehub/config.hpp"
#include "livehub/hub.hpp"

namespace livehub {

/// Serves a hub over WebSocket and HTTP on one port: the WebSocket path,
/// `POST /api/publish` (one publication or a batch), `GET /api/stats`,
/// `GET /api/channels`, `GET /metrics`, `GET /healthz`, `GET /readyz` and
/// static files from `web_root` (see docs/protocol.md). Its I/O runs on its own
/// threads; each connection gets a client actor in the hub's actor system.
class server {
 public:
  /// Binds to `cfg.host`:`cfg.port` and starts serving `hub`. Fails with a
  /// clear error when the address cannot be bound or `cfg` is invalid.
  static caf::expected<std::unique_ptr<server>>
  start(caf::actor_system& sys, hub_actor hub, const hub_config& cfg);

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Stops the server (see stop()).
  ~server();

  /// The bound address, e.g. "127.0.0.1".
  const std::string& host() const noexcept;

  /// The bound port (the chosen one when the configured port was 0).
  uint16_t port() const noexcept;

  /// Stops accepting, closes every connection with 1001 (going away) after
  /// the frames already queued for it, and returns once they are closed, or
  /// after at most about one second: then every socket still open (a peer
  /// that does not read, an upgrade or HTTP request in flight) is aborted
  /// with a TCP reset. When stop() returns the server holds no socket, and
  /// answers that actors still owe (e.g. to `GET /api/stats`) go nowhere.
  /// Idempotent; thread-safe. The hub keeps running.
  void stop();

  /// Blocks until stop() ran (from another thread or a signal handler's
  /// thread, see examples/chat).
  void wait();

  struct impl;

 private:
  explicit server(std::unique_ptr<impl> ptr);

  std::unique_ptr<impl> impl_;
};

} // namespace livehub
