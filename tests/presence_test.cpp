// Deterministic tests of presence channels: join and leave publications as
// connections subscribe, unsubscribe and go away, the presence and
// presence_stats commands, and the C++ request.
#include "actor_fixture.hpp"
#include "support/json_field.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

using namespace livehub;
using livehub::test::actor_fixture;

namespace {

using livehub::test::json_field;

struct presence_fixture : actor_fixture {
  presence_fixture() {
    cfg.presence_channels = {"lobby:*"};
    respawn_hub(); // the hub reads presence channels itself
  }

  /// Connects with `info` and returns the connection and its client id.
  std::pair<test::fake_connection, std::string>
  member(const std::string& info) {
    auto c = connect();
    say(c, R"({"type":"connect","id":0,"info":)" + info + "}");
    auto frames = c.out->take();
    REQUIRE(frames.size() == 1);
    return {c, json_field(frames[0], "client")};
  }
};

} // namespace

TEST_CASE_FIXTURE(presence_fixture,
                  "presence: joins and leaves reach the subscribers, the "
                  "presence command lists who is there") {
  auto [ann, ann_id] = member(R"({"name":"Ann"})");
  auto [bob, bob_id] = member("null");
  say(ann, R"({"type":"subscribe","channel":"lobby:1","id":1})");
  auto frames = ann.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(frames[0] == R"({"type":"ok","id":1})");
  CHECK(frames[1]
        == R"({"channel":"lobby:1","type":"join","data":{"client":")" + ann_id
          + R"(","user":"","info":{"name":"Ann"}}})");
  say(bob, R"({"type":"subscribe","channel":"lobby:1"})");
  CHECK(json_field(ann.out->take().at(0), "type") == "join");
  CHECK(json_field(bob.out->take().at(0), "type") == "join");
  say(ann, R"({"type":"presence","channel":"lobby:1","id":2})");
  say(ann, R"({"type":"presence_stats","channel":"lobby:1","id":3})");
  frames = ann.out->take();
  REQUIRE(frames.size() == 2);
  auto clients = json_field(frames[0], "clients");
  CHECK(clients.find(ann_id) != std::string::npos);
  CHECK(clients.find(bob_id) != std::string::npos);
  CHECK(frames[1] == R"({"type":"ok","id":3,"clients":2,"users":2})");
  // Bob's connection goes away: Ann sees him leave.
  disconnect(bob);
  frames = ann.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(frames[0]
        == R"({"channel":"lobby:1","type":"leave","data":{"client":")" + bob_id
          + R"(","user":"","info":null}})");
  say(ann, R"({"type":"presence","channel":"lobby:1","id":4})");
  frames = ann.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "clients").find(bob_id) == std::string::npos);
  // Unsubscribing leaves too (nobody left to tell); the C++ request agrees.
  say(ann, R"({"type":"unsubscribe","channel":"lobby:1","id":5})");
  self->send(hub, presence_atom::value, std::string{"lobby:1"});
  run();
  std::vector<identity> members{identity{}};
  self->receive(
    [&](std::vector<identity>& x) {
      members = std::move(x);
    },
    [&](caf::error&) {});
  CHECK(members.empty());
}

TEST_CASE_FIXTURE(presence_fixture,
                  "presence: a connection without connect gets a client id, "
                  "and join and leave cannot be published") {
  cfg.client_publish = {"lobby:*"};
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"lobby:2","id":1})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 2);
  auto data = json_field(frames[1], "data");
  CHECK(data.find(R"("client":"")") == std::string::npos);
  // Its later connect keeps that client id.
  say(c, R"({"type":"connect","id":2})");
  frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(data.find(json_field(frames[0], "client")) != std::string::npos);
  say(c, R"({"type":"publish","channel":"lobby:2","event":"join","id":3})");
  say(c, R"({"type":"publish","channel":"lobby:2","event":"leave","id":4})");
  say(c, R"({"type":"presence","channel":"other","id":5})");
  frames = c.out->take();
  REQUIRE(frames.size() == 3);
  for (auto& f : frames)
    CHECK(json_field(f, "code") == "bad_command");
}

TEST_CASE_FIXTURE(presence_fixture,
                  "presence: users count distinct users plus anonymous "
                  "connections") {
  std::vector<identity> clients{{"a", "alice", {}},
                                {"b", "alice", {}},
                                {"c", "bob", {}},
                                {"d", "", {}},
                                {"e", "", {}}};
  CHECK(*codec::encode_presence_stats("1", clients)
        == R"({"type":"ok","id":1,"clients":5,"users":4})");
}
