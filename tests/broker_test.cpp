// Deterministic tests of the broker seam with a fake broker: what a node
// publishes goes to the broker once and to its own subscribers at once,
// what other nodes publish reaches this node's subscribers and never goes
// back, a channel's first subscriber subscribes at the broker (and waits for
// it), its last one unsubscribes, and while the broker is down publications
// are refused loudly.
#include "actor_fixture.hpp"

#include <set>

#include "actors/broker.hpp"
#include "actors/fanout.hpp"
#include "support/json_field.hpp"

using namespace livehub;
using livehub::test::actor_fixture;
using livehub::test::collector;
using livehub::test::json_field;

namespace {

/// A broker that records what the hub asks of it and plays other nodes.
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

  /// Another node published `frame`.
  void remote(const std::string& frame) {
    REQUIRE(handler_);
    handler_(std::make_shared<const std::string>(frame));
  }

  /// Confirms the held subscriptions.
  void release() {
    auto xs = std::move(held);
    for (auto& f : xs)
      f();
  }

  bool is_up = true;
  bool hold_ready = false;
  int starts = 0;
  int stops = 0;
  int subscribes = 0;
  std::vector<std::pair<std::string, std::string>> published;
  std::set<std::string> subscribed;
  std::vector<std::string> unsubscribed;
  std::vector<std::function<void()>> held;

 private:
  remote_handler handler_;
};

struct broker_fixture : actor_fixture {
  std::shared_ptr<fake_broker> fake = std::make_shared<fake_broker>();

  broker_fixture() {
    cfg.client_publish = {"*"};
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

TEST_CASE_FIXTURE(broker_fixture, "broker: the hub stops it when it ends") {
  self->send_exit(hub, caf::exit_reason::user_shutdown);
  run();
  CHECK(fake->stops == 1);
}

TEST_SUITE_END();
