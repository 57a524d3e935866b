// Deterministic tests of the hub, channel and client actors: CAF's test
// coordinator runs them on this thread, fake sinks stand in for sockets.
#include "actor_fixture.hpp"

#include <chrono>

using namespace std::chrono_literals;
using namespace livehub;
using livehub::test::actor_fixture;
using livehub::test::collector;

namespace {

const char* pub_chat_hello
  = R"({"channel":"chat","type":"message","data":{"text":"hello"}})";

} // namespace

TEST_CASE_FIXTURE(actor_fixture,
                  "a subscribed connection receives what is "
                  "published on its channel") {
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"chat","id":1})");
  CHECK(alice.out->take()
        == std::vector<std::string>{R"({"type":"ok","id":1})"});
  publish("chat", "message", R"({"text":"hello"})");
  CHECK(alice.out->take() == std::vector<std::string>{pub_chat_hello});
  auto st = stats();
  CHECK(st.connections == 1);
  CHECK(st.channels == 1);
  CHECK(st.subscriptions == 1);
  CHECK(st.published == 1);
  CHECK(st.delivered == 1);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "publications reach only the subscribers of "
                  "their channel, \"*\" reaches everyone") {
  auto alice = connect();
  auto bob = connect();
  auto carol = connect();
  say(alice, R"({"type":"subscribe","channel":"chat"})");
  say(bob, R"({"type":"subscribe","channel":"news"})");
  CHECK(alice.out->take().empty()); // no id: no reply
  publish("chat", "message", R"({"text":"hello"})");
  CHECK(alice.out->take().size() == 1);
  CHECK(bob.out->take().empty());
  CHECK(carol.out->take().empty());
  publish("*", "notice", R"("maintenance")");
  auto expected = std::vector<std::string>{
    R"({"channel":"*","type":"notice","data":"maintenance"})"};
  CHECK(alice.out->take() == expected);
  CHECK(bob.out->take() == expected);
  CHECK(carol.out->take() == expected);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "unsubscribe stops delivery and removes the "
                  "empty channel") {
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"chat"})");
  CHECK(hub_internals().channels.size() == 1);
  say(alice, R"({"type":"unsubscribe","channel":"chat","id":"u"})");
  CHECK(alice.out->take()
        == std::vector<std::string>{R"({"type":"ok","id":"u"})"});
  publish("chat", "message", R"({"text":"hello"})");
  CHECK(alice.out->take().empty());
  CHECK(hub_internals().channels.empty());
  CHECK(hub_internals().channel_names.empty());
  auto st = stats();
  CHECK(st.channels == 0);
  CHECK(st.subscriptions == 0);
  // Unsubscribing again, or from a channel never subscribed, is no error.
  say(alice, R"({"type":"unsubscribe","channel":"nope","id":2})");
  CHECK(alice.out->take()
        == std::vector<std::string>{R"({"type":"ok","id":2})"});
}

TEST_CASE_FIXTURE(actor_fixture,
                  "a client that goes away leaves its channels "
                  "and the hub, by monitors alone") {
  auto alice = connect();
  auto bob = connect();
  say(alice, R"({"type":"subscribe","channel":"a"})");
  say(alice, R"({"type":"subscribe","channel":"b"})");
  say(bob, R"({"type":"subscribe","channel":"b"})");
  CHECK(stats().subscriptions == 3);
  disconnect(alice);
  auto st = stats();
  CHECK(st.connections == 1);
  CHECK(st.subscriptions == 1);
  CHECK(st.channels == 1);
  CHECK(hub_internals().channels.size() == 1);
  CHECK(hub_internals().channels.count("b") == 1);
  disconnect(bob);
  st = stats();
  CHECK(st.connections == 0);
  CHECK(st.subscriptions == 0);
  CHECK(st.channels == 0);
  CHECK(hub_internals().channels.empty());
  CHECK(hub_internals().connections.empty());
}

TEST_CASE_FIXTURE(actor_fixture,
                  "a subscribe routed to a channel that is "
                  "going idle is not lost") {
  auto alice = connect();
  auto bob = connect();
  say(alice, R"({"type":"subscribe","channel":"chat"})");
  auto old_channel = hub_internals().channels.at("chat").handle;
  // Alice unsubscribes and Bob subscribes at the same time: the hub routes
  // both to the channel before the channel, now empty, reports idle.
  self->send(alice.client, text_atom::value,
             std::string{R"({"type":"unsubscribe","channel":"chat"})"});
  self->send(bob.client, text_atom::value,
             std::string{R"({"type":"subscribe","channel":"chat","id":7})"});
  sched.prioritize(alice.client);
  sched.run_once(); // alice asks the hub
  sched.prioritize(bob.client);
  sched.run_once(); // bob asks the hub
  sched.prioritize(hub);
  sched.run_once(); // the hub routes alice's unsubscribe
  sched.prioritize(hub);
  sched.run_once(); // the hub routes bob's subscribe (routed: 2)
  sched.prioritize(old_channel);
  sched.run_once(); // the channel drops alice, is empty: idle after 1 subscribe
  sched.prioritize(hub);
  sched.run_once(); // the hub sees idle(1) but routed 2: keeps the channel
  run();
  CHECK(bob.out->take() == std::vector<std::string>{R"({"type":"ok","id":7})"});
  CHECK(hub_internals().channels.at("chat").handle == old_channel);
  publish("chat", "message", R"({"text":"hello"})");
  CHECK(bob.out->take() == std::vector<std::string>{pub_chat_hello});
  CHECK(alice.out->take().empty());
}

TEST_CASE_FIXTURE(actor_fixture,
                  "an idle channel is replaced when a subscribe "
                  "arrives after its removal") {
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"chat"})");
  auto old_channel = hub_internals().channels.at("chat").handle;
  say(alice, R"({"type":"unsubscribe","channel":"chat"})");
  CHECK(hub_internals().channels.empty());
  say(alice, R"({"type":"subscribe","channel":"chat","id":1})");
  CHECK(hub_internals().channels.at("chat").handle != old_channel);
  alice.out->take();
  publish("chat", "message", R"({"text":"hello"})");
  CHECK(alice.out->take() == std::vector<std::string>{pub_chat_hello});
}

TEST_CASE_FIXTURE(actor_fixture,
                  "the pong comes after earlier commands took "
                  "effect") {
  auto alice = connect();
  self->send(alice.client, text_atom::value,
             std::string{R"({"type":"subscribe","channel":"chat","id":1})"});
  self->send(alice.client, text_atom::value,
             std::string{R"({"type":"ping","id":2})"});
  run();
  CHECK(alice.out->take()
        == std::vector<std::string>{R"({"type":"ok","id":1})",
                                    R"({"type":"pong","id":2})"});
  CHECK(alice.out->consumed_count == 2);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "bad commands get error frames and the "
                  "connection stays usable") {
  auto alice = connect();
  say(alice, "{not json");
  say(alice, R"({"type":"dance","id":1})");
  say(alice, R"({"type":"subscribe","channel":42,"id":2})");
  say(alice, R"({"type":"subscribe","channel":"*","id":3})");
  say(alice, R"({"type":"publish","channel":"news","event":"x","id":4})");
  say(alice, R"({"type":"ping"})");
  auto frames = alice.out->take();
  REQUIRE(frames.size() == 6);
  CHECK(frames[0].find(R"("code":"bad_json")") != std::string::npos);
  CHECK(frames[0].find(R"("id")") == std::string::npos);
  CHECK(frames[1].find(R"("id":1,"code":"unknown_command")")
        != std::string::npos);
  CHECK(frames[2].find(R"("id":2,"code":"bad_command")") != std::string::npos);
  CHECK(frames[3].find(R"("id":3,"code":"bad_channel")") != std::string::npos);
  CHECK(frames[4].find(R"("id":4,"code":"forbidden")") != std::string::npos);
  CHECK(frames[5] == R"({"type":"pong"})");
  CHECK(stats().command_errors == 5);
  CHECK(!alice.out->close_code);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "clients publish only where patterns allow, "
                  "trusted publishers anywhere") {
  cfg.client_publish = {"room:*"};
  auto browser = connect();
  auto backend = connect(true);
  auto listener = connect();
  say(listener, R"({"type":"subscribe","channel":"room:1"})");
  say(listener, R"({"type":"subscribe","channel":"news"})");
  say(browser,
      R"({"type":"publish","channel":"room:1","event":"msg",)"
      R"("data":{"n":1},"id":1})");
  say(browser, R"({"type":"publish","channel":"news","event":"msg","id":2})");
  say(browser, R"({"type":"publish","channel":"*","event":"msg","id":3})");
  auto frames = browser.out->take();
  REQUIRE(frames.size() == 3);
  CHECK(frames[0] == R"({"type":"ok","id":1})");
  CHECK(frames[1].find("forbidden") != std::string::npos);
  CHECK(frames[2].find("forbidden") != std::string::npos);
  say(backend, R"({"type":"publish","channel":"news","event":"e","data":1})");
  say(backend, R"({"type":"publish","channel":"*","event":"e","data":2})");
  CHECK(listener.out->take()
        == std::vector<std::string>{
          R"({"channel":"room:1","type":"msg","data":{"n":1}})",
          R"({"channel":"news","type":"e","data":1})",
          R"({"channel":"*","type":"e","data":2})"});
  CHECK(backend.out->take().size() == 1); // "*" reaches the publisher too
}

TEST_CASE_FIXTURE(actor_fixture, "subscriptions per connection are limited") {
  cfg.max_subscriptions = 2;
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"a","id":1})");
  say(alice, R"({"type":"subscribe","channel":"b","id":2})");
  say(alice, R"({"type":"subscribe","channel":"a","id":3})"); // already
  say(alice, R"({"type":"subscribe","channel":"c","id":4})");
  auto frames = alice.out->take();
  REQUIRE(frames.size() == 4);
  CHECK(frames[2] == R"({"type":"ok","id":3})");
  CHECK(frames[3].find(R"("code":"too_many_subscriptions")")
        != std::string::npos);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "a slow consumer is closed with 4008 and the "
                  "others receive everything") {
  cfg.send_queue_limit = 4;
  auto slow = connect();
  auto fast = connect();
  slow.out->reading = false;
  say(slow, R"({"type":"subscribe","channel":"feed"})");
  say(fast, R"({"type":"subscribe","channel":"feed"})");
  for (int i = 0; i < 10; ++i)
    publish("feed", "tick", std::to_string(i));
  CHECK(fast.out->take().size() == 10);
  CHECK(slow.out->take().size() == 4);
  REQUIRE(slow.out->close_code);
  CHECK(*slow.out->close_code == 4008);
  CHECK(slow.out->close_reason == "slow consumer");
  CHECK(stats().slow_consumer_disconnects == 1);
  // The transport then reports the end; the hub forgets the connection.
  disconnect(slow);
  CHECK(stats().connections == 1);
  CHECK(stats().subscriptions == 1);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "the byte limit of the send queue applies too") {
  cfg.send_queue_bytes = 1024;
  cfg.max_message_size = 512;
  auto slow = connect();
  slow.out->reading = false;
  say(slow, R"({"type":"subscribe","channel":"feed"})");
  std::string big = "\"" + std::string(400, 'x') + "\"";
  publish("feed", "blob", big);
  publish("feed", "blob", big);
  CHECK(!slow.out->close_code);
  publish("feed", "blob", big);
  REQUIRE(slow.out->close_code);
  CHECK(*slow.out->close_code == 4008);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "keepalive: pings on schedule, closes "
                  "without a pong") {
  using std::chrono::seconds;
  auto alice = connect();
  auto bob = connect();
  advance(seconds(50));
  CHECK(alice.out->pings == 0);
  advance(seconds(10)); // 60s: the first ping went out at 54-56.5s
  CHECK(alice.out->pings == 1);
  CHECK(bob.out->pings == 1);
  bob.out->pong_received(); // bob answers, alice does not
  advance(seconds(50));     // 110s: ping 2 went out at ~110s
  CHECK(!alice.out->close_code);
  advance(seconds(10)); // 120s: alice's first ping has waited over 60s
  REQUIRE(alice.out->close_code);
  CHECK(*alice.out->close_code == 1008);
  CHECK(alice.out->close_reason == "pong timeout");
  CHECK(!bob.out->close_code.has_value());
  // The transport reports the end; the keepalive forgets the connection.
  disconnect(alice);
  auto& watched
    = dynamic_cast<
        caf::stateful_actor<keepalive_state, keepalive_actor::base>&>(
        *caf::actor_cast<caf::abstract_actor*>(watcher))
        .state.connections;
  CHECK(watched.size() == 1);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "a write that makes no progress for "
                  "write-timeout closes the connection") {
  using std::chrono::seconds;
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"feed"})");
  alice.out->reading = false;
  publish("feed", "tick", "1");
  advance(seconds(10)); // stalled since the first sweep (2.5s)
  CHECK(!alice.out->close_code);
  advance(seconds(5)); // 15s: stalled for 10s or more
  REQUIRE(alice.out->close_code);
  CHECK(*alice.out->close_code == 4008);
  CHECK(stats().slow_consumer_disconnects == 1);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "a connection that keeps writing is never "
                  "cut by the write timeout") {
  using std::chrono::seconds;
  auto alice = connect();
  say(alice, R"({"type":"subscribe","channel":"feed"})");
  alice.out->reading = false;
  for (int i = 0; i < 10; ++i) {
    publish("feed", "tick", std::to_string(i));
    advance(seconds(3));
    alice.out->buffered -= alice.out->buffered / 2; // slow, but moving
  }
  CHECK(!alice.out->close_code);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "application actors subscribe and receive "
                  "typed publications") {
  auto received = std::make_shared<std::vector<publication>>();
  auto rec = sys.spawn(collector, received);
  expect_ok(caf::subscribe_atom::value, std::string{"orders"}, rec);
  publish("orders", "created", R"({"id":12345678901234567890})");
  auto& st = *received;
  REQUIRE(st.size() == 1);
  CHECK(st[0].channel == "orders");
  CHECK(st[0].type == "created");
  CHECK(st[0].data.str() == R"({"id":12345678901234567890})");
  CHECK(stats().actor_subscriptions == 1);
  expect_ok(caf::unsubscribe_atom::value, std::string{"orders"}, rec.address());
  publish("orders", "created", "{}");
  CHECK(st.size() == 1);
  CHECK(hub_internals().channels.empty());
  self->send_exit(rec, caf::exit_reason::user_shutdown);
  run();
}

TEST_CASE_FIXTURE(actor_fixture, "the C++ API refuses invalid publications") {
  CHECK(livehub::publish(hub, "chat", "message", "{bad"));
  CHECK(livehub::publish(hub, "", "message", "{}"));
  CHECK(livehub::publish(hub, "chat", "", "{}"));
  CHECK(livehub::publish(hub, std::string(256, 'c'), "message", "{}"));
  run();
  CHECK(stats().published == 0);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "2,000 connect/subscribe/disconnect cycles "
                  "leave nothing behind") {
  for (int i = 0; i < 2000; ++i) {
    auto conn = connect();
    say(conn,
        R"({"type":"subscribe","channel":"room:)" + std::to_string(i % 7)
          + R"("})");
    disconnect(conn);
  }
  auto st = stats();
  CHECK(st.connections == 0);
  CHECK(st.channels == 0);
  CHECK(st.subscriptions == 0);
  CHECK(hub_internals().channels.empty());
  CHECK(hub_internals().channel_names.empty());
  CHECK(hub_internals().connections.empty());
}

TEST_CASE_FIXTURE(actor_fixture,
                  "when the hub ends, it closes its connections with 1001, "
                  "and their clients and its channels end too") {
  auto alice = connect();
  auto bob = connect();
  say(alice, R"({"type":"subscribe","channel":"chat"})");
  say(bob, R"({"type":"subscribe","channel":"news"})");
  auto running = sys.registry().running();
  self->monitor(alice.client);
  self->monitor(bob.client);
  self->send_exit(hub, caf::exit_reason::user_shutdown);
  run();
  for (auto& conn : {alice, bob}) {
    CHECK(conn.out->close_code == 1001);
    CHECK(conn.out->close_reason == "going away");
  }
  int clients_down = 0;
  for (int i = 0; i < 2; ++i)
    self->receive(
      [&](const caf::down_msg&) {
        ++clients_down;
      },
      caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(clients_down == 2);
  // The hub, both clients and both channels.
  CHECK(sys.registry().running() == running - 5);
}

TEST_CASE("a connection's subscription list holds each channel once, with "
          "its filter, whatever the order of subscribes and unsubscribes") {
  subscription_list xs;
  const std::vector<std::string> names{"m", "c", "x", "a", "q", "c"};
  for (auto& name : names)
    xs.set(name, nullptr);
  REQUIRE(xs.size() == 5); // "c" twice is one subscription
  for (auto& name : names) {
    REQUIRE(xs.find(name) != nullptr);
    CHECK(*xs.find(name) == nullptr); // subscribed, without a filter
  }
  for (auto* absent : {"", "b", "ma", "zz"})
    CHECK(xs.find(absent) == nullptr);
  // Subscribing again with a filter replaces the subscription's filter.
  auto parsed = tag_filter::parse(R"({"key":"k","op":"eq","value":"v"})");
  REQUIRE(parsed);
  auto filter = std::make_shared<const tag_filter>(*parsed);
  xs.set("c", filter);
  CHECK(xs.size() == 5);
  REQUIRE(xs.find("c") != nullptr);
  CHECK(*xs.find("c") == filter);
  // Unsubscribing removes that channel only; an unknown one is a no-op.
  xs.erase("m");
  xs.erase("nope");
  CHECK(xs.size() == 4);
  CHECK(xs.find("m") == nullptr);
  for (auto* kept : {"a", "c", "q", "x"})
    CHECK(xs.find(kept) != nullptr);
  for (auto* name : {"a", "c", "q", "x"})
    xs.erase(name);
  CHECK(xs.size() == 0);
  CHECK(xs.find("c") == nullptr);
}
