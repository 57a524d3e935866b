// Deterministic tests of identity, authorization and rate limits in the
// client actor: connect and refresh, the connect timeout and token expiry
// (enforced by the keepalive sweep), the order of channel authorization,
// the application's authorizer, and the command and publication buckets.
#include "actor_fixture.hpp"
#include "support/json_field.hpp"

#include <chrono>

#include <rapidjson/document.h>

#include "support/tokens.hpp"

using namespace std::chrono_literals;
using namespace livehub;
using livehub::test::actor_fixture;

namespace {

using livehub::test::json_field;

constexpr std::string_view secret = "identity-test-secret-0123456789abcdef";

std::string token_for(std::string_view user, std::string_view extra = {},
                      std::string_view key = secret) {
  std::string claims = R"({"sub":")" + std::string{user} + "\"";
  if (!extra.empty())
    claims += "," + std::string{extra};
  return test::hs256(key, claims + "}");
}

std::string connect_cmd(const std::string& jwt, int id = 1) {
  return R"({"type":"connect","token":")" + jwt + R"(","id":)"
    + std::to_string(id) + "}";
}

/// Answers (authorize_atom, identity, action, channel) with `allow(...)`,
/// recording each question; never answers when `silent`.
struct authorizer_log {
  std::vector<std::string> questions;
};

authorizer_actor::behavior_type
fake_authorizer(authorizer_actor::pointer self,
                std::shared_ptr<authorizer_log> log, bool silent) {
  return {
    [self, log, silent](authorize_atom, const identity& who, auth_action action,
                        const std::string& channel) -> caf::result<bool> {
      log->questions.push_back(who.user + " " + to_string(action) + " "
                               + channel);
      if (silent)
        return caf::delegated<bool>{}; // no answer ever comes
      return channel.rfind("vip:", 0) == 0;
    },
  };
}

struct identity_fixture : actor_fixture {
  identity_fixture() {
    cfg.token_hmac_secret = std::string{secret};
    cfg.connect_timeout = 2s;
    cfg.token_leeway = 1s;
  }

  /// A connection that connected with `jwt`; checks the ok.
  test::fake_connection connected(const std::string& jwt) {
    auto conn = connect();
    say(conn, connect_cmd(jwt));
    auto frames = conn.out->take();
    REQUIRE(frames.size() == 1);
    REQUIRE_MESSAGE(json_field(frames[0], "type") == "ok", frames[0]);
    return conn;
  }
};

} // namespace

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: nothing but connect runs before a connect") {
  auto conn = connect();
  say(conn, R"({"type":"subscribe","channel":"news","id":1})");
  say(conn, R"({"type":"ping","id":2})");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(json_field(frames[0], "code") == "unauthorized");
  CHECK(json_field(frames[0], "id") == "1");
  CHECK(json_field(frames[1], "code") == "unauthorized");
  CHECK(stats().subscriptions == 0);
  CHECK(!conn.out->close_code);
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: connect answers with client, user and expires") {
  auto exp = test::unix_now() + 3600;
  auto conn = connect();
  say(conn,
      connect_cmd(token_for("alice", R"("exp":)" + std::to_string(exp)), 7));
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "type") == "ok");
  CHECK(json_field(frames[0], "id") == "7");
  CHECK(json_field(frames[0], "user") == "alice");
  CHECK(json_field(frames[0], "expires") == std::to_string(exp));
  auto client = json_field(frames[0], "client");
  CHECK(client.size() > 16);
  // Another connection gets another client id.
  auto other = connect();
  say(other, connect_cmd(token_for("alice")));
  auto reply = other.out->take();
  REQUIRE(reply.size() == 1);
  CHECK(json_field(reply[0], "client") != client);
  CHECK(json_field(reply[0], "expires") == "0");
  // A second connect is an error, and changes nothing.
  say(conn, connect_cmd(token_for("mallory"), 8));
  frames = conn.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "bad_command");
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: a bad token is refused and the connection closed "
                  "with 4001") {
  for (auto jwt :
       {token_for("alice", {}, "wrong secret of the same size!!"),
        std::string{"garbage"},
        token_for("alice", R"("exp":)" + std::to_string(test::unix_now() - 60)),
        std::string{}}) {
    CAPTURE(jwt);
    auto conn = connect();
    say(conn, connect_cmd(jwt));
    auto frames = conn.out->take();
    REQUIRE(frames.size() == 1);
    CHECK(json_field(frames[0], "code") == "unauthorized");
    CHECK(conn.out->close_code == 4001);
    CHECK(conn.out->close_reason == "unauthorized");
    // What still arrives is not executed.
    say(conn, R"({"type":"ping","id":2})");
    CHECK(conn.out->take().empty());
  }
  CHECK(stats().unauthorized_disconnects == 4);
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: no connect within connect-timeout closes with "
                  "4001") {
  auto late = connect();
  auto prompt = connect();
  say(prompt, connect_cmd(token_for("bob")));
  advance(1s);
  CHECK(!late.out->close_code);
  advance(2s);
  CHECK(late.out->close_code == 4001);
  CHECK(!prompt.out->close_code);
  // Trusted publishers need no connect.
  auto backend = connect(true);
  advance(5s);
  CHECK(!backend.out->close_code);
  say(backend, R"({"type":"publish","channel":"news","event":"e","id":1})");
  CHECK(backend.out->take()
        == std::vector<std::string>{R"({"type":"ok","id":1})"});
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: an expired token closes with 4002 unless "
                  "refreshed") {
  auto now = test::unix_now();
  auto exp = [&](int64_t in) {
    return R"("exp":)" + std::to_string(now + in);
  };
  auto lapsing = connected(token_for("alice", exp(3)));
  auto refreshed = connected(token_for("bob", exp(3)));
  advance(2s);
  say(refreshed,
      R"({"type":"refresh","id":5,"token":")" + token_for("bob", exp(60))
        + "\"}");
  auto frames = refreshed.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "type") == "ok");
  CHECK(json_field(frames[0], "expires") == std::to_string(now + 60));
  // exp + leeway (1 s) after connect, within a sweep or so.
  advance(4s);
  CHECK(lapsing.out->close_code == 4002);
  CHECK(lapsing.out->close_reason == "token expired");
  CHECK(!refreshed.out->close_code);
  CHECK(stats().expired_disconnects == 1);
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: a refresh for another user closes with 4001") {
  auto conn = connected(token_for("alice"));
  say(conn,
      R"({"type":"refresh","id":2,"token":")" + token_for("mallory") + "\"}");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "unauthorized");
  CHECK(json_field(frames[0], "message") == "the token is for another user");
  CHECK(conn.out->close_code == 4001);
  // Refresh without a token is a bad command, refresh before connect
  // unauthorized.
  auto early = connect();
  say(early, R"({"type":"refresh","id":3})");
  say(early,
      R"({"type":"refresh","id":4,"token":")" + token_for("alice") + "\"}");
  frames = early.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(json_field(frames[0], "code") == "bad_command");
  CHECK(json_field(frames[1], "code") == "unauthorized");
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: channels are allowed by public-channels, the "
                  "channels claim or a subscription token") {
  cfg.public_channels = std::vector<std::string>{"public:*"};
  auto conn = connected(token_for("alice", R"("channels":["room:*"])"));
  auto sub_token = test::hs256(secret,
                               R"({"sub":"alice","channel":"secret:1"})");
  auto others = test::hs256(secret, R"({"sub":"bob","channel":"secret:2"})");
  say(conn, R"({"type":"subscribe","channel":"public:news","id":1})");
  say(conn, R"({"type":"subscribe","channel":"room:a","id":2})");
  say(conn,
      R"({"type":"subscribe","channel":"secret:1","id":3,"token":")" + sub_token
        + "\"}");
  say(conn,
      R"({"type":"subscribe","channel":"secret:2","id":4,"token":")" + sub_token
        + "\"}");
  say(conn,
      R"({"type":"subscribe","channel":"secret:2","id":5,"token":")" + others
        + "\"}");
  say(conn, R"({"type":"subscribe","channel":"other","id":6})");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 6);
  for (int i = 0; i < 3; ++i)
    CHECK_MESSAGE(json_field(frames[i], "type") == "ok", frames[i]);
  for (int i = 3; i < 6; ++i)
    CHECK_MESSAGE(json_field(frames[i], "code") == "forbidden", frames[i]);
  CHECK(stats().subscriptions == 3);
  // A forbidden channel's publications do not arrive.
  publish("other", "e", "1");
  publish("room:a", "e", "2");
  frames = conn.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "channel") == "room:a");
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: publishing needs client-publish or the publish "
                  "claim") {
  cfg.client_publish = {"open:*"};
  std::vector<std::string> checked;
  cfg.client_publish_check = [&](const publication& x, const identity& who) {
    checked.push_back(who.user + "@" + x.channel);
    return std::string{};
  };
  auto conn = connected(token_for("alice", R"("publish":["mine:*"])"));
  for (auto ch : {"open:1", "mine:1", "else", "*"})
    say(conn,
        std::string{R"({"type":"publish","event":"e","id":1,"channel":")"} + ch
          + "\"}");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 4);
  CHECK(json_field(frames[0], "type") == "ok");
  CHECK(json_field(frames[1], "type") == "ok");
  CHECK(json_field(frames[2], "code") == "forbidden");
  CHECK(json_field(frames[3], "code") == "forbidden");
  CHECK(checked == std::vector<std::string>{"alice@open:1", "alice@mine:1"});
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: the authorizer decides what nothing else does") {
  auto log = std::make_shared<authorizer_log>();
  cfg.authorizer = sys.spawn(fake_authorizer, log, false);
  auto conn = connected(token_for("alice", R"("channels":["room:*"])"));
  say(conn, R"({"type":"subscribe","channel":"room:a","id":1})");
  say(conn, R"({"type":"subscribe","channel":"vip:lounge","id":2})");
  say(conn, R"({"type":"subscribe","channel":"staff","id":3})");
  say(conn, R"({"type":"publish","channel":"vip:lounge","event":"e","id":4})");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 5);
  CHECK(json_field(frames[0], "type") == "ok");
  CHECK(json_field(frames[1], "type") == "ok");
  CHECK(json_field(frames[2], "code") == "forbidden");
  // Its own publication on vip:lounge, then the publish's ok.
  CHECK(json_field(frames[3], "channel") == "vip:lounge");
  CHECK(json_field(frames[4], "type") == "ok");
  // Asked only where nothing else decided, with the identity.
  CHECK(log->questions
        == std::vector<std::string>{"alice subscribe vip:lounge",
                                    "alice subscribe staff",
                                    "alice publish vip:lounge"});
  self->send_exit(cfg.authorizer, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(identity_fixture,
                  "tokens: a silent authorizer is a denial after "
                  "authorize-timeout, and later commands wait for it") {
  auto log = std::make_shared<authorizer_log>();
  cfg.authorizer = sys.spawn(fake_authorizer, log, true);
  cfg.authorize_timeout = 500ms;
  auto conn = connected(token_for("alice"));
  say(conn, R"({"type":"subscribe","channel":"vip:x","id":1})");
  say(conn, R"({"type":"ping","id":2})");
  CHECK(conn.out->take().empty());
  sched.advance_time(600ms);
  run();
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(json_field(frames[0], "code") == "forbidden");
  CHECK(json_field(frames[1], "type") == "pong");
  CHECK(stats().subscriptions == 0);
  self->send_exit(cfg.authorizer, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "no tokens: connect is optional and sets info, every "
                  "channel is public") {
  auto conn = connect();
  say(conn, R"({"type":"subscribe","channel":"anything","id":1})");
  say(conn, R"({"type":"connect","id":2,"info":{"name":"Ann"}})");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(json_field(frames[0], "type") == "ok");
  CHECK(json_field(frames[1], "user") == "");
  CHECK(json_field(frames[1], "expires") == "0");
  CHECK(json_field(frames[1], "client") != "<missing>");
  // Too much info is refused.
  auto other = connect();
  say(other,
      R"({"type":"connect","id":3,"info":")" + std::string(1100, 'x') + "\"}");
  frames = other.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "bad_command");
  // Without a key, refresh is a bad command; nothing closes.
  say(conn, R"({"type":"refresh","id":4,"token":"x.y.z"})");
  frames = conn.out->take();
  REQUIRE(frames.size() == 1);
  CHECK(json_field(frames[0], "code") == "bad_command");
  advance(15s);
  CHECK(!conn.out->close_code);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "no tokens: public-channels [] leaves the decision to the "
                  "authorizer") {
  auto log = std::make_shared<authorizer_log>();
  cfg.public_channels = std::vector<std::string>{};
  cfg.authorizer = sys.spawn(fake_authorizer, log, false);
  auto conn = connect();
  say(conn, R"({"type":"subscribe","channel":"vip:1","id":1})");
  say(conn, R"({"type":"subscribe","channel":"plain","id":2})");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 2);
  CHECK(json_field(frames[0], "type") == "ok");
  CHECK(json_field(frames[1], "code") == "forbidden");
  CHECK(log->questions
        == std::vector<std::string>{" subscribe vip:1", " subscribe plain"});
  self->send_exit(cfg.authorizer, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "rate limits: commands over the bucket are refused, then "
                  "4029") {
  cfg.command_rate = 10;
  cfg.command_burst = 20;
  auto conn = connect();
  for (int i = 0; i < 25; ++i)
    say(conn, R"({"type":"ping","id":)" + std::to_string(i) + "}");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 25);
  for (int i = 0; i < 20; ++i)
    CHECK(json_field(frames[i], "type") == "pong");
  for (int i = 20; i < 25; ++i) {
    CHECK(json_field(frames[i], "code") == "rate_limited");
    CHECK(json_field(frames[i], "id") == std::to_string(i));
  }
  // The bucket refills at the rate.
  sched.advance_time(1s);
  for (int i = 0; i < 12; ++i)
    say(conn, R"({"type":"ping"})");
  frames = conn.out->take();
  REQUIRE(frames.size() == 12);
  CHECK(std::count(frames.begin(), frames.end(), R"({"type":"pong"})") == 10);
  // More than a burst refused in a row: 4029 (3 refused so far... the
  // counter restarts with each accepted command).
  for (int i = 0; i < 25; ++i)
    say(conn, R"({"type":"ping"})");
  CHECK(conn.out->close_code == 4029);
  CHECK(conn.out->close_reason == "rate limited");
  auto st = stats();
  CHECK(st.rate_limited_disconnects == 1);
  CHECK(st.command_errors >= 25);
  // Trusted publishers have no limit.
  auto backend = connect(true);
  for (int i = 0; i < 100; ++i)
    say(backend, R"({"type":"ping"})");
  CHECK(backend.out->take().size() == 100);
  CHECK(!backend.out->close_code);
}

TEST_CASE_FIXTURE(actor_fixture,
                  "rate limits: client publications have their own bucket") {
  cfg.client_publish = {"room:*"};
  cfg.client_publish_rate = 3; // burst 6
  auto conn = connect();
  for (int i = 0; i < 8; ++i)
    say(conn, R"({"type":"publish","channel":"room:a","event":"e","id":1})");
  auto frames = conn.out->take();
  REQUIRE(frames.size() == 8);
  CHECK(std::count(frames.begin(), frames.end(), R"({"type":"ok","id":1})")
        == 6);
  CHECK(json_field(frames[7], "code") == "rate_limited");
  // Other commands still run.
  say(conn, R"({"type":"ping"})");
  CHECK(conn.out->take() == std::vector<std::string>{R"({"type":"pong"})"});
  sched.advance_time(1s);
  say(conn, R"({"type":"publish","channel":"room:a","event":"e","id":2})");
  CHECK(conn.out->take()
        == std::vector<std::string>{R"({"type":"ok","id":2})"});
}
