// livehub::server over websocketpp: listening, the WebSocket connection
// lifecycle (validate -> open -> messages -> close), and shutdown. Each
// handler runs on an I/O thread and only sends messages to actors.
#include "transport/endpoint.hpp"

#include <sys/resource.h>

#include <iterator>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "transport/http_policy.hpp"

namespace livehub::transport {

// -- outbox -------------------------------------------------------------------

bool outbox::push(io_op&& op) {
  std::unique_lock<std::mutex> guard{mtx_};
  if (shut_)
    return false;
  queued_.push_back(std::move(op));
  if (!scheduled_) {
    scheduled_ = true;
    // Within a fan-out, the drain is posted once the fan-out queued every
    // frame (see send_batch): pushes meanwhile find it scheduled.
    if (!send_batch::defer(&outbox::wake, this))
      wake(this);
  }
  return true;
}

void outbox::wake(void* self) {
  auto box = static_cast<outbox*>(self);
  // When the drain comes up, it goes to the back of the thread's queue once
  // more: the handlers that became ready meanwhile run first, among them the
  // reads of new publications, whose fan-outs then (on the actors' threads)
  // queue frames that this drain's rounds take in. Without it, those frames
  // wait for the next drain and every connection's gathered write carries
  // fewer of them (bench: fan-out to 10,000 subscribers +13 %, to 1,000
  // +10 %; latency at 100 publications/s unchanged).
  asio::post(box->ctx_, [box] {
    asio::post(box->ctx_, [box] {
      box->drain();
    });
  });
}

void outbox::shut() {
  std::unique_lock<std::mutex> guard{mtx_};
  shut_ = true;
  queued_.clear();
}

void outbox::drain() {
  {
    std::unique_lock<std::mutex> guard{mtx_};
    running_.swap(queued_);
    scheduled_ = false;
  }
  uint64_t sent = 0;
  // Frames that fan-outs on other threads queued while this batch ran join
  // it (a few rounds at most, so reads are not starved): they leave in the
  // same gathered writes instead of waiting for the next drain. running_
  // keeps every op, and so its connection, until the flushes below.
  size_t done = 0;
  for (int round = 1;; ++round) {
    // One clock reading per round: every frame of it is handed over now.
    auto now = std::chrono::steady_clock::now();
    for (; done < running_.size(); ++done) {
      auto& op = running_[done];
      auto& out = op.con->out;
      if (!out)
        continue;
      auto bytes = out->run(op, flushes_);
      sent += bytes;
      if (bytes > 0 && op.accepted != sink::time_point{})
        metrics.add_latency(now - op.accepted);
    }
    if (round == max_rounds)
      break;
    std::unique_lock<std::mutex> guard{mtx_};
    if (queued_.empty())
      break;
    // A drain is posted for these already: it finds them gone.
    std::move(queued_.begin(), queued_.end(), std::back_inserter(running_));
    queued_.clear();
  }
  // Every frame of the batch is queued: each connection writes all of its
  // frames in one gathered write.
  for (auto* con : flushes_)
    con->flush();
  flushes_.clear();
  running_.clear();
  metrics.add_sent(sent);
}

// -- io_metrics ---------------------------------------------------------------

void io_metrics::add_latency(std::chrono::nanoseconds latency) {
  auto seconds = std::chrono::duration<double>(latency).count();
  size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i])
    ++i;
  bump(buckets_[i], 1);
  bump(latency_ns_,
       static_cast<uint64_t>(std::max<int64_t>(0, latency.count())));
}

void io_metrics::fold(uint64_t& sent, uint64_t& received,
                      std::array<uint64_t, bounds.size() + 1>& buckets,
                      double& sum_seconds) const {
  sent += bytes_sent_.load(std::memory_order_relaxed);
  received += bytes_received_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < buckets.size(); ++i)
    buckets[i] += buckets_[i].load(std::memory_order_relaxed);
  sum_seconds
    += static_cast<double>(latency_ns_.load(std::memory_order_relaxed)) / 1e9;
}

// -- ws_sink ------------------------------------------------------------------

ws_sink::ws_sink(connection_ptr con, outbox& box, const hub_config& cfg)
  : sink(cfg.send_queue_limit, cfg.send_queue_bytes), con_(std::move(con)),
    box_(&box), max_pending_(cfg.max_pending_commands) {
  // nop
}

namespace {

/// `payload` as a complete, unmasked text frame: header and payload in one
/// buffer, one iovec per frame in a gathered write.
lean::shared_bytes prepare_text_frame(const std::string& payload) {
  auto n = static_cast<uint64_t>(payload.size());
  auto bytes = std::make_shared<std::string>();
  bytes->reserve(payload.size() + 10);
  bytes->push_back(static_cast<char>(0x81)); // FIN, opcode text
  if (n < 126) {
    bytes->push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    bytes->push_back(static_cast<char>(126));
    bytes->push_back(static_cast<char>(n >> 8));
    bytes->push_back(static_cast<char>(n & 0xFF));
  } else {
    bytes->push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8)
      bytes->push_back(static_cast<char>((n >> shift) & 0xFF));
  }
  bytes->append(payload);
  return bytes;
}

/// The prepared frame for `frame`. A fanout hands one frame to all its
/// subscribers in a row on one thread, so a one-entry cache per thread
/// prepares each publication once, and every connection queues the same
/// immutable bytes (server frames are unmasked, hence identical). The cache
/// holds the frame, so its address cannot be reused meanwhile.
const lean::shared_bytes& prepared(const frame_ptr& frame) {
  thread_local frame_ptr cached_frame;
  thread_local lean::shared_bytes cached_bytes;
  if (cached_frame != frame) {
    cached_bytes = prepare_text_frame(*frame);
    cached_frame = frame;
  }
  return cached_bytes;
}

} // namespace

bool ws_sink::do_send(const frame_ptr& frame, time_point accepted) {
  io_op op;
  op.con = con_;
  op.frame = prepared(frame);
  op.payload = frame->size();
  op.accepted = accepted;
  return box_->push(std::move(op));
}

uint64_t ws_sink::do_written() {
  return written_.load(std::memory_order_acquire);
}

void ws_sink::do_close(uint16_t code, const std::string& reason) {
  io_op op;
  op.con = con_;
  op.kind = io_op::close;
  op.code = code;
  op.reason = reason;
  box_->push(std::move(op));
}

void ws_sink::do_ping() {
  io_op op;
  op.con = con_;
  op.kind = io_op::ping;
  box_->push(std::move(op));
}

size_t ws_sink::run(io_op& op,
                    std::vector<ws_server::connection_type*>& flushes) {
  websocketpp::lib::error_code ec;
  switch (op.kind) {
    case io_op::send:
      // As websocketpp's send(): data frames only while open, so none
      // follows a close frame.
      if (op.con->get_state() == websocketpp::session::state::open) {
        if (op.con->queue_frame(std::move(op.frame), op.payload))
          flushes.push_back(op.con.get());
        handed_ += op.payload;
        return op.payload;
      }
      break;
    case io_op::ping: op.con->ping("", ec); break;
    case io_op::close:
      op.con->close(op.code, op.reason, ec); // fails when already closing
      break;
  }
  return 0;
}

void ws_sink::on_written() {
  if (!con_)
    return;
  written_.store(handed_ - con_->get_buffered_amount() - con_->queued_bytes(),
                 std::memory_order_release);
  // A lagging history channel's gap goes out as soon as the queue drained.
  if (gaps_waiting())
    flush_gaps();
}

void ws_sink::do_consumed() {
  // The message handler paused reading when the count reached the limit.
  // Crossing back below it, ask the connection's thread to resume (see the
  // interrupt handler): only there do we know whether reading is paused.
  if (pending_.fetch_sub(1, std::memory_order_relaxed) == max_pending_)
    con_->interrupt();
}

void ws_sink::do_detach() {
  con_.reset();
}

bool is_loopback(const connection_ptr& con) {
  asio::error_code ec;
  auto addr = con->socket().remote_endpoint(ec).address();
  if (ec)
    return false;
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    return addr.to_v6().to_v4().is_loopback();
  return addr.is_loopback();
}

} // namespace livehub::transport

namespace livehub {

using namespace transport;

namespace {

/// The most connections the process can hold open: the open-file limit
/// (raised to its hard maximum) less a reserve for everything else.
size_t connection_capacity() {
  constexpr rlim_t reserve = 64;
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 1024 - reserve;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur == RLIM_INFINITY)
    return std::numeric_limits<size_t>::max();
  return lim.rlim_cur > 2 * reserve ? lim.rlim_cur - reserve : reserve;
}

/// Refuses an upgrade with `code` and a JSON body `{"error":..,"code":..}`,
/// as the HTTP endpoints answer errors.
bool refuse(const connection_ptr& con,
            websocketpp::http::status_code::value code, const char* error_code,
            const char* message) {
  con->set_status(code);
  con->replace_header("Connection", "close");
  con->replace_header("Content-Type", "application/json");
  con->set_body(std::string{"{\"error\":\""} + message + "\",\"code\":\""
                + error_code + "\"}");
  return false;
}

std::string_view path_of(const std::string& resource) {
  std::string_view r{resource};
  return r.substr(0, r.find('?'));
}

} // namespace

server::impl::impl(caf::actor_system& sys, hub_actor hub, const hub_config& cfg)
  : sys(sys), hub(internal(hub)), cfg(std::make_shared<const hub_config>(cfg)),
    host(cfg.host) {
  // nop
}

void server::impl::configure_endpoint() {
  ep.set_reuse_addr(true);
  ep.set_listen_backlog(1024);
  ep.set_max_message_size(cfg->max_message_size);
  ep.set_max_http_body_size(cfg->max_message_size);
  ep.set_open_handshake_timeout(10000);
  ep.set_close_handshake_timeout(500);
  // Frames go out as soon as they are queued: no Nagle delay (subscribers
  // rarely send, so delayed ACKs would hold small frames back for ~40 ms).
  ep.set_no_delay(true);
  ep.set_validate_handler([this](connection_hdl h) {
    return on_validate(h);
  });
  ep.set_open_handler([this](connection_hdl h) {
    on_open(h);
  });
  ep.set_close_handler([this](connection_hdl h) {
    on_end(h);
  });
  ep.set_fail_handler([this](connection_hdl h) {
    on_end(h);
  });
  ep.set_http_handler([this](connection_hdl h) {
    handle_http(*this, h);
  });
  ep.set_message_handler([this](connection_hdl h, ws_server::message_ptr msg) {
    on_message(h, std::move(msg));
  });
  ep.set_interrupt_handler([this](connection_hdl h) {
    auto con = ep.get_con_from_hdl(h);
    if (con->paused && con->out && con->out->may_resume()) {
      con->paused = false;
      con->handle_resume_reading();
    }
  });
  ep.set_pong_handler([this](connection_hdl h, std::string) {
    auto con = ep.get_con_from_hdl(h);
    if (con->out)
      con->out->pong_received();
  });
  // HTTP keep-alive: after a response whose request may be followed by
  // another (handle_http decides), a new connection adopts the socket and
  // reads the next request as if the socket were just accepted (so it may
  // be an upgrade, validated like any other).
  ep.set_keep_alive(std::chrono::duration_cast<std::chrono::milliseconds>(
                      cfg->http_idle_timeout),
                    [this] {
                      if (auto con = ep.get_connection())
                        con->start();
                    });
}

caf::error server::impl::listen() {
  max_connections = std::min(cfg->max_connections, connection_capacity());
  if (!cfg->tls_cert_file.empty()) {
    // validate() saw both files readable; whether they hold a certificate
    // and its key only OpenSSL can tell.
    std::string why;
    auto tls = tls::context::make(cfg->tls_cert_file, cfg->tls_key_file, why);
    if (!tls)
      return caf::make_error(caf::sec::invalid_argument, why);
    ep.set_tls(std::move(tls));
  }
  websocketpp::lib::error_code ec;
  ep.init_asio(cfg->io_threads, ec);
  if (ec)
    return caf::make_error(caf::sec::runtime_error, "asio: " + ec.message());
  configure_endpoint();
  asio::error_code aec;
  auto addr = asio::ip::make_address(host, aec);
  if (aec)
    return caf::make_error(caf::sec::invalid_argument,
                           "livehub.host \"" + host
                             + "\" is not an IP address: " + aec.message());
  ep.listen(asio::ip::tcp::endpoint{addr, cfg->port}, ec);
  if (ec)
    return caf::make_error(caf::sec::cannot_open_port,
                           "cannot listen on " + host + ":"
                             + std::to_string(cfg->port) + ": " + ec.message());
  port = ep.get_local_endpoint(aec).port();
  ep.start_accept(ec);
  if (ec)
    return caf::make_error(caf::sec::cannot_open_port,
                           "cannot accept: " + ec.message());
  for (size_t i = 0; i < ep.contexts(); ++i)
    outboxes.push_back(std::make_unique<outbox>(ep.context(i)));
  deferred = std::make_shared<deferred_responses>();
  keepalive = sys.spawn(livehub::keepalive, cfg, shared.counters);
  for (size_t i = 0; i < ep.contexts(); ++i)
    threads.emplace_back([this, i] {
      ep.run(i);
    });
  return caf::none;
}

void server::impl::on_message(connection_hdl hdl, ws_server::message_ptr msg) {
  auto con = ep.get_con_from_hdl(hdl);
  if (!con->client)
    return;
  // Bound the commands waiting in the client actor's mailbox: stop reading
  // this connection (TCP pushes back) until it catches up. Paused here, on
  // the connection's thread, before websocketpp would issue its next read;
  // pause_reading() would only post the pause, and a resume racing it could
  // start a second concurrent read.
  if (!con->out->count_pending() && !con->paused) {
    con->paused = true;
    con->handle_pause_reading();
  }
  outboxes[con->context_index()]->metrics.add_received(
    msg->get_payload().size());
  caf::anon_send(con->client, text_atom::value,
                 std::move(msg->get_raw_payload()));
}

bool server::impl::on_validate(connection_hdl hdl) {
  auto con = ep.get_con_from_hdl(hdl);
  namespace status = websocketpp::http::status_code;
  if (path_of(con->get_resource()) != cfg->path)
    return refuse(con, status::not_found, "not_found", "not found");
  auto origin = con->get_request_header("Origin");
  if (!http_policy::origin_allowed(cfg->allowed_origins, origin,
                                   con->get_request_header("Host"))) {
    hub_counters::add(shared.counters->rejected_origin);
    observe_refusal(con, "origin");
    return refuse(con, status::forbidden, "forbidden", "origin not allowed");
  }
  // Trusted publishers: the API key, or (with no key configured) a loopback
  // peer that is no browser (browsers always send Origin).
  auto auth = con->get_request_header("Authorization");
  bool has_key = !cfg->api_key.empty()
    && http_policy::bearer_matches(auth, cfg->api_key);
  if (!cfg->api_key.empty())
    con->rights.trusted = has_key;
  else
    con->rights.trusted = origin.empty() && is_loopback(con);
  // Every upgrade but those carrying the API key counts against its
  // address's limit, loopback included.
  asio::error_code ec;
  auto peer = con->socket().remote_endpoint(ec).address();
  std::unique_lock<std::mutex> guard{mtx};
  if (stopping || live >= max_connections) {
    hub_counters::add(shared.counters->rejected_capacity);
    observe_refusal(con, "capacity");
    return refuse(con, status::service_unavailable, "unavailable",
                  "too many connections");
  }
  if (!has_key && !ec) {
    auto slot = per_address.emplace(peer, 0).first;
    if (slot->second >= cfg->max_connections_per_ip) {
      if (slot->second == 0)
        per_address.erase(slot);
      hub_counters::add(shared.counters->rejected_rate);
      observe_refusal(con, "rate");
      return refuse(con, status::too_many_requests, "rate_limited",
                    "too many connections from this address");
    }
    ++slot->second;
    con->address_slot = slot;
    con->per_address_counted = true;
  }
  ++live;
  con->counted = true;
  if (cfg->observer && !ec)
    con->rights.peer = peer.to_string();
  return true;
}

void server::impl::observe_refusal(const connection_ptr& con,
                                   const char* reason) {
  if (!cfg->observer)
    return;
  asio::error_code ec;
  auto peer = con->socket().remote_endpoint(ec).address();
  caf::anon_send(cfg->observer,
                 refused_event{reason, ec ? std::string{} : peer.to_string()});
}

void server::impl::on_open(connection_hdl hdl) {
  auto con = ep.get_con_from_hdl(hdl);
  // websocketpp keeps the upgrade's request and response (1-3 KB of headers)
  // for the connection's life and offers them read-only. After the upgrade
  // it never reads them again (only a failed upgrade logs them), and
  // on_validate took what livehub needs: give the memory back. (The objects
  // are not const, so writing through the cast is well-defined.)
  const_cast<ws_config::request_type&>(con->get_request()) = {};
  const_cast<ws_config::response_type&>(con->get_response()) = {};
  // The same for the URI it parsed from the request (about 120 B): only its
  // getters read it after the upgrade, and livehub calls them before.
  con->set_uri(nullptr);
  con->out = std::make_shared<ws_sink>(con, *outboxes[con->context_index()],
                                       *cfg);
  con->set_write_observer(con->out.get());
  std::shared_ptr<sink> out = con->out;
  con->client = sys.spawn(client, hub, out, shared, con->rights);
  // Sent from here, before any frame of this connection is read: the hub
  // knows the connection before it can act.
  connection_ref ref{caf::actor_cast<caf::strong_actor_ptr>(con->client), out,
                     std::move(con->rights.peer)};
  con->rights.peer = std::string{}; // its memory back
  caf::anon_send(hub, caf::join_atom::value, ref);
  caf::anon_send(keepalive, caf::join_atom::value, std::move(ref));
  std::unique_lock<std::mutex> guard{mtx};
  open.emplace(hdl, con->out);
}

void server::impl::on_end(connection_hdl hdl) {
  auto con = ep.get_con_from_hdl(hdl);
  if (con->out) {
    con->set_write_observer(nullptr);
    con->out->detach();
    if (cfg->observer) {
      // The code of the closing handshake (the peer's if it sent one), or
      // 1006 when the connection just dropped.
      namespace cs = websocketpp::close::status;
      auto code = con->get_remote_close_code();
      auto reason = con->get_remote_close_reason();
      if (code == cs::blank || code == cs::no_status) {
        code = con->get_local_close_code();
        reason = con->get_local_close_reason();
      }
      if (code == cs::blank || code == cs::no_status)
        code = cs::abnormal_close;
      caf::anon_send(con->client, closed_atom::value, uint16_t{code},
                     std::move(reason));
    } else {
      caf::anon_send(con->client, closed_atom::value);
    }
    con->client = nullptr;
    con->out = nullptr;
  }
  if (!con->counted)
    return;
  con->counted = false;
  std::unique_lock<std::mutex> guard{mtx};
  open.erase(hdl);
  --live;
  if (con->per_address_counted) {
    con->per_address_counted = false;
    if (--con->address_slot->second == 0)
      per_address.erase(con->address_slot);
  }
  if (live == 0)
    cv.notify_all();
}

void server::impl::stop() {
  std::unique_lock<std::mutex> guard{mtx};
  if (stopping) {
    cv.wait(guard, [this] {
      return stopped;
    });
    return;
  }
  stopping = true;
  guard.unlock();
  // Stop accepting (on the acceptor's thread), then close every connection
  // with 1001 through its sink, after the frames already queued. Their close
  // handshakes run while we wait, bounded by a deadline.
  asio::post(ep.context(0), [this] {
    websocketpp::lib::error_code ec;
    ep.stop_listening(ec);
  });
  guard.lock();
  for (auto& kvp : open)
    kvp.second->close(websocketpp::close::status::going_away, "going away");
  cv.wait_for(guard, std::chrono::milliseconds(800), [this] {
    return live == 0;
  });
  guard.unlock();
  // The I/O threads end; what they still had queued is dropped.
  ep.stop();
  for (auto& t : threads)
    if (t.joinable())
      t.join();
  // The stop_listening posted above may not have run (with no connection
  // open, nothing waited above): close the acceptor here, where no thread
  // runs its context any more.
  if (ep.is_listening()) {
    websocketpp::lib::error_code ec;
    ep.stop_listening(ec);
  }
  for (auto& box : outboxes)
    box->shut();
  // Whatever the deadline cut short (connections whose peer does not read,
  // so their close frame cannot go out; upgrades and HTTP requests in
  // flight) is aborted now: stop() leaves no socket open.
  ep.abort_connections();
  // Deferred HTTP responses that never came are dropped (with their
  // connections, already aborted), and later answers go nowhere.
  deferred->shutdown();
  // Detach the sinks of connections that were still open, so no actor
  // touches websocketpp again, and let their client actors go.
  guard.lock();
  for (auto& kvp : open) {
    kvp.second->detach();
    websocketpp::lib::error_code ec;
    if (auto con = ep.get_con_from_hdl(kvp.first, ec); con && con->client)
      caf::anon_send(con->client, closed_atom::value);
  }
  open.clear();
  caf::anon_send_exit(keepalive, caf::exit_reason::user_shutdown);
  stopped = true;
  cv.notify_all();
}

// -- server -------------------------------------------------------------------

server::server(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

server::~server() {
  stop();
}

caf::expected<std::unique_ptr<server>>
server::start(caf::actor_system& sys, hub_actor hub, const hub_config& cfg) {
  if (auto err = cfg.validate())
    return err;
  if (!hub)
    return caf::make_error(caf::sec::invalid_argument, "invalid hub handle");
  auto ptr = std::make_unique<impl>(sys, hub, cfg);
  // The counters, routes and channel policy live in the hub (the server and
  // client actors add to the counters; client actors publish through the
  // routes and apply the policy).
  caf::scoped_actor self{sys};
  caf::error failed;
  self->request(ptr->hub, std::chrono::seconds(10), caf::get_atom::value)
    .receive(
      [&](hub_shared& x) {
        ptr->shared = std::move(x);
      },
      [&](caf::error& err) {
        failed = std::move(err);
      });
  if (failed)
    return failed;
  if (auto err = ptr->listen())
    return err;
  return std::unique_ptr<server>{new server(std::move(ptr))};
}

const std::string& server::host() const noexcept {
  return impl_->host;
}

uint16_t server::port() const noexcept {
  return impl_->port;
}

void server::stop() {
  if (impl_)
    impl_->stop();
}

void server::wait() {
  std::unique_lock<std::mutex> guard{impl_->mtx};
  impl_->cv.wait(guard, [this] {
    return impl_->stopped;
  });
}

} // namespace livehub
