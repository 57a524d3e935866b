// What livehub::server promises about its own life: stop() leaves no socket
// open, a deferred HTTP response outlives the server safely (this file runs
// in the ASan stage too, where a use-after-free fails it), and an HTTP
// client that pools connections may reuse its connection on every route
// (http_keepalive_test.cpp tells the rest of keep-alive).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "livehub/all.hpp"
#include "support/served_hub.hpp"
#include "support/sockets.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using namespace livehub::test;
using livehub::hub_config;

namespace {

hub_config test_config() {
  return loopback_config();
}

} // namespace

TEST_CASE("stop() closes the sockets of clients that never read") {
  // Clients subscribe, then never read again while large publications pile
  // up: their sockets' buffers fill, so no close frame can reach them and
  // stop()'s close handshakes cannot finish before its deadline.
  auto cfg = test_config();
  cfg.send_queue_limit = 100000;            // no 4008: the frames stay
  cfg.send_queue_bytes = size_t{256} << 20; // queued for the mute
  cfg.max_message_size = size_t{1} << 20;   // clients
  served_hub h{cfg};
  auto& sys = h.sys;
  auto& hub = h.hub;
  auto port = h.port;
  constexpr int mute_clients = 4;
  std::vector<std::unique_ptr<ws_client>> clients;
  ws_options opts;
  opts.receive_buffer = 4096;
  for (int i = 0; i < mute_clients; ++i) {
    clients.push_back(std::make_unique<ws_client>(port, opts));
    REQUIRE(clients.back()->status() == 101);
    REQUIRE(clients.back()->send_text(
      R"({"type":"subscribe","channel":"big","id":1})"));
    auto ok = clients.back()->receive(10s);
    REQUIRE(ok.kind == ws_kind::text);
  }
  // 64 publications of 256 KiB: 16 MiB per client, far more than the
  // kernel buffers between the server and a client that does not read.
  std::string data = "\"" + std::string(256 * 1024, 'x') + "\"";
  for (int i = 0; i < 64; ++i)
    REQUIRE(!livehub::publish(hub, "big", "message", data));
  // Wait until the server holds the frames (published counts them).
  caf::scoped_actor self{sys};
  for (auto deadline = std::chrono::steady_clock::now() + 20s;;) {
    livehub::hub_stats st;
    self->request(hub, 10s, livehub::stats_atom::value)
      .receive(
        [&](livehub::hub_stats& x) {
          st = x;
        },
        [&](caf::error&) {});
    if (st.published == 64)
      break;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(sockets_on_port(port) > mute_clients); // listener + connections
  h.srv->stop();
  // The promise of server.hpp: once stop() returned, nothing is open; the
  // server object still exists.
  CHECK(sockets_on_port(port) == 0);
  h.srv.reset();
}

TEST_CASE("a GET /api/stats in flight when the server goes away harms "
          "nothing") {
  // One scheduler thread, kept busy: the stats request reaches the hub only
  // after the server stopped and was destroyed, and its answer (or the
  // error, once the hub is gone) comes back to an actor that still refers
  // to the HTTP connection.
  auto cfg = test_config();
  served_hub h{cfg, 1};
  auto& sys = h.sys;
  auto& hub = h.hub;
  auto port = h.port;
  // (An argument: CAF 0.17 spawning a function without any trips UBSan.)
  auto busy = sys.spawn(
    [](caf::event_based_actor*, int unused) -> caf::behavior {
      static_cast<void>(unused);
      return {
        [](int ms) {
          std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        },
      };
    },
    0);
  caf::anon_send(busy, 1500);
  int fd = connect_tcp(port);
  REQUIRE(fd >= 0);
  REQUIRE(write_all(fd,
                    "GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1:"
                      + std::to_string(port) + "\r\n\r\n"));
  // Give the I/O thread time to parse the request and defer its response
  // (the test passes either way; only then does it reproduce the fault).
  std::this_thread::sleep_for(300ms);
  h.srv->stop();
  h.srv.reset();
  // The request never got its answer: the server is gone.
  char byte;
  CHECK(::recv(fd, &byte, 1, 0) <= 0);
  ::close(fd);
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(busy, caf::exit_reason::user_shutdown);
  // The actor system's destructor waits for the asking actor, which ends
  // after the busy one: under ASan a use of the destroyed server fails here.
}

TEST_CASE("every route answers a pooling client with keep-alive and a "
          "Content-Length, on one connection") {
  served_hub h;
  auto port = h.port;
  // A pooling client (Go's net/http, Node's fetch) reuses its connection
  // while the responses allow it, and finds each response's end by its
  // Content-Length: every route, errors included, must give both.
  http_connection http{port};
  REQUIRE(http.is_open());
  struct expectation {
    const char* method;
    const char* path;
    const char* body;
    int status;
  };
  for (auto& x : {expectation{"POST", "/api/publish",
                              R"({"channel":"c","type":"t","data":1})", 202},
                  expectation{"POST", "/api/publish", "{", 400},
                  expectation{"GET", "/api/stats", "", 200},
                  expectation{"GET", "/api/channels", "", 200},
                  expectation{"GET", "/metrics", "", 200},
                  expectation{"GET", "/healthz", "", 200},
                  expectation{"GET", "/readyz", "", 200},
                  expectation{"GET", "/nowhere", "", 404},
                  expectation{"GET", "/api/publish", "", 405},
                  expectation{"GET", "/ws", "", 426}}) {
    INFO(x.method << " " << x.path << " " << x.body);
    REQUIRE(http.send(http.request(x.method, x.path, x.body)));
    auto res = http.read_response();
    CHECK(res.status == x.status);
    CHECK(res.headers["connection"] == "keep-alive");
    REQUIRE(res.headers.count("content-length") == 1);
    CHECK(res.headers["content-length"] == std::to_string(res.body.size()));
  }
  // Which it still is: the next request is answered too.
  REQUIRE(http.send(http.request("GET", "/healthz")));
  CHECK(http.read_response().body == "ok");
}

TEST_CASE("POST /api/publish takes a batch, publishes its valid items in "
          "order and answers per item, and errors carry a stable code") {
  served_hub h;
  auto port = h.port;
  ws_client client{port};
  REQUIRE(client.status() == 101);
  for (auto channel : {"a", "b"})
    REQUIRE(client.send_text(std::string{R"({"type":"subscribe","channel":")"}
                             + channel + R"(","id":1})"));
  for (int i = 0; i < 2; ++i)
    REQUIRE(client.receive(10s).kind == ws_kind::text); // the two oks
  auto resp = http_request(port, "POST", "/api/publish",
                           {{"Content-Type", "application/json"}},
                           R"([{"channel":"a","type":"t","data":1},
        {"channel":"b","type":"t","data":2},
        {"channel":"","type":"t","data":3},
        {"channel":"a","type":"t","data":4}])");
  CHECK(resp.status == 202);
  CHECK(resp.body
        == R"({"ok":false,"results":[{"ok":true},{"ok":true},)"
           R"({"ok":false,"error":"bad_channel: channel names are 1 to 255 )"
           R"(bytes without control characters","code":"bad_channel"},)"
           R"({"ok":true}]})");
  // The valid items arrive, in the order of the batch.
  for (auto expected : {R"({"channel":"a","type":"t","data":1})",
                        R"({"channel":"b","type":"t","data":2})",
                        R"({"channel":"a","type":"t","data":4})"}) {
    auto msg = client.receive(10s);
    REQUIRE(msg.kind == ws_kind::text);
    CHECK(msg.data == expected);
  }
  // A batch whose every item is valid is "ok":true.
  resp = http_request(port, "POST", "/api/publish", {},
                      R"([{"channel":"a","type":"t","data":5}])");
  CHECK(resp.status == 202);
  CHECK(resp.body == R"({"ok":true,"results":[{"ok":true}]})");
  CHECK(client.receive(10s).data == R"({"channel":"a","type":"t","data":5})");
  // Errors of the HTTP API: a message for people, a code for programs.
  struct expectation {
    const char* method;
    const char* path;
    const char* body;
    int status;
    const char* code;
  };
  for (auto& x :
       {expectation{"POST", "/api/publish", "[1,", 400, "bad_json"},
        expectation{"POST", "/api/publish", "{", 400, "bad_json"},
        expectation{"POST", "/api/publish", R"({"type":"t"})", 400,
                    "bad_command"},
        expectation{"GET", "/api/publish", "", 405, "method_not_allowed"},
        expectation{"GET", "/nowhere", "", 404, "not_found"},
        expectation{"GET", "/ws", "", 426, "upgrade_required"}}) {
    INFO(x.method << " " << x.path << " " << x.body);
    auto r = http_request(port, x.method, x.path, {}, x.body);
    CHECK(r.status == x.status);
    CHECK(r.body.find(std::string{"\"code\":\""} + x.code + "\"")
          != std::string::npos);
    CHECK(r.body.find("\"error\":\"") != std::string::npos);
  }
  auto foreign = http_request(port, "POST", "/api/publish",
                              {{"Origin", "http://evil.example"}},
                              R"({"channel":"a","type":"t","data":1})");
  CHECK(foreign.status == 403);
  CHECK(foreign.body.find(R"("code":"forbidden")") != std::string::npos);
}

TEST_CASE("GET /api/channels lists the channels with subscribers and their "
          "counts, a page at a time") {
  served_hub h;
  auto port = h.port;
  auto get = [&](const std::string& target) {
    return http_request(port, "GET", target, {});
  };
  CHECK(get("/api/channels").body == R"({"channels":[],"next":null})");
  // Five channels, "c" with two subscribers; "e" loses its only one.
  std::vector<std::unique_ptr<ws_client>> clients;
  auto subscribe = [&](const std::string& channel) {
    clients.push_back(std::make_unique<ws_client>(port));
    auto& c = *clients.back();
    REQUIRE(c.send_text(R"({"type":"subscribe","channel":")" + channel
                        + R"(","id":1})"));
    REQUIRE(c.receive(10s).kind == ws_kind::text);
  };
  for (auto channel : {"d", "a", "c", "b", "c", "room:x y", "e"})
    subscribe(channel);
  REQUIRE(clients.back()->send_text(
    R"({"type":"unsubscribe","channel":"e","id":2})"));
  REQUIRE(clients.back()->receive(10s).kind == ws_kind::text);
  CHECK(get("/api/channels").body
        == R"({"channels":[{"channel":"a","subscribers":1},)"
           R"({"channel":"b","subscribers":1},{"channel":"c","subscribers":2},)"
           R"({"channel":"d","subscribers":1},)"
           R"({"channel":"room:x y","subscribers":1}],"next":null})");
  // Pages of two, following "next".
  CHECK(get("/api/channels?limit=2").body
        == R"({"channels":[{"channel":"a","subscribers":1},)"
           R"({"channel":"b","subscribers":1}],"next":"b"})");
  CHECK(get("/api/channels?limit=2&after=b").body
        == R"({"channels":[{"channel":"c","subscribers":2},)"
           R"({"channel":"d","subscribers":1}],"next":"d"})");
  CHECK(get("/api/channels?limit=2&after=d").body
        == R"({"channels":[{"channel":"room:x y","subscribers":1}],)"
           R"("next":null})");
  CHECK(get("/api/channels?after=room%3Ax+y").body
        == R"({"channels":[],"next":null})");
  for (auto bad : {"0", "1001", "-1", "ten", ""}) {
    auto r = get(std::string{"/api/channels?limit="} + bad);
    INFO("limit=" << bad);
    CHECK(r.status == 400);
    CHECK(r.body.find(R"("code":"bad_command")") != std::string::npos);
  }
  CHECK(get("/api/channels?limit=1000").status == 200);
  CHECK(http_request(port, "POST", "/api/channels", {}).status == 405);
}

TEST_CASE("GET /readyz answers 200 while the server serves") {
  served_hub h;
  auto port = h.port;
  auto ready = http_request(port, "GET", "/readyz", {});
  CHECK(ready.status == 200);
  CHECK(ready.body == "ready");
  CHECK(http_request(port, "POST", "/readyz", {}).status == 405);
  h.srv->stop();
  // Stopped, it answers nothing at all: a load balancer stops sending.
  CHECK(http_request(port, "GET", "/readyz", {}, {}, 2s).status == 0);
  h.srv.reset();
}

namespace {

/// The value of the sample `name` (with its labels, e.g.
/// `livehub_command_errors_total{code="bad_json"}`) in a text exposition;
/// -1 when absent.
double sample_of(const std::string& text, const std::string& name) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, name.size() + 1, name + " ") == 0)
      return std::stod(line.substr(name.size() + 1));
  return -1;
}

/// The output of `promtool check metrics` on `text` and whether it passed;
/// nullopt when promtool is not installed (scripts/install-deps --tests
/// installs it: Debian's `prometheus` package).
std::optional<std::pair<bool, std::string>>
promtool_check(const std::string& text) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    return std::nullopt;
  char path[] = "/tmp/livehub-metrics-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0)
    return std::make_pair(false, std::string{"mkstemp failed"});
  auto n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    return std::make_pair(false, std::string{"write failed"});
  std::string cmd = "promtool check metrics < " + std::string{path} + " 2>&1";
  std::string output;
  auto* pipe = ::popen(cmd.c_str(), "r");
  char buf[512];
  while (pipe && std::fgets(buf, sizeof(buf), pipe))
    output += buf;
  int status = pipe ? ::pclose(pipe) : -1;
  ::unlink(path);
  return std::make_pair(status == 0, output);
}

} // namespace

TEST_CASE("GET /metrics is a valid Prometheus exposition whose numbers move "
          "with the traffic") {
  served_hub h;
  auto port = h.port;
  auto first = http_request(port, "GET", "/metrics", {});
  REQUIRE(first.status == 200);
  CHECK(first.headers["content-type"].find("text/plain; version=0.0.4") == 0);
  for (auto name :
       {"livehub_connections", "livehub_channels", "livehub_subscriptions",
        "livehub_published_total", "livehub_delivered_total",
        "livehub_slow_consumer_disconnects_total", "livehub_bytes_sent_total",
        "livehub_bytes_received_total",
        "livehub_delivery_latency_seconds_count",
        "livehub_delivery_latency_seconds_sum",
        "livehub_command_errors_total{code=\"bad_json\"}",
        "livehub_rejected_upgrades_total{reason=\"origin\"}",
        "livehub_rejected_upgrades_total{reason=\"capacity\"}",
        "livehub_rejected_upgrades_total{reason=\"rate\"}",
        "livehub_rejected_upgrades_total{reason=\"auth\"}",
        "livehub_delivery_latency_seconds_bucket{le=\"+Inf\"}"}) {
    INFO(name);
    CHECK(sample_of(first.body, name) == 0);
  }
  // Traffic: two subscribers, five publications, a bad command, a refused
  // origin.
  std::vector<std::unique_ptr<ws_client>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(std::make_unique<ws_client>(port));
    REQUIRE(clients.back()->send_text(
      R"({"type":"subscribe","channel":"m","id":1})"));
    REQUIRE(clients.back()->receive(10s).kind == ws_kind::text);
  }
  for (int i = 0; i < 5; ++i)
    REQUIRE(http_request(port, "POST", "/api/publish", {},
                         R"({"channel":"m","type":"t","data":1})")
              .status
            == 202);
  for (auto& c : clients)
    for (int i = 0; i < 5; ++i)
      REQUIRE(c->receive(10s).kind == ws_kind::text);
  REQUIRE(clients[0]->send_text("{oops"));
  REQUIRE(clients[0]->receive(10s).kind == ws_kind::text); // the error
  ws_options foreign;
  foreign.headers = {{"Origin", "http://evil.example"}};
  CHECK(ws_client{port, foreign}.status() == 403);
  auto later = http_request(port, "GET", "/metrics", {});
  REQUIRE(later.status == 200);
  auto& text = later.body;
  CHECK(sample_of(text, "livehub_connections") == 2);
  CHECK(sample_of(text, "livehub_channels") == 1);
  CHECK(sample_of(text, "livehub_subscriptions") == 2);
  CHECK(sample_of(text, "livehub_published_total") == 5);
  CHECK(sample_of(text, "livehub_delivered_total") == 10);
  CHECK(sample_of(text, "livehub_command_errors_total{code=\"bad_json\"}")
        == 1);
  CHECK(sample_of(text, "livehub_rejected_upgrades_total{reason=\"origin\"}")
        == 1);
  // Ten frames of the publication (36 bytes each), plus the replies.
  CHECK(sample_of(text, "livehub_bytes_sent_total") >= 10 * 36);
  CHECK(sample_of(text, "livehub_bytes_received_total") >= 5 * 36);
  // Every delivered frame is in the histogram, in increasing buckets.
  CHECK(sample_of(text, "livehub_delivery_latency_seconds_count") == 10);
  CHECK(sample_of(text, "livehub_delivery_latency_seconds_bucket{le=\"+Inf\"}")
        == 10);
  CHECK(sample_of(text, "livehub_delivery_latency_seconds_sum") > 0);
  double previous = 0;
  for (auto le : {"0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"}) {
    auto n
      = sample_of(text,
                  std::string{"livehub_delivery_latency_seconds_bucket{le=\""}
                    + le + "\"}");
    INFO("le=" << le);
    CHECK(n >= previous);
    previous = n;
  }
  // promtool, Prometheus' own linter, accepts the exposition.
  auto checked = promtool_check(text);
  REQUIRE_MESSAGE(checked,
                  "promtool not found: scripts/install-deps --tests "
                  "installs it (Debian's prometheus package)");
  INFO(checked->second);
  CHECK(checked->first);
  CHECK(http_request(port, "POST", "/metrics", {}).status == 405);
}
