// Deterministic tests of tag filters in the actors: a connection's filter
// narrows what its subscription delivers, subscribing again replaces it, the
// history command and recovery apply it, and application actors subscribe
// with a filter through the hub's API.
#include "actor_fixture.hpp"

#include <chrono>

#include "actors/fanout.hpp"
#include "support/json_field.hpp"

using namespace std::chrono_literals;
using namespace livehub;
using livehub::test::actor_fixture;
using livehub::test::collector;
using livehub::test::json_field;

namespace {

const char* only_news = R"("filter":{"key":"kind","op":"eq","value":"news"})";

struct filter_fixture : actor_fixture {
  filter_fixture() {
    cfg.history_channels = {"h:*"};
    cfg.history_size = 10;
    cfg.history_ttl = 60s;
    respawn_hub();
  }

  /// Publishes `n` on `channel` with tag kind=`kind` (none when empty), as
  /// an application does.
  void pub(const std::string& channel, int n, const std::string& kind) {
    publication p{channel, "m", json_text::trusted(std::to_string(n))};
    if (!kind.empty())
      p.tags = {{"kind", kind}};
    REQUIRE_FALSE(validate(p));
    self->send(hub, caf::publish_atom::value, std::move(p));
    run();
  }

  /// The `data` fields of publication frames among `frames`.
  static std::vector<std::string>
  data_of(const std::vector<std::string>& frames) {
    std::vector<std::string> result;
    for (auto& f : frames)
      if (json_field(f, "channel") != "<missing>")
        result.push_back(json_field(f, "data"));
    return result;
  }
};

} // namespace

TEST_SUITE_BEGIN("filter");

TEST_CASE_FIXTURE(filter_fixture,
                  "filter: a connection receives only publications whose "
                  "tags pass, with their tags") {
  auto c = connect();
  auto all = connect();
  say(c,
      std::string{R"({"type":"subscribe","channel":"c","id":1,)"} + only_news
        + "}");
  say(all, R"({"type":"subscribe","channel":"c","id":1})");
  CHECK(c.out->take() == std::vector<std::string>{R"({"type":"ok","id":1})"});
  all.out->take();
  pub("c", 1, "news");
  pub("c", 2, "sport");
  pub("c", 3, "");
  pub("c", 4, "news");
  auto frames = c.out->take();
  CHECK(frames
        == std::vector<std::string>{
          R"({"channel":"c","type":"m","data":1,"tags":{"kind":"news"}})",
          R"({"channel":"c","type":"m","data":4,"tags":{"kind":"news"}})"});
  CHECK(data_of(all.out->take())
        == std::vector<std::string>{"1", "2", "3", "4"});
  // Deliveries count what was delivered: 2 + 4.
  CHECK(stats().delivered == 6);
}

TEST_CASE_FIXTURE(filter_fixture,
                  "filter: a client's publish command carries tags to "
                  "filtered subscribers") {
  cfg.client_publish = {"*"};
  auto sender = connect();
  auto reader = connect();
  say(
    reader,
    R"({"type":"subscribe","channel":"c","id":1,"filter":{"key":"n","op":"gte","value":10}})");
  reader.out->take();
  say(
    sender,
    R"({"type":"publish","channel":"c","event":"m","data":1,"tags":{"n":"9"},"id":1})");
  say(
    sender,
    R"({"type":"publish","channel":"c","event":"m","data":2,"tags":{"n":"10"},"id":2})");
  say(
    sender,
    R"({"type":"publish","channel":"c","event":"m","data":3,"tags":{"n":"x"},"id":3})");
  CHECK(sender.out->take().size() == 3); // three oks
  CHECK(reader.out->take()
        == std::vector<std::string>{
          R"({"channel":"c","type":"m","data":2,"tags":{"n":"10"}})"});
  // Bad tags: bad_command, nothing published.
  say(
    sender,
    R"({"type":"publish","channel":"c","event":"m","data":4,"tags":{"n":10},"id":4})");
  auto frames = sender.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "bad_command");
  CHECK(reader.out->take().empty());
}

TEST_CASE_FIXTURE(filter_fixture,
                  "filter: subscribing again replaces the filter, without "
                  "one removes it") {
  auto c = connect();
  say(c,
      std::string{R"({"type":"subscribe","channel":"c","id":1,)"} + only_news
        + "}");
  pub("c", 1, "sport");
  say(
    c,
    R"({"type":"subscribe","channel":"c","id":2,"filter":{"key":"kind","op":"eq","value":"sport"}})");
  pub("c", 2, "sport");
  pub("c", 3, "news");
  // The same filter again: just ok.
  say(
    c,
    R"({"type":"subscribe","channel":"c","id":3,"filter":{"key":"kind","op":"eq","value":"sport"}})");
  pub("c", 4, "sport");
  say(c, R"({"type":"subscribe","channel":"c","id":4})");
  pub("c", 5, "news");
  pub("c", 6, "");
  auto frames = c.out->take();
  CHECK(data_of(frames) == std::vector<std::string>{"2", "4", "5", "6"});
  CHECK(std::count_if(frames.begin(), frames.end(),
                      [](auto& f) {
                        return json_field(f, "type") == "ok";
                      })
        == 4);
  // Still one subscription.
  CHECK(stats().subscriptions == 1);
}

TEST_CASE_FIXTURE(filter_fixture,
                  "filter: a bad filter is bad_command and subscribes "
                  "nothing") {
  auto c = connect();
  say(
    c,
    R"({"type":"subscribe","channel":"c","id":5,"filter":{"and":[{"key":"a","op":"bogus"}]}})");
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "bad_command");
  CHECK(json_field(frames[0], "id") == "5");
  CHECK(stats().subscriptions == 0);
  // An existing subscription keeps its filter when a bad one comes.
  say(c,
      std::string{R"({"type":"subscribe","channel":"c","id":1,)"} + only_news
        + "}");
  say(c, R"({"type":"subscribe","channel":"c","id":2,"filter":{"key":"a"}})");
  c.out->take();
  pub("c", 1, "sport");
  pub("c", 2, "news");
  CHECK(data_of(c.out->take()) == std::vector<std::string>{"2"});
}

TEST_CASE_FIXTURE(filter_fixture,
                  "filter: history channels deliver, recover and answer "
                  "history through the filter") {
  auto c = connect();
  say(c,
      std::string{R"({"type":"subscribe","channel":"h:a","id":1,)"} + only_news
        + "}");
  auto epoch = json_field(c.out->take().at(0), "epoch");
  pub("h:a", 1, "news");  // offset 1
  pub("h:a", 2, "sport"); // offset 2
  auto frames = c.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(
    frames[0]
    == R"({"channel":"h:a","type":"m","data":1,"tags":{"kind":"news"},"offset":1})");
  disconnect(c);
  pub("h:a", 3, "news");  // 3
  pub("h:a", 4, "");      // 4
  pub("h:a", 5, "news");  // 5
  pub("h:a", 6, "sport"); // 6
  // Recovering from offset 1 with the filter: 3 and 5, then the position.
  auto back = connect();
  say(back,
      std::string{R"({"type":"subscribe","channel":"h:a","id":2,)"} + only_news
        + R"(,"since":{"offset":1,"epoch":")" + epoch + R"("}})");
  frames = back.out->take();
  REQUIRE(frames.size() == 3);
  CHECK(json_field(frames[0], "offset") == "3");
  CHECK(json_field(frames[1], "offset") == "5");
  CHECK(json_field(frames[2], "recovered") == "true");
  CHECK(json_field(frames[2], "offset") == "6");
  // The history command: the subscription's filter, else its own.
  say(back, R"({"type":"history","channel":"h:a","limit":2,"id":3})");
  frames = back.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].find(R"("data":3)") != std::string::npos);
  CHECK(frames[0].find(R"("data":5)") != std::string::npos);
  CHECK(frames[0].find(R"("data":2)") == std::string::npos);
  say(
    back,
    R"({"type":"history","channel":"h:a","limit":10,"id":4,"filter":{"key":"kind","op":"nexists"}})");
  frames = back.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].find(R"("data":4)") != std::string::npos);
  CHECK(frames[0].find(R"("data":3)") == std::string::npos);
  CHECK(frames[0].find(R"("data":6)") == std::string::npos);
  // A connection without a subscription gets everything (the last 2).
  auto other = connect();
  say(other, R"({"type":"history","channel":"h:a","limit":2,"id":5})");
  frames = other.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].find(R"("data":5)") != std::string::npos);
  CHECK(frames[0].find(R"("data":6)") != std::string::npos);
}

TEST_CASE_FIXTURE(filter_fixture,
                  "filter: an application actor subscribes with a filter "
                  "through the hub's API, and again to replace it") {
  auto received = std::make_shared<std::vector<publication>>();
  auto who = sys.spawn(collector, received);
  auto f = tag_filter::parse(R"({"key":"kind","op":"in","values":["a","b"]})");
  REQUIRE(f);
  expect_ok(caf::subscribe_atom::value, std::string{"c"}, who, *f);
  pub("c", 1, "a");
  pub("c", 2, "c");
  pub("c", 3, "b");
  pub("c", 4, "");
  REQUIRE(received->size() == 2);
  CHECK((*received)[0].data.str() == "1");
  CHECK((*received)[0].tags == tag_map{{"kind", "a"}});
  CHECK((*received)[1].data.str() == "3");
  // An empty filter removes it.
  expect_ok(caf::subscribe_atom::value, std::string{"c"}, who, tag_filter{});
  pub("c", 5, "");
  CHECK(received->size() == 3);
  CHECK(stats().subscriptions == 0); // actor subscriptions count apart
  // A bad channel name is an error, as without a filter.
  self->send(hub, caf::subscribe_atom::value, std::string{"*"}, who, *f);
  run();
  bool refused = false;
  self->receive([](caf::ok_atom) {},
                [&](caf::error&) {
                  refused = true;
                });
  CHECK(refused);
  self->send_exit(who, caf::exit_reason::user_shutdown);
  run();
}

TEST_SUITE_END();
