// The websocketpp side of livehub::server: its config, the connection data,
// the sink over a websocketpp connection, and server::impl. Internal; only
// endpoint.cpp and http_routes.cpp include it (websocketpp compiles slowly).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include "actors/client.hpp"
#include "actors/keepalive.hpp"
#include "actors/sink.hpp"
#include "livehub/server.hpp"

namespace livehub::transport {

class ws_sink;

/// What livehub keeps in every websocketpp connection (websocketpp makes it
/// the connection's base class).
struct connection_data {
  client_actor client;
  std::shared_ptr<ws_sink> out;
  client_rights rights;
  /// Counted against max-connections (set by the upgrade's validation).
  bool counted = false;
  /// Reading paused by livehub (max-pending-commands); I/O strand only.
  bool paused = false;
};

/// websocketpp's asio config with livehub's connection data, a smaller read
/// buffer and no access log.
struct ws_config : websocketpp::config::asio {
  using type = ws_config;
  using connection_base = connection_data;
  static const size_t connection_read_buffer_size = 1024;
  static const websocketpp::log::level alog_level
    = websocketpp::log::alevel::none;
  static const websocketpp::log::level elog_level
    = websocketpp::log::elevel::none;
};

using ws_server = websocketpp::server<ws_config>;
using connection_ptr = ws_server::connection_ptr;
using websocketpp::connection_hdl;

/// A sink writing to a websocketpp connection. websocketpp's send, ping and
/// close are safe from any thread (they lock, then post to the connection's
/// strand), so actors call them directly.
class ws_sink : public sink {
 public:
  ws_sink(connection_ptr con, const hub_config& cfg);

  /// Counts one received message; false when the connection should stop
  /// reading until the client actor catches up.
  bool received() {
    return pending_.fetch_add(1, std::memory_order_relaxed) + 1 < max_pending_;
  }

  /// True when the client actor is below max-pending-commands again.
  bool may_resume() const {
    return pending_.load(std::memory_order_relaxed) < max_pending_;
  }

 protected:
  bool do_send(const frame_ptr& frame) override;
  size_t do_buffered_amount() override;
  void do_close(uint16_t code, const std::string& reason) override;
  void do_ping() override;
  void do_consumed() override;
  void do_detach() override;

 private:
  connection_ptr con_;
  std::atomic<size_t> pending_{0};
  size_t max_pending_;
};

/// Posts work to the I/O threads for as long as they exist (actors answer
/// deferred HTTP requests through it, possibly after the server stopped).
class io_poster {
 public:
  explicit io_poster(ws_server& ep) : ep_(&ep) {
    // nop
  }

  template<class F>
  void post(F&& f) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (ep_)
      ep_->get_io_service().post(std::forward<F>(f));
  }

  void disable() {
    std::unique_lock<std::mutex> guard{mtx_};
    ep_ = nullptr;
  }

 private:
  std::mutex mtx_;
  ws_server* ep_;
};

/// True when the peer of `con` is a loopback address (IPv4, IPv6 or
/// IPv4-mapped).
bool is_loopback(const connection_ptr& con);

/// Answers one plain HTTP request (see http_routes.cpp).
void handle_http(server::impl& srv, connection_hdl hdl);

} // namespace livehub::transport

namespace livehub {

struct server::impl {
  impl(caf::actor_system& sys, hub_actor hub, const hub_config& cfg);

  caf::actor_system& sys;
  hub_actor hub;
  std::shared_ptr<const hub_config> cfg;
  hub_counters_ptr counters;
  /// Pings every connection and bounds its writes (one timer for all).
  keepalive_actor keepalive;
  transport::ws_server ep;
  std::shared_ptr<transport::io_poster> poster;
  std::string host;
  uint16_t port = 0;
  /// max-connections, capped by the open-file limit.
  size_t max_connections = 0;

  /// Connections counted against max_connections (upgrading or open).
  size_t live = 0;
  /// Open connections and their sinks, for shutdown.
  std::map<transport::connection_hdl, std::shared_ptr<transport::ws_sink>,
           std::owner_less<transport::connection_hdl>>
    open;

  std::vector<std::thread> threads;
  std::mutex mtx; // guards live, open, stopping, stopped
  std::condition_variable cv;
  bool stopping = false;
  bool stopped = false;

  caf::error listen();
  bool on_validate(transport::connection_hdl hdl);
  void on_open(transport::connection_hdl hdl);
  void on_end(transport::connection_hdl hdl);
  void stop();
};

} // namespace livehub
