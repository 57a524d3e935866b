// Deterministic tests of history channels: offsets and epochs, the position
// in a subscribe's reply, recovery with `since` (also racing with
// publications at every step), history outliving its subscribers until the
// ttl, and the history command.
#include "actor_fixture.hpp"

#include <chrono>

#include <rapidjson/document.h>

#include "actors/fanout.hpp"

using namespace std::chrono_literals;
using namespace livehub;
using livehub::test::actor_fixture;
using livehub::test::collector;

namespace {

/// Reads a frame; `doc` is an object or the test fails.
rapidjson::Document parse(const std::string& frame) {
  rapidjson::Document doc;
  doc.Parse(frame.data(), frame.size());
  REQUIRE_MESSAGE((!doc.HasParseError() && doc.IsObject()), frame);
  return doc;
}

std::string str(const std::string& frame, const char* key) {
  auto doc = parse(frame);
  auto i = doc.FindMember(key);
  if (i == doc.MemberEnd())
    return "<missing>";
  if (i->value.IsString())
    return i->value.GetString();
  if (i->value.IsUint64())
    return std::to_string(i->value.GetUint64());
  if (i->value.IsBool())
    return i->value.GetBool() ? "true" : "false";
  return "<other>";
}

struct history_fixture : actor_fixture {
  history_fixture() {
    cfg.history_channels = {"room:*"};
    cfg.history_size = 5;
    cfg.history_ttl = 60s;
    respawn_hub(); // the hub reads history channels itself
  }

  void pub(const std::string& channel, int n) {
    publish(channel, "m", std::to_string(n));
  }

  /// The epoch of `channel`'s stream, as a history command answers it.
  std::string epoch_of(const std::string& channel) {
    auto c = connect();
    say(c,
        R"({"type":"history","channel":")" + channel
          + R"(","limit":0,"id":1})");
    auto frames = c.out->take();
    REQUIRE(frames.size() == 1);
    disconnect(c);
    return str(frames[0], "epoch");
  }
};

} // namespace

TEST_CASE_FIXTURE(history_fixture,
                  "history: publications carry offsets, the subscribe reply "
                  "the position") {
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"room:a","id":1})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(str(frames[0], "offset") == "0");
  auto epoch = str(frames[0], "epoch");
  CHECK(epoch.size() == 8);
  pub("room:a", 1);
  pub("room:a", 2);
  frames = c.out->take();
  CHECK(frames
        == std::vector<std::string>{
          R"({"channel":"room:a","type":"m","data":1,"offset":1})",
          R"({"channel":"room:a","type":"m","data":2,"offset":2})"});
  // Subscribing again answers the position; nothing comes twice.
  say(c, R"({"type":"subscribe","channel":"room:a","id":2})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(str(frames[0], "offset") == "2");
  CHECK(str(frames[0], "epoch") == epoch);
  // Other channels are unchanged.
  say(c, R"({"type":"subscribe","channel":"plain","id":3})");
  pub("plain", 1);
  frames = c.out->take();
  CHECK(
    frames
    == std::vector<std::string>{R"({"type":"ok","id":3})",
                                R"({"channel":"plain","type":"m","data":1})"});
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: a client that drops recovers what it missed, "
                  "then live ones, none twice") {
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"room:a","id":1})");
  auto epoch = str(c.out->take()[0], "epoch");
  pub("room:a", 1);
  pub("room:a", 2);
  c.out->take();
  disconnect(c);
  // Nobody subscribes: the history outlives the channel's subscribers.
  pub("room:a", 3);
  pub("room:a", 4);
  auto back = connect();
  say(
    back,
    R"({"type":"subscribe","channel":"room:a","id":7,"since":{"offset":2,"epoch":")"
      + epoch + R"("}})");
  pub("room:a", 5);
  auto frames = back.out->take();
  REQUIRE(frames.size() == 4);
  CHECK(frames[0] == R"({"channel":"room:a","type":"m","data":3,"offset":3})");
  CHECK(frames[1] == R"({"channel":"room:a","type":"m","data":4,"offset":4})");
  CHECK(frames[2]
        == R"({"type":"ok","id":7,"recovered":true,"offset":4,"epoch":")"
          + epoch + R"("})");
  CHECK(frames[3] == R"({"channel":"room:a","type":"m","data":5,"offset":5})");
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: recovery fails for another epoch or a position "
                  "no longer kept") {
  auto epoch = epoch_of("room:a");
  for (int i = 1; i <= 8; ++i) // history-size 5: 4..8 kept
    pub("room:a", i);
  auto c = connect();
  say(
    c,
    R"({"type":"subscribe","channel":"room:a","id":1,"since":{"offset":2,"epoch":")"
      + epoch + R"("}})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(str(frames[0], "recovered") == "false");
  CHECK(str(frames[0], "offset") == "8");
  say(
    c,
    R"({"type":"subscribe","channel":"room:a","id":2,"since":{"offset":3,"epoch":")"
      + epoch + R"("}})");
  frames = c.out->take();
  REQUIRE(frames.size() == 6); // 4..8, then the ok
  CHECK(str(frames[0], "offset") == "4");
  CHECK(str(frames[5], "recovered") == "true");
  say(
    c,
    R"({"type":"subscribe","channel":"room:a","id":3,"since":{"offset":8,"epoch":"other"}})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(str(frames[0], "recovered") == "false");
  // A position ahead of the stream cannot be recovered either.
  say(
    c,
    R"({"type":"subscribe","channel":"room:a","id":4,"since":{"offset":9,"epoch":")"
      + epoch + R"("}})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(str(frames[0], "recovered") == "false");
  // since on a channel without history, or malformed: bad_command.
  say(
    c,
    R"({"type":"subscribe","channel":"plain","id":5,"since":{"offset":1,"epoch":"x"}})");
  say(
    c,
    R"({"type":"subscribe","channel":"room:a","id":6,"since":{"offset":-1}})");
  frames = c.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(str(frames[0], "code") == "bad_command");
  CHECK(str(frames[1], "code") == "bad_command");
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: a recovery racing with publications at every "
                  "step misses none and doubles none") {
  auto epoch = epoch_of("room:r");
  int n = 0;
  for (; n < 2; ++n)
    pub("room:r", n + 1);
  auto c = connect();
  self->send(
    c.client, text_atom::value,
    R"({"type":"subscribe","channel":"room:r","id":1,"since":{"offset":1,"epoch":")"
      + epoch + R"("}})");
  // One message at a time, with a publication from another thread's path
  // (as a client actor publishes) between every two.
  publication p{"room:r", "m", json_text::trusted("0")};
  while (sched.try_run_once()) {
    p.data = json_text::trusted(std::to_string(++n));
    deliver_publication(shared, p, sys.clock().now());
  }
  p.data = json_text::trusted(std::to_string(++n));
  deliver_publication(shared, p, sys.clock().now());
  auto frames = c.out->take();
  std::vector<uint64_t> offsets;
  bool ok_seen = false;
  for (auto& f : frames) {
    if (str(f, "type") == "ok") {
      CHECK(str(f, "recovered") == "true");
      CHECK(std::stoull(str(f, "offset")) == offsets.back());
      ok_seen = true;
      continue;
    }
    offsets.push_back(std::stoull(str(f, "offset")));
    CHECK(str(f, "data") == str(f, "offset")); // publication n has offset n
  }
  CHECK(ok_seen);
  REQUIRE(!offsets.empty());
  for (size_t i = 0; i < offsets.size(); ++i)
    CHECK(offsets[i] == i + 2);
  CHECK(offsets.back() == static_cast<uint64_t>(n));
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: the ttl empties it, and a new stream gets a new "
                  "epoch") {
  auto before = epoch_of("room:t");
  pub("room:t", 1);
  sched.advance_time(30s);
  run();
  auto c = connect();
  say(c, R"({"type":"history","channel":"room:t","limit":10,"id":1})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  auto doc = parse(frames[0]);
  CHECK(doc["publications"].Size() == 1);
  CHECK(str(frames[0], "epoch") == before);
  // Past the ttl (and a sweep), nothing is kept and nobody subscribes: the
  // stream ends.
  for (int i = 0; i < 10; ++i) {
    sched.advance_time(10s);
    run();
  }
  CHECK(routes->find_history("room:t") == nullptr);
  say(c, R"({"type":"history","channel":"room:t","limit":10,"id":2})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(parse(frames[0])["publications"].Size() == 0);
  CHECK(str(frames[0], "offset") == "0");
  CHECK(str(frames[0], "epoch") != before);
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: the history command returns the last "
                  "publications, oldest first") {
  for (int i = 1; i <= 7; ++i)
    pub("room:h", i);
  auto c = connect();
  say(c, R"({"type":"history","channel":"room:h","limit":3,"id":"h"})");
  say(c, R"({"type":"history","channel":"room:h","limit":100,"id":2})");
  say(c, R"({"type":"history","channel":"plain","limit":1,"id":3})");
  say(c, R"({"type":"history","channel":"room:h","id":4})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 4);
  auto doc = parse(frames[0]);
  REQUIRE(doc["publications"].Size() == 3);
  CHECK(doc["publications"][0]["offset"].GetUint64() == 5);
  CHECK(doc["publications"][2]["data"].GetInt() == 7);
  CHECK(str(frames[0], "offset") == "7");
  CHECK(str(frames[0], "id") == "h");
  CHECK(parse(frames[1])["publications"].Size() == 5); // history-size
  CHECK(str(frames[2], "code") == "bad_command");
  CHECK(str(frames[3], "code") == "bad_command"); // no limit
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: with tokens, reading history needs the right to "
                  "subscribe") {
  cfg.token_hmac_secret = "history-test-secret";
  auto c = connect(true); // trusted: may read everything
  say(c, R"({"type":"history","channel":"room:x","limit":1,"id":1})");
  CHECK(str(c.out->take()[0], "type") == "ok");
  auto anon = connect();
  say(anon, R"({"type":"history","channel":"room:x","limit":1,"id":1})");
  CHECK(str(anon.out->take()[0], "code") == "unauthorized");
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: the C++ API reads history and recovers an "
                  "application actor") {
  for (int i = 1; i <= 3; ++i)
    pub("room:c", i);
  self->send(hub, history_atom::value, std::string{"room:c"}, uint64_t{2});
  run();
  history_page page;
  self->receive([&](history_page& x) {
    page = std::move(x);
  });
  REQUIRE(page.publications.size() == 2);
  CHECK(page.publications[0].offset == 2);
  CHECK(page.publications[1].data.str() == "3");
  CHECK(page.publications[1].channel == "room:c");
  CHECK(page.position.offset == 3);
  auto epoch = page.position.epoch;
  // An actor that saw offset 1 recovers 2 and 3, then gets 4 live.
  auto got = std::make_shared<std::vector<publication>>();
  auto app = sys.spawn(collector, got);
  self->send(hub, caf::subscribe_atom::value, std::string{"room:c"}, app,
             stream_position{1, epoch});
  run();
  history_page recovery;
  self->receive([&](history_page& x) {
    recovery = std::move(x);
  });
  CHECK(recovery.recovered);
  REQUIRE(recovery.publications.size() == 2);
  CHECK(recovery.publications[0].offset == 2);
  pub("room:c", 4);
  REQUIRE(got->size() == 1);
  CHECK(got->at(0).offset == 4);
  CHECK(got->at(0).data.str() == "4");
  // Another epoch: nothing recovered.
  self->send(hub, caf::subscribe_atom::value, std::string{"room:c"}, app,
             stream_position{1, "zzz"});
  run();
  self->receive([&](history_page& x) {
    recovery = std::move(x);
  });
  CHECK(!recovery.recovered);
  CHECK(recovery.publications.empty());
  CHECK(recovery.position.offset == 4);
  // No history channel: an error.
  self->send(hub, history_atom::value, std::string{"plain"}, uint64_t{2});
  run();
  bool failed = false;
  self->receive([&](history_page&) {},
                [&](caf::error&) {
                  failed = true;
                });
  CHECK(failed);
  self->send_exit(app, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(history_fixture,
                  "history: a full queue lags instead of closing, gets a gap "
                  "once drained, and recovers") {
  cfg.send_queue_limit = 4;
  cfg.history_size = 100;
  respawn_hub(); // the hub reads history-size itself
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"room:g","id":1})");
  say(c, R"({"type":"subscribe","channel":"plain","id":2})");
  auto epoch = str(c.out->take()[0], "epoch");
  c.out->take();
  c.out->reading = false; // the peer stops reading
  for (int i = 1; i <= 10; ++i)
    pub("room:g", i);
  // 4 frames fit; the rest lag. Not closed, and replies still go out.
  CHECK(!c.out->close_code);
  say(c, R"({"type":"ping","id":3})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 5);
  CHECK(str(frames[3], "offset") == "4");
  CHECK(str(frames[4], "type") == "pong");
  // The peer reads again: once the queue is under half, one gap frame.
  c.out->reading = true;
  c.out->buffered = 0;
  advance(2s);
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(frames[0]
        == R"({"type":"gap","channel":"room:g","offset":4,"epoch":")" + epoch
          + R"("})");
  // Nothing more of that channel until it recovers.
  pub("room:g", 11);
  CHECK(c.out->take().empty());
  say(
    c,
    R"({"type":"subscribe","channel":"room:g","id":4,"since":{"offset":4,"epoch":")"
      + epoch + R"("}})");
  frames = c.out->take();
  REQUIRE(frames.size() == 8); // 5..11, then the ok
  CHECK(str(frames[0], "offset") == "5");
  CHECK(str(frames[6], "offset") == "11");
  CHECK(str(frames[7], "recovered") == "true");
  pub("room:g", 12);
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(str(frames[0], "offset") == "12");
  // Other channels keep the 4008 rule.
  c.out->reading = false;
  for (int i = 0; i < 6; ++i)
    pub("plain", i);
  CHECK(c.out->close_code == 4008);
}
