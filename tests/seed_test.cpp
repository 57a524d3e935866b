// The intent of each unit test of the seed hub (toutago-inertia's Go
// pkg/realtime), proven against livehub's actors. Where tests/actor_test.cpp
// already tells the same story, the intent is proven there, once:
// - a hub runs and stops, its connections told it is going away: "when the
//   hub ends, it closes its connections with 1001, and their clients and its
//   channels end too";
// - subscribe registers the client on the channel: "a subscribed connection
//   receives what is published on its channel";
// - unsubscribe removes it: "unsubscribe stops delivery and removes the
//   empty channel";
// - "*" reaches subscribers of different channels, and a channel's
//   publication no other channel's subscriber: "publications reach only the
//   subscribers of their channel, \"*\" reaches everyone";
// - a client's cleanup removes its empty channel: "a client that goes away
//   leaves its channels and the hub, by monitors alone".
// The seed's other intents are proven below.
#include "actor_fixture.hpp"

#include <atomic>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <rapidjson/document.h>

#include "protocol/codec.hpp"

using namespace livehub;
using livehub::test::actor_fixture;

TEST_CASE_FIXTURE(actor_fixture, "seed: a new hub starts empty") {
  auto st = stats();
  CHECK(st.connections == 0);
  CHECK(st.channels == 0);
  CHECK(st.subscriptions == 0);
  CHECK(st.published == 0);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "seed: a publication reaches a subscriber "
                  "with its channel, type and data") {
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"updates"})");
  publish("updates", "user.created", R"({"id":1,"name":"Ada"})");
  auto frames = alice.out->take();
  REQUIRE(frames.size() == 1);
  rapidjson::Document doc;
  doc.Parse(frames[0].c_str());
  REQUIRE(doc.IsObject());
  CHECK(std::string{doc["channel"].GetString()} == "updates");
  CHECK(std::string{doc["type"].GetString()} == "user.created");
  CHECK(doc["data"]["id"].GetInt() == 1);
  CHECK(std::string{doc["data"]["name"].GetString()} == "Ada");
}

TEST_CASE("seed: a message survives a JSON round trip") {
  auto pub = make_publication("chat", "message",
                              R"({"text":"héllo \"w\"","n":[1,2.5,-3e10]})");
  REQUIRE(pub);
  auto frame = codec::encode_publication(*pub);
  auto parsed = codec::parse_publish(*frame);
  auto back = std::get_if<publication>(&parsed);
  REQUIRE(back != nullptr);
  CHECK(back->channel == "chat");
  CHECK(back->type == "message");
  CHECK(back->data == pub->data);
}

namespace {

struct counter_state {
  std::shared_ptr<std::atomic<int>> count;
};

subscriber_actor::behavior_type
counter(subscriber_actor::stateful_pointer<counter_state> self,
        std::shared_ptr<std::atomic<int>> count) {
  self->state.count = std::move(count);
  return {
    [self](const publication&) {
      ++*self->state.count;
    },
  };
}

} // namespace

TEST_CASE("seed: concurrent publishes from many threads all arrive") {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  auto hub = spawn_hub(sys, hub_config{});
  auto count = std::make_shared<std::atomic<int>>(0);
  auto sub = sys.spawn(counter, count);
  {
    caf::scoped_actor self{sys};
    self
      ->request(hub, caf::infinite, caf::subscribe_atom::value,
                std::string{"load"}, sub)
      .receive([](caf::ok_atom) {},
               [](caf::error&) {
                 FAIL("no subscribe");
               });
  }
  constexpr int threads = 8;
  constexpr int per_thread = 500;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i)
        CHECK(
          !livehub::publish(hub, "load", "n", std::to_string(t * 1000 + i)));
    });
  for (auto& w : workers)
    w.join();
  // Bounded wait: the actors drain their mailboxes.
  for (int i = 0; i < 1000 && *count < threads * per_thread; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(*count == threads * per_thread);
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(sub, caf::exit_reason::user_shutdown);
}
