// HTTP keep-alive on livehub's port (docs/protocol.md, "HTTP endpoints"): a
// backend's publishes and reads share one connection, pipelined requests are
// answered one by one in order, and a body is never taken for a request; the
// connection closes where it must (Connection: close, HTTP/1.0, the request
// cap, the idle timeout, a malformed or chunked request, a server that
// stops), and its next request may be a WebSocket upgrade, counted like any.
// Loopback only; waits are bounds, never speed requirements.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "livehub/all.hpp"
#include "support/json_field.hpp"
#include "support/served_hub.hpp"
#include "support/sockets.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using namespace livehub::test;
using livehub::hub_config;

namespace {

/// How long a test waits for anything that must arrive.
constexpr auto wait_time = 10s;

/// A WebSocket client subscribed to `channel` (its ok received).
std::unique_ptr<ws_client> subscriber(uint16_t port,
                                      const std::string& channel) {
  auto c = std::make_unique<ws_client>(port);
  REQUIRE(c->status() == 101);
  REQUIRE(c->send_text(R"({"type":"subscribe","channel":")" + channel
                       + R"(","id":1})"));
  REQUIRE(c->receive(wait_time).kind == ws_kind::text);
  return c;
}

/// A publish body (and, re-encoded, its frame) with data `n`.
std::string publication(const std::string& channel, int n) {
  return R"({"channel":")" + channel + R"(","type":"t","data":)"
    + std::to_string(n) + "}";
}

/// Requires the next frames of `c` to carry data `first` to `last`.
void require_data(ws_client& c, int first, int last) {
  for (int i = first; i <= last; ++i) {
    auto msg = c.receive(wait_time);
    INFO("expected data " << i << ", received " << msg.describe());
    REQUIRE(msg.kind == ws_kind::text);
    CHECK(json_field(msg.data, "data") == std::to_string(i));
  }
}

/// The Connection header of `res`, "<none>" when absent.
std::string connection_header(const http_response& res) {
  auto i = res.headers.find("connection");
  return i == res.headers.end() ? "<none>" : i->second;
}

/// Requires `res` to have `status` and to keep its connection.
void require_kept(const http_response& res, int status) {
  INFO("body: " << res.body);
  REQUIRE(res.status == status);
  CHECK(connection_header(res) == "keep-alive");
}

/// Requires `res` to have `status` and to announce the connection's end.
void require_closing(const http_response& res, int status) {
  INFO("body: " << res.body);
  REQUIRE(res.status == status);
  CHECK(connection_header(res) == "close");
}

} // namespace

TEST_CASE("a backend publishes and reads stats over one HTTP/1.1 "
          "connection, and the subscriber gets every publication in order") {
  served_hub h;
  auto sub = subscriber(h.port, "k");
  http_connection http{h.port};
  REQUIRE(http.is_open());
  for (int i = 1; i <= 5; ++i) {
    REQUIRE(http.send(http.request("POST", "/api/publish", publication("k", i),
                                   {{"Content-Type", "application/json"}})));
    auto published = http.read_response();
    require_kept(published, 202);
    CHECK(published.body == R"({"ok":true})");
    REQUIRE(http.send(http.request("GET", "/api/stats")));
    auto stats = http.read_response();
    require_kept(stats, 200);
    // Counts WebSocket connections only: the HTTP connection is no such.
    CHECK(json_field(stats.body, "connections") == "1");
  }
  require_data(*sub, 1, 5);
}

TEST_CASE("an application route's empty reply keeps the connection usable") {
  // Without a Content-Length, a response's body would last until the
  // connection closes: a kept connection would hang.
  auto cfg = loopback_config();
  cfg.http_handler
    = [](const livehub::http_request& x) -> std::optional<livehub::http_reply> {
    livehub::http_reply reply;
    reply.body.clear();
    if (x.path == "/empty")
      return reply;
    if (x.path == "/nothing") {
      reply.status = 204;
      return reply;
    }
    if (x.path == "/bye") {
      reply.headers = {{"connection", "Close"}};
      return reply;
    }
    return std::nullopt;
  };
  served_hub h{cfg};
  http_connection http{h.port};
  REQUIRE(http.send(http.request("GET", "/empty")));
  auto empty = http.read_response();
  require_kept(empty, 200);
  CHECK(empty.headers.at("content-length") == "0");
  REQUIRE(http.send(http.request("GET", "/nothing")));
  auto nothing = http.read_response(); // 204: no body, and no length
  require_kept(nothing, 204);
  CHECK(nothing.headers.count("content-length") == 0);
  // The application may end the connection.
  REQUIRE(http.send(http.request("GET", "/bye")));
  require_closing(http.read_response(), 200);
  CHECK(http.ends(wait_time));
}

TEST_CASE("requests written in one go are answered one by one, in order, "
          "and no body is taken for a request") {
  served_hub h;
  auto sub = subscriber(h.port, "k");
  // The first body holds, as JSON whitespace, the blank line that ends a
  // request's head: only Content-Length says where the body ends.
  std::string first = "{\"channel\":\"k\",\r\n\r\n\"type\":\"t\",\"data\":1}";
  auto pipelined = [&](const http_connection& http) {
    return http.request("POST", "/api/publish", first)
      + http.request("GET", "/api/stats")
      + http.request("POST", "/api/publish", publication("k", 2))
      + http.request("GET", "/healthz");
  };
  auto read_all = [&](http_connection& http) {
    require_kept(http.read_response(), 202);
    auto stats = http.read_response();
    require_kept(stats, 200);
    CHECK(json_field(stats.body, "connections") == "1");
    require_kept(http.read_response(), 202);
    auto health = http.read_response();
    require_kept(health, 200);
    CHECK(health.body == "ok");
  };
  SUBCASE("in one write") {
    http_connection http{h.port};
    REQUIRE(http.send(pipelined(http)));
    read_all(http);
  }
  SUBCASE("a few bytes at a time") {
    // Heads and bodies split anywhere, the head's end included.
    http_connection http{h.port};
    auto bytes = pipelined(http);
    for (size_t pos = 0; pos < bytes.size(); pos += 7) {
      REQUIRE(http.send(bytes.substr(pos, 7)));
      std::this_thread::sleep_for(1ms);
    }
    read_all(http);
  }
  require_data(*sub, 1, 2);
}

TEST_CASE("empty lines before a request are ignored, as after a body that "
          "a client ended with an extra CRLF") {
  served_hub h;
  auto sub = subscriber(h.port, "k");
  http_connection http{h.port};
  REQUIRE(http.send(
    "\r\n" + http.request("POST", "/api/publish", publication("k", 1)) + "\r\n"
    + http.request("POST", "/api/publish", publication("k", 2))
    + "\r\n\r\n\n"));
  require_kept(http.read_response(), 202);
  require_kept(http.read_response(), 202);
  // A few bytes later, the next request.
  std::this_thread::sleep_for(50ms);
  REQUIRE(http.send(http.request("GET", "/healthz")));
  require_kept(http.read_response(), 200);
  require_data(*sub, 1, 2);
}

TEST_CASE("Connection: close, and HTTP/1.0 without keep-alive, end the "
          "connection after the response") {
  served_hub h;
  SUBCASE("HTTP/1.1 with Connection: close") {
    http_connection http{h.port};
    REQUIRE(http.send(
      http.request("GET", "/healthz", {}, {{"Connection", "close"}})));
    require_closing(http.read_response(), 200);
    CHECK(http.ends(wait_time));
  }
  SUBCASE("HTTP/1.0") {
    http_connection http{h.port};
    REQUIRE(http.send(http.request("GET", "/healthz", {}, {}, "HTTP/1.0")));
    require_closing(http.read_response(), 200);
    CHECK(http.ends(wait_time));
  }
  SUBCASE("HTTP/1.0 with Connection: keep-alive stays, until a request "
          "without it") {
    http_connection http{h.port};
    for (int i = 0; i < 2; ++i) {
      REQUIRE(http.send(http.request(
        "GET", "/healthz", {}, {{"Connection", "keep-alive"}}, "HTTP/1.0")));
      require_kept(http.read_response(), 200);
    }
    REQUIRE(http.send(http.request("GET", "/healthz", {}, {}, "HTTP/1.0")));
    require_closing(http.read_response(), 200);
    CHECK(http.ends(wait_time));
  }
  SUBCASE("the one-shot helper of the tests") {
    // http_request() sends Connection: close, as many simple clients do.
    auto res = http_request(h.port, "GET", "/healthz", {});
    CHECK(res.status == 200);
    CHECK(res.headers["connection"] == "close");
  }
}

TEST_CASE("the response to a connection's last allowed request says "
          "Connection: close, and the connection ends") {
  auto cfg = loopback_config();
  cfg.http_max_requests = 3;
  served_hub h{cfg};
  SUBCASE("one request at a time") {
    http_connection http{h.port};
    for (int i = 0; i < 2; ++i) {
      REQUIRE(http.send(http.request("GET", "/healthz")));
      require_kept(http.read_response(), 200);
    }
    REQUIRE(http.send(http.request("GET", "/healthz")));
    require_closing(http.read_response(), 200);
    CHECK(http.ends(wait_time));
  }
  SUBCASE("a fourth request pipelined behind them is not answered") {
    http_connection http{h.port};
    std::string four;
    for (int i = 0; i < 4; ++i)
      four += http.request("GET", "/healthz");
    REQUIRE(http.send(four));
    require_kept(http.read_response(), 200);
    require_kept(http.read_response(), 200);
    require_closing(http.read_response(), 200);
    CHECK(http.ends(wait_time));
  }
}

TEST_CASE("a kept-alive connection left idle is closed by the server") {
  auto cfg = loopback_config();
  // Long enough that a test thread descheduled on a loaded machine still
  // sends its second request in time, short against wait_time.
  cfg.http_idle_timeout = 2s;
  served_hub h{cfg};
  http_connection http{h.port};
  REQUIRE(http.send(http.request("GET", "/healthz")));
  require_kept(http.read_response(), 200);
  // A request sent at once is still served...
  REQUIRE(http.send(http.request("GET", "/healthz")));
  require_kept(http.read_response(), 200);
  // ... then nothing comes, and the server ends the connection.
  CHECK(http.ends(wait_time));
}

TEST_CASE("a kept-alive connection's next request may be a WebSocket "
          "upgrade, counted against max-connections-per-ip like any") {
  auto cfg = loopback_config();
  cfg.max_connections_per_ip = 2;
  served_hub h{cfg};
  http_connection http{h.port};
  REQUIRE(http.send(http.request("GET", "/healthz")));
  require_kept(http.read_response(), 200);
  ws_options opts;
  opts.socket = http.release();
  ws_client ws{h.port, opts};
  REQUIRE(ws.status() == 101);
  REQUIRE(ws.send_text(R"({"type":"subscribe","channel":"k","id":1})"));
  REQUIRE(ws.receive(wait_time).kind == ws_kind::text);
  REQUIRE(
    http_request(h.port, "POST", "/api/publish", {}, publication("k", 7)).status
    == 202);
  require_data(ws, 7, 7);
  auto stats = http_request(h.port, "GET", "/api/stats", {});
  CHECK(json_field(stats.body, "connections") == "1");
  // The second upgrade from this address is allowed, the third is not,
  // whether it comes on a new connection or on a kept one.
  ws_client second{h.port};
  REQUIRE(second.status() == 101);
  CHECK(ws_client{h.port}.status() == 429);
  http_connection again{h.port};
  REQUIRE(again.send(again.request("GET", "/healthz")));
  require_kept(again.read_response(), 200);
  REQUIRE(
    again.send(again.request("GET", "/ws", {},
                             {{"Upgrade", "websocket"},
                              {"Connection", "Upgrade"},
                              {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                              {"Sec-WebSocket-Version", "13"}})));
  auto refused = again.read_response();
  require_closing(refused, 429);
  CHECK(json_field(refused.body, "code") == "rate_limited");
  CHECK(again.ends(wait_time));
}

TEST_CASE("a malformed request on a kept connection gets 400 and a close, "
          "and other connections go on") {
  served_hub h;
  http_connection bystander{h.port};
  REQUIRE(bystander.send(bystander.request("GET", "/healthz")));
  require_kept(bystander.read_response(), 200);
  http_connection http{h.port};
  REQUIRE(http.send(http.request("GET", "/healthz")));
  require_kept(http.read_response(), 200);
  REQUIRE(http.send("NONSENSE\r\n\r\n"));
  // websocketpp's own answer, which closes (and says nothing of it).
  CHECK(http.read_response().status == 400);
  CHECK(http.ends(wait_time));
  REQUIRE(bystander.send(bystander.request("GET", "/healthz")));
  require_kept(bystander.read_response(), 200);
}

TEST_CASE("a chunked request body is refused with 411 and the connection "
          "closes before the chunks") {
  served_hub h;
  auto sub = subscriber(h.port, "k");
  http_connection http{h.port};
  // The chunk, read as a request, would publish: it must not be.
  auto inner = http.request("POST", "/api/publish", publication("k", 1));
  auto chunk = [](const std::string& data) {
    char size[16];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    return size + data + "\r\n";
  };
  REQUIRE(http.send(
    http.request("POST", "/api/publish", {}, {{"Transfer-Encoding", "chunked"}})
    + chunk(inner) + "0\r\n\r\n"));
  auto refused = http.read_response();
  require_closing(refused, 411);
  CHECK(json_field(refused.body, "code") == "length_required");
  CHECK(http.ends(wait_time));
  // Nothing was published: the next publication is the first to arrive.
  REQUIRE(
    http_request(h.port, "POST", "/api/publish", {}, publication("k", 2)).status
    == 202);
  require_data(*sub, 2, 2);
}

TEST_CASE("stop() closes kept-alive HTTP connections at once, idle or in "
          "the middle of a request") {
  auto cfg = loopback_config();
  cfg.http_idle_timeout = 60s; // far beyond the bound below
  served_hub h{cfg};
  auto port = h.port;
  http_connection idle{port};
  REQUIRE(idle.send(idle.request("GET", "/healthz")));
  require_kept(idle.read_response(), 200);
  http_connection midway{port};
  REQUIRE(midway.send(midway.request("GET", "/healthz")));
  require_kept(midway.read_response(), 200);
  REQUIRE(midway.send("GET /healthz HTTP/1.1\r\nHo"));
  std::this_thread::sleep_for(100ms); // let the server start reading it
  auto started = std::chrono::steady_clock::now();
  h.srv->stop();
  auto took = std::chrono::steady_clock::now() - started;
  // stop() leaves no socket open (server.hpp), kept ones included, and
  // needs none of the idle timeout for it.
  CHECK(sockets_on_port(port) == 0);
  CHECK(took < 10s);
  CHECK(idle.ends(wait_time));
  CHECK(midway.ends(wait_time));
  h.srv.reset();
}
