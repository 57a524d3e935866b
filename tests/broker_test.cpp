// Deterministic tests of the broker seam with a fake broker: what a node
// publishes goes to the broker once and to its own subscribers at once,
// what other nodes publish reaches this node's subscribers and never goes
// back, a channel's first subscriber subscribes at the broker (and waits for
// it), its last one unsubscribes, and while the broker is down publications
// are refused loudly.
#include "actor_fixture.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "actors/broker.hpp"
#include "actors/fanout.hpp"
#include "support/json_field.hpp"

using namespace livehub;
using livehub::test::actor_fixture;
using livehub::test::collector;
using livehub::test::fake_connection;
using livehub::test::json_field;

namespace {

/// A broker that records what the hub asks of it, plays other nodes, and
/// keeps the cluster's shared state (streams, presence) in memory.
class fake_broker : public broker {
 public:
  void start(const std::string&, remote_handler handler) override {
    handler_ = std::move(handler);
    ++starts;
  }

  void stop() override {
    handler_ = nullptr;
    ++stops;
  }

  bool up() const override {
    return is_up;
  }

  void publish(const std::string& channel, const frame_ptr& frame) override {
    published.emplace_back(channel, *frame);
  }

  void subscribe(const std::string& channel,
                 std::function<void()> ready) override {
    subscribed.insert(channel);
    ++subscribes;
    if (hold_ready)
      held.emplace_back(std::move(ready));
    else
      ready();
  }

  void unsubscribe(const std::string& channel) override {
    subscribed.erase(channel);
    unsubscribed.push_back(channel);
  }

  void publish_numbered(const std::string& channel, std::string head) override {
    auto& st = streams[channel];
    if (st.epoch.empty())
      st.epoch = "e1";
    ++st.offset;
    auto frame = std::make_shared<const std::string>(
      head + ",\"offset\":" + std::to_string(st.offset) + "}");
    st.frames.emplace_back(frame, std::chrono::milliseconds{0});
    // Back to every node, this one included, once flushed.
    echoes.emplace_back(frame, st.epoch);
  }

  void load_stream(const std::string& channel, stream_handler done) override {
    ++loads;
    if (fail_loads) {
      done(caf::make_error(caf::sec::runtime_error, "Redis: down"));
      return;
    }
    auto& st = streams[channel];
    if (st.epoch.empty())
      st.epoch = "e1";
    if (hold_loads)
      held_loads.emplace_back([done, st] {
        done(st);
      });
    else
      done(st);
  }

  void touch_streams(std::vector<std::string> channels) override {
    touched.insert(touched.end(), channels.begin(), channels.end());
  }

  void presence_join(const std::string& channel, presence_member who,
                     frame_ptr event) override {
    members[channel][who.client] = who.entry;
    presence_events.emplace_back(channel, *event);
  }

  void presence_leave(const std::string& channel, const std::string& client,
                      frame_ptr event) override {
    if (members[channel].erase(client) > 0)
      presence_events.emplace_back(channel, *event);
  }

  void presence_refresh(const std::string& channel,
                        std::vector<presence_member> xs) override {
    ++refreshes;
    for (auto& x : xs)
      members[channel][x.client] = x.entry;
  }

  void presence(const std::string& channel, presence_handler done) override {
    if (fail_loads) {
      done(caf::make_error(caf::sec::runtime_error, "Redis: down"));
      return;
    }
    std::vector<std::string> result;
    for (auto& kvp : members[channel])
      result.push_back(kvp.second);
    done(std::move(result));
  }

  /// Another node published `frame`.
  void remote(const std::string& frame,
              remote_kind kind = remote_kind::publication,
              const std::string& epoch = "") {
    REQUIRE(handler_);
    handler_(std::make_shared<const std::string>(frame), kind, epoch);
  }

  /// Another node published on history channel `channel`: numbered by the
  /// stream, not yet delivered (flush).
  void remote_numbered(const std::string& channel, const std::string& type,
                       const std::string& data) {
    publish_numbered(channel,
                     R"({"channel":")" + channel + R"(","type":")" + type
                       + R"(","data":)" + data);
  }

  /// Delivers the numbered publications to this node, in stream order.
  void flush() {
    auto xs = std::move(echoes);
    echoes.clear();
    for (auto& [frame, epoch] : xs)
      handler_(frame, remote_kind::numbered, epoch);
  }

  /// Confirms the held subscriptions.
  void release() {
    auto xs = std::move(held);
    for (auto& f : xs)
      f();
  }

  /// Answers the held stream loads.
  void release_loads() {
    auto xs = std::move(held_loads);
    held_loads.clear();
    for (auto& f : xs)
      f();
  }

  bool is_up = true;
  bool hold_ready = false;
  bool hold_loads = false;
  bool fail_loads = false;
  int starts = 0;
  int stops = 0;
  int subscribes = 0;
  int loads = 0;
  int refreshes = 0;
  std::vector<std::pair<std::string, std::string>> published;
  std::set<std::string> subscribed;
  std::vector<std::string> unsubscribed;
  std::vector<std::function<void()>> held;
  std::vector<std::function<void()>> held_loads;
  std::map<std::string, stream_state> streams;
  std::vector<std::pair<frame_ptr, std::string>> echoes;
  std::map<std::string, std::map<std::string, std::string>> members;
  std::vector<std::pair<std::string, std::string>> presence_events;
  std::vector<std::string> touched;

 private:
  remote_handler handler_;
};

struct broker_fixture : actor_fixture {
  std::shared_ptr<fake_broker> fake = std::make_shared<fake_broker>();

  /// Another node publishes `data` on history channel `channel`, and it
  /// reaches this node, numbered by the stream.
  void another_node_publishes(const std::string& channel,
                              const std::string& data) {
    fake->remote_numbered(channel, "m", data);
    fake->flush();
    run();
  }

  /// A connection subscribed to history channel `channel`, which got the
  /// channel's first publication (offset 1) from another node.
  fake_connection subscribed_after_one(const std::string& channel) {
    auto c = connect();
    say(c, R"({"type":"subscribe","channel":")" + channel + R"(","id":1})");
    c.out->take();
    another_node_publishes(channel, "1");
    CHECK(c.out->take().size() == 1);
    return c;
  }

  broker_fixture() {
    cfg.client_publish = {"*"};
    cfg.history_channels = {"h:*", "hp:*"};
    cfg.presence_channels = {"p:*", "hp:*"};
    self->send_exit(hub, caf::exit_reason::user_shutdown);
    run();
    hub = spawn_hub(sys, cfg, fake);
    shared = fetch_shared();
    counters = shared.counters;
    routes = shared.routes;
  }
};

const char* chat_frame = R"({"channel":"chat","type":"m","data":1})";

} // namespace

TEST_SUITE_BEGIN("broker");

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a local publication goes to the broker once and "
                  "to local subscribers at once") {
  CHECK(fake->starts == 1);
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"chat","id":1})");
  CHECK(c.out->take() == std::vector<std::string>{R"({"type":"ok","id":1})"});
  publish("chat", "m", "1");
  CHECK(c.out->take() == std::vector<std::string>{chat_frame});
  // From a connection too, and to a channel nobody here subscribes.
  say(c, R"({"type":"publish","channel":"chat","event":"m","data":1,"id":2})");
  say(c, R"({"type":"publish","channel":"other","event":"m","data":2})");
  auto frames = c.out->take();
  CHECK(frames
        == std::vector<std::string>{chat_frame, R"({"type":"ok","id":2})"});
  REQUIRE(fake->published.size() == 3);
  CHECK(fake->published[0]
        == std::make_pair(std::string{"chat"}, std::string{chat_frame}));
  CHECK(fake->published[2].first == "other");
  CHECK(stats().published == 3);
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a remote publication reaches local subscribers, "
                  "filters apply, and it never goes back") {
  auto c = connect();
  auto filtered = connect();
  say(c, R"({"type":"subscribe","channel":"chat"})");
  say(
    filtered,
    R"({"type":"subscribe","channel":"chat","filter":{"key":"k","op":"eq","value":"v"}})");
  auto received = std::make_shared<std::vector<publication>>();
  auto who = sys.spawn(collector, received);
  expect_ok(caf::subscribe_atom::value, std::string{"chat"}, who);
  fake->remote(chat_frame);
  fake->remote(R"({"channel":"chat","type":"m","data":2,"tags":{"k":"v"}})");
  run();
  CHECK(c.out->take().size() == 2);
  auto frames = filtered.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "data") == "2");
  REQUIRE(received->size() == 2);
  CHECK((*received)[1].tags == tag_map{{"k", "v"}});
  CHECK(fake->published.empty());
  // Not this node's publications: published counts local ones only.
  CHECK(stats().published == 0);
  // Garbage from the broker is dropped.
  fake->remote("not json");
  fake->remote(R"({"channel":"","type":"m","data":1})");
  run();
  CHECK(c.out->take().empty());
  self->send_exit(who, caf::exit_reason::user_shutdown);
  run();
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: \"*\" goes to the broker and comes from it to "
                  "every connection") {
  auto a = connect();
  auto b = connect();
  publish("*", "notice", "1");
  CHECK(a.out->take().size() == 1);
  REQUIRE(fake->published.size() == 1);
  CHECK(fake->published[0].first == "*");
  fake->remote(R"({"channel":"*","type":"notice","data":2})");
  run();
  CHECK(
    a.out->take()
    == std::vector<std::string>{R"({"channel":"*","type":"notice","data":2})"});
  CHECK(b.out->take().size() == 2);
  CHECK(fake->published.size() == 1);
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: the first local subscriber subscribes at the "
                  "broker, the last one unsubscribes") {
  auto a = connect();
  auto b = connect();
  say(a, R"({"type":"subscribe","channel":"chat"})");
  say(b, R"({"type":"subscribe","channel":"chat"})");
  CHECK(fake->subscribes == 1);
  CHECK(fake->subscribed == std::set<std::string>{"chat"});
  say(a, R"({"type":"unsubscribe","channel":"chat"})");
  CHECK(fake->unsubscribed.empty());
  disconnect(b);
  CHECK(fake->unsubscribed == std::vector<std::string>{"chat"});
  CHECK(fake->subscribed.empty());
  // Subscribing again subscribes again.
  say(a, R"({"type":"subscribe","channel":"chat"})");
  CHECK(fake->subscribes == 2);
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a subscribe is answered once the broker "
                  "subscription took effect") {
  fake->hold_ready = true;
  auto a = connect();
  auto b = connect();
  say(a, R"({"type":"subscribe","channel":"chat","id":1})");
  say(b, R"({"type":"subscribe","channel":"chat","id":2})");
  CHECK(a.out->take().empty());
  CHECK(b.out->take().empty());
  auto received = std::make_shared<std::vector<publication>>();
  auto who = sys.spawn(collector, received);
  self->send(hub, caf::subscribe_atom::value, std::string{"chat"}, who);
  run();
  CHECK(self->mailbox().empty());
  fake->release();
  run();
  CHECK(a.out->take() == std::vector<std::string>{R"({"type":"ok","id":1})"});
  CHECK(b.out->take() == std::vector<std::string>{R"({"type":"ok","id":2})"});
  self->receive([](caf::ok_atom) {});
  fake->remote(chat_frame);
  run();
  CHECK(a.out->take() == std::vector<std::string>{chat_frame});
  CHECK(received->size() == 1);
  // A confirmation for an earlier generation of a channel does not count:
  // removed and made again, it waits for its own.
  disconnect(a);
  disconnect(b);
  expect_ok(caf::unsubscribe_atom::value, std::string{"chat"}, who.address());
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"chat","id":3})");
  CHECK(c.out->take().empty());
  fake->release();
  run();
  CHECK(c.out->take() == std::vector<std::string>{R"({"type":"ok","id":3})"});
  self->send_exit(who, caf::exit_reason::user_shutdown);
  run();
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: while it is down, publications are refused "
                  "loudly and nothing is delivered") {
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"chat"})");
  fake->is_up = false;
  say(c, R"({"type":"publish","channel":"chat","event":"m","data":1,"id":1})");
  // A trusted publisher may publish to "*": refused too.
  auto backend = connect(true);
  say(backend,
      R"({"type":"publish","channel":"*","event":"m","data":1,"id":2})");
  auto frames = c.out->take();
  auto more = backend.out->take();
  frames.insert(frames.end(), more.begin(), more.end());
  REQUIRE(frames.size() == 2);
  for (auto& f : frames) {
    CHECK(json_field(f, "type") == "error");
    CHECK(json_field(f, "code") == "unavailable");
  }
  publish("chat", "m", "3");
  publish("*", "m", "4");
  CHECK(c.out->take().empty());
  CHECK(fake->published.empty());
  auto st = stats();
  CHECK(st.broker_refused == 4);
  CHECK(st.published == 0);
  // The connection stays; back up, all is as before.
  fake->is_up = true;
  publish("chat", "m", "1");
  CHECK(c.out->take() == std::vector<std::string>{chat_frame});
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a history channel's publications are numbered by "
                  "the shared stream and delivered from it, in its order") {
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"h:1","id":1})");
  // Ready once the mirror loaded the (empty) stream.
  CHECK(fake->loads == 1);
  CHECK(c.out->take()
        == std::vector<std::string>{
          R"({"type":"ok","id":1,"offset":0,"epoch":"e1"})"});
  // A local publication goes to the stream only (no plain PUBLISH), and
  // reaches this node's subscribers from it, numbered.
  say(c, R"({"type":"publish","channel":"h:1","event":"m","data":1,"id":2})");
  CHECK(fake->published.empty());
  CHECK(c.out->take() == std::vector<std::string>{R"({"type":"ok","id":2})"});
  // Another node published in between: the stream's order is the order.
  fake->remote_numbered("h:1", "m", "2");
  publish("h:1", "m", "3");
  fake->flush();
  run();
  auto frames = c.out->take();
  REQUIRE(frames.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(json_field(frames[i], "offset") == std::to_string(i + 1));
    CHECK(json_field(frames[i], "data") == std::to_string(i + 1));
  }
  CHECK(stats().published == 2);
  // Seen twice (a reload raced it): once only.
  fake->remote(*fake->streams["h:1"].frames[2].first, remote_kind::numbered,
               "e1");
  run();
  CHECK(c.out->take().empty());
  // Recovery on this node reads the mirror.
  auto d = connect();
  say(
    d,
    R"({"type":"subscribe","channel":"h:1","since":{"offset":1,"epoch":"e1"},"id":3})");
  frames = d.out->take();
  REQUIRE(frames.size() == 3);
  CHECK(json_field(frames[0], "offset") == "2");
  CHECK(json_field(frames[2], "recovered") == "true");
  CHECK(fake->loads == 1);
  // The history sweep keeps the shared stream of a channel with local
  // subscribers from expiring.
  advance(std::chrono::seconds{10});
  CHECK(std::count(fake->touched.begin(), fake->touched.end(), "h:1") >= 1);
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a client recovers on another node from the shared "
                  "stream, loaded when the channel starts here") {
  // Three publications another node made before any subscriber here.
  for (int i = 1; i <= 3; ++i)
    fake->remote_numbered("h:2", "m", std::to_string(i));
  fake->flush(); // no mirror here: nothing to do
  run();
  auto c = connect();
  say(
    c,
    R"({"type":"subscribe","channel":"h:2","since":{"offset":1,"epoch":"e1"},"id":1})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 3);
  CHECK(json_field(frames[0], "data") == "2");
  CHECK(json_field(frames[1], "data") == "3");
  CHECK(frames[2]
        == R"({"type":"ok","id":1,"recovered":true,"offset":3,"epoch":"e1"})");
  // The history command and the application's API read the same.
  say(c, R"({"type":"history","channel":"h:2","limit":2,"id":2})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "offset") == "3");
  self->send(hub, history_atom::value, std::string{"h:2"}, uint64_t{10});
  run();
  history_page page;
  self->receive([&](history_page& x) {
    page = std::move(x);
  });
  CHECK(page.publications.size() == 3);
  CHECK(page.publications[2].offset == 3);
  CHECK(page.position.epoch == "e1");
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: without a local mirror, history comes from the "
                  "broker, and when it is unreadable, history is unavailable") {
  fake->remote_numbered("h:3", "m", "1");
  auto c = connect();
  say(c, R"({"type":"history","channel":"h:3","limit":5,"id":1})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "offset") == "1");
  CHECK(json_field(frames[0], "epoch") == "e1");
  CHECK(frames[0].find(R"("data":1)") != std::string::npos);
  fake->fail_loads = true;
  say(c, R"({"type":"history","channel":"h:3","limit":5,"id":2})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "unavailable");
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a break in the stream gives every subscriber a "
                  "gap, and the mirror loads again") {
  auto c = subscribed_after_one("h:4");
  // Offsets 2 and 3 went by unseen (this node was cut off); 4 arrives.
  fake->remote_numbered("h:4", "m", "2");
  fake->remote_numbered("h:4", "m", "3");
  fake->echoes.clear();
  another_node_publishes("h:4", "4");
  CHECK(c.out->take()
        == std::vector<std::string>{
          R"({"type":"gap","channel":"h:4","offset":1,"epoch":"e1"})"});
  CHECK(fake->loads == 2);
  // Nothing more until it recovers, which the reloaded mirror allows.
  another_node_publishes("h:4", "5");
  CHECK(c.out->take().empty());
  say(
    c,
    R"({"type":"subscribe","channel":"h:4","since":{"offset":1,"epoch":"e1"},"id":2})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 5);
  CHECK(json_field(frames[0], "offset") == "2");
  CHECK(json_field(frames[3], "offset") == "5");
  CHECK(json_field(frames[4], "recovered") == "true");
  another_node_publishes("h:4", "6");
  CHECK(c.out->take().size() == 1);
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: subscribes that arrive while a broken stream "
                  "reloads are held in order, then answered from the mirror") {
  auto c = subscribed_after_one("h:9");
  // Offset 2 went by unseen; 3 arrives: a gap, and a reload that waits.
  fake->hold_loads = true;
  fake->remote_numbered("h:9", "m", "2");
  fake->echoes.clear();
  another_node_publishes("h:9", "3");
  CHECK(c.out->take().size() == 1); // the gap
  REQUIRE(fake->held_loads.size() == 1);
  // Two subscribes while the mirror reloads: a recovery and a new
  // subscriber. Neither is answered from a mirror that is not live.
  say(
    c,
    R"({"type":"subscribe","channel":"h:9","since":{"offset":1,"epoch":"e1"},"id":2})");
  auto d = connect();
  say(d, R"({"type":"subscribe","channel":"h:9","id":3})");
  advance(std::chrono::milliseconds{50}); // the channel's retries
  CHECK(c.out->take().empty());
  CHECK(d.out->take().empty());
  // The reload answers: both go on, in the order they came.
  fake->release_loads();
  run();
  advance(std::chrono::milliseconds{20});
  auto frames = c.out->take();
  REQUIRE(frames.size() == 3);
  CHECK(json_field(frames[0], "offset") == "2");
  CHECK(json_field(frames[1], "offset") == "3");
  CHECK(json_field(frames[2], "recovered") == "true");
  CHECK(d.out->take()
        == std::vector<std::string>{
          R"({"type":"ok","id":3,"offset":3,"epoch":"e1"})"});
  // Live again: both get what follows, once.
  another_node_publishes("h:9", "4");
  CHECK(c.out->take().size() == 1);
  CHECK(d.out->take().size() == 1);
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a stream that started anew (Redis lost it) is a "
                  "gap, then recovered:false with the new epoch") {
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"h:5","id":1})");
  c.out->take();
  another_node_publishes("h:5", "1");
  c.out->take();
  fake->streams.erase("h:5");
  fake->remote_numbered("h:5", "m", "2");
  fake->streams["h:5"].epoch = "e2";
  fake->echoes.back().second = "e2";
  fake->flush();
  run();
  CHECK(c.out->take()
        == std::vector<std::string>{
          R"({"type":"gap","channel":"h:5","offset":1,"epoch":"e1"})"});
  say(
    c,
    R"({"type":"subscribe","channel":"h:5","since":{"offset":1,"epoch":"e1"},"id":2})");
  CHECK(c.out->take()
        == std::vector<std::string>{
          R"({"type":"ok","id":2,"recovered":false,"offset":1,"epoch":"e2"})"});
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: publications that arrive while the mirror loads "
                  "wait for it, none missing, none twice") {
  fake->hold_loads = true;
  fake->remote_numbered("h:6", "m", "1");
  fake->echoes.clear();
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"h:6","id":1})");
  CHECK(c.out->take().empty());
  // Published after the load read the stream: they wait.
  fake->remote_numbered("h:6", "m", "2");
  fake->flush();
  fake->release_loads(); // the load saw offset 1 only
  run();
  // Offset 2 waited, then went into the mirror before the subscriber
  // joined: the reply's position includes it.
  CHECK(c.out->take()
        == std::vector<std::string>{
          R"({"type":"ok","id":1,"offset":2,"epoch":"e1"})"});
  another_node_publishes("h:6", "3");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "offset") == "3");
  say(
    c,
    R"({"type":"subscribe","channel":"h:6","since":{"offset":0,"epoch":"e1"},"id":2})");
  frames = c.out->take();
  REQUIRE(frames.size() == 4);
  CHECK(json_field(frames[0], "offset") == "1");
  CHECK(json_field(frames[2], "offset") == "3");
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: presence is recorded at the broker, shared by "
                  "every node, and refreshed while members stay") {
  auto a = connect();
  say(a, R"({"type":"connect","id":0})");
  a.out->take();
  say(a, R"({"type":"subscribe","channel":"p:room","id":1})");
  auto frames = a.out->take();
  REQUIRE(frames.size() == 2); // ok, then its own join
  CHECK(json_field(frames[1], "type") == "join");
  REQUIRE(fake->members["p:room"].size() == 1);
  REQUIRE(fake->presence_events.size() == 1);
  CHECK(fake->presence_events[0].second == frames[1]);
  // A member of another node, and its join event.
  fake->members["p:room"]["other"]
    = R"({"client":"other","user":"bob","info":{"n":1.5}})";
  fake->remote(
    R"({"channel":"p:room","type":"join","data":{"client":"other","user":"bob","info":{"n":1.5}}})",
    remote_kind::presence);
  run();
  frames = a.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "type") == "join");
  say(a, R"({"type":"presence","channel":"p:room","id":2})");
  frames = a.out->take();
  REQUIRE(frames.size() == 1);
  INFO(frames[0]);
  CHECK(frames[0].find(R"("user":"bob","info":{"n":1.5})")
        != std::string::npos);
  say(a, R"({"type":"presence_stats","channel":"p:room","id":3})");
  CHECK(json_field(a.out->take().at(0), "clients") == "2");
  // Refreshed every presence_refresh_period while it has members here.
  advance(presence_refresh_period * 2);
  CHECK(fake->refreshes == 2);
  // Leaving removes the record and tells the other nodes.
  say(a, R"({"type":"unsubscribe","channel":"p:room"})");
  CHECK(fake->members["p:room"].size() == 1);
  REQUIRE(fake->presence_events.size() == 2);
  CHECK(json_field(fake->presence_events[1].second, "type") == "leave");
  advance(presence_refresh_period * 2);
  CHECK(fake->refreshes == 2);
  // The broker unreadable: presence is unavailable.
  fake->fail_loads = true;
  say(a, R"({"type":"presence","channel":"p:room","id":4})");
  CHECK(json_field(a.out->take().at(0), "code") == "unavailable");
}

TEST_CASE_FIXTURE(broker_fixture,
                  "broker: a history and presence channel: the position, "
                  "then the member's own join") {
  auto a = connect();
  say(a, R"({"type":"connect","id":0})");
  a.out->take();
  say(a, R"({"type":"subscribe","channel":"hp:room","id":1})");
  auto frames = a.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(frames[0] == R"({"type":"ok","id":1,"offset":0,"epoch":"e1"})");
  CHECK(json_field(frames[1], "type") == "join");
  CHECK(fake->members["hp:room"].size() == 1);
}

TEST_CASE_FIXTURE(broker_fixture, "broker: the hub stops it when it ends") {
  self->send_exit(hub, caf::exit_reason::user_shutdown);
  run();
  CHECK(fake->stops == 1);
}

TEST_SUITE_END();
