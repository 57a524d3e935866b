// Several nodes over a real Redis (started by the test on a free loopback
// port): each node is a hub with a server in an actor system of its own,
// with broker = redis. A publication on one node reaches the subscribers of
// the others, once, in order; "*" reaches everyone; while Redis is away
// publications are refused (503, `unavailable`), /readyz says 503, the
// connections stay, and once Redis is back delivery resumes by itself.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "livehub/all.hpp"
#include "support/json_field.hpp"
#include "support/redis_server.hpp"
#include "support/served_hub.hpp"
#include "support/ws_client.hpp"
#include "transport/redis_broker.hpp"

using namespace std::chrono_literals;
using namespace livehub::test;
using livehub::hub_config;

namespace {

hub_config node_config(const std::vector<std::string>& urls,
                       const std::string& prefix = "livehub") {
  auto cfg = loopback_config();
  cfg.broker = "redis";
  cfg.redis_urls = urls;
  cfg.redis_prefix = prefix;
  return cfg;
}

/// A node: hub + server, with its own actor system; made once it is ready.
struct node : served_hub {
  explicit node(const hub_config& cfg) : served_hub(cfg) {
    wait_ready();
  }

  /// Waits (bounded) until /readyz says 200: the broker is connected.
  void wait_ready(std::chrono::seconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (get("/readyz").status == 200)
        return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL("node not ready within " << limit.count() << " s");
  }

  /// GET `path` on this node.
  http_response get(const std::string& path) {
    return http_request(port, "GET", path, {});
  }

  http_response publish(const std::string& body) {
    return http_request(port, "POST", "/api/publish",
                        {{"Content-Type", "application/json"}}, body);
  }
};

/// An open WebSocket connection to `port`.
ws_client opened(uint16_t port) {
  ws_client c{port};
  REQUIRE(c.status() == 101);
  return c;
}

/// Entries of a presence list (objects with a "client").
size_t members_in(const std::string& text) {
  size_t n = 0;
  for (auto p = text.find("\"client\""); p != std::string::npos;
       p = text.find("\"client\"", p + 1))
    ++n;
  return n;
}

ws_client subscribed(uint16_t port, const std::string& channel) {
  ws_client c{port};
  REQUIRE(c.status() == 101);
  REQUIRE(c.send_text(R"({"type":"subscribe","channel":")" + channel
                      + R"(","id":1})"));
  auto reply = c.receive(10s);
  REQUIRE_MESSAGE(reply.kind == ws_kind::text, reply.describe());
  REQUIRE_MESSAGE(livehub::test::json_field(reply.data, "type") == "ok",
                  reply.data);
  return c;
}

std::string next(ws_client& c, std::chrono::milliseconds wait = 10s) {
  auto m = c.receive(wait);
  REQUIRE_MESSAGE(m.kind == ws_kind::text, m.describe());
  return m.data;
}

std::string pub(const std::string& channel, int n) {
  return R"({"channel":")" + channel + R"(","type":"m","data":)"
    + std::to_string(n) + "}";
}

} // namespace

TEST_SUITE_BEGIN("cluster");

TEST_CASE("cluster: a publication on one node reaches the subscribers of "
          "both, once, in order") {
  redis_server redis;
  node a{node_config({redis.url()})};
  node b{node_config({redis.url()})};
  auto on_a = subscribed(a.port, "chat");
  auto on_b = subscribed(b.port, "chat");
  for (int i = 1; i <= 50; ++i) {
    auto res = (i % 2 ? a : b).publish(pub("chat", i));
    REQUIRE_MESSAGE(res.status == 202, res.body);
  }
  // Both see the publications of one node in its order; every one once.
  std::vector<int> seen_a, seen_b;
  for (int i = 0; i < 50; ++i) {
    seen_a.push_back(std::stoi(json_field(next(on_a), "data")));
    seen_b.push_back(std::stoi(json_field(next(on_b), "data")));
  }
  for (auto* seen : {&seen_a, &seen_b}) {
    std::vector<int> odd, even;
    for (auto x : *seen)
      (x % 2 ? odd : even).push_back(x);
    REQUIRE(odd.size() == 25);
    REQUIRE(even.size() == 25);
    CHECK(std::is_sorted(odd.begin(), odd.end()));
    CHECK(std::is_sorted(even.begin(), even.end()));
  }
  // Nothing more (no echo doubles a publication).
  REQUIRE(on_b.send_text(R"({"type":"ping","id":2})"));
  CHECK(json_field(next(on_b), "type") == "pong");
  // Each node counts the publications it accepted, not those it received.
  CHECK(a.get("/api/stats").body.find("\"published\":25") != std::string::npos);
}

TEST_CASE("cluster: \"*\" reaches every connection of every node, and the "
          "publish command goes across too") {
  redis_server redis;
  node a{node_config({redis.url()})};
  node b{node_config({redis.url()})};
  auto plain = opened(b.port);
  auto res = a.publish(pub("*", 7));
  REQUIRE(res.status == 202);
  CHECK(next(plain) == pub("*", 7));
  // A subscriber made just before a publication on the other node gets it:
  // the subscribe's ok comes once the node's Redis subscription holds.
  for (int round = 0; round < 5; ++round) {
    auto channel = "fresh-" + std::to_string(round);
    auto c = subscribed(b.port, channel);
    REQUIRE(a.publish(pub(channel, round)).status == 202);
    CHECK(next(c) == pub(channel, round));
  }
}

TEST_CASE("cluster: channels spread over two Redis shards, and everything "
          "still reaches everyone") {
  redis_server one;
  redis_server two;
  auto urls = std::vector<std::string>{one.url(), two.url()};
  node a{node_config(urls)};
  node b{node_config(urls)};
  std::vector<ws_client> subs;
  std::vector<std::string> names;
  size_t on_second = 0;
  for (int i = 0; i < 8; ++i) {
    names.push_back("room-" + std::to_string(i));
    on_second += livehub::transport::shard_of(names.back(), 2);
    subs.push_back(subscribed(b.port, names.back()));
  }
  CHECK(on_second > 0); // both shards carry channels
  CHECK(on_second < 8);
  for (size_t i = 0; i < names.size(); ++i)
    REQUIRE(a.publish(pub(names[i], static_cast<int>(i))).status == 202);
  for (size_t i = 0; i < names.size(); ++i)
    CHECK(next(subs[i]) == pub(names[i], static_cast<int>(i)));
  auto plain = opened(b.port);
  REQUIRE(a.publish(pub("*", 1)).status == 202);
  CHECK(next(plain) == pub("*", 1));
}

TEST_CASE("cluster: Redis away, publications are refused loudly and "
          "connections stay, and Redis back, delivery resumes by itself") {
  redis_server redis;
  node a{node_config({redis.url()})};
  node b{node_config({redis.url()})};
  auto on_b = subscribed(b.port, "chat");
  REQUIRE(a.publish(pub("chat", 1)).status == 202);
  CHECK(next(on_b) == pub("chat", 1));
  redis.kill();
  // Within a moment both nodes notice.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (a.get("/readyz").status != 503
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  CHECK(a.get("/readyz").status == 503);
  CHECK(a.get("/healthz").status == 200);
  auto refused = a.publish(pub("chat", 2));
  CHECK(refused.status == 503);
  CHECK(json_field(refused.body, "error") == "broker unavailable");
  CHECK(json_field(refused.body, "code") == "unavailable");
  auto metrics = a.get("/metrics").body;
  CHECK(metrics.find("livehub_broker_up 0") != std::string::npos);
  // A WebSocket publisher gets the command error.
  auto backend = opened(a.port);
  REQUIRE(backend.send_text(
    R"({"type":"publish","channel":"chat","event":"m","data":3,"id":9})"));
  auto err = next(backend);
  CHECK(json_field(err, "code") == "unavailable");
  // The subscriber is still connected.
  REQUIRE(on_b.send_text(R"({"type":"ping","id":2})"));
  CHECK(json_field(next(on_b), "type") == "pong");
  // Back: both nodes reconnect and resubscribe within 5 s (plus the
  // backoff's jitter), with no client action.
  redis.restart();
  auto start = std::chrono::steady_clock::now();
  a.wait_ready();
  b.wait_ready();
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < 7s);
  REQUIRE(a.publish(pub("chat", 4)).status == 202);
  CHECK(next(on_b) == pub("chat", 4));
  CHECK(a.get("/metrics").body.find("livehub_broker_up 1")
        != std::string::npos);
}

namespace {

hub_config shared_state_config(const std::vector<std::string>& urls) {
  auto cfg = node_config(urls);
  cfg.history_channels = {"h*"};
  cfg.presence_channels = {"p*"};
  return cfg;
}

/// Two nodes sharing history (`h*`) and presence (`p*`) over one Redis.
struct shared_nodes {
  redis_server redis;
  node a{shared_state_config({redis.url()})};
  node b{shared_state_config({redis.url()})};
};

/// Subscribes `c` (open) with `body`'s extra fields and returns the reply,
/// after the publications it replays (in `replayed`).
std::string subscribe_on(ws_client& c, const std::string& fields,
                         std::vector<std::string>* replayed = nullptr) {
  REQUIRE(c.send_text(R"({"type":"subscribe",)" + fields + R"(,"id":7})"));
  for (;;) {
    auto frame = next(c);
    if (json_field(frame, "type") == "ok" && json_field(frame, "id") == "7")
      return frame;
    REQUIRE_MESSAGE(replayed, frame);
    replayed->push_back(frame);
  }
}

} // namespace

TEST_CASE("cluster: a history channel has one stream for all nodes: the "
          "same offsets everywhere, and recovery on another node") {
  shared_nodes nodes;
  auto& [redis, a, b] = nodes;
  auto on_a = opened(a.port);
  auto on_b = opened(b.port);
  auto ok_a = subscribe_on(on_a, R"("channel":"hist")");
  auto ok_b = subscribe_on(on_b, R"("channel":"hist")");
  CHECK(json_field(ok_a, "offset") == "0");
  auto epoch = json_field(ok_a, "epoch");
  CHECK(json_field(ok_b, "epoch") == epoch);
  for (int i = 1; i <= 20; ++i)
    REQUIRE((i % 2 ? a : b).publish(pub("hist", i)).status == 202);
  // Both nodes deliver the same sequence: offsets 1..20, in offset order.
  std::vector<std::string> seen_a, seen_b;
  for (int i = 1; i <= 20; ++i) {
    auto x = next(on_a);
    auto y = next(on_b);
    CHECK(json_field(x, "offset") == std::to_string(i));
    CHECK(x == y);
    seen_a.push_back(json_field(x, "data"));
  }
  // A client of A that saw up to offset 10 drops and recovers on B.
  auto again = opened(b.port);
  std::vector<std::string> replayed;
  auto ok = subscribe_on(again,
                         R"("channel":"hist","since":{"offset":10,"epoch":")"
                           + epoch + R"("})",
                         &replayed);
  CHECK(json_field(ok, "recovered") == "true");
  CHECK(json_field(ok, "offset") == "20");
  REQUIRE(replayed.size() == 10);
  for (size_t i = 0; i < 10; ++i)
    CHECK(json_field(replayed[i], "data") == seen_a[10 + i]);
  // Then live, from 21 on.
  REQUIRE(a.publish(pub("hist", 21)).status == 202);
  CHECK(json_field(next(again), "offset") == "21");
  // Redis lost its script cache: the script is sent whole, nothing is lost.
  auto flush = "redis-cli -h 127.0.0.1 -p " + std::to_string(redis.port())
    + " SCRIPT FLUSH >/dev/null";
  REQUIRE(std::system(flush.c_str()) == 0);
  REQUIRE(a.publish(pub("hist", 22)).status == 202);
  CHECK(json_field(next(again), "offset") == "22");
  // History of a channel no node subscribes to comes from Redis.
  REQUIRE(a.publish(pub("h-quiet", 1)).status == 202);
  REQUIRE(a.publish(pub("h-quiet", 2)).status == 202);
  // (A 202 means handed to Redis: B reads it once Redis ran A's script.)
  auto res = b.get("/api/history?channel=h-quiet&limit=1");
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (json_field(res.body, "offset") != "2"
         && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    res = b.get("/api/history?channel=h-quiet&limit=1");
  }
  REQUIRE_MESSAGE(res.status == 200, res.body);
  CHECK(json_field(res.body, "offset") == "2");
  CHECK(res.body.find(R"("data":2,"offset":2)") != std::string::npos);
  CHECK(res.body.find(R"("data":1)") == std::string::npos);
}

TEST_CASE("cluster: a Redis that restarts empty starts new streams: "
          "subscribers get a gap, then recovered:false") {
  shared_nodes nodes;
  auto& [redis, a, b] = nodes;
  auto on_b = opened(b.port);
  auto ok = subscribe_on(on_b, R"("channel":"hist")");
  auto epoch = json_field(ok, "epoch");
  REQUIRE(a.publish(pub("hist", 1)).status == 202);
  CHECK(json_field(next(on_b), "offset") == "1");
  redis.kill();
  redis.restart();
  a.wait_ready();
  b.wait_ready();
  // Publishing may race the nodes' resubscription: retried until B sees it.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string frame;
  while (std::chrono::steady_clock::now() < deadline) {
    REQUIRE(a.publish(pub("hist", 2)).status == 202);
    auto m = on_b.receive(500ms);
    if (m.kind == ws_kind::text) {
      frame = m.data;
      break;
    }
  }
  REQUIRE(!frame.empty());
  CHECK(json_field(frame, "type") == "gap");
  CHECK(json_field(frame, "offset") == "1");
  CHECK(json_field(frame, "epoch") == epoch);
  std::vector<std::string> replayed;
  auto again = subscribe_on(
    on_b, R"("channel":"hist","since":{"offset":1,"epoch":")" + epoch + R"("})",
    &replayed);
  CHECK(replayed.empty());
  CHECK(json_field(again, "recovered") == "false");
  CHECK(json_field(again, "epoch") != epoch);
}

TEST_CASE("cluster: presence lists the connections of every node, with "
          "joins and leaves across nodes") {
  shared_nodes nodes;
  auto& [redis, a, b] = nodes;
  auto on_a = opened(a.port);
  auto on_b = opened(b.port);
  subscribe_on(on_a, R"("channel":"proom")");
  CHECK(json_field(next(on_a), "type") == "join"); // its own
  // A's join reached Redis (the record, and its event to nodes subscribed
  // by then) before B subscribes: else B may hear it, rightly, as news.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (members_in(b.get("/api/presence?channel=proom").body) < 1
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  subscribe_on(on_b, R"("channel":"proom")");
  CHECK(json_field(next(on_b), "type") == "join");
  auto join = next(on_a); // B's, from the other node
  CHECK(json_field(join, "type") == "join");
  for (auto* c : {&on_a, &on_b}) {
    REQUIRE(c->send_text(R"({"type":"presence","channel":"proom","id":3})"));
    auto list = next(*c);
    CHECK(json_field(list, "type") == "ok");
    CHECK(members_in(list) == 2);
  }
  auto res = a.get("/api/presence?channel=proom");
  REQUIRE(res.status == 200);
  CHECK(res.body.find(json_field(json_field(join, "data"), "client"))
        != std::string::npos);
  // B's connection goes: A hears it leave, and the list shrinks.
  on_b.drop();
  auto leave = next(on_a);
  CHECK(json_field(leave, "type") == "leave");
  REQUIRE(
    on_a.send_text(R"({"type":"presence_stats","channel":"proom","id":4})"));
  CHECK(json_field(next(on_a), "clients") == "1");
}

TEST_CASE("cluster: on two Redis shards, history streams and presence "
          "live on their channel's shard and still span both nodes") {
  redis_server one;
  redis_server two;
  auto urls = std::vector<std::string>{one.url(), two.url()};
  node a{shared_state_config(urls)};
  node b{shared_state_config(urls)};
  size_t on_second = 0;
  for (int i = 0; i < 6; ++i) {
    auto h = "h-" + std::to_string(i);
    auto p = "p-" + std::to_string(i);
    on_second += livehub::transport::shard_of(h, 2);
    auto sub = opened(b.port);
    auto ok = subscribe_on(sub, R"("channel":")" + h + R"(")");
    REQUIRE(a.publish(pub(h, 1)).status == 202);
    REQUIRE(a.publish(pub(h, 2)).status == 202);
    CHECK(json_field(next(sub), "offset") == "1");
    CHECK(json_field(next(sub), "offset") == "2");
    auto back = opened(a.port);
    std::vector<std::string> replayed;
    auto again = subscribe_on(back,
                              R"("channel":")" + h
                                + R"(","since":{"offset":1,"epoch":")"
                                + json_field(ok, "epoch") + R"("})",
                              &replayed);
    CHECK(json_field(again, "recovered") == "true");
    CHECK(replayed.size() == 1);
    auto m1 = opened(a.port);
    auto m2 = opened(b.port);
    subscribe_on(m1, R"("channel":")" + p + R"(")");
    subscribe_on(m2, R"("channel":")" + p + R"(")");
    // (m2's record may reach Redis a moment after its ok.)
    auto res = a.get("/api/presence?channel=" + p);
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (members_in(res.body) < 2
           && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      res = a.get("/api/presence?channel=" + p);
    }
    REQUIRE(res.status == 200);
    CHECK(members_in(res.body) == 2);
  }
  CHECK(on_second > 0);
  CHECK(on_second < 6);
}

TEST_CASE("cluster: a room with history and presence: the position, then "
          "the member's own join") {
  redis_server redis;
  auto cfg = shared_state_config({redis.url()});
  cfg.presence_channels.push_back("hroom");
  node a{cfg};
  auto on_a = opened(a.port);
  auto ok = subscribe_on(on_a, R"("channel":"hroom")");
  CHECK(json_field(ok, "offset") == "0");
  CHECK(json_field(next(on_a), "type") == "join");
}

TEST_CASE("cluster: a Redis that hangs does not hold a subscribe forever") {
  redis_server redis;
  node a{node_config({redis.url()})};
  node b{node_config({redis.url()})};
  redis.pause(); // SIGSTOP: connections stay open, nothing is answered
  auto start = std::chrono::steady_clock::now();
  auto c = opened(b.port);
  REQUIRE(c.send_text(R"({"type":"subscribe","channel":"hung","id":1})"));
  auto reply = c.receive(15s);
  auto took = std::chrono::steady_clock::now() - start;
  redis.resume();
  REQUIRE_MESSAGE(reply.kind == ws_kind::text, reply.describe());
  CHECK(json_field(reply.data, "type") == "ok");
  CHECK(took < 9s); // answered after the broker's 5 s limit, not never
  // Once Redis answers again, the queued SUBSCRIBE holds and delivery works.
  std::this_thread::sleep_for(300ms);
  REQUIRE(a.publish(pub("hung", 1)).status == 202);
  CHECK(next(c) == pub("hung", 1));
}

TEST_CASE("cluster: two clusters on one Redis stay apart by prefix") {
  redis_server redis;
  node a{node_config({redis.url()}, "one")};
  node b{node_config({redis.url()}, "two")};
  auto on_b = subscribed(b.port, "chat");
  REQUIRE(a.publish(pub("chat", 1)).status == 202);
  REQUIRE(b.publish(pub("chat", 2)).status == 202);
  CHECK(next(on_b) == pub("chat", 2));
}

TEST_CASE("cluster: bad broker settings are refused at start") {
  auto cfg = node_config({"http://127.0.0.1:6379"});
  auto err = cfg.validate();
  REQUIRE(err);
  cfg = node_config({});
  CHECK(cfg.validate());
  cfg = node_config({"redis://127.0.0.1:1"});
  cfg.broker = "kafka";
  CHECK(cfg.validate());
  cfg.broker = "redis";
  CHECK_FALSE(cfg.validate());
}

TEST_SUITE_END();
