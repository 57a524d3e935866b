// The observer (hub_config::observer): the events an application actor gets
// about connections, deterministically from the client actors, and through
// real sockets for refused upgrades and close codes.
#include "actor_fixture.hpp"

#include <chrono>
#include <thread>

#include "support/served_hub.hpp"
#include "support/tokens.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using namespace livehub;
using livehub::test::actor_fixture;

namespace {

using event_log = std::shared_ptr<std::vector<std::string>>;

/// Records each event as one line, e.g. "subscribed alice chat".
observer_actor::behavior_type recorder(observer_actor::pointer, event_log log,
                                       std::shared_ptr<std::mutex> mtx) {
  auto add = [log, mtx](std::string line) {
    std::unique_lock<std::mutex> guard{*mtx};
    log->push_back(std::move(line));
  };
  return {
    [add](const connected_event& x) {
      add("connected " + x.user + " " + x.peer);
    },
    [add](const disconnected_event& x) {
      add("disconnected " + x.user + " " + std::to_string(x.code) + " "
          + x.reason);
    },
    [add](const subscribed_event& x) {
      add("subscribed " + x.user + " " + x.channel);
    },
    [add](const unsubscribed_event& x) {
      add("unsubscribed " + x.user + " " + x.channel);
    },
    [add](const refused_event& x) {
      add("refused " + x.reason + " " + x.peer);
    },
  };
}

struct observed : actor_fixture {
  event_log log = std::make_shared<std::vector<std::string>>();
  std::shared_ptr<std::mutex> mtx = std::make_shared<std::mutex>();

  observed() {
    cfg.observer = sys.spawn(recorder, log, mtx);
  }

  ~observed() {
    self->send_exit(cfg.observer, caf::exit_reason::user_shutdown);
  }
};

} // namespace

TEST_CASE_FIXTURE(observed,
                  "observer: connected, subscribed, unsubscribed, "
                  "disconnected, refused for auth") {
  auto c = connect();
  say(c, R"({"type":"subscribe","channel":"chat","id":1})");
  say(c, R"({"type":"unsubscribe","channel":"chat","id":2})");
  self->send(c.client, closed_atom::value, uint16_t{1000}, std::string{"bye"});
  run();
  CHECK(*log
        == std::vector<std::string>{"connected  ", "subscribed  chat",
                                    "unsubscribed  chat",
                                    "disconnected  1000 bye"});
  // With tokens: connected once the token is checked, with its user; a bad
  // one is refused for auth.
  log->clear();
  cfg.token_hmac_secret = "observer-secret";
  auto alice = connect();
  say(alice,
      R"({"type":"connect","id":1,"token":")"
        + test::hs256("observer-secret", R"({"sub":"alice"})") + "\"}");
  auto mallory = connect();
  say(mallory, R"({"type":"connect","id":1,"token":"x.y.z"})");
  CHECK(*log == std::vector<std::string>{"connected alice ", "refused auth "});
}

TEST_CASE("observer: refused upgrades and close codes through real sockets") {
  auto log = std::make_shared<std::vector<std::string>>();
  auto mtx = std::make_shared<std::mutex>();
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{sys_cfg};
  auto cfg = test::loopback_config();
  cfg.max_connections_per_ip = 1;
  cfg.observer = sys.spawn(recorder, log, mtx);
  auto hub = spawn_hub(sys, cfg);
  auto srv = server::start(sys, hub, cfg);
  REQUIRE(srv);
  auto port = (*srv)->port();
  {
    test::ws_client first{port};
    REQUIRE(first.status() == 101);
    test::ws_client second{port};
    CHECK(second.status() == 429);
    test::ws_options evil;
    evil.headers = {{"Origin", "http://evil.example"}};
    CHECK(test::ws_client{port, evil}.status() == 403);
    REQUIRE(first.send_text(R"({"type":"subscribe","channel":"c","id":1})"));
    CHECK(first.receive(5000ms).kind == test::ws_kind::text);
    first.send_close(4000, "done");
    first.close();
  }
  auto seen = [&](const std::string& line) {
    std::unique_lock<std::mutex> guard{*mtx};
    return std::find(log->begin(), log->end(), line) != log->end();
  };
  for (int i = 0; i < 300 && !seen("disconnected  4000 done"); ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(seen("connected  127.0.0.1"));
  CHECK(seen("subscribed  c"));
  CHECK(seen("refused rate 127.0.0.1"));
  CHECK(seen("refused origin 127.0.0.1"));
  CHECK(seen("disconnected  4000 done"));
  srv->reset();
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(cfg.observer, caf::exit_reason::user_shutdown);
}
