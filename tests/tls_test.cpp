// TLS (PROTOCOL.md, "TLS"): with `livehub.tls-cert-file` and
// `livehub.tls-key-file` the server's one port serves wss:// and https://
// only, TLS 1.2 and 1.3 only. Certificates are made at test time with the
// openssl command (support/test_pki.hpp), and the test client verifies them
// as a real client does: the chain against the test CA, the name against
// 127.0.0.1. Waits are generous bounds, never speed requirements.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <openssl/ssl.h>

#include "livehub/all.hpp"
#include "support/served_hub.hpp"
#include "support/sockets.hpp"
#include "support/stalled_reader.hpp"
#include "support/test_pki.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using namespace livehub::test;
using livehub::hub_config;

namespace {

using clock_type = std::chrono::steady_clock;

/// How long a test waits for anything that must arrive.
constexpr auto wait_time = 10s;

/// The server's open-handshake timeout (transport/endpoint.cpp), which
/// bounds the TLS handshake too, plus room for a loaded machine.
constexpr auto handshake_bound = 10s + 10s;

/// Test certificates and a hub served over TLS with them.
struct tls_hub {
  explicit tls_hub(hub_config cfg = loopback_config())
    : srv(with_tls(std::move(cfg), pki)) {
    trusting.ca_file = pki.ca_cert;
  }

  static hub_config with_tls(hub_config cfg, const test_pki& pki) {
    cfg.tls_cert_file = pki.server_chain;
    cfg.tls_key_file = pki.server_key;
    return cfg;
  }

  /// A verifying wss:// client.
  ws_client connect(ws_options opts = {}) const {
    opts.tls = &trusting;
    return ws_client{srv.port, std::move(opts)};
  }

  /// A verifying https:// request.
  http_response request(std::string_view method, std::string_view path,
                        const header_list& headers = {},
                        std::string_view body = {}) const {
    return https_request(srv.port, trusting, method, path, headers, body);
  }

  /// POST /api/publish over https (a loopback peer may publish).
  void publish(const std::string& channel, const std::string& data) const {
    auto res = request("POST", "/api/publish",
                       {{"Content-Type", "application/json"}},
                       R"({"channel":")" + channel
                         + R"(","type":"message","data":)" + data + "}");
    INFO("TLS error: " << res.tls_error << ", body: " << res.body);
    REQUIRE(res.status == 202);
  }

  test_pki pki;
  served_hub srv;
  /// Trusts the test CA, expects a certificate for 127.0.0.1.
  tls_options trusting;
};

/// Subscribes `c` to `channel` and waits for the acknowledgement.
void subscribe(ws_client& c, const std::string& channel) {
  REQUIRE(c.send_text(R"({"type":"subscribe","channel":")" + channel
                      + R"(","id":1})"));
  auto ok = c.receive(wait_time);
  INFO(ok.describe());
  REQUIRE(ok.kind == ws_kind::text);
  REQUIRE(ok.data.find(R"("type":"ok")") != std::string::npos);
}

/// Reads `fd` until the server ends the connection (true) or
/// `bound` passes (false); whatever arrived goes to `received`.
bool ended_within(int fd, std::chrono::seconds bound, std::string& received) {
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  for (auto deadline = clock_type::now() + bound;
       clock_type::now() < deadline;) {
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0)
      received.append(buf, static_cast<size_t>(n));
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      return true; // end of stream or reset
  }
  return false;
}

/// A subscriber and a publisher over verified TLS still exchange a
/// publication: the server serves others.
void still_serves(const tls_hub& h) {
  auto sub = h.connect();
  REQUIRE(sub.status() == 101);
  subscribe(sub, "alive");
  h.publish("alive", R"({"still":"serving"})");
  auto msg = sub.receive(wait_time);
  INFO(msg.describe());
  CHECK(msg.data.find(R"("still":"serving")") != std::string::npos);
  auto health = h.request("GET", "/healthz");
  CHECK(health.status == 200);
}

} // namespace

TEST_CASE("over TLS, clients that verify the server subscribe, publish and "
          "receive, small and large messages alike") {
  tls_hub h;
  auto sub = h.connect();
  INFO("TLS error: " << sub.tls_error());
  REQUIRE(sub.status() == 101);
  subscribe(sub, "chat");
  // A loopback client without Origin is a trusted publisher.
  auto pub = h.connect();
  REQUIRE(pub.status() == 101);
  REQUIRE(pub.send_text(
    R"({"type":"publish","channel":"chat","event":"message","data":{"n":1}})"));
  auto msg = sub.receive(wait_time);
  INFO(msg.describe());
  REQUIRE(msg.kind == ws_kind::text);
  CHECK(msg.data == R"({"channel":"chat","type":"message","data":{"n":1}})");
  // A burst of small commands (many TLS records read at once) and a
  // publication of 300 KiB (many records each way) arrive whole and in
  // order.
  std::string burst;
  for (int i = 2; i <= 200; ++i)
    REQUIRE(pub.send_text(
      R"({"type":"publish","channel":"chat","event":"message","data":{"n":)"
      + std::to_string(i) + "}}"));
  std::string big(300 * 1024, 'x');
  REQUIRE(pub.send_text(
    R"({"type":"publish","channel":"chat","event":"message","data":")" + big
    + R"("})"));
  for (int i = 2; i <= 200; ++i) {
    auto m = sub.receive(wait_time);
    INFO(m.describe());
    REQUIRE(m.kind == ws_kind::text);
    REQUIRE(m.data.find(R"({"n":)" + std::to_string(i) + "}")
            != std::string::npos);
  }
  auto large = sub.receive(wait_time);
  REQUIRE(large.kind == ws_kind::text);
  CHECK(large.data.size() > big.size());
  CHECK(large.data.find(big) != std::string::npos);
  // The close handshake works over TLS too.
  auto closed = sub.close(1000);
  CHECK(closed.kind == ws_kind::close);
}

TEST_CASE("https serves the HTTP endpoints: GET /healthz and POST "
          "/api/publish") {
  tls_hub h;
  auto health = h.request("GET", "/healthz");
  INFO("TLS error: " << health.tls_error);
  CHECK(health.status == 200);
  CHECK(health.body == "ok");
  auto sub = h.connect();
  REQUIRE(sub.status() == 101);
  subscribe(sub, "news");
  h.publish("news", R"({"via":"https"})");
  auto msg = sub.receive(wait_time);
  INFO(msg.describe());
  CHECK(msg.data
        == R"({"channel":"news","type":"message","data":{"via":"https"}})");
  auto stats = h.request("GET", "/api/stats");
  CHECK(stats.status == 200);
  CHECK(stats.body.find(R"("connections":1)") != std::string::npos);
}

TEST_CASE("https keeps a connection alive across requests, pipelined ones "
          "included, within one TLS session") {
  tls_hub h;
  auto sub = h.connect();
  REQUIRE(sub.status() == 101);
  subscribe(sub, "news");
  http_connection http{h.srv.port, &h.trusting};
  REQUIRE(http.is_open());
  auto publish = [&](int n) {
    return http.request("POST", "/api/publish",
                        R"({"channel":"news","type":"t","data":)"
                          + std::to_string(n) + "}");
  };
  REQUIRE(http.send(publish(1)));
  auto first = http.read_response();
  CHECK(first.status == 202);
  CHECK(first.headers["connection"] == "keep-alive");
  // Three requests in one write: one run of TLS records, which the server
  // reads (and OpenSSL decrypts) ahead of the request it serves.
  REQUIRE(http.send(publish(2) + http.request("GET", "/healthz") + publish(3)));
  for (int status : {202, 200, 202}) {
    auto res = http.read_response();
    CHECK(res.status == status);
    CHECK(res.headers["connection"] == "keep-alive");
  }
  REQUIRE(
    http.send(http.request("GET", "/healthz", {}, {{"Connection", "close"}})));
  auto last = http.read_response();
  CHECK(last.status == 200);
  CHECK(last.headers["connection"] == "close");
  CHECK(http.ends(wait_time));
  for (int n = 1; n <= 3; ++n) {
    auto msg = sub.receive(wait_time);
    INFO(msg.describe());
    CHECK(msg.data
          == R"({"channel":"news","type":"t","data":)" + std::to_string(n)
            + "}");
  }
}

TEST_CASE("a client that does not trust the server's CA, or expects another "
          "name, fails the handshake") {
  tls_hub h;
  tls_options other_ca;
  other_ca.ca_file = h.pki.other_ca_cert;
  ws_options opts;
  opts.tls = &other_ca;
  ws_client distrusting{h.srv.port, opts};
  CHECK(distrusting.status() == 0);
  CHECK(distrusting.tls_error().find("certificate verify failed")
        != std::string::npos);
  auto res = https_request(h.srv.port, other_ca, "GET", "/healthz", {});
  CHECK(res.status == 0);
  CHECK(res.tls_error.find("certificate verify failed") != std::string::npos);
  tls_options no_ca; // trusts nothing at all
  CHECK(https_request(h.srv.port, no_ca, "GET", "/healthz", {}).status == 0);
  // The right CA, but the certificate is not for this name.
  tls_options wrong_name = h.trusting;
  wrong_name.expected_host = "127.0.0.2";
  res = https_request(h.srv.port, wrong_name, "GET", "/healthz", {});
  CHECK(res.status == 0);
  CHECK(res.tls_error.find("certificate verify failed") != std::string::npos);
  // The client that trusts the test CA is served.
  still_serves(h);
}

TEST_CASE("TLS 1.1 and older are refused, TLS 1.2 and 1.3 are served") {
  tls_hub h;
  for (auto version : {TLS1_1_VERSION, TLS1_VERSION}) {
    tls_options old = h.trusting;
    old.min_version = version;
    old.max_version = version;
    auto res = https_request(h.srv.port, old, "GET", "/healthz", {});
    INFO("version " << std::hex << version << ": " << res.tls_error);
    CHECK(res.status == 0);
    // Refused by the server (its alert), not by the client's own settings.
    CHECK(res.tls_error.find("alert protocol version") != std::string::npos);
  }
  for (auto version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    tls_options current = h.trusting;
    current.min_version = version;
    current.max_version = version;
    ws_options opts;
    opts.tls = &current;
    ws_client c{h.srv.port, opts};
    INFO("version " << std::hex << version << ": " << c.tls_error());
    CHECK(c.status() == 101);
  }
}

TEST_CASE("plain-text HTTP and a plain WebSocket upgrade on the TLS port get "
          "no service, and the server keeps serving") {
  tls_hub h;
  auto plain = http_request(h.srv.port, "GET", "/healthz", {});
  CHECK(plain.status == 0);
  ws_client plain_ws{h.srv.port};
  CHECK(plain_ws.status() == 0);
  CHECK_FALSE(plain_ws.is_open());
  // Byte for byte: the server answers a plain request with no HTTP at all,
  // and ends the connection.
  int fd = connect_tcp(h.srv.port);
  REQUIRE(fd >= 0);
  REQUIRE(write_all(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  std::string received;
  CHECK(ended_within(fd, handshake_bound, received));
  CHECK(received.find("HTTP/") == std::string::npos);
  ::close(fd);
  still_serves(h);
}

TEST_CASE(
  "garbage instead of a ClientHello, and clients that send nothing, "
  "are closed within the handshake timeout, and others are unaffected") {
  tls_hub h;
  // A subscriber that is there before and after.
  auto sub = h.connect();
  REQUIRE(sub.status() == 101);
  subscribe(sub, "steady");
  int garbage = connect_tcp(h.srv.port);
  int silent = connect_tcp(h.srv.port);
  // A client that starts a ClientHello and never finishes it.
  int half = connect_tcp(h.srv.port);
  REQUIRE(garbage >= 0);
  REQUIRE(silent >= 0);
  REQUIRE(half >= 0);
  std::mt19937 rng{42};
  std::string noise(3000, '\0');
  for (auto& c : noise)
    c = static_cast<char>(rng());
  noise[0] = 0x16; // a handshake record's type, then nonsense
  REQUIRE(write_all(garbage, noise));
  REQUIRE(write_all(half,
                    std::string{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc"
                                "\x03\x03",
                                11}));
  // Meanwhile the server serves everyone else.
  h.publish("steady", "1");
  auto msg = sub.receive(wait_time);
  INFO(msg.describe());
  CHECK(msg.data.find(R"("data":1)") != std::string::npos);
  still_serves(h);
  for (int fd : {garbage, silent, half}) {
    std::string received;
    CHECK(ended_within(fd, handshake_bound, received));
    CHECK(received.find("HTTP/") == std::string::npos);
    ::close(fd);
  }
  // And the subscriber that was there all along still receives.
  h.publish("steady", "2");
  msg = sub.receive(wait_time);
  INFO(msg.describe());
  CHECK(msg.data.find(R"("data":2)") != std::string::npos);
}

TEST_CASE("stop() with TLS connections open returns promptly and leaves no "
          "socket open") {
  auto cfg = loopback_config();
  cfg.send_queue_limit = 100000;            // no 4008: the frames stay
  cfg.send_queue_bytes = size_t{256} << 20; // queued for the mute
  cfg.max_message_size = size_t{1} << 20;   // client
  tls_hub h{cfg};
  auto port = h.srv.port;
  std::vector<ws_client> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(h.connect());
    REQUIRE(clients.back().status() == 101);
    subscribe(clients.back(), "room");
  }
  // One that never reads while large frames pile up for it, so its close
  // frame (and close_notify) cannot go out.
  ws_options small;
  small.receive_buffer = 4096;
  auto mute = h.connect(small);
  REQUIRE(mute.status() == 101);
  subscribe(mute, "big");
  for (int i = 0; i < 32; ++i)
    REQUIRE(!livehub::publish(h.srv.hub, "big", "message",
                              "\"" + std::string(256 * 1024, 'x') + "\""));
  // One in the middle of its TLS handshake, one that sent nothing.
  int half = connect_tcp(port);
  REQUIRE(write_all(half, std::string{"\x16\x03\x01\x02\x00", 5}));
  int silent = connect_tcp(port);
  REQUIRE(h.request("GET", "/healthz").status == 200); // all accepted by now
  REQUIRE(sockets_on_port(port) > 20);
  auto start = clock_type::now();
  h.srv.srv->stop();
  auto took = clock_type::now() - start;
  // stop() waits at most 800 ms for close handshakes: a TLS shutdown that
  // waited for a peer would hold it far longer than this bound.
  CHECK(took < 5s);
  CHECK(sockets_on_port(port) == 0);
  // The clients see their connections end: a close frame, or the end.
  for (auto& c : clients) {
    auto m = c.receive(wait_time);
    INFO(m.describe());
    CHECK((m.kind == ws_kind::close || m.kind == ws_kind::ended));
  }
  ::close(half);
  ::close(silent);
}

TEST_CASE("over TLS, a reader that stalls gets every frame whole and in "
          "order, with pings held behind them, and the close frame last") {
  // The fast lane under TLS: the gathered frames go through OpenSSL as one
  // run of records, which the socket takes part-way while the reader
  // stalls; websocketpp's pings and close wait behind them.
  tls_hub h{stalled_reader_config(loopback_config())};
  ws_options small;
  small.receive_buffer = 4096;
  auto reader = std::make_unique<ws_client>(h.connect(small));
  REQUIRE(reader->status() == 101);
  subscribe(*reader, "feed");      // its last read until all is published
  constexpr int publications = 96; // 3 MiB, more than loopback buffers hold
  for (int i = 0; i < publications; ++i)
    REQUIRE(!livehub::publish(h.srv.hub, "feed", "tick", padded_data(i, 'z')));
  auto delivered = R"("delivered":)" + std::to_string(publications) + ",";
  for (auto deadline = clock_type::now() + wait_time;;) {
    if (h.request("GET", "/api/stats").body.find(delivered)
        != std::string::npos)
      break;
    REQUIRE(clock_type::now() < deadline);
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(300ms); // a few pings queue behind the frames
  std::thread stopping{[&] {
    h.srv.srv->stop();
  }};
  require_in_order_then_end(*reader, publications, 'z', wait_time);
  reader.reset();
  stopping.join();
}

TEST_CASE("200 TLS connections connect and all receive a broadcast") {
  tls_hub h;
  std::vector<ws_client> clients;
  clients.reserve(200);
  for (int i = 0; i < 200; ++i) {
    clients.push_back(h.connect());
    INFO("client " << i << ": " << clients.back().tls_error());
    REQUIRE(clients.back().status() == 101);
  }
  // Every connection is known to the hub before the broadcast.
  for (auto deadline = clock_type::now() + wait_time;;) {
    auto stats = h.request("GET", "/api/stats");
    if (stats.body.find(R"("connections":200)") != std::string::npos)
      break;
    REQUIRE(clock_type::now() < deadline);
    std::this_thread::sleep_for(20ms);
  }
  h.publish("*", R"({"to":"everyone"})");
  int received = 0;
  for (auto& c : clients) {
    auto m = c.receive(wait_time);
    if (m.kind == ws_kind::text
        && m.data.find(R"("to":"everyone")") != std::string::npos)
      ++received;
  }
  CHECK(received == 200);
}

TEST_CASE("a certificate or key OpenSSL cannot use makes server::start fail "
          "with an error that names the file") {
  test_pki pki;
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{sys_cfg};
  auto attempt = [&](const std::string& cert, const std::string& key) {
    auto cfg = loopback_config();
    cfg.tls_cert_file = cert;
    cfg.tls_key_file = key;
    auto hub = livehub::spawn_hub(sys, loopback_config());
    auto started = livehub::server::start(sys, hub, cfg);
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    REQUIRE_FALSE(started);
    return sys.render(started.error());
  };
  auto not_pem = pki.path("not-a-certificate.pem");
  std::ofstream{not_pem} << "this is no certificate\n";
  auto err = attempt(not_pem, pki.server_key);
  INFO(err);
  CHECK(err.find("livehub.tls-cert-file") != std::string::npos);
  CHECK(err.find(not_pem) != std::string::npos);
  err = attempt(pki.server_chain, not_pem);
  CHECK(err.find("livehub.tls-key-file") != std::string::npos);
  CHECK(err.find(not_pem) != std::string::npos);
  // A real key, but not the certificate's.
  err = attempt(pki.server_chain, pki.other_ca_key);
  CHECK(err.find("is not the key of the certificate") != std::string::npos);
  // Unreadable or missing: the configuration check says so first.
  err = attempt(pki.path("missing.pem"), pki.server_key);
  CHECK(err.find("cannot read") != std::string::npos);
  CHECK(err.find("missing.pem") != std::string::npos);
}
