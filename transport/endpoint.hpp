// The websocketpp side of livehub::server: its config, the connection data,
// the sink over a websocketpp connection, and server::impl. Internal; only
// endpoint.cpp and http_routes.cpp include it (websocketpp compiles slowly).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include "actors/client.hpp"
#include "actors/keepalive.hpp"
#include "actors/sink.hpp"
#include "livehub/server.hpp"
#include "transport/lean_transport.hpp"

namespace livehub::transport {

class ws_sink;

/// Connections (upgrading or open) per peer address, for
/// max-connections-per-ip. Guarded by server::impl::mtx.
using address_counts = std::map<asio::ip::address, size_t>;

/// What livehub keeps in every websocketpp connection (websocketpp makes it
/// the connection's base class). I/O thread only.
struct connection_data {
  client_actor client;
  std::shared_ptr<ws_sink> out;
  /// This connection's entry in server::impl::per_address, when counted
  /// there (see `per_address_counted`).
  address_counts::iterator address_slot;
  client_rights rights;
  /// Counted against max-connections (set by the upgrade's validation).
  bool counted = false;
  /// Counted against max-connections-per-ip.
  bool per_address_counted = false;
  /// Reading paused by livehub (max-pending-commands).
  bool paused = false;
};

/// websocketpp's config for livehub: the lean transport (one thread per
/// io_context, so no locks and no strands: `concurrency::none`), livehub's
/// connection data, a small read buffer and no logging.
struct ws_config : websocketpp::config::asio {
  using type = ws_config;
  using concurrency_type = websocketpp::concurrency::none;
  static const bool enable_multithreading = false;
  struct transport_config {
    using alog_type = websocketpp::config::asio::alog_type;
    using elog_type = websocketpp::config::asio::elog_type;
    /// Bytes of its request's body that websocketpp still reads on `con`, 0
    /// once the request is complete: the transport hands it no more, so that
    /// a pipelined next request stays with the transport (see
    /// lean::connection::admit()). Defined below, with the connection type.
    static size_t request_body_left(lean::connection<transport_config>& con);
  };
  using transport_type = lean::endpoint<transport_config>;
  using connection_base = connection_data;
  /// Bytes read per call. Subscribers send little; publishes that come over
  /// HTTP or WebSocket take a few more reads. See docs/performance.md.
  static const size_t connection_read_buffer_size = 512;
  static const websocketpp::log::level alog_level
    = websocketpp::log::alevel::none;
  static const websocketpp::log::level elog_level
    = websocketpp::log::elevel::none;
};

using ws_server = websocketpp::server<ws_config>;
using connection_ptr = ws_server::connection_ptr;
using websocketpp::connection_hdl;

inline size_t ws_config::transport_config::request_body_left(
  lean::connection<transport_config>& con) {
  // Every transport connection is the base of a websocketpp connection.
  auto& wcon = static_cast<ws_server::connection_type&>(con);
  if (wcon.get_state() != websocketpp::session::state::connecting)
    return 0; // upgraded (on_open even cleared the request)
  auto& req = wcon.get_request();
  if (req.ready())
    return 0;
  // What websocketpp's parser still expects (http::parser::prepare_body and
  // process_body): Content-Length as strtoul reads it, less the body so far.
  auto length = std::strtoul(req.get_header("Content-Length").c_str(), nullptr,
                             10);
  auto have = req.get_body().size();
  return length > have ? length - have : 0;
}

/// One piece of work for a connection's I/O thread.
struct io_op {
  enum kind_t : uint8_t { send, ping, close };
  connection_ptr con;
  /// send: the whole frame, shared by every connection it goes to.
  lean::shared_bytes frame;
  std::string reason;        // close
  sink::time_point accepted; // send of a publication
  size_t payload = 0;        // send: the frame's payload bytes
  uint16_t code = 0;         // close
  kind_t kind = send;
};

/// The figures of one I/O thread for GET /metrics. One thread writes them
/// (relaxed loads and stores, no read-modify-write), GET /metrics folds all
/// threads' on any thread: nothing on the hot path locks or contends.
class io_metrics {
 public:
  /// Upper bounds of the delivery-latency buckets, in seconds.
  static constexpr std::array<double, 16> bounds
    = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
       0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

  void add_sent(uint64_t bytes) {
    bump(bytes_sent_, bytes);
  }

  void add_received(uint64_t bytes) {
    bump(bytes_received_, bytes);
  }

  /// A publication's frame was handed to the socket `latency` after its
  /// delivery began.
  void add_latency(std::chrono::nanoseconds latency);

  /// Adds this thread's figures to the totals (any thread).
  void fold(uint64_t& sent, uint64_t& received,
            std::array<uint64_t, bounds.size() + 1>& buckets,
            double& sum_seconds) const;

 private:
  static void bump(std::atomic<uint64_t>& x, uint64_t n) {
    x.store(x.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
  /// Per bucket (not cumulative); the last one is +Inf.
  std::array<std::atomic<uint64_t>, bounds.size() + 1> buckets_{};
  std::atomic<uint64_t> latency_ns_{0};
};

/// The work queue of one io_context. Actors push from any thread; the first
/// push after a drain posts one drain to the context, which runs everything
/// queued by then in order: one post and one wake-up per batch rather than
/// one per frame, and every write is issued on the connection's own thread.
class outbox {
 public:
  explicit outbox(asio::io_context& ctx) : ctx_(ctx) {
    // nop
  }

  /// Queues `op`; false once shut.
  bool push(io_op&& op);

  /// Drops what is queued and refuses further work (the context stopped).
  void shut();

  /// This thread's figures.
  io_metrics metrics;

 private:
  /// Posts a drain to the context of `self`, an outbox.
  static void wake(void* self);

  void drain();

  asio::io_context& ctx_;
  std::mutex mtx_;
  std::vector<io_op> queued_;
  /// drain()'s batch, kept to reuse its capacity.
  std::vector<io_op> running_;
  /// Rounds of one drain (see drain()).
  static constexpr int max_rounds = 16;
  /// The connections of drain()'s batch that want a flush() at its end.
  std::vector<ws_server::connection_type*> flushes_;
  bool scheduled_ = false;
  bool shut_ = false;
};

/// A sink writing to a websocketpp connection through its context's outbox.
///
/// Frames go down the transport's fast lane (lean::connection::queue_frame):
/// their prepared bytes, shared by every subscriber, straight to the socket
/// in gathered writes, while websocketpp still writes its handshake, control
/// frames and close into the same ordered queue.
///
/// Send accounting: the sink counts payload bytes handed to it (sink::send);
/// the I/O thread counts the bytes it queued and, after every completed
/// write, publishes how many of them left the connection's queues.
class ws_sink : public sink, public lean::write_observer {
 public:
  ws_sink(connection_ptr con, outbox& box, const hub_config& cfg);

  /// Counts one message handed to the client actor; false when the
  /// connection should stop reading until the actor catches up.
  bool count_pending() {
    return pending_.fetch_add(1, std::memory_order_relaxed) + 1 < max_pending_;
  }

  /// True when the client actor is below max-pending-commands again.
  bool may_resume() const {
    return pending_.load(std::memory_order_relaxed) < max_pending_;
  }

  /// Runs one op on the I/O thread; returns the payload bytes it queued
  /// (0 for pings, closes and sends to a connection no longer open). A send
  /// goes down the transport's fast lane; when the connection then wants a
  /// flush, run() adds it to `flushes`.
  size_t run(io_op& op, std::vector<ws_server::connection_type*>& flushes);

  void on_written() override;

 protected:
  bool do_send(const frame_ptr& frame, time_point accepted) override;
  uint64_t do_written() override;
  void do_close(uint16_t code, const std::string& reason) override;
  void do_ping() override;
  void do_consumed() override;
  void do_detach() override;

 private:
  connection_ptr con_;
  outbox* box_;
  std::atomic<size_t> pending_{0};
  size_t max_pending_;
  /// Payload bytes queued on the connection (I/O thread only).
  uint64_t handed_ = 0;
  /// Of those, the bytes websocketpp no longer holds.
  std::atomic<uint64_t> written_{0};
};

/// HTTP responses that wait for an actor (GET /api/stats, ...). The actor
/// may answer after the server stopped, or was destroyed: it holds this
/// registry (shared) and the connection's weak handle, never a
/// connection_ptr, whose last reference would then destroy a socket of a dead
/// io_context. The registry keeps each waiting connection alive until its
/// answer went to the connection's thread, or until the server stops.
class deferred_responses {
 public:
  deferred_responses() = default;

  /// Keeps `con` alive until finish() or shutdown(). I/O thread.
  void hold(const connection_ptr& con) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (!shut_)
      held_.emplace(con, con);
  }

  /// Runs `respond(con)` on the thread of the connection `hdl` and lets it
  /// go, unless the server stopped (then `respond` is dropped here). Any
  /// thread.
  template<class F>
  void finish(const connection_hdl& hdl, F&& respond) {
    std::unique_lock<std::mutex> guard{mtx_};
    auto i = held_.find(hdl);
    if (shut_ || i == held_.end())
      return;
    auto con = std::move(i->second);
    held_.erase(i);
    auto& ctx = con->context();
    asio::post(ctx,
               [con = std::move(con), f = std::forward<F>(respond)]() mutable {
                 f(con);
               });
  }

  /// Lets every waiting connection go and refuses further work. Called by
  /// server::stop() once the I/O threads ended and the sockets are closed.
  void shutdown() {
    std::map<connection_hdl, connection_ptr, std::owner_less<connection_hdl>>
      dropped;
    {
      std::unique_lock<std::mutex> guard{mtx_};
      shut_ = true;
      dropped.swap(held_);
    }
  }

 private:
  std::mutex mtx_;
  std::map<connection_hdl, connection_ptr, std::owner_less<connection_hdl>>
    held_;
  bool shut_ = false;
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
  hub_internal_actor hub;
  /// The server's config (network, limits, keepalive).
  std::shared_ptr<const hub_config> cfg;
  /// The hub's counters, routes and config (its channel policy), for the
  /// client actors.
  hub_shared shared;
  /// Pings every connection and bounds its writes (one timer for all).
  keepalive_actor keepalive;
  transport::ws_server ep;
  /// One per I/O context (declared after `ep`: destroyed before it).
  std::vector<std::unique_ptr<transport::outbox>> outboxes;
  /// HTTP responses waiting for an actor (shared with those actors).
  std::shared_ptr<transport::deferred_responses> deferred;
  std::string host;
  uint16_t port = 0;
  /// max-connections, capped by the open-file limit.
  size_t max_connections = 0;

  /// Connections counted against max_connections (upgrading or open).
  size_t live = 0;
  /// Connections counted against max-connections-per-ip, by peer address.
  transport::address_counts per_address;
  /// Open connections and their sinks, for shutdown.
  std::map<transport::connection_hdl, std::shared_ptr<transport::ws_sink>,
           std::owner_less<transport::connection_hdl>>
    open;

  std::vector<std::thread> threads;
  std::mutex mtx; // guards live, per_address, open, stopping, stopped
  std::condition_variable cv;
  bool stopping = false;
  bool stopped = false;

  /// Binds, starts accepting and starts the I/O threads.
  caf::error listen();
  /// Sets the endpoint's limits and handlers (part of listen()).
  void configure_endpoint();
  bool on_validate(transport::connection_hdl hdl);
  /// Tells the observer (if any) that an upgrade was refused for `reason`.
  void observe_refusal(const transport::connection_ptr& con,
                       const char* reason);
  void on_open(transport::connection_hdl hdl);
  void on_end(transport::connection_hdl hdl);
  void on_message(transport::connection_hdl hdl,
                  transport::ws_server::message_ptr msg);
  void stop();
};

} // namespace livehub
