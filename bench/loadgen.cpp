// livehub-loadgen: the benchmark's load generator. A minimal RFC 6455 client
// on standalone Asio (no websocketpp, no CAF): many connections per thread,
// each bound to a source address 127.0.0.(2 + i % sources) so that tens of
// thousands of connections fit in the ephemeral port range.
//
// One trusted publisher connection (loopback, no Origin header) publishes
//   {"type":"publish","channel":C,"event":"b","data":{"seq":N,"t":NS,"p":"xx.."}}
// where NS is steady_clock nanoseconds at send time; subscribers find "seq":
// and "t": by scanning (no JSON DOM) and record now - NS in a log-bucketed
// histogram. The result is one line of key=value pairs on stdout; progress
// and diagnostics go to stderr ("loadgen: ready ..." once every subscriber's
// subscription is acknowledged).
//
// Scenarios (--scenario):
//   fanout, wide, channels  subscribers spread over --channels channels
//       (subscriber i on channel i % channels), publications round-robin
//       over the channels, closed loop (--window W publications whose
//       deliveries are incomplete) or open loop (--rate R publications/s)
//   idle    N subscribed connections held for --duration, then one
//       publication per channel proves they are all alive
//   churn   --subscribers concurrent loops of connect, subscribe, receive one
//       publication, close, for --duration
//
// --tls speaks wss:// (asio::ssl::stream: simple, and heavy on the client's
// memory, about 80 KB per connection; the server's memory is what the
// benchmark measures), verifying the server against --tls-ca FILE when given.
//
// Example: livehub-loadgen --port 8080 --scenario fanout --subscribers 1000
//          --duration 10 --window 32
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>

#include <asio.hpp>
#include <asio/ssl.hpp>

namespace {

using asio::ip::tcp;
using std::string_view;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& x) {
    return x.tv_sec + x.tv_usec / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// -- histogram ----------------------------------------------------------------

/// HDR-style histogram of nanosecond values: 64 linear sub-buckets per power
/// of two (at most 1.6 % error), fixed size, no per-sample storage.
class histogram {
 public:
  static constexpr int sub_bits = 6;
  static constexpr uint64_t sub_count = uint64_t{1} << sub_bits;
  static constexpr int max_bits = 50; // about 13 days in ns
  static constexpr size_t size = (max_bits - sub_bits + 2) << sub_bits;

  void record(int64_t value) {
    uint64_t v = value < 0 ? 0 : static_cast<uint64_t>(value);
    v = std::min(v, (uint64_t{1} << max_bits) - 1);
    ++counts_[index(v)];
    ++total_;
    max_ = std::max(max_, v);
  }

  void merge(const histogram& other) {
    for (size_t i = 0; i < size; ++i)
      counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t total() const {
    return total_;
  }

  uint64_t max() const {
    return max_;
  }

  /// The value below which a fraction `q` of the samples lie (the upper end
  /// of the bucket holding that rank), in ns.
  uint64_t percentile(double q) const {
    if (total_ == 0)
      return 0;
    auto rank = static_cast<uint64_t>(q * static_cast<double>(total_) + 0.5);
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (size_t i = 0; i < size; ++i) {
      seen += counts_[i];
      if (seen >= rank)
        return std::min(upper(i), max_);
    }
    return max_;
  }

 private:
  static size_t index(uint64_t v) {
    if (v < sub_count)
      return static_cast<size_t>(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - sub_bits;
    return (static_cast<size_t>(shift + 1) << sub_bits)
      + static_cast<size_t>((v >> shift) & (sub_count - 1));
  }

  static uint64_t upper(size_t i) {
    size_t octave = i >> sub_bits;
    uint64_t sub = i & (sub_count - 1);
    if (octave == 0)
      return sub;
    int shift = static_cast<int>(octave) - 1;
    return (((sub | sub_count) + 1) << shift) - 1;
  }

  std::array<uint64_t, size> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

// -- options ------------------------------------------------------------------

enum class scenario { fanout, wide, channels, idle, churn };

struct options {
  scenario scen = scenario::fanout;
  std::string scen_name = "fanout";
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string path = "/ws";
  size_t subscribers = 1000;
  size_t channels = 1;
  size_t payload = 64;
  double duration = 10;
  double rate = 0; // publications/s; 0: closed loop
  size_t window = 32;
  size_t sources = 50;
  size_t threads = 1;
  size_t connect_concurrency = 256;
  double drain = 5;
  double setup_timeout = 120;
  bool strict = false;
  /// Sent as the subscribers' Origin header: they are then ordinary
  /// (untrusted, rate-limited) connections rather than trusted publishers.
  std::string origin;
  /// Sent by each subscriber in a connect command before it subscribes.
  std::string token;
  /// Tag filters: every publication carries the tag g=a, subscriber i
  /// subscribes with the filter g eq "a" (even i) or g eq "b" (odd i), so
  /// each publication passes half the subscribers.
  bool filter_half = false;
  /// The publisher connects to this port (another node of a cluster)
  /// instead of --port; 0: --port.
  uint16_t publish_port = 0;
  bool tls = false;
  std::string tls_ca;
};

[[noreturn]] void usage(const char* why) {
  if (why)
    std::fprintf(stderr, "livehub-loadgen: %s\n", why);
  std::fprintf(
    stderr,
    "usage: livehub-loadgen [--host H] --port P [--path /ws]\n"
    "  --scenario fanout|wide|channels|idle|churn\n"
    "  --subscribers N (churn: concurrent loops)  --channels N\n"
    "  --payload BYTES (64)  --duration SECONDS (10)\n"
    "  --rate R (publications/s; 0 = closed loop)  --window W (32)\n"
    "  --sources K (source addresses 127.0.0.2.., 50)  --threads T (1)\n"
    "  --connect-concurrency C (256)  --drain SECONDS (5)\n"
    "  --setup-timeout SECONDS (120)  --strict (exit 1 on any loss or "
    "error)\n"
    "  --origin URL (subscribers send it: untrusted connections)\n"
    "  --token JWT (subscribers connect with it before subscribing)\n"
    "  --filter-half (tagged publications, filters passing half the "
    "subscribers)\n"
    "  --publish-port P (the publisher connects there: another node)\n"
    "  --tls (wss://)  --tls-ca FILE (verify the server against this CA)\n");
  std::exit(2);
}

options parse_options(int argc, char** argv) {
  options o;
  bool channels_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string val;
    bool has_val = false;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      val = arg.substr(eq + 1);
      arg.resize(eq);
      has_val = true;
    }
    auto next = [&]() -> std::string {
      if (has_val)
        return val;
      if (i + 1 >= argc)
        usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    auto num = [&]() -> double {
      auto s = next();
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0' || d < 0)
        usage(("bad value for " + arg + ": " + s).c_str());
      return d;
    };
    if (arg == "--help" || arg == "-h")
      usage(nullptr);
    else if (arg == "--strict")
      o.strict = true;
    else if (arg == "--tls")
      o.tls = true;
    else if (arg == "--tls-ca") {
      o.tls = true;
      o.tls_ca = next();
    } else if (arg == "--scenario") {
      o.scen_name = next();
      if (o.scen_name == "fanout")
        o.scen = scenario::fanout;
      else if (o.scen_name == "wide")
        o.scen = scenario::wide;
      else if (o.scen_name == "channels")
        o.scen = scenario::channels;
      else if (o.scen_name == "idle")
        o.scen = scenario::idle;
      else if (o.scen_name == "churn")
        o.scen = scenario::churn;
      else
        usage(("unknown scenario " + o.scen_name).c_str());
    } else if (arg == "--host")
      o.host = next();
    else if (arg == "--port")
      o.port = static_cast<uint16_t>(num());
    else if (arg == "--path")
      o.path = next();
    else if (arg == "--subscribers")
      o.subscribers = static_cast<size_t>(num());
    else if (arg == "--channels") {
      o.channels = static_cast<size_t>(num());
      channels_set = true;
    } else if (arg == "--payload")
      o.payload = static_cast<size_t>(num());
    else if (arg == "--duration")
      o.duration = num();
    else if (arg == "--rate")
      o.rate = num();
    else if (arg == "--window")
      o.window = static_cast<size_t>(num());
    else if (arg == "--sources")
      o.sources = static_cast<size_t>(num());
    else if (arg == "--threads")
      o.threads = static_cast<size_t>(num());
    else if (arg == "--connect-concurrency")
      o.connect_concurrency = static_cast<size_t>(num());
    else if (arg == "--drain")
      o.drain = num();
    else if (arg == "--setup-timeout")
      o.setup_timeout = num();
    else if (arg == "--origin")
      o.origin = next();
    else if (arg == "--token")
      o.token = next();
    else if (arg == "--filter-half")
      o.filter_half = true;
    else if (arg == "--publish-port")
      o.publish_port = static_cast<uint16_t>(num());
    else
      usage(("unknown option " + arg).c_str());
  }
  // The channels scenario defaults to one subscriber per channel; churn uses
  // one channel per concurrent loop.
  if (o.scen == scenario::channels && !channels_set)
    o.channels = o.subscribers;
  if (o.scen == scenario::churn)
    o.channels = std::max<size_t>(o.subscribers, 1);
  if (o.subscribers == 0 || o.channels == 0 || o.window == 0 || o.sources == 0
      || o.threads == 0 || o.connect_concurrency == 0)
    usage("counts must be positive");
  if (!o.token.empty() && o.scen == scenario::churn)
    usage("--token works with fanout, wide, channels and idle");
  if (o.filter_half && o.scen == scenario::churn)
    usage("--filter-half works with fanout, wide, channels and idle");
  o.sources = std::min<size_t>(o.sources, 250);
  o.threads = std::min<size_t>(o.threads, 16);
  return o;
}

// -- shared state -------------------------------------------------------------

class app;
class conn;

/// One I/O thread with its io_context and the statistics its connections
/// write (merged after the threads end).
struct worker {
  explicit worker(size_t id, bool single)
    : id(id), ctx(single ? 1 : 2), guard(asio::make_work_guard(ctx)) {
    // nop
  }

  size_t id;
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  std::thread thread;

  // Connections this worker owns and starts (subscribers, churn loops).
  std::vector<conn*> conns;
  size_t next_start = 0;
  size_t connecting = 0;
  size_t max_connecting = 1;
  bool launching = false;

  // Statistics; the atomics are read by worker 0 while running.
  histogram hist;
  alignas(64) std::atomic<uint64_t> delivered{0};
  int64_t last_delivery_ns = 0;
  uint64_t order_errors = 0;
};

enum class role { subscriber, publisher, churner };

enum class state { idle, connecting, handshaking, open, closing, closed };

/// One WebSocket client connection. Owned by the app for the whole run (churn
/// reuses the object for each cycle once no operation is pending).
class conn {
 public:
  conn(app& a, worker& w, role r, size_t index, asio::ip::address_v4 src);

  void start();

  /// Appends a masked text frame to the write buffer (sent by flush()).
  void append_frame(uint8_t opcode, const char* data, size_t size);

  void send_text(string_view text) {
    append_frame(0x1, text.data(), text.size());
    flush();
  }

  void flush();

  /// Starts the WebSocket closing handshake (close 1000); the cycle ends when
  /// the server closes the TCP connection.
  void close_gracefully();

  /// Closes the socket now (errors not counted).
  void abort();

  state st() const {
    return st_;
  }

  size_t index() const {
    return index_;
  }

  size_t channel() const {
    return channel_;
  }

  void set_channel(size_t ch) {
    channel_ = ch;
  }

  worker& w() {
    return w_;
  }

  size_t write_backlog() const {
    return wbuf_.size();
  }

  bool is_publisher() const {
    return role_ == role::publisher;
  }

  bool is_churner() const {
    return role_ == role::churner;
  }

  int64_t cycle_start_ns = 0;
  uint64_t cycle_id = 0;
  bool settled = false;
  /// A connect command was sent and its ok has not arrived (--token).
  bool identifying = false;
  bool got_ok = false;
  bool got_publication = false;

 private:
  bool active() const;
  void on_connect(const asio::error_code& ec);
  void on_tls_handshake(const asio::error_code& ec);
  void open_websocket();
  void do_read();
  void on_read(const asio::error_code& ec, size_t n);
  bool parse_handshake();
  void parse_frames();
  void on_frame(uint8_t opcode, bool fin, const char* data, size_t size);
  void on_text(string_view text);
  void on_write(const asio::error_code& ec);
  void fail(const char* what, const asio::error_code& ec);
  void finish_closed();
  void maybe_idle();

  app& app_;
  worker& w_;
  role role_;
  size_t index_;
  asio::ip::address_v4 src_;
  tcp::socket sock_;
  /// TLS over sock_ with --tls (made anew for each connection attempt).
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;
  state st_ = state::idle;
  uint8_t mask_[4];
  size_t channel_ = 0;
  int64_t last_seq_ = -1;
  int pending_ = 0; // outstanding asio operations
  bool reading_ = false;
  bool writing_ = false;
  std::vector<char> rbuf_;
  size_t rlen_ = 0;
  std::string wbuf_;
  std::string inflight_;
};

/// Runs one scenario: owns workers and connections, orchestrates the phases
/// on worker 0 (where the publisher lives).
class app {
 public:
  explicit app(options opt);

  int run();

  // -- called by connections (on their worker's thread) -------------------

  void on_open(conn& c);
  void on_ok(conn& c);
  void on_delivery(conn& c, int64_t seq, int64_t t_ns);
  void on_conn_error(conn& c, const char* what, const std::string& detail);
  void on_server_close(conn& c, uint16_t code);
  void on_proto_error(conn& c, string_view text);
  void on_closed(conn& c); // churn: cycle over, no operation pending
  void on_handshake_done(conn& c, bool ok);

  const options& opt() const {
    return opt_;
  }

  const tcp::endpoint& server() const {
    return server_;
  }

  const tcp::endpoint& publish_server() const {
    return publish_server_;
  }

  const std::string& handshake(bool publisher) const {
    return publisher ? handshake_ : subscriber_handshake_;
  }

  /// The TLS client settings (nullptr without --tls).
  asio::ssl::context* tls() const {
    return tls_.get();
  }

  std::string channel_name(size_t ch) const {
    return "ch" + std::to_string(ch);
  }

  bool running() const {
    return running_.load(std::memory_order_relaxed);
  }

 private:
  worker& w0() {
    return *workers_[0];
  }

  void start_connecting(worker& w);
  void subscriber_settled();
  void begin_phase();
  void end_publishing();
  void end_stalled();
  void idle_publish();
  void pump();
  void publish_one(size_t ch, uint32_t expected);
  void tick_open_loop();
  void check_drain();
  void churn_request_publish(size_t ch);
  void churn_sweep();
  void setup_timeout();
  void finish();
  void in_worker(worker& w, std::function<void()> fn);
  uint64_t delivered_total() const;
  void after(asio::steady_timer& t, double seconds, void (app::*fn)());

  options opt_;
  tcp::endpoint server_;
  tcp::endpoint publish_server_;
  std::string handshake_;
  std::string subscriber_handshake_;
  std::unique_ptr<asio::ssl::context> tls_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<std::unique_ptr<conn>> conns_;
  std::unique_ptr<conn> publisher_;

  // Subscription bookkeeping.
  std::unique_ptr<std::atomic<uint32_t>[]> subs_per_channel_;
  std::atomic<size_t> settled_{0}; // subscribers acknowledged or failed
  std::atomic<size_t> subscribed_{0};
  std::atomic<bool> phase_posted_{false};

  // Closed loop: deliveries still missing per publication, by seq % size.
  std::unique_ptr<std::atomic<int32_t>[]> ring_;
  size_t ring_mask_ = 0;
  std::atomic<uint64_t> completed_{0};
  std::atomic<bool> pump_posted_{false};

  // Publisher state (worker 0 only).
  bool closed_loop_ = false;
  bool publishing_ = false;
  bool finished_ = false;
  bool stalled_ = false;
  uint64_t sent_ = 0;
  uint64_t expected_ = 0;
  uint64_t in_flight_base_ = 0; // publications counted in the closed loop
  uint64_t skipped_ = 0;
  size_t next_channel_ = 0;
  std::string frame_;
  std::string fill_;
  int64_t phase_start_ns_ = 0;
  int64_t phase_end_ns_ = 0;
  int64_t drain_start_ns_ = 0;
  int64_t last_progress_ns_ = 0;
  uint64_t last_progress_value_ = 0;
  double cpu_start_ = 0;
  double cpu_end_ = 0;
  int64_t setup_start_ns_ = 0;
  int64_t setup_end_ns_ = 0;
  const char* end_reason_ = "duration";

  // Errors, from any worker.
  std::atomic<uint64_t> conn_errors_{0};
  std::atomic<uint64_t> server_closes_{0};
  std::atomic<uint64_t> proto_errors_{0};
  std::atomic<int> error_prints_{0};
  std::atomic<bool> fatal_{false};
  std::atomic<bool> running_{true};

  // Churn.
  std::atomic<uint64_t> cycles_{0};
  std::atomic<uint64_t> churn_errors_{0};
  std::atomic<size_t> churn_active_{0};
  std::atomic<bool> churn_go_{false};
  std::atomic<uint64_t> churn_published_{0};

  std::unique_ptr<asio::steady_timer> phase_timer_;
  std::unique_ptr<asio::steady_timer> tick_timer_;
  std::unique_ptr<asio::steady_timer> setup_timer_;
};

// -- conn ---------------------------------------------------------------------

conn::conn(app& a, worker& w, role r, size_t index, asio::ip::address_v4 src)
  : app_(a), w_(w), role_(r), index_(index), src_(src), sock_(w.ctx) {
  uint32_t m = static_cast<uint32_t>(index * 2654435761u) ^ 0x5bd1e995u;
  if (m == 0)
    m = 1;
  std::memcpy(mask_, &m, 4);
  rbuf_.resize(4096);
}

void conn::start() {
  st_ = state::connecting;
  rlen_ = 0;
  last_seq_ = -1;
  wbuf_.clear();
  inflight_.clear();
  got_ok = false;
  got_publication = false;
  cycle_start_ns = now_ns();
  ++cycle_id;
  if (auto* ctx = app_.tls()) {
    tls_.emplace(sock_, *ctx);
    if (!app_.opt().tls_ca.empty())
      tls_->set_verify_callback(
        asio::ssl::host_name_verification(app_.opt().host));
  }
  asio::error_code ec;
  sock_.open(tcp::v4(), ec);
  if (!ec) {
    // Choose the source port at connect(), per destination: more fit.
#ifdef IP_BIND_ADDRESS_NO_PORT
    int one = 1;
    ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
                 &one, sizeof(one));
#endif
    sock_.bind(tcp::endpoint(src_, 0), ec);
  }
  if (ec) {
    fail("bind", ec);
    return;
  }
  ++pending_;
  sock_.async_connect(is_publisher() ? app_.publish_server() : app_.server(),
                      [this](const asio::error_code& ec) {
                        --pending_;
                        on_connect(ec);
                      });
}

void conn::on_connect(const asio::error_code& ec) {
  if (st_ != state::connecting) {
    maybe_idle();
    return;
  }
  if (ec) {
    fail("connect", ec);
    return;
  }
  asio::error_code ignored;
  sock_.set_option(tcp::no_delay(true), ignored);
  if (!tls_) {
    open_websocket();
    return;
  }
  st_ = state::handshaking;
  ++pending_;
  tls_->async_handshake(asio::ssl::stream_base::client,
                        [this](const asio::error_code& ec) {
                          --pending_;
                          on_tls_handshake(ec);
                        });
}

void conn::on_tls_handshake(const asio::error_code& ec) {
  if (st_ != state::handshaking) {
    maybe_idle();
    return;
  }
  if (ec) {
    fail("tls", ec);
    return;
  }
  open_websocket();
}

void conn::open_websocket() {
  st_ = state::handshaking;
  wbuf_ = app_.handshake(is_publisher());
  flush();
  do_read();
}

bool conn::active() const {
  return st_ == state::handshaking || st_ == state::open
    || st_ == state::closing;
}

void conn::do_read() {
  if (reading_ || !active())
    return;
  if (rlen_ == rbuf_.size())
    rbuf_.resize(rbuf_.size() * 2);
  reading_ = true;
  ++pending_;
  auto buf = asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_);
  auto done = [this](const asio::error_code& ec, size_t n) {
    --pending_;
    reading_ = false;
    on_read(ec, n);
  };
  if (tls_)
    tls_->async_read_some(buf, done);
  else
    sock_.async_read_some(buf, done);
}

void conn::on_read(const asio::error_code& ec, size_t n) {
  if (!active()) {
    maybe_idle();
    return;
  }
  if (ec) {
    if (st_ == state::closing) {
      finish_closed(); // the server ended the closing handshake
      return;
    }
    fail(ec == asio::error::eof ? "eof" : "read", ec);
    return;
  }
  rlen_ += n;
  if (st_ == state::handshaking && !parse_handshake())
    return;
  if (st_ == state::open || st_ == state::closing)
    parse_frames();
  do_read();
}

bool conn::parse_handshake() {
  string_view data{rbuf_.data(), rlen_};
  auto end = data.find("\r\n\r\n");
  if (end == string_view::npos) {
    if (rlen_ > 16384) {
      fail("handshake", asio::error::message_size);
      return false;
    }
    do_read();
    return false;
  }
  bool ok = data.substr(0, 13) == "HTTP/1.1 101 ";
  if (!ok) {
    app_.on_conn_error(*this, "handshake",
                       std::string{data.substr(0, data.find("\r\n"))});
    app_.on_handshake_done(*this, false);
    st_ = state::closed;
    asio::error_code ignored;
    sock_.close(ignored);
    maybe_idle();
    return false;
  }
  size_t consumed = end + 4;
  std::memmove(rbuf_.data(), rbuf_.data() + consumed, rlen_ - consumed);
  rlen_ -= consumed;
  st_ = state::open;
  app_.on_handshake_done(*this, true);
  app_.on_open(*this);
  return st_ != state::closed;
}

void conn::parse_frames() {
  size_t off = 0;
  size_t need = 0;
  while (st_ == state::open || st_ == state::closing) {
    size_t avail = rlen_ - off;
    if (avail < 2)
      break;
    auto p = reinterpret_cast<const uint8_t*>(rbuf_.data() + off);
    uint8_t b0 = p[0];
    uint8_t b1 = p[1];
    if (b1 & 0x80) {
      app_.on_proto_error(*this, "masked frame from server");
      fail("protocol", asio::error::invalid_argument);
      return;
    }
    size_t hlen = 2;
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
      if (avail < 4)
        break;
      len = (uint64_t{p[2]} << 8) | p[3];
      hlen = 4;
    } else if (len == 127) {
      if (avail < 10)
        break;
      len = 0;
      for (int i = 2; i < 10; ++i)
        len = (len << 8) | p[i];
      hlen = 10;
    }
    if (len > (uint64_t{64} << 20)) {
      app_.on_proto_error(*this, "frame over 64 MiB");
      fail("protocol", asio::error::message_size);
      return;
    }
    if (avail < hlen + len) {
      need = hlen + static_cast<size_t>(len);
      break;
    }
    on_frame(b0 & 0x0f, (b0 & 0x80) != 0, rbuf_.data() + off + hlen,
             static_cast<size_t>(len));
    off += hlen + static_cast<size_t>(len);
  }
  if (st_ != state::open && st_ != state::closing)
    return;
  if (off > 0) {
    std::memmove(rbuf_.data(), rbuf_.data() + off, rlen_ - off);
    rlen_ -= off;
  }
  if (need > rbuf_.size())
    rbuf_.resize(need);
}

int64_t parse_int_after(string_view text, string_view key, size_t& pos) {
  auto at = text.find(key, pos);
  if (at == string_view::npos)
    return -1;
  const char* first = text.data() + at + key.size();
  const char* last = text.data() + text.size();
  while (first != last && *first == ' ')
    ++first;
  int64_t value = -1;
  auto res = std::from_chars(first, last, value);
  if (res.ec != std::errc{})
    return -1;
  pos = static_cast<size_t>(res.ptr - text.data());
  return value;
}

void conn::on_frame(uint8_t opcode, bool fin, const char* data, size_t size) {
  switch (opcode) {
    case 0x1:
      if (!fin) {
        app_.on_proto_error(*this, "fragmented text frame (not supported)");
        fail("protocol", asio::error::operation_not_supported);
        return;
      }
      on_text(string_view{data, size});
      return;
    case 0x0:
    case 0x2:
      app_.on_proto_error(*this, "unexpected binary or continuation frame");
      return;
    case 0x8: { // close
      uint16_t code = size >= 2
        ? static_cast<uint16_t>((uint8_t(data[0]) << 8) | uint8_t(data[1]))
        : 1005;
      if (st_ != state::closing) {
        app_.on_server_close(*this, code);
        st_ = state::closing;
        uint8_t echo[2] = {uint8_t(code >> 8), uint8_t(code & 0xff)};
        if (code == 1005)
          append_frame(0x8, nullptr, 0);
        else
          append_frame(0x8, reinterpret_cast<const char*>(echo), 2);
        flush();
      }
      return;
    }
    case 0x9: // ping
      append_frame(0xA, data, size);
      flush();
      return;
    default: // pong and reserved opcodes
      return;
  }
}

void conn::on_text(string_view text) {
  size_t pos = 0;
  int64_t seq = parse_int_after(text, "\"seq\":", pos);
  if (seq >= 0) {
    int64_t t = parse_int_after(text, "\"t\":", pos);
    if (seq <= last_seq_)
      ++w_.order_errors;
    last_seq_ = seq;
    app_.on_delivery(*this, seq, t);
    return;
  }
  if (text.find("\"type\":\"ok\"") != string_view::npos) {
    if (identifying) {
      identifying = false; // the connect's ok
    } else if (!got_ok) {
      got_ok = true;
      app_.on_ok(*this);
    }
    return;
  }
  if (text.find("\"type\":\"pong\"") != string_view::npos)
    return;
  app_.on_proto_error(*this, text);
}

void conn::append_frame(uint8_t opcode, const char* data, size_t size) {
  char hdr[14];
  size_t h = 0;
  hdr[h++] = static_cast<char>(0x80 | opcode);
  if (size < 126) {
    hdr[h++] = static_cast<char>(0x80 | size);
  } else if (size < 65536) {
    hdr[h++] = static_cast<char>(0x80 | 126);
    hdr[h++] = static_cast<char>(size >> 8);
    hdr[h++] = static_cast<char>(size & 0xff);
  } else {
    hdr[h++] = static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i)
      hdr[h++] = static_cast<char>((uint64_t{size} >> (8 * i)) & 0xff);
  }
  std::memcpy(hdr + h, mask_, 4);
  h += 4;
  wbuf_.append(hdr, h);
  size_t start = wbuf_.size();
  if (size > 0)
    wbuf_.append(data, size);
  char* out = wbuf_.data() + start;
  for (size_t i = 0; i < size; ++i)
    out[i] = static_cast<char>(out[i] ^ mask_[i & 3]);
}

void conn::flush() {
  if (writing_ || wbuf_.empty() || !active())
    return;
  std::swap(wbuf_, inflight_);
  writing_ = true;
  ++pending_;
  auto done = [this](const asio::error_code& ec, size_t) {
    --pending_;
    writing_ = false;
    inflight_.clear();
    on_write(ec);
  };
  if (tls_)
    asio::async_write(*tls_, asio::buffer(inflight_), done);
  else
    asio::async_write(sock_, asio::buffer(inflight_), done);
}

void conn::on_write(const asio::error_code& ec) {
  if (!active()) {
    maybe_idle();
    return;
  }
  if (ec) {
    if (st_ == state::closing) {
      finish_closed();
      return;
    }
    fail("write", ec);
    return;
  }
  flush();
}

void conn::close_gracefully() {
  if (st_ != state::open)
    return;
  st_ = state::closing;
  const char code[2] = {char(1000 >> 8), char(1000 & 0xff)};
  append_frame(0x8, code, 2);
  flush();
}

void conn::abort() {
  if (st_ == state::closed || st_ == state::idle)
    return;
  st_ = state::closed;
  asio::error_code ignored;
  sock_.close(ignored);
  maybe_idle();
}

void conn::fail(const char* what, const asio::error_code& ec) {
  if (st_ == state::closed)
    return;
  bool handshaking = st_ == state::connecting || st_ == state::handshaking;
  st_ = state::closed;
  asio::error_code ignored;
  sock_.close(ignored);
  app_.on_conn_error(*this, what, ec.message());
  if (handshaking)
    app_.on_handshake_done(*this, false);
  maybe_idle();
}

void conn::finish_closed() {
  st_ = state::closed;
  asio::error_code ignored;
  sock_.close(ignored);
  maybe_idle();
}

void conn::maybe_idle() {
  if (st_ == state::closed && pending_ == 0 && role_ == role::churner) {
    st_ = state::idle;
    app_.on_closed(*this);
  }
}

// -- app ----------------------------------------------------------------------

app::app(options opt) : opt_(std::move(opt)) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(opt_.host, ec);
  if (ec)
    usage(("bad --host " + opt_.host).c_str());
  server_ = tcp::endpoint(addr, opt_.port);
  publish_server_ = tcp::endpoint(
    addr, opt_.publish_port != 0 ? opt_.publish_port : opt_.port);
  if (opt_.tls) {
    tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    if (opt_.tls_ca.empty()) {
      tls_->set_verify_mode(asio::ssl::verify_none);
    } else {
      asio::error_code tec;
      tls_->load_verify_file(opt_.tls_ca, tec);
      if (tec)
        usage(("cannot load --tls-ca " + opt_.tls_ca + ": " + tec.message())
                .c_str());
      tls_->set_verify_mode(asio::ssl::verify_peer);
    }
  }
  auto request = [&](const std::string& extra) {
    return "GET " + opt_.path + " HTTP/1.1\r\nHost: " + opt_.host + ":"
      + std::to_string(opt_.port)
      + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
      + extra + "\r\n";
  };
  handshake_ = request("");
  subscriber_handshake_
    = request(opt_.origin.empty() ? "" : "Origin: " + opt_.origin + "\r\n");
  bool single = opt_.threads == 1;
  for (size_t t = 0; t < opt_.threads; ++t) {
    workers_.push_back(std::make_unique<worker>(t, single));
    workers_.back()->max_connecting
      = std::max<size_t>(1, opt_.connect_concurrency / opt_.threads);
  }
  phase_timer_ = std::make_unique<asio::steady_timer>(w0().ctx);
  tick_timer_ = std::make_unique<asio::steady_timer>(w0().ctx);
  setup_timer_ = std::make_unique<asio::steady_timer>(w0().ctx);
  closed_loop_ = opt_.rate == 0
    && (opt_.scen == scenario::fanout || opt_.scen == scenario::wide
        || opt_.scen == scenario::channels);
  subs_per_channel_ = std::make_unique<std::atomic<uint32_t>[]>(opt_.channels);
  for (size_t i = 0; i < opt_.channels; ++i)
    subs_per_channel_[i].store(0);
  size_t ring_size = 1024;
  while (ring_size < 4 * opt_.window)
    ring_size *= 2;
  ring_ = std::make_unique<std::atomic<int32_t>[]>(ring_size);
  for (size_t i = 0; i < ring_size; ++i)
    ring_[i].store(0);
  ring_mask_ = ring_size - 1;
  role r = opt_.scen == scenario::churn ? role::churner : role::subscriber;
  for (size_t i = 0; i < opt_.subscribers; ++i) {
    auto& w = *workers_[i % workers_.size()];
    asio::ip::address_v4 src{static_cast<asio::ip::address_v4::uint_type>(
      (127u << 24) | (2u + static_cast<uint32_t>(i % opt_.sources)))};
    auto c = std::make_unique<conn>(*this, w, r, i, src);
    c->set_channel(i % opt_.channels);
    w.conns.push_back(c.get());
    conns_.push_back(std::move(c));
  }
  publisher_ = std::make_unique<conn>(*this, w0(), role::publisher,
                                      opt_.subscribers,
                                      asio::ip::address_v4::loopback());
  fill_.assign(opt_.payload, 'x');
  frame_.reserve(fill_.size() + 160);
}

void app::in_worker(worker& w, std::function<void()> fn) {
  asio::post(w.ctx, std::move(fn));
}

void app::after(asio::steady_timer& t, double seconds, void (app::*fn)()) {
  t.expires_after(
    std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9)));
  t.async_wait([this, fn](const asio::error_code& ec) {
    if (!ec && !finished_)
      (this->*fn)();
  });
}

int app::run() {
  setup_start_ns_ = now_ns();
  asio::post(w0().ctx, [this] {
    publisher_->start();
  });
  after(*setup_timer_, opt_.setup_timeout, &app::setup_timeout);
  for (size_t t = 1; t < workers_.size(); ++t) {
    auto* w = workers_[t].get();
    w->thread = std::thread{[w] {
      w->ctx.run();
    }};
  }
  w0().ctx.run();
  for (size_t t = 1; t < workers_.size(); ++t)
    workers_[t]->thread.join();

  // -- report ---------------------------------------------------------------
  histogram hist;
  uint64_t delivered = 0;
  uint64_t order_errors = 0;
  int64_t last_delivery = 0;
  for (auto& w : workers_) {
    hist.merge(w->hist);
    delivered += w->delivered.load();
    order_errors += w->order_errors;
    last_delivery = std::max(last_delivery, w->last_delivery_ns);
  }
  size_t open_at_end = 0;
  for (auto& c : conns_)
    if (c->st() == state::open)
      ++open_at_end;
  if (phase_start_ns_ == 0)
    phase_start_ns_ = now_ns();
  if (phase_end_ns_ == 0)
    phase_end_ns_ = now_ns();
  double window_s = std::max(1e-9, (phase_end_ns_ - phase_start_ns_) / 1e9);
  double elapsed_s = delivered > 0 && last_delivery > phase_start_ns_
    ? (last_delivery - phase_start_ns_) / 1e9
    : window_s;
  int64_t lost = static_cast<int64_t>(expected_)
    - static_cast<int64_t>(delivered);
  uint64_t extra = lost < 0 ? static_cast<uint64_t>(-lost) : 0;
  if (lost < 0)
    lost = 0;
  double cpu = cpu_end_ - cpu_start_;
  double wall = std::max(1e-9, (now_ns() - phase_start_ns_) / 1e9);
  bool churn = opt_.scen == scenario::churn;
  bool ok = !fatal_ && lost == 0 && extra == 0 && conn_errors_ == 0
    && proto_errors_ == 0 && order_errors == 0 && !stalled_ && delivered > 0
    && (!churn || (churn_errors_ == 0 && cycles_ > 0));
  auto us = [](uint64_t ns) {
    return ns / 1000.0;
  };
  std::printf(
    "scenario=%s mode=%s subscribers=%zu channels=%zu payload=%zu window=%zu "
    "rate=%.0f threads=%zu subscribed=%zu open_at_end=%zu conn_errors=%" PRIu64
    " server_closes=%" PRIu64 " proto_errors=%" PRIu64 " order_errors=%" PRIu64
    " sent=%" PRIu64 " skipped=%" PRIu64 " expected=%" PRIu64
    " delivered=%" PRIu64 " lost=%" PRId64 " extra=%" PRIu64
    " duration_s=%.3f elapsed_s=%.3f pubs_per_s=%.1f msgs_per_s=%.1f"
    " p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f samples=%" PRIu64
    " setup_s=%.3f client_cpu_s=%.3f client_util=%.2f stalled=%d end=%s"
    " cycles=%" PRIu64 " cycles_per_s=%.1f churn_errors=%" PRIu64
    " status=%s\n",
    opt_.scen_name.c_str(), closed_loop_ ? "closed" : "open", opt_.subscribers,
    opt_.channels, opt_.payload, opt_.window, opt_.rate, opt_.threads,
    subscribed_.load(), open_at_end, conn_errors_.load(), server_closes_.load(),
    proto_errors_.load(), order_errors, sent_, skipped_, expected_, delivered,
    lost, extra, window_s, elapsed_s, sent_ / window_s, delivered / elapsed_s,
    us(hist.percentile(0.5)), us(hist.percentile(0.99)),
    us(hist.percentile(0.999)), us(hist.max()), hist.total(),
    (setup_end_ns_ > 0 ? setup_end_ns_ - setup_start_ns_ : 0) / 1e9, cpu,
    cpu / wall, stalled_ ? 1 : 0, end_reason_, cycles_.load(),
    cycles_ / window_s, churn_errors_.load(), ok ? "ok" : "fail");
  std::fflush(stdout);
  if (fatal_)
    return 3;
  return opt_.strict && !ok ? 1 : 0;
}

void app::setup_timeout() {
  if (phase_posted_.exchange(true))
    return;
  auto settled = settled_.load();
  std::fprintf(stderr,
               "loadgen: setup timeout: %zu of %zu subscribers settled\n",
               settled, opt_.subscribers);
  conn_errors_ += opt_.subscribers - settled;
  if (subscribed_ == 0 && opt_.scen != scenario::churn) {
    fatal_ = true;
    finish();
    return;
  }
  begin_phase();
}

void app::start_connecting(worker& w) {
  if (w.launching)
    return;
  w.launching = true;
  while (w.connecting < w.max_connecting && w.next_start < w.conns.size()) {
    auto* c = w.conns[w.next_start++];
    ++w.connecting;
    c->start();
  }
  w.launching = false;
}

void app::on_handshake_done(conn& c, bool) {
  if (c.is_publisher() || c.is_churner())
    return;
  auto& w = c.w();
  --w.connecting;
  start_connecting(w);
}

void app::on_open(conn& c) {
  if (c.is_publisher()) {
    if (opt_.scen == scenario::churn) {
      begin_phase();
      return;
    }
    for (auto& w : workers_) {
      auto* wp = w.get();
      in_worker(*wp, [this, wp] {
        start_connecting(*wp);
      });
    }
    return;
  }
  std::string cmd = "{\"type\":\"subscribe\",\"channel\":\""
    + channel_name(c.channel()) + "\",\"id\":" + std::to_string(c.index());
  if (opt_.filter_half)
    cmd += std::string{",\"filter\":{\"key\":\"g\",\"op\":\"eq\",\"value\":\""}
      + (c.index() % 2 == 0 ? "a" : "b") + "\"}";
  cmd += "}";
  // With a token, connect first: commands run in order, so the first ok is
  // the connect's and the second the subscribe's.
  if (!opt_.token.empty()) {
    auto connect = "{\"type\":\"connect\",\"id\":0,\"token\":\"" + opt_.token
      + "\"}";
    c.append_frame(0x1, connect.data(), connect.size());
    c.identifying = true;
  }
  c.send_text(cmd);
}

void app::on_ok(conn& c) {
  if (c.is_publisher())
    return;
  if (c.is_churner()) {
    if (&c.w() == &w0()) {
      churn_request_publish(c.channel());
    } else {
      auto ch = c.channel();
      in_worker(w0(), [this, ch] {
        churn_request_publish(ch);
      });
    }
    return;
  }
  if (c.settled)
    return;
  c.settled = true;
  // With --filter-half, only the subscribers whose filter passes g=a count.
  if (!opt_.filter_half || c.index() % 2 == 0)
    subs_per_channel_[c.channel()].fetch_add(1, std::memory_order_relaxed);
  subscribed_.fetch_add(1);
  subscriber_settled();
}

void app::subscriber_settled() {
  if (settled_.fetch_add(1) + 1 == opt_.subscribers
      && !phase_posted_.exchange(true))
    in_worker(w0(), [this] {
      begin_phase();
    });
}

void app::on_conn_error(conn& c, const char* what, const std::string& detail) {
  if (!running())
    return;
  if (c.is_publisher()) {
    std::fprintf(stderr, "loadgen: publisher connection failed: %s: %s\n", what,
                 detail.c_str());
    fatal_ = true;
    in_worker(w0(), [this] {
      finish();
    });
    return;
  }
  if (error_prints_.fetch_add(1) < 5)
    std::fprintf(stderr, "loadgen: connection %zu: %s: %s\n", c.index(), what,
                 detail.c_str());
  if (c.is_churner())
    return; // counted per cycle in on_closed
  conn_errors_.fetch_add(1);
  if (!c.settled) {
    c.settled = true;
    subscriber_settled();
  }
}

void app::on_server_close(conn& c, uint16_t code) {
  if (!running())
    return;
  server_closes_.fetch_add(1);
  on_conn_error(c, "closed by server, code", std::to_string(code));
}

void app::on_proto_error(conn& c, string_view text) {
  if (!running())
    return;
  proto_errors_.fetch_add(1);
  if (error_prints_.fetch_add(1) < 5)
    std::fprintf(stderr, "loadgen: connection %zu: unexpected frame: %.*s\n",
                 c.index(),
                 static_cast<int>(std::min<size_t>(text.size(), 200)),
                 text.data());
}

void app::on_delivery(conn& c, int64_t seq, int64_t t_ns) {
  auto& w = c.w();
  int64_t now = now_ns();
  if (t_ns >= 0)
    w.hist.record(now - t_ns);
  w.last_delivery_ns = now;
  w.delivered.fetch_add(1, std::memory_order_relaxed);
  if (c.is_churner()) {
    c.got_publication = true;
    c.close_gracefully();
    return;
  }
  if (!closed_loop_)
    return;
  auto& slot = ring_[static_cast<uint64_t>(seq) & ring_mask_];
  if (slot.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    completed_.fetch_add(1, std::memory_order_release);
    if (&w == &w0())
      pump();
    else if (!pump_posted_.exchange(true))
      in_worker(w0(), [this] {
        pump_posted_ = false;
        pump();
      });
  }
}

void app::on_closed(conn& c) {
  // A churn cycle is over and no operation is pending on `c`.
  if (running()) {
    if (c.got_publication)
      cycles_.fetch_add(1);
    else
      churn_errors_.fetch_add(1);
  }
  if (running() && churn_go_.load()) {
    // Not from inside the handler that ended the cycle.
    auto* cp = &c;
    in_worker(c.w(), [cp] {
      cp->start();
    });
    return;
  }
  churn_active_.fetch_sub(1);
}

// -- phases (worker 0) --------------------------------------------------------

void app::begin_phase() {
  phase_posted_ = true;
  setup_timer_->cancel();
  setup_end_ns_ = now_ns();
  std::fprintf(stderr, "loadgen: ready subscribed=%zu of %zu setup_s=%.2f\n",
               subscribed_.load(), opt_.subscribers,
               (setup_end_ns_ - setup_start_ns_) / 1e9);
  std::fflush(stderr);
  cpu_start_ = cpu_seconds();
  phase_start_ns_ = now_ns();
  last_progress_ns_ = phase_start_ns_;
  switch (opt_.scen) {
    case scenario::idle:
      after(*phase_timer_, opt_.duration, &app::idle_publish);
      return;
    case scenario::churn:
      publishing_ = true;
      churn_go_ = true;
      churn_active_ = conns_.size();
      for (auto& w : workers_) {
        auto* wp = w.get();
        in_worker(*wp, [wp] {
          for (auto* c : wp->conns)
            c->start();
        });
      }
      after(*phase_timer_, opt_.duration, &app::end_publishing);
      after(*tick_timer_, 0.25, &app::churn_sweep);
      return;
    default:
      publishing_ = true;
      after(*phase_timer_, opt_.duration, &app::end_publishing);
      if (closed_loop_)
        pump();
      tick_open_loop(); // open loop: publishes; closed loop: watchdog
      return;
  }
}

void app::publish_one(size_t ch, uint32_t expected) {
  uint64_t seq = sent_++;
  expected_ += expected;
  if (closed_loop_ && expected > 0) {
    auto& slot = ring_[seq & ring_mask_];
    if (slot.load(std::memory_order_acquire) > 0) {
      // A publication a ring length ago never completed: it is lost.
      stalled_ = true;
      end_reason_ = "lost-in-flight";
    }
    slot.store(static_cast<int32_t>(expected), std::memory_order_release);
    ++in_flight_base_;
  }
  char num[24];
  auto put = [&](uint64_t v) {
    auto res = std::to_chars(num, num + sizeof(num), v);
    frame_.append(num, static_cast<size_t>(res.ptr - num));
  };
  frame_.clear();
  frame_ += "{\"type\":\"publish\",\"channel\":\"ch";
  put(ch);
  frame_ += "\",\"event\":\"b\",\"data\":{\"seq\":";
  put(seq);
  frame_ += ",\"t\":";
  put(static_cast<uint64_t>(now_ns()));
  frame_ += ",\"p\":\"";
  frame_ += fill_;
  frame_ += "\"}";
  if (opt_.filter_half)
    frame_ += ",\"tags\":{\"g\":\"a\"}";
  frame_ += "}";
  publisher_->send_text(frame_);
  if (stalled_ && publishing_)
    end_publishing();
}

void app::pump() {
  while (publishing_) {
    uint64_t outstanding = in_flight_base_
      - completed_.load(std::memory_order_acquire);
    if (outstanding >= opt_.window)
      return;
    if (publisher_->write_backlog() > (8u << 20))
      return; // the server stopped reading; the watchdog retries
    // The publication a ring length ago is still arriving (deliveries on
    // different channels overtake each other): wait for it rather than
    // count it lost. A real loss stops all progress; the watchdog sees it.
    if (ring_[sent_ & ring_mask_].load(std::memory_order_acquire) > 0)
      return;
    size_t ch = next_channel_;
    next_channel_ = (next_channel_ + 1) % opt_.channels;
    publish_one(ch, subs_per_channel_[ch].load(std::memory_order_relaxed));
  }
}

void app::tick_open_loop() {
  if (!publishing_)
    return;
  int64_t now = now_ns();
  if (closed_loop_) {
    // Watchdog: a window that makes no progress for 5 s is stalled.
    auto done = completed_.load();
    if (done != last_progress_value_) {
      last_progress_value_ = done;
      last_progress_ns_ = now;
    } else if (now - last_progress_ns_ > 5'000'000'000) {
      std::fprintf(stderr, "loadgen: no publication completed for 5 s\n");
      stalled_ = true;
      end_reason_ = "stalled";
      end_publishing();
      return;
    }
    pump();
    after(*tick_timer_, 0.05, &app::tick_open_loop);
    return;
  }
  auto due = static_cast<uint64_t>((now - phase_start_ns_) / 1e9 * opt_.rate);
  while (sent_ + skipped_ < due) {
    if (publisher_->write_backlog() > (8u << 20)) {
      ++skipped_;
      continue;
    }
    size_t ch = next_channel_;
    next_channel_ = (next_channel_ + 1) % opt_.channels;
    publish_one(ch, subs_per_channel_[ch].load(std::memory_order_relaxed));
  }
  after(*tick_timer_, 0.001, &app::tick_open_loop);
}

void app::idle_publish() {
  // One publication per channel: every held connection must still be alive.
  publishing_ = true;
  for (size_t ch = 0; ch < opt_.channels; ++ch)
    publish_one(ch, subs_per_channel_[ch].load());
  end_publishing();
}

void app::end_publishing() {
  if (phase_end_ns_ != 0)
    return;
  publishing_ = false;
  churn_go_ = false;
  phase_end_ns_ = now_ns();
  drain_start_ns_ = phase_end_ns_;
  tick_timer_->cancel();
  check_drain();
}

void app::check_drain() {
  int64_t now = now_ns();
  bool timed_out = now - drain_start_ns_
    > static_cast<int64_t>(opt_.drain * 1e9);
  if (opt_.scen == scenario::churn) {
    if (churn_active_.load() == 0) {
      finish();
      return;
    }
    if (timed_out) {
      std::fprintf(stderr, "loadgen: %zu churn loops still busy after drain\n",
                   churn_active_.load());
      churn_errors_ += churn_active_.load();
      finish();
      return;
    }
  } else if (delivered_total() >= expected_ || timed_out) {
    finish();
    return;
  }
  after(*phase_timer_, 0.01, &app::check_drain);
}

void app::churn_request_publish(size_t ch) {
  if (!running())
    return;
  churn_published_.fetch_add(1);
  publish_one(ch, 1);
}

void app::churn_sweep() {
  // A cycle taking over 5 s has failed: abort it (on_closed counts it).
  int64_t limit = now_ns() - 5'000'000'000;
  for (auto& w : workers_) {
    auto* wp = w.get();
    in_worker(*wp, [wp, limit] {
      for (auto* c : wp->conns)
        if (c->st() != state::idle && c->cycle_start_ns < limit)
          c->abort();
    });
  }
  if (phase_end_ns_ == 0)
    after(*tick_timer_, 0.25, &app::churn_sweep);
}

uint64_t app::delivered_total() const {
  uint64_t n = 0;
  for (auto& w : workers_)
    n += w->delivered.load(std::memory_order_relaxed);
  return n;
}

void app::finish() {
  if (finished_)
    return;
  finished_ = true;
  cpu_end_ = cpu_seconds();
  if (phase_end_ns_ == 0)
    phase_end_ns_ = now_ns();
  running_ = false;
  setup_timer_->cancel();
  tick_timer_->cancel();
  phase_timer_->cancel();
  for (auto& w : workers_) {
    w->guard.reset();
    w->ctx.stop();
  }
}

void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

} // namespace

int main(int argc, char** argv) {
  auto opt = parse_options(argc, argv);
  raise_fd_limit();
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur != RLIM_INFINITY && opt.subscribers + 32 > lim.rlim_cur) {
    std::fprintf(stderr,
                 "livehub-loadgen: %zu connections need more than the "
                 "open-file limit %llu\n",
                 opt.subscribers,
                 static_cast<unsigned long long>(lim.rlim_cur));
    return 2;
  }
  app a{opt};
  return a.run();
}
