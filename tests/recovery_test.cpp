// History, recovery and presence through real sockets: clients that drop
// and recover at random moments while a publisher runs end with exactly the
// published sequence; a client that stops reading on a history channel is
// not closed but told of its gap and recovers; GET /api/history and
// GET /api/presence.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <rapidjson/document.h>

#include "livehub/all.hpp"
#include "support/served_hub.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using namespace livehub::test;
using livehub::hub_config;

namespace {

struct frame_fields {
  std::string type, channel, epoch, code;
  uint64_t offset = 0;
  bool has_offset = false;
  std::string recovered;
};

frame_fields read(const std::string& text) {
  frame_fields r;
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  REQUIRE_MESSAGE((!doc.HasParseError() && doc.IsObject()), text);
  auto str = [&](const char* key, std::string& out) {
    auto i = doc.FindMember(key);
    if (i != doc.MemberEnd() && i->value.IsString())
      out = i->value.GetString();
  };
  str("type", r.type);
  str("channel", r.channel);
  str("epoch", r.epoch);
  str("code", r.code);
  if (auto i = doc.FindMember("offset");
      i != doc.MemberEnd() && i->value.IsUint64()) {
    r.offset = i->value.GetUint64();
    r.has_offset = true;
  }
  if (auto i = doc.FindMember("recovered"); i != doc.MemberEnd())
    r.recovered = i->value.GetBool() ? "true" : "false";
  return r;
}

hub_config history_config() {
  auto cfg = loopback_config();
  cfg.history_channels = {"h:*"};
  cfg.presence_channels = {"p:*"};
  cfg.history_size = 20000;
  return cfg;
}

std::string subscribe_since(const std::string& channel, uint64_t offset,
                            const std::string& epoch, int id) {
  return R"({"type":"subscribe","channel":")" + channel + R"(","id":)"
    + std::to_string(id) + R"(,"since":{"offset":)" + std::to_string(offset)
    + R"(,"epoch":")" + epoch + R"("}})";
}

/// A subscriber that keeps its position and recovers after every drop.
struct recovering_client {
  uint16_t port;
  std::string channel;
  std::unique_ptr<ws_client> ws;
  std::string epoch;
  uint64_t last = 0;
  std::vector<uint64_t> received;
  int next_id = 1;

  void connect() {
    ws = std::make_unique<ws_client>(port);
    REQUIRE(ws->status() == 101);
    auto cmd = epoch.empty() ? R"({"type":"subscribe","channel":")" + channel
        + R"(","id":)" + std::to_string(next_id) + "}"
                             : subscribe_since(channel, last, epoch, next_id);
    ++next_id;
    REQUIRE(ws->send_text(cmd));
    // Replayed publications, then the ok.
    for (;;) {
      auto msg = ws->receive(5000ms);
      REQUIRE_MESSAGE(msg.kind == ws_kind::text, msg.describe());
      auto f = read(msg.data);
      if (f.type == "ok") {
        if (epoch.empty())
          epoch = f.epoch;
        else
          REQUIRE(f.recovered == "true");
        break;
      }
      take(f);
    }
  }

  void take(const frame_fields& f) {
    REQUIRE(f.has_offset);
    received.push_back(f.offset);
    last = f.offset;
  }

  /// Reads what arrived within `wait`.
  void drain(std::chrono::milliseconds wait) {
    for (;;) {
      auto msg = ws->receive(wait);
      if (msg.kind != ws_kind::text)
        return;
      take(read(msg.data));
    }
  }
};

} // namespace

TEST_CASE("recovery: clients that drop at random moments end with exactly "
          "the published sequence") {
  served_hub h{history_config()};
  constexpr int clients_n = 4;
  constexpr uint64_t total = 1500;
  std::vector<recovering_client> clients;
  for (int i = 0; i < clients_n; ++i) {
    clients.push_back({h.port, "h:race", nullptr, {}, 0, {}, 1});
    clients.back().connect();
  }
  std::atomic<bool> done{false};
  std::thread publisher{[&] {
    ws_client backend{h.port};
    for (uint64_t i = 1; i <= total; ++i) {
      backend.send_text(
        R"({"type":"publish","channel":"h:race","event":"n","data":)"
        + std::to_string(i) + "}");
      if (i % 50 == 0)
        std::this_thread::sleep_for(2ms);
    }
    // A ping's pong: every publication above took effect.
    backend.send_text(R"({"type":"ping","id":1})");
    backend.receive(5000ms);
    done = true;
  }};
  std::mt19937 rng{42};
  while (!done) {
    auto& c = clients[rng() % clients_n];
    c.drain(std::chrono::milliseconds{rng() % 20});
    if (rng() % 3 == 0) {
      c.ws.reset(); // drops without a close
      c.connect();
    }
  }
  publisher.join();
  for (auto& c : clients) {
    while (c.last < total) {
      auto before = c.last;
      c.drain(2000ms);
      REQUIRE_MESSAGE(c.last > before, "stalled at " << c.last);
    }
    REQUIRE(c.received.size() == total);
    for (uint64_t i = 0; i < total; ++i)
      REQUIRE(c.received[i] == i + 1);
  }
}

TEST_CASE("recovery: a reader that stops on a history channel is not "
          "closed, gets a gap and recovers everything") {
  auto cfg = history_config();
  served_hub h{cfg};
  ws_options slow;
  slow.receive_buffer = 4096;
  ws_client reader{h.port, slow};
  REQUIRE(reader.status() == 101);
  REQUIRE(
    reader.send_text(R"({"type":"subscribe","channel":"h:flood","id":1})"));
  auto ok = read(reader.receive(5000ms).data);
  REQUIRE(ok.type == "ok");
  auto epoch = ok.epoch;
  constexpr uint64_t total = 10000;
  {
    ws_client backend{h.port};
    std::string payload(2000, 'x'); // 20 MB: more than socket buffers hold
    for (uint64_t i = 1; i <= total; ++i)
      REQUIRE(backend.send_text(
        R"({"type":"publish","channel":"h:flood","event":"n","data":")"
        + payload + "\"}"));
    backend.send_text(R"({"type":"ping","id":1})");
    REQUIRE(backend.receive(10000ms).kind == ws_kind::text);
  }
  // Read again: publications up to some K, then a gap at K.
  std::vector<uint64_t> got;
  uint64_t gap_at = 0;
  for (;;) {
    auto msg = reader.receive(5000ms);
    REQUIRE_MESSAGE(msg.kind == ws_kind::text, msg.describe());
    auto f = read(msg.data);
    if (f.type == "gap") {
      CHECK(f.channel == "h:flood");
      CHECK(f.epoch == epoch);
      gap_at = f.offset;
      break;
    }
    got.push_back(f.offset);
  }
  REQUIRE(gap_at < total);
  CHECK(gap_at == (got.empty() ? 0 : got.back()));
  // Recover from there, as many times as the queue needs.
  int id = 10;
  while (got.size() < total) {
    REQUIRE(
      reader.send_text(subscribe_since("h:flood", got.back(), epoch, ++id)));
    for (;;) {
      auto msg = reader.receive(5000ms);
      REQUIRE_MESSAGE(msg.kind == ws_kind::text, msg.describe());
      auto f = read(msg.data);
      if (f.type == "ok") {
        CHECK(f.recovered == "true");
        continue;
      }
      if (f.type == "gap" || got.size() == total)
        break;
      REQUIRE(f.offset == got.back() + 1);
      got.push_back(f.offset);
      if (got.size() == total)
        break;
    }
  }
  CHECK(reader.is_open());
  auto stats = http_request(h.port, "GET", "/api/stats", {});
  CHECK(stats.body.find(R"("slow_consumer_disconnects":0)")
        != std::string::npos);
}

TEST_CASE("recovery: GET /api/history and GET /api/presence") {
  auto cfg = history_config();
  cfg.api_key = "k";
  served_hub h{cfg};
  header_list key{{"Authorization", "Bearer k"}};
  for (int i = 1; i <= 3; ++i)
    CHECK(http_request(h.port, "POST", "/api/publish", key,
                       R"({"channel":"h:a","type":"m","data":)"
                         + std::to_string(i) + "}")
            .status
          == 202);
  // The hub publishes asynchronously: wait until all three are kept.
  http_response res;
  for (int i = 0; i < 100; ++i) {
    res = http_request(h.port, "GET", "/api/history?channel=h%3Aa&limit=2",
                       key);
    if (res.body.find(R"("offset":3,)") != std::string::npos)
      break;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(res.status == 200);
  CHECK(
    res.body.find(
      R"({"publications":[{"channel":"h:a","type":"m","data":2,"offset":2},{"channel":"h:a","type":"m","data":3,"offset":3}],"offset":3,"epoch":")")
    == 0);
  CHECK(http_request(h.port, "GET", "/api/history?channel=h:a", {}).status
        == 401);
  CHECK(http_request(h.port, "GET", "/api/history?channel=plain", key).status
        == 400);
  CHECK(http_request(h.port, "GET", "/api/history", key).status == 400);
  // Presence.
  ws_client member{h.port, ws_options{"/ws", {{"Authorization", "Bearer k"}}}};
  REQUIRE(member.send_text(R"({"type":"connect","id":1,"info":{"n":1}})"));
  auto connected = member.receive(5000ms);
  REQUIRE(
    member.send_text(R"({"type":"subscribe","channel":"p:room","id":2})"));
  CHECK(read(member.receive(5000ms).data).type == "ok");
  CHECK(read(member.receive(5000ms).data).type == "join");
  res = http_request(h.port, "GET", "/api/presence?channel=p%3Aroom", key);
  CHECK(res.status == 200);
  CHECK(res.body.find(R"({"clients":[{"client":")") == 0);
  CHECK(res.body.find(R"("info":{"n":1})") != std::string::npos);
  CHECK(http_request(h.port, "GET", "/api/presence?channel=h:a", key).status
        == 400);
  // join and leave cannot be published there.
  CHECK(http_request(h.port, "POST", "/api/publish", key,
                     R"({"channel":"p:room","type":"join","data":1})")
          .status
        == 400);
}
