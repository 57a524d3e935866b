// Loopback integration tests: a real actor system, hub and server on a free
// port of 127.0.0.1, driven through real sockets by the blocking test client
// of support/ws_client.hpp. Each test tells what a user of the wire protocol
// (PROTOCOL.md) sees. Waits are generous bounds, never speed requirements.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "livehub/all.hpp"
#include "support/served_hub.hpp"
#include "support/stalled_reader.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using namespace livehub::test;
using livehub::hub_config;

namespace {

using clock_type = std::chrono::steady_clock;

/// How long a test waits for anything that must arrive: generous, because a
/// loaded 2-core machine may be slow, and a passing test never waits it out.
constexpr auto wait_time = 10s;

/// A config for a server on a free port of 127.0.0.1.
hub_config test_config() {
  return loopback_config();
}

/// A hub served on a free port, with two scheduler threads.
struct live_hub : served_hub {
  explicit live_hub(const hub_config& cfg = test_config()) : served_hub(cfg) {
    // nop
  }

  /// `{"Origin": "http://127.0.0.1:PORT"}`: a browser page of this server.
  header_list same_origin() const {
    return {{"Origin", "http://127.0.0.1:" + std::to_string(port)}};
  }
};

// -- JSON helpers -------------------------------------------------------------

/// Parses `text`, which must hold exactly one JSON object (a second value
/// after it, as in frames joined by "\n", fails).
template<unsigned Flags = rapidjson::kParseDefaultFlags>
rapidjson::Document parse_object(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<Flags>(text.data(), text.size());
  INFO("text: " << text);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

/// The string member `key` of `obj`, or a marker saying why there is none.
std::string str(const rapidjson::Value& obj, const char* key) {
  if (!obj.IsObject())
    return "<not an object>";
  auto i = obj.FindMember(key);
  if (i == obj.MemberEnd())
    return "<missing>";
  if (!i->value.IsString())
    return "<not a string>";
  return {i->value.GetString(), i->value.GetStringLength()};
}

/// The compact JSON text of member `key` of `obj` ("<missing>" if absent).
std::string json_of(const rapidjson::Value& obj, const char* key) {
  if (!obj.IsObject())
    return "<not an object>";
  auto i = obj.FindMember(key);
  if (i == obj.MemberEnd())
    return "<missing>";
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buf);
  i->value.Accept(writer);
  return buf.GetString();
}

// -- WebSocket helpers --------------------------------------------------------

/// Connects a WebSocket client and requires the upgrade to succeed.
ws_client open_ws(uint16_t port, header_list headers = {}) {
  ws_options opts;
  opts.headers = std::move(headers);
  ws_client client{port, opts};
  REQUIRE(client.status() == 101);
  return client;
}

/// Sends `text`, requiring the write to succeed.
void send(ws_client& client, const std::string& text) {
  INFO("sending: " << text.substr(0, 200));
  REQUIRE(client.send_text(text));
}

/// The next message of `client`: a text frame holding one JSON object.
template<unsigned Flags = rapidjson::kParseDefaultFlags>
rapidjson::Document next_object(ws_client& client) {
  auto msg = client.receive(wait_time);
  INFO("received: " << msg.describe());
  REQUIRE(msg.kind == ws_kind::text);
  return parse_object<Flags>(msg.data);
}

/// A fresh command id for every request of a test run.
int next_id() {
  static std::atomic<int> id{1000};
  return ++id;
}

/// Requires `doc` to be the reply `{"type":type,"id":id}`.
void require_reply(const rapidjson::Value& doc, const std::string& type,
                   int id) {
  INFO("frame: " << json_of(doc, "type") << " id " << json_of(doc, "id")
                 << " code " << json_of(doc, "code"));
  REQUIRE(str(doc, "type") == type);
  REQUIRE(json_of(doc, "id") == std::to_string(id));
}

/// Pings with an id and requires the next frame to be its pong: every
/// earlier command of `client` took effect (PROTOCOL.md, ping).
void sync(ws_client& client) {
  auto id = next_id();
  send(client, R"({"type":"ping","id":)" + std::to_string(id) + "}");
  require_reply(next_object(client), "pong", id);
}

/// Sends `{"type":command,"channel":channel,"id":N}`, requires an ok, then
/// syncs: the protocol promises full effect at the pong of a later ping.
void channel_command(ws_client& client, const char* command,
                     const std::string& channel) {
  auto id = next_id();
  send(client,
       std::string{R"({"type":")"} + command + R"(","channel":")" + channel
         + R"(","id":)" + std::to_string(id) + "}");
  require_reply(next_object(client), "ok", id);
  sync(client);
}

void subscribe(ws_client& client, const std::string& channel) {
  channel_command(client, "subscribe", channel);
}

void unsubscribe(ws_client& client, const std::string& channel) {
  channel_command(client, "unsubscribe", channel);
}

/// `{"type":"publish","channel":channel,"event":event,"data":data}`.
std::string publish_command(const std::string& channel,
                            const std::string& event, const std::string& data,
                            int id = 0) {
  auto out = R"({"type":"publish","channel":")" + channel + R"(","event":")"
    + event + R"(","data":)" + data;
  if (id != 0)
    out += R"(,"id":)" + std::to_string(id);
  return out + "}";
}

/// Requires the next frame of `client` to be the publication
/// `{"channel":channel,"type":type,"data":data}`.
void require_publication(ws_client& client, const std::string& channel,
                         const std::string& type, const std::string& data) {
  auto doc = next_object(client);
  CHECK(str(doc, "channel") == channel);
  CHECK(str(doc, "type") == type);
  CHECK(json_of(doc, "data") == data);
}

/// A ping command with `id` padded to exactly `size` bytes.
std::string ping_of_size(int id, size_t size) {
  auto head = R"({"type":"ping","id":)" + std::to_string(id) + R"(,"pad":")";
  REQUIRE(size >= head.size() + 2);
  return head + std::string(size - head.size() - 2, 'p') + "\"}";
}

// -- HTTP helpers -------------------------------------------------------------

/// `POST /api/publish` of `{"channel":C,"type":T,"data":D}`.
http_response post_publish(uint16_t port, const std::string& channel,
                           const std::string& type, const std::string& data,
                           header_list headers = {}) {
  headers.emplace_back("Content-Type", "application/json");
  auto body = R"({"channel":")" + channel + R"(","type":")" + type
    + R"(","data":)" + data + "}";
  return http_request(port, "POST", "/api/publish", headers, body);
}

/// Publishes over HTTP and requires `202 {"ok":true}`.
void publish(uint16_t port, const std::string& channel, const std::string& type,
             const std::string& data) {
  auto res = post_publish(port, channel, type, data);
  INFO("response: " << res.status << " " << res.body);
  REQUIRE(res.status == 202);
  CHECK(json_of(parse_object(res.body), "ok") == "true");
}

using stats_map = std::map<std::string, uint64_t>;

/// The integer fields of `GET /api/stats`.
stats_map get_stats(uint16_t port) {
  auto res = http_request(port, "GET", "/api/stats", {});
  INFO("response: " << res.status << " " << res.body);
  REQUIRE(res.status == 200);
  auto doc = parse_object(res.body);
  for (auto key : {"connections", "channels", "subscriptions", "published",
                   "delivered", "slow_consumer_disconnects"}) {
    INFO("stats field: " << key);
    REQUIRE(doc.HasMember(key));
  }
  stats_map out;
  for (auto& member : doc.GetObject())
    if (member.value.IsUint64())
      out[member.name.GetString()] = member.value.GetUint64();
  return out;
}

/// Polls the stats until `pred` holds for them or `timeout` passed; returns
/// the last stats seen. Counters settle eventually, e.g. after disconnects.
template<class Predicate>
stats_map wait_for_stats(uint16_t port, Predicate pred,
                         std::chrono::milliseconds timeout = wait_time) {
  auto deadline = clock_type::now() + timeout;
  auto stats = get_stats(port);
  while (!pred(stats) && clock_type::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    stats = get_stats(port);
  }
  return stats;
}

// -- shutdown -----------------------------------------------------------------

/// How long the clients of a stopping server wait, in all, for the end of
/// their connections: generous, since stop() bounds its own wait far below.
constexpr auto shutdown_wait = 30s;

/// Reads from `client` until its connection ends or `deadline` passed,
/// answering pings and echoing the close frame (as a browser would);
/// publications still queued before the close are skipped. Returns the close
/// frame, `ended`, or `timeout` when the connection is still open.
ws_message await_end(ws_client& client, clock_type::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - clock_type::now());
    auto msg = client.receive(std::max(left, std::chrono::milliseconds{0}));
    if (msg.kind != ws_kind::text && msg.kind != ws_kind::binary)
      return msg;
  }
}

/// How the connections of a stopped server ended, as their clients saw it.
struct shutdown_outcome {
  /// A close frame with 1001 (going away): the clean shutdown.
  int going_away = 0;
  /// The end of the connection without a close frame: stop() cut a
  /// connection it could not close cleanly before its drain deadline.
  int cut = 0;
  /// A close frame with another code.
  int other_close = 0;
  /// Nothing: the connection was still open after stop() returned.
  int still_open = 0;
  /// The first outcome that was neither of the two expected ones.
  std::string first_unexpected;
  /// How long stop() took: for information, never for pass or fail.
  int64_t stop_ms = -1;
};

/// Runs `h.srv->stop()` while `clients` read until their connections end,
/// then tells how each ended. The clients share their deadlines, so a
/// missing close costs the wait once, not once per client.
shutdown_outcome stop_beside(live_hub& h, std::vector<ws_client>& clients) {
  shutdown_outcome out;
  auto start = clock_type::now();
  // stop() blocks until every connection closed or was cut; a stop() that
  // never returns is caught by ctest's timeout.
  std::thread stopper{[&] {
    h.srv->stop();
    out.stop_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    clock_type::now() - start)
                    .count();
  }};
  std::vector<ws_message> last(clients.size());
  auto deadline = clock_type::now() + shutdown_wait;
  for (size_t i = 0; i < clients.size(); ++i)
    last[i] = await_end(clients[i], deadline);
  stopper.join();
  // stop() returned: a connection it did not close is cut by now, so a
  // client that saw nothing so far sees the end at once.
  deadline = clock_type::now() + wait_time;
  for (size_t i = 0; i < clients.size(); ++i)
    if (last[i].kind == ws_kind::timeout)
      last[i] = await_end(clients[i], deadline);
  for (auto& msg : last) {
    if (msg.kind == ws_kind::close && msg.close_code == 1001) {
      ++out.going_away;
      continue;
    }
    if (msg.kind == ws_kind::ended) {
      ++out.cut;
      continue;
    }
    ++(msg.kind == ws_kind::close ? out.other_close : out.still_open);
    if (out.first_unexpected.empty())
      out.first_unexpected = msg.describe();
  }
  return out;
}

} // namespace

TEST_SUITE_BEGIN("integration");

// -- delivery -----------------------------------------------------------------

TEST_CASE("a subscriber receives what POST /api/publish sends") {
  live_hub h;
  auto client = open_ws(h.port);
  // A subscribe with an id gets an ok; a ping with an id gets its pong.
  send(client, R"({"type":"subscribe","channel":"chat","id":1})");
  require_reply(next_object(client), "ok", 1);
  send(client, R"({"type":"ping","id":2})");
  require_reply(next_object(client), "pong", 2);
  // A seed-hub client subscribes without an id and gets no reply: the next
  // frame is the pong of a later ping.
  send(client, R"({"type":"subscribe","channel":"news"})");
  sync(client);
  publish(h.port, "chat", "message", R"({"text":"hello","n":1})");
  require_publication(client, "chat", "message", R"({"text":"hello","n":1})");
  publish(h.port, "news", "headline", R"("extra!")");
  require_publication(client, "news", "headline", R"("extra!")");
}

TEST_CASE("a burst of 1,000 publications arrives as 1,000 frames in order") {
  auto cfg = test_config();
  // This test is about framing and order, not backpressure: leave room.
  cfg.send_queue_limit = 2000;
  live_hub h{cfg};
  auto subscriber = open_ws(h.port);
  subscribe(subscriber, "c");
  // A loopback connection without Origin, no API key set: trusted publisher.
  auto publisher = open_ws(h.port);
  for (int i = 0; i < 1000; ++i) {
    send(publisher,
         publish_command("c", "e", R"({"n":)" + std::to_string(i) + "}"));
    if (i % 100 == 99)
      sync(publisher); // no error frame so far, and bounded in-flight work
  }
  int received = 0;
  for (; received < 1000; ++received) {
    auto msg = subscriber.receive(wait_time);
    if (msg.kind != ws_kind::text) {
      FAIL_CHECK("frame " << received << ": " << msg.describe());
      break;
    }
    // parse_object fails on anything but exactly one object per frame.
    auto doc = parse_object(msg.data);
    CHECK(str(doc, "channel") == "c");
    CHECK(str(doc, "type") == "e");
    auto data = json_of(doc, "data");
    if (data != R"({"n":)" + std::to_string(received) + "}") {
      FAIL_CHECK("frame " << received << " out of order: " << msg.data);
      break;
    }
  }
  CHECK(received == 1000);
  // Exactly once each: nothing follows. A short wait, to prove something
  // does not arrive: a duplicate would come right behind the 1,000th frame,
  // and a late one could only make this pass wrongly, never fail wrongly.
  CHECK(subscriber.receive(300ms).kind == ws_kind::timeout);
}

TEST_CASE("the fast lane: a reader that stalls gets every frame whole and in "
          "order, with pings held behind them, and the close frame last") {
  // Frames go to the socket in gathered writes of shared bytes, beside
  // websocketpp's own writes. A reader that stops makes the socket take a
  // write part-way: the rest waits for the socket, the keepalive's pings
  // and the close frame wait behind it, and nothing may interleave.
  live_hub h{stalled_reader_config(test_config())};
  ws_options small_buffer;
  small_buffer.receive_buffer = 4096;
  auto reader = std::make_unique<ws_client>(h.port, small_buffer);
  REQUIRE(reader->status() == 101);
  subscribe(*reader, "feed"); // its last read until all is published
  // 160 publications of 32 KiB: 5 MiB, more than loopback buffers hold.
  constexpr int publications = 160;
  for (int i = 0; i < publications; ++i)
    publish(h.port, "feed", "tick", padded_data(i, 'y'));
  auto stats = wait_for_stats(h.port, [](stats_map& x) {
    return x["delivered"] >= publications;
  });
  REQUIRE(stats["delivered"] == publications);
  std::this_thread::sleep_for(300ms); // a few pings queue behind the frames
  // The server stops while the frames wait: its close frame goes last.
  std::thread stopping{[&] {
    h.srv->stop();
  }};
  require_in_order_then_end(*reader, publications, 'y', wait_time);
  reader.reset(); // ends the close handshake from this side
  stopping.join();
}

TEST_CASE("with 3 I/O threads, every connection gets every frame in order") {
  auto cfg = test_config();
  cfg.io_threads = 3; // connections are dealt round-robin to the threads
  cfg.send_queue_limit = 1000;
  live_hub h{cfg};
  std::vector<ws_client> subscribers;
  for (int i = 0; i < 12; ++i) {
    subscribers.push_back(open_ws(h.port));
    subscribe(subscribers.back(), "t");
  }
  auto publisher = open_ws(h.port);
  constexpr int n = 300;
  for (int i = 0; i < n; ++i)
    send(publisher, publish_command("t", "e", std::to_string(i)));
  sync(publisher);
  for (size_t k = 0; k < subscribers.size(); ++k) {
    INFO("subscriber " << k);
    for (int i = 0; i < n; ++i) {
      auto doc = next_object(subscribers[k]);
      if (json_of(doc, "data") != std::to_string(i)) {
        FAIL_CHECK("frame " << i << ": " << json_of(doc, "data"));
        break;
      }
    }
  }
  auto s = wait_for_stats(h.port, [](stats_map& x) {
    return x["connections"] == 13;
  });
  CHECK(s["subscriptions"] == 12);
  // stop() reaches every thread's connections: each ends, with 1001 unless
  // stop() had to cut it after its drain deadline.
  auto everyone = std::move(subscribers);
  everyone.push_back(std::move(publisher));
  auto out = stop_beside(h, everyone);
  MESSAGE("stop(): " << out.going_away << " closed with 1001, " << out.cut
                     << " cut, in " << out.stop_ms << " ms");
  INFO("first unexpected outcome: " << out.first_unexpected);
  CHECK(out.other_close == 0);
  CHECK(out.still_open == 0);
}

TEST_CASE("a 300 KB publication arrives intact over WebSocket and HTTP") {
  // Far larger than the server's read buffers: read in many pieces.
  live_hub h;
  auto subscriber = open_ws(h.port);
  subscribe(subscriber, "big");
  std::string text(300 * 1024, 'x');
  for (size_t i = 0; i < text.size(); i += 97)
    text[i] = static_cast<char>('a' + (i / 97) % 26);
  auto data = "\"" + text + "\"";
  auto publisher = open_ws(h.port);
  send(publisher, publish_command("big", "ws", data));
  sync(publisher);
  publish(h.port, "big", "http", data);
  for (auto type : {"ws", "http"}) {
    INFO("published over " << type);
    auto doc = next_object(subscriber);
    CHECK(str(doc, "type") == type);
    CHECK(str(doc, "data") == text);
  }
}

TEST_CASE("published numbers and strings arrive with their exact text") {
  live_hub h;
  auto subscriber = open_ws(h.port);
  subscribe(subscriber, "exact");
  const std::string data = R"({"big":12345678901234567890123,)"
                           R"("f":0.1000000000000000055511151231257827,)"
                           R"("s":"h\u00e9llo ✓ \"q\""})";
  auto check_frame = [&] {
    auto msg = subscriber.receive(wait_time);
    INFO("received: " << msg.describe());
    REQUIRE(msg.kind == ws_kind::text);
    // The numbers' digits survive byte for byte (no round trip through a
    // double)...
    CHECK(msg.data.find(R"({"big":12345678901234567890123,)"
                        R"("f":0.1000000000000000055511151231257827,)")
          != std::string::npos);
    // ... and so do the values, whatever the encoder does with escapes.
    auto doc = parse_object<rapidjson::kParseNumbersAsStringsFlag>(msg.data);
    REQUIRE(doc.HasMember("data"));
    auto& d = doc["data"];
    REQUIRE(d.IsObject());
    CHECK(str(d, "big") == "12345678901234567890123");
    CHECK(str(d, "f") == "0.1000000000000000055511151231257827");
    CHECK(str(d, "s") == "h\xc3\xa9llo \xe2\x9c\x93 \"q\"");
  };
  SUBCASE("published over HTTP") {
    publish(h.port, "exact", "numbers", data);
    check_frame();
  }
  SUBCASE("published by a trusted publisher WebSocket") {
    auto publisher = open_ws(h.port);
    send(publisher, publish_command("exact", "numbers", data));
    check_frame();
  }
}

TEST_CASE("unsubscribe stops delivery on that channel only") {
  live_hub h;
  auto leaver = open_ws(h.port);
  auto stayer = open_ws(h.port);
  subscribe(leaver, "news");
  subscribe(leaver, "other");
  subscribe(stayer, "news");
  publish(h.port, "news", "m", "1");
  require_publication(leaver, "news", "m", "1");
  require_publication(stayer, "news", "m", "1");
  unsubscribe(leaver, "news");
  // Unsubscribing a channel not subscribed is not an error.
  unsubscribe(leaver, "never-subscribed");
  publish(h.port, "news", "m", "2");
  // Once the stayer has "2", the channel has handed it to every subscriber;
  // "3" comes later, so the leaver's next frame shows whether it got "2".
  require_publication(stayer, "news", "m", "2");
  publish(h.port, "other", "m", "3");
  require_publication(leaver, "other", "m", "3");
}

TEST_CASE("a publication to \"*\" reaches every connection") {
  live_hub h;
  auto on_x = open_ws(h.port);
  auto on_nothing = open_ws(h.port);
  auto on_y = open_ws(h.port);
  subscribe(on_x, "x");
  subscribe(on_y, "y");
  sync(on_nothing); // its connection is open and registered
  publish(h.port, "*", "announce", R"({"note":"all"})");
  for (auto* client : {&on_x, &on_nothing, &on_y})
    require_publication(*client, "*", "announce", R"({"note":"all"})");
}

// -- command errors -----------------------------------------------------------

TEST_CASE("a bad command gets an error frame and the connection stays usable") {
  live_hub h;
  auto client = open_ws(h.port);
  struct bad_case {
    std::string frame;
    const char* code;
    std::string id; // JSON text of the expected id; empty: no id
  };
  std::vector<bad_case> cases{
    {R"({"type":)", "bad_json", ""},
    {"not json at all", "bad_json", ""},
    {R"({"type":"dance","id":7})", "unknown_command", "7"},
    {R"({"type":"subscribe","channel":42,"id":"x"})", "bad_command", R"("x")"},
    {R"({"type":"subscribe","id":8})", "bad_command", "8"},
    {R"({"type":42,"id":9})", "bad_command", "9"},
    {"[1,2,3]", "bad_command", ""},
    {R"({"type":"subscribe","channel":"*","id":10})", "bad_channel", "10"},
    {R"({"type":"subscribe","channel":"","id":11})", "bad_channel", "11"},
    {R"({"type":"subscribe","channel":")" + std::string(256, 'a')
       + R"(","id":12})",
     "bad_channel", "12"},
  };
  for (auto& bad : cases) {
    CAPTURE(bad.frame);
    send(client, bad.frame);
    auto doc = next_object(client);
    CHECK(str(doc, "type") == "error");
    CHECK(str(doc, "code") == bad.code);
    CHECK(doc.HasMember("message"));
    CHECK(str(doc, "message") != "<not a string>");
    CHECK(json_of(doc, "id") == (bad.id.empty() ? "<missing>" : bad.id));
    sync(client); // still usable: a later ping gets its pong
  }
  // Unknown fields are ignored.
  send(client, R"({"type":"ping","id":13,"colour":"blue"})");
  require_reply(next_object(client), "pong", 13);
  // And it still receives publications.
  subscribe(client, "after");
  publish(h.port, "after", "t", "true");
  require_publication(client, "after", "t", "true");
}

// -- client publish -----------------------------------------------------------

TEST_CASE("a browser connection may not publish by default") {
  live_hub h;
  auto browser = open_ws(h.port, h.same_origin());
  send(browser, publish_command("room:1", "said", "1", 1));
  auto doc = next_object(browser);
  require_reply(doc, "error", 1);
  CHECK(str(doc, "code") == "forbidden");
}

TEST_CASE("a browser connection publishes where client_publish allows it") {
  auto cfg = test_config();
  cfg.client_publish = {"room:*"};
  live_hub h{cfg};
  auto listener = open_ws(h.port);
  subscribe(listener, "room:1");
  subscribe(listener, "lobby");
  auto browser = open_ws(h.port, h.same_origin());
  send(browser, publish_command("lobby", "said", R"({"text":"no"})", 1));
  auto denied = next_object(browser);
  require_reply(denied, "error", 1);
  CHECK(str(denied, "code") == "forbidden");
  send(browser, publish_command("*", "said", R"({"text":"no"})", 2));
  auto denied_all = next_object(browser);
  require_reply(denied_all, "error", 2);
  CHECK(str(denied_all, "code") == "forbidden");
  send(browser, publish_command("room:1", "said", R"({"text":"hi"})", 3));
  require_reply(next_object(browser), "ok", 3);
  // The listener gets only the allowed publication.
  require_publication(listener, "room:1", "said", R"({"text":"hi"})");
}

// -- limits -------------------------------------------------------------------

TEST_CASE("a message larger than max_message_size closes with 1009") {
  auto cfg = test_config();
  cfg.max_message_size = 1024;
  live_hub h{cfg};
  auto client = open_ws(h.port);
  // At the limit is fine, in one frame or reassembled from three.
  send(client, ping_of_size(1, 1024));
  require_reply(next_object(client), "pong", 1);
  REQUIRE(client.send_text(ping_of_size(2, 1024), 400));
  require_reply(next_object(client), "pong", 2);
  SUBCASE("in one frame") {
    REQUIRE(client.send_text(ping_of_size(3, 1025)));
  }
  SUBCASE("in fragments that are small on their own") {
    REQUIRE(client.send_text(ping_of_size(3, 1200), 300));
  }
  auto msg = client.receive(wait_time);
  INFO("received: " << msg.describe());
  CHECK(msg.kind == ws_kind::close);
  CHECK(msg.close_code == 1009);
}

TEST_CASE(
  "a client that never reads is closed with 4008 while others get all") {
  auto cfg = test_config();
  cfg.send_queue_limit = 16;
  live_hub h{cfg};
  auto reader = open_ws(h.port);
  subscribe(reader, "feed");
  ws_options small_buffer;
  small_buffer.receive_buffer = 4096;
  ws_client never_reads{h.port, small_buffer};
  REQUIRE(never_reads.status() == 101);
  subscribe(never_reads, "feed"); // its last read until the end of the test
  auto publisher = open_ws(h.port);
  const std::string pad(8 * 1024, 'x');
  auto data_of = [&](int n) {
    return R"({"n":)" + std::to_string(n) + R"(,"pad":")" + pad + "\"}";
  };
  // Publish in batches of 8 that the reader reads at once, so that only the
  // non-reader falls behind, until the server counts it as a slow consumer.
  // The kernel buffers a few MB on loopback before the server's queue grows.
  constexpr int max_publications = 2000; // 16 MB: beyond any socket buffer
  int published = 0;
  uint64_t slow = 0;
  while (published < max_publications && slow == 0) {
    for (int i = 0; i < 8; ++i)
      send(publisher, publish_command("feed", "tick", data_of(published + i)));
    for (int i = 0; i < 8; ++i) {
      auto doc = next_object(reader);
      if (json_of(doc, "data") != data_of(published))
        FAIL("the reader's frame " << published << " is another publication");
      ++published;
    }
    if (published % 64 == 0)
      slow = get_stats(h.port)["slow_consumer_disconnects"];
  }
  if (slow == 0) // the counter may lag behind the disconnect
    slow = wait_for_stats(h.port, [](stats_map& x) {
      return x["slow_consumer_disconnects"] >= 1;
    })["slow_consumer_disconnects"];
  MESSAGE("publications until the slow consumer was cut off: " << published);
  REQUIRE(slow >= 1);
  // The non-reader now reads what its socket holds: an in-order prefix of the
  // publications, then the 4008 close frame or the end of the connection
  // (where the server dropped the socket, the close frame may be lost).
  ws_message last;
  int prefix = 0;
  for (int i = 0; i <= published + 1; ++i) {
    last = never_reads.receive(wait_time);
    if (last.kind != ws_kind::text)
      break;
    auto doc = parse_object(last.data);
    if (json_of(doc, "data") != data_of(prefix)) {
      FAIL_CHECK("frame " << prefix << " out of order");
      break;
    }
    ++prefix;
  }
  MESSAGE("the slow consumer received " << prefix << " publications, then "
                                        << last.describe());
  if (last.kind == ws_kind::close)
    CHECK(last.close_code == 4008);
  else
    CHECK(last.kind == ws_kind::ended);
  // The reader was not slowed down and still gets what follows.
  publish(h.port, "feed", "tick", "\"done\"");
  require_publication(reader, "feed", "tick", "\"done\"");
}

// -- admission ----------------------------------------------------------------

TEST_CASE("origins: same origin and no origin pass, a foreign one gets 403") {
  live_hub h;
  CHECK(ws_client{h.port}.status() == 101);
  ws_options same;
  same.headers = h.same_origin();
  CHECK(ws_client{h.port, same}.status() == 101);
  ws_options evil;
  evil.headers = {{"Origin", "http://evil.example"}};
  CHECK(ws_client{h.port, evil}.status() == 403);
  auto res = post_publish(h.port, "chat", "message", "1", evil.headers);
  CHECK(res.status == 403);
}

TEST_CASE("origins: allowed_origins admits exactly the listed ones") {
  auto cfg = test_config();
  cfg.allowed_origins = {"http://ok.example"};
  live_hub h{cfg};
  auto status_with = [&](header_list headers) {
    ws_options opts;
    opts.headers = std::move(headers);
    return ws_client{h.port, opts}.status();
  };
  CHECK(status_with({{"Origin", "http://ok.example"}}) == 101);
  CHECK(status_with({}) == 101);
  CHECK(status_with({{"Origin", "http://evil.example"}}) == 403);
  // "exactly those": the server's own origin is not listed.
  CHECK(status_with(h.same_origin()) == 403);
  auto ok = post_publish(h.port, "chat", "message", "1",
                         {{"Origin", "http://ok.example"}});
  CHECK(ok.status == 202);
  auto evil = post_publish(h.port, "chat", "message", "1",
                           {{"Origin", "http://evil.example"}});
  CHECK(evil.status == 403);
}

TEST_CASE("max_connections: the connection past the limit gets 503") {
  auto cfg = test_config();
  cfg.max_connections = 2;
  live_hub h{cfg};
  auto first = open_ws(h.port);
  auto second = open_ws(h.port);
  CHECK(ws_client{h.port}.status() == 503);
  // Once one leaves, a newcomer gets in (the count settles eventually).
  first.close();
  auto deadline = clock_type::now() + wait_time;
  int status = 0;
  while (status != 101 && clock_type::now() < deadline) {
    status = ws_client{h.port}.status();
    if (status != 101)
      std::this_thread::sleep_for(20ms);
  }
  CHECK(status == 101);
}

TEST_CASE("api key: needed for HTTP publish and for trusted WebSockets") {
  auto cfg = test_config();
  cfg.api_key = "s3cret";
  live_hub h{cfg};
  auto listener = open_ws(h.port);
  subscribe(listener, "news");
  CHECK(post_publish(h.port, "news", "m", "0").status == 401);
  CHECK(
    post_publish(h.port, "news", "m", "0", {{"Authorization", "Bearer wrong"}})
      .status
    == 401);
  auto res = post_publish(h.port, "news", "m", "1",
                          {{"Authorization", "Bearer s3cret"}});
  CHECK(res.status == 202);
  CHECK(res.body.find("\"ok\":true") != std::string::npos);
  require_publication(listener, "news", "m", "1");
  // Loopback without Origin is not enough once a key is set...
  auto anonymous = open_ws(h.port);
  send(anonymous, publish_command("news", "m", "2", 1));
  auto denied = next_object(anonymous);
  require_reply(denied, "error", 1);
  CHECK(str(denied, "code") == "forbidden");
  // ... the bearer header makes a trusted publisher, "*" included.
  auto trusted = open_ws(h.port, {{"Authorization", "Bearer s3cret"}});
  send(trusted, publish_command("news", "m", "3", 2));
  require_reply(next_object(trusted), "ok", 2);
  require_publication(listener, "news", "m", "3");
  send(trusted, publish_command("*", "m", "4", 3));
  require_publication(listener, "*", "m", "4");
  // "*" reaches the publisher too, before or after its ok.
  auto first = next_object(trusted);
  auto second = next_object(trusted);
  bool ok_first = str(first, "type") == "ok";
  require_reply(ok_first ? first : second, "ok", 3);
  CHECK(str(ok_first ? second : first, "channel") == "*");
}

// -- HTTP endpoints
// -------------------------------------------------------------

TEST_CASE("HTTP endpoints answer with the documented statuses") {
  auto cfg = test_config();
  cfg.max_message_size = 1024;
  live_hub h{cfg};
  const header_list json{{"Content-Type", "application/json"}};
  SUBCASE("bad JSON: 400 with an error") {
    auto res = http_request(h.port, "POST", "/api/publish", json,
                            R"({"channel":)");
    CHECK(res.status == 400);
    CHECK(parse_object(res.body).HasMember("error"));
  }
  SUBCASE("bad shape: 400 with an error") {
    auto res = http_request(h.port, "POST", "/api/publish", json,
                            R"({"channel":42,"type":"t","data":1})");
    CHECK(res.status == 400);
    CHECK(parse_object(res.body).HasMember("error"));
  }
  SUBCASE("a body over max_message_size: 413") {
    auto res = post_publish(h.port, "big", "t",
                            '"' + std::string(2000, 'b') + '"');
    CHECK(res.status == 413);
  }
  SUBCASE("health") {
    auto res = http_request(h.port, "GET", "/healthz", {});
    CHECK(res.status == 200);
    CHECK(res.body.substr(0, res.body.find_last_not_of("\r\n") + 1) == "ok");
  }
  SUBCASE("unknown path: 404") {
    CHECK(http_request(h.port, "GET", "/no/such/thing", {}).status == 404);
  }
}

TEST_CASE("GET /api/stats counts connections, subscriptions and traffic") {
  live_hub h;
  auto zero = get_stats(h.port);
  CHECK(zero["connections"] == 0);
  CHECK(zero["published"] == 0);
  std::vector<ws_client> clients;
  for (int i = 0; i < 3; ++i)
    clients.push_back(open_ws(h.port));
  for (auto& client : clients)
    subscribe(client, "s:a");
  subscribe(clients[0], "s:b");
  subscribe(clients[1], "s:b");
  auto s = wait_for_stats(h.port, [](stats_map& x) {
    return x["connections"] == 3 && x["channels"] == 2
      && x["subscriptions"] == 5;
  });
  CHECK(s["connections"] == 3);
  CHECK(s["channels"] == 2);
  CHECK(s["subscriptions"] == 5);
  publish(h.port, "s:a", "t", "1"); // 3 deliveries
  publish(h.port, "s:b", "t", "2"); // 2 deliveries
  // Publications on different channels are not ordered against each other.
  for (int i = 0; i < 2; ++i) {
    std::multiset<std::string> got;
    for (int n = 0; n < 2; ++n) {
      auto doc = next_object(clients[i]);
      got.insert(str(doc, "channel") + "=" + json_of(doc, "data"));
    }
    CHECK(got == std::multiset<std::string>{"s:a=1", "s:b=2"});
  }
  require_publication(clients[2], "s:a", "t", "1");
  s = wait_for_stats(h.port, [](stats_map& x) {
    return x["published"] == 2 && x["delivered"] == 5;
  });
  CHECK(s["published"] == 2);
  CHECK(s["delivered"] == 5);
  // A disconnect removes the connection and its subscriptions.
  clients[0].close();
  s = wait_for_stats(h.port, [](stats_map& x) {
    return x["connections"] == 2 && x["subscriptions"] == 3;
  });
  CHECK(s["connections"] == 2);
  CHECK(s["channels"] == 2);
  CHECK(s["subscriptions"] == 3);
  // The last subscriber of s:b leaves it: the channel goes.
  unsubscribe(clients[1], "s:b");
  s = wait_for_stats(h.port, [](stats_map& x) {
    return x["channels"] == 1 && x["subscriptions"] == 2;
  });
  CHECK(s["channels"] == 1);
  CHECK(s["subscriptions"] == 2);
  clients[1].close();
  clients[2].drop(); // without a close handshake
  s = wait_for_stats(h.port, [](stats_map& x) {
    return x["connections"] == 0 && x["channels"] == 0
      && x["subscriptions"] == 0;
  });
  CHECK(s["connections"] == 0);
  CHECK(s["channels"] == 0);
  CHECK(s["subscriptions"] == 0);
  CHECK(s["published"] == 2);
  CHECK(s["delivered"] == 5);
}

// -- lifecycle ----------------------------------------------------------------

TEST_CASE("keepalive: a client that answers pings stays, a mute one goes") {
  // A ping every 200 ms, 2 s to answer it: ample for a client that is
  // reading, however loaded the machine, and the test still takes ~3 s.
  constexpr auto ping_interval = 200ms;
  constexpr auto pong_timeout = 2s;
  auto cfg = test_config();
  cfg.ping_interval = ping_interval;
  cfg.pong_timeout = pong_timeout;
  live_hub h{cfg};
  ws_options no_pong;
  no_pong.auto_pong = false;
  ws_client mute{h.port, no_pong};
  REQUIRE(mute.status() == 101);
  auto answering = open_ws(h.port);
  // The answering client receives without a break for longer than a ping
  // interval plus the pong timeout, answering pings inside receive(), and
  // sees nothing else: had it not answered, it would have been closed.
  auto msg = answering.receive(ping_interval + pong_timeout + 1s);
  INFO("answering client received: " << msg.describe());
  REQUIRE(msg.kind == ws_kind::timeout);
  sync(answering); // still connected and served
  // The mute client is closed: a close frame or the end of the socket. The
  // pings it never answered wait in its socket before that.
  auto mute_msg = mute.receive(wait_time);
  while (mute_msg.kind == ws_kind::text)
    mute_msg = mute.receive(wait_time);
  INFO("mute client received: " << mute_msg.describe());
  CHECK((mute_msg.kind == ws_kind::close || mute_msg.kind == ws_kind::ended));
}

TEST_CASE("stop() ends all 200 subscribed connections with 1001 or cuts them "
          "at its deadline") {
  live_hub h;
  std::vector<ws_client> clients;
  for (int i = 0; i < 200; ++i) {
    clients.push_back(open_ws(h.port));
    send(clients.back(),
         R"({"type":"subscribe","channel":"room:)" + std::to_string(i % 10)
           + "\"}");
  }
  for (auto& client : clients)
    sync(client);
  // The clients read their close frames and answer them while stop() runs.
  // Each connection ends: with 1001, or cut where stop() gave up waiting
  // for the close handshake (on a loaded machine it may).
  auto out = stop_beside(h, clients);
  MESSAGE("stop() with 200 clients took "
          << out.stop_ms << " ms: " << out.going_away << " closed with 1001, "
          << out.cut << " cut after the deadline");
  INFO("first unexpected outcome: " << out.first_unexpected);
  CHECK(out.other_close == 0);
  CHECK(out.still_open == 0);
  CHECK(out.going_away + out.cut == 200);
}

TEST_CASE("up to 2,000 connect/subscribe/disconnect cycles leave nothing "
          "behind") {
  live_hub h;
  int failed_upgrades = 0;
  // A bound on the test's time, not an expectation: a loaded machine runs
  // fewer cycles in it.
  auto give_up = clock_type::now() + 45s;
  int cycles = 0;
  for (; cycles < 2000 && clock_type::now() < give_up; ++cycles) {
    ws_client client{h.port};
    if (client.status() != 101) {
      ++failed_upgrades;
      continue;
    }
    // Shared channels come and go with their subscribers; some connections
    // also hold a channel of their own.
    auto shared = "cycle:" + std::to_string(cycles % 7);
    client.send_text(R"({"type":"subscribe","channel":")" + shared + "\"}");
    if (cycles % 3 == 0)
      client.send_text(R"({"type":"subscribe","channel":"solo:)"
                       + std::to_string(cycles) + "\"}");
    if (cycles % 4 == 0)
      sync(client); // subscribed for sure, not only in flight
    if (cycles % 2 == 0)
      client.close(1000, 1s);
    else
      client.drop(); // vanish without a close handshake
  }
  MESSAGE(cycles << " cycles ran");
  // Enough for every combination of the cycle's variants (they repeat every
  // 84 cycles) to have run; the rest is the point: nothing is left behind.
  REQUIRE(cycles >= 100);
  CHECK(failed_upgrades == 0);
  auto s = wait_for_stats(h.port, [](stats_map& x) {
    return x["connections"] == 0 && x["channels"] == 0
      && x["subscriptions"] == 0;
  });
  CHECK(s["connections"] == 0);
  CHECK(s["channels"] == 0);
  CHECK(s["subscriptions"] == 0);
  // Channels still come back to life for a new subscriber.
  auto client = open_ws(h.port);
  subscribe(client, "cycle:0");
  publish(h.port, "cycle:0", "t", "\"alive\"");
  require_publication(client, "cycle:0", "t", "\"alive\"");
}

TEST_SUITE_END();
