// The Redis client (transport/redis.hpp) against real redis-servers started
// by each test (support/redis_server.hpp): urls, commands and replies,
// pub/sub, AUTH and SELECT, and what the broker relies on when Redis goes
// away: down reports, handlers failed exactly once, nothing queued behind
// its back, and reconnecting and re-subscribing by itself. Connections run
// on an io_context of their own thread, as in livehub; the test thread
// talks to them through posted calls. Waits are generous bounds, never
// speed requirements, except the 5 s within which PROTOCOL.md promises
// resubscription.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/sec.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "support/redis_server.hpp"
#include "transport/redis.hpp"

using namespace std::chrono_literals;
using livehub::test::redis_server;
namespace redis = livehub::redis;

namespace {

/// How long a test waits for anything that must arrive.
constexpr auto wait_time = 10s;

using result = caf::expected<redis::reply>;

std::string show(const result& x) {
  return x ? to_string(*x) : caf::to_string(x.error());
}

/// The text of a command error.
std::string error_text(const result& x) {
  return x ? std::string{} : caf::to_string(x.error());
}

bool failed_with(const result& x, caf::sec code) {
  return !x && x.error() == code;
}

/// Values handed from the I/O thread to the test thread.
template<class T>
class inbox {
 public:
  void push(T x) {
    std::unique_lock<std::mutex> guard{mtx_};
    items_.push_back(std::move(x));
    cv_.notify_all();
  }

  /// The oldest value, waiting up to `timeout` for one.
  std::optional<T> pop(std::chrono::milliseconds timeout = wait_time) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (!cv_.wait_for(guard, timeout, [this] {
          return !items_.empty();
        }))
      return std::nullopt;
    auto x = std::move(items_.front());
    items_.pop_front();
    return x;
  }

  size_t size() {
    std::unique_lock<std::mutex> guard{mtx_};
    return items_.size();
  }

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<T> items_;
};

/// An io_context run by a thread of its own.
class io_thread {
 public:
  io_thread()
    : work_(asio::make_work_guard(io_)), thread_([this] {
        io_.run();
      }) {
    // nop
  }

  ~io_thread() {
    join();
  }

  /// Stops the context and waits for the thread: from then on, the test
  /// thread may touch (and destroy) what belongs to the context.
  void join() {
    work_.reset();
    io_.stop();
    if (thread_.joinable())
      thread_.join();
  }

  asio::io_context& context() {
    return io_;
  }

  /// Runs `f` on the I/O thread and returns its result.
  template<class F>
  auto call(F f) -> decltype(f()) {
    using value = decltype(f());
    auto p = std::make_shared<std::promise<value>>();
    auto future = p->get_future();
    asio::post(io_, [p, f]() mutable {
      if constexpr (std::is_void_v<value>) {
        f();
        p->set_value();
      } else {
        p->set_value(f());
      }
    });
    if (future.wait_for(wait_time) != std::future_status::ready)
      throw std::runtime_error("the I/O thread did not answer");
    return future.get();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

redis::options options_for(const std::string& text) {
  auto address = redis::url::parse(text);
  if (!address)
    FAIL(caf::to_string(address.error()));
  redis::options opts;
  opts.address = *address;
  return opts;
}

/// A socket on 127.0.0.1 that plays a Redis server by hand, for what a real
/// one will not do on cue.
class fake_redis {
 public:
  fake_redis() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listener_ < 0
        || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0
        || ::listen(listener_, 8) != 0
        || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len)
          != 0)
      throw std::runtime_error("fake_redis: cannot listen");
    port_ = ntohs(addr.sin_port);
    timeval tv{10, 0}; // accept() and recv() wait at most this
    ::setsockopt(listener_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  ~fake_redis() {
    if (peer_ >= 0)
      ::close(peer_);
    ::close(listener_);
  }

  fake_redis(const fake_redis&) = delete;
  fake_redis& operator=(const fake_redis&) = delete;

  std::string url() const {
    return "redis://127.0.0.1:" + std::to_string(port_);
  }

  /// Accepts the client and answers its handshake (a PING) with PONG.
  bool accept_and_pong() {
    peer_ = ::accept(listener_, nullptr, nullptr);
    if (peer_ < 0)
      return false;
    timeval tv{10, 0};
    ::setsockopt(peer_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const std::string ping = "*1\r\n$4\r\nPING\r\n";
    std::string got;
    char buf[64];
    while (got.size() < ping.size()) {
      auto n = ::recv(peer_, buf, sizeof(buf), 0);
      if (n <= 0)
        return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return got == ping && ::send(peer_, "+PONG\r\n", 7, MSG_NOSIGNAL) == 7;
  }

  /// Reads exactly `expected` from the client; false if something else (or
  /// nothing) came.
  bool receive(const std::string& expected) {
    std::string got;
    char buf[256];
    while (got.size() < expected.size()) {
      auto n = ::recv(peer_, buf,
                      std::min(sizeof(buf), expected.size() - got.size()), 0);
      if (n <= 0)
        return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return got == expected;
  }

  /// Sends `bytes` one at a time, a millisecond apart.
  bool send_slowly(const std::string& bytes) {
    for (auto c : bytes) {
      if (::send(peer_, &c, 1, MSG_NOSIGNAL) != 1)
        return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  bool send(const std::string& bytes) {
    return ::send(peer_, bytes.data(), bytes.size(), MSG_NOSIGNAL)
      == static_cast<ssize_t>(bytes.size());
  }

  /// Closes the connection (a FIN).
  void close_peer() {
    ::close(peer_);
    peer_ = -1;
  }

  /// Goes away as a server may: a FIN, then, with the client still in
  /// CLOSE_WAIT, a reset. The client's next write(2) fails with EPIPE, and
  /// raises SIGPIPE unless it is kept from it.
  void fin_then_reset() {
    ::shutdown(peer_, SHUT_WR);
    std::this_thread::sleep_for(20ms); // the FIN arrives
    linger abort{1, 0};
    ::setsockopt(peer_, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    ::close(peer_);
    peer_ = -1;
    std::this_thread::sleep_for(20ms); // the RST arrives
  }

 private:
  int listener_ = -1;
  int peer_ = -1;
  uint16_t port_ = 0;
};

using state_report = std::pair<redis::state, std::string>;

/// A connection and a subscriber on an I/O thread; what they report lands
/// in inboxes.
struct client_fixture {
  ~client_fixture() {
    io.join(); // the connections go next, with the context at rest
  }

  void open_connection(redis::options opts) {
    io.call([this, opts] {
      conn = std::make_unique<redis::connection>(io.context(), opts);
      conn->on_state([this](redis::state s, const std::string& why) {
        conn_states.push({s, why});
      });
      conn->start();
    });
  }

  /// Opens `conn` on `fake` and waits until it is up (the fake answers the
  /// handshake's PING once, so a reconnection would time out quickly).
  void connect_to(fake_redis& fake) {
    auto opts = options_for(fake.url());
    opts.connect_timeout = 200ms; // the fake answers no second handshake
    open_connection(opts);
    REQUIRE(fake.accept_and_pong());
    REQUIRE(wait_for(conn_states, redis::state::up));
  }

  void open_subscriber(redis::options opts,
                       std::vector<std::string> channels = {}) {
    io.call([this, opts, channels] {
      sub = std::make_unique<redis::subscriber>(io.context(), opts);
      sub->on_state([this](redis::state s, const std::string& why) {
        sub_states.push({s, why});
      });
      sub->on_message(
        [this](std::string_view channel, std::string_view payload) {
          messages.push({std::string{channel}, std::string{payload}});
        });
      sub->on_subscribed([this](std::string_view channel) {
        subscribed.push(std::string{channel});
      });
      for (auto& x : channels)
        sub->subscribe(x);
      sub->start();
    });
  }

  /// Another connection, owned by the fixture (so that it goes after the
  /// I/O thread stopped); its reports land in `states`.
  struct extra_connection {
    redis::connection* conn;
    inbox<state_report>* states;
  };

  extra_connection open_extra(redis::options opts) {
    auto* states = &extra_states.emplace_back();
    return io.call([this, opts, states] {
      extras.push_back(std::make_unique<redis::connection>(io.context(), opts));
      auto* c = extras.back().get();
      c->on_state([states](redis::state s, const std::string& why) {
        states->push({s, why});
      });
      c->start();
      return extra_connection{c, states};
    });
  }

  /// Sends `argv` on `conn` and waits for the outcome.
  result command(std::vector<std::string> argv) {
    return command_on(*conn, std::move(argv));
  }

  result command_on(redis::connection& c, std::vector<std::string> argv) {
    auto p = std::make_shared<std::promise<result>>();
    auto future = p->get_future();
    io.call([&c, argv, p] {
      c.command(argv, [p](result r) {
        p->set_value(std::move(r));
      });
    });
    if (future.wait_for(wait_time) != std::future_status::ready)
      throw std::runtime_error("no outcome for " + argv.front());
    return future.get();
  }

  /// Waits for a report of `expected` and returns its reason.
  static std::optional<std::string> wait_for(inbox<state_report>& reports,
                                             redis::state expected) {
    while (auto x = reports.pop())
      if (x->first == expected)
        return x->second;
    return std::nullopt;
  }

  io_thread io;
  inbox<state_report> conn_states;
  inbox<state_report> sub_states;
  inbox<std::pair<std::string, std::string>> messages;
  inbox<std::string> subscribed;
  std::deque<inbox<state_report>> extra_states;
  std::unique_ptr<redis::connection> conn;
  std::unique_ptr<redis::subscriber> sub;
  std::vector<std::unique_ptr<redis::connection>> extras;
};

} // namespace

// -- urls ---------------------------------------------------------------------

TEST_CASE("a redis url names the host, port, password, user and database") {
  auto plain = redis::url::parse("redis://127.0.0.1:6380");
  REQUIRE(plain);
  CHECK_EQ(plain->host, "127.0.0.1");
  CHECK_EQ(plain->port, 6380);
  CHECK(plain->password.empty());
  CHECK(plain->user.empty());
  CHECK_EQ(plain->db, 0);

  auto bare = redis::url::parse("redis://redis.internal");
  REQUIRE(bare);
  CHECK_EQ(bare->host, "redis.internal");
  CHECK_EQ(bare->port, 6379);

  auto full = redis::url::parse("redis://:s3cret@10.0.0.7:7000/3");
  REQUIRE(full);
  CHECK_EQ(full->host, "10.0.0.7");
  CHECK_EQ(full->port, 7000);
  CHECK_EQ(full->password, "s3cret");
  CHECK(full->user.empty());
  CHECK_EQ(full->db, 3);

  auto acl = redis::url::parse("REDIS://alice:wonder:land@host:1/0");
  REQUIRE(acl);
  CHECK_EQ(acl->user, "alice");
  CHECK_EQ(acl->password, "wonder:land");
  CHECK_EQ(acl->db, 0);

  // '@' and '/' may appear in a password raw or percent-encoded.
  auto odd = redis::url::parse("redis://:p@ss/w%25rd%40@host/");
  REQUIRE(odd);
  CHECK_EQ(odd->password, "p@ss/w%rd@");
  CHECK_EQ(odd->host, "host");
  CHECK_EQ(odd->db, 0);

  auto v6 = redis::url::parse("redis://[::1]:6390/2");
  REQUIRE(v6);
  CHECK_EQ(v6->host, "::1");
  CHECK_EQ(v6->port, 6390);
  CHECK_EQ(v6->db, 2);

  // What a log may show: never the password.
  CHECK_EQ(to_string(*full), "redis://:***@10.0.0.7:7000/3");
  CHECK_EQ(to_string(*acl), "redis://alice:***@host:1");
  CHECK_EQ(to_string(*v6), "redis://[::1]:6390/2");
  CHECK_EQ(to_string(*bare), "redis://redis.internal:6379");
}

TEST_CASE("a redis url that is not one is refused with the reason, and the "
          "text (it may hold a password) is not repeated") {
  struct bad {
    const char* text;
    const char* reason;
  };
  const bad cases[] = {
    {"", "must start with redis://"},
    {"http://host:6379", "must start with redis://"},
    {"rediss://:hunter2@host", "TLS"},
    {"redis://", "no host"},
    {"redis://:hunter2@", "no host"},
    {"redis://:6379", "no host"},
    {"redis://host:0", "1 to 65535"},
    {"redis://host:65536", "1 to 65535"},
    {"redis://host:", "1 to 65535"},
    {"redis://host:63x9", "1 to 65535"},
    {"redis://host/db1", "database"},
    {"redis://host/-1", "database"},
    {"redis://host/1/2", "database"},
    {"redis://host/99999999999", "database"},
    {"redis://hunter2@host", ":password@"},
    {"redis://alice:@host", "a user needs a password"},
    {"redis://:hunter2%4@host", "percent-encoding"},
    {"redis://:hunter2%zz@host", "percent-encoding"},
    {"redis://host?db=1", "query"},
    {"redis://ho st", "characters"},
    {"redis://::1:6379", "IPv6"},
    {"redis://[::1", "closing ']'"},
    {"redis://[::1]6379", "':'"},
  };
  for (auto& x : cases) {
    std::string text = x.text;
    CAPTURE(text);
    auto parsed = redis::url::parse(x.text);
    REQUIRE_FALSE(parsed);
    CHECK_EQ(parsed.error(), caf::sec::invalid_argument);
    auto message = caf::to_string(parsed.error());
    CHECK_MESSAGE(message.find(x.reason) != std::string::npos, message);
    CHECK(message.find("hunter2") == std::string::npos);
  }
}

// -- commands -----------------------------------------------------------------

TEST_CASE_FIXTURE(client_fixture,
                  "commands get their replies in order: SET, "
                  "GET, INCR, and nil for a missing key") {
  redis_server server;
  open_connection(options_for(server.url()));
  REQUIRE(wait_for(conn_states, redis::state::up));
  CHECK(io.call([this] {
    return conn->up();
  }));

  auto set = command({"SET", "greeting", "hello"});
  REQUIRE_MESSAGE(set, show(set));
  CHECK_EQ(set->type, redis::reply::kind::status);
  CHECK_EQ(set->str, "OK");

  auto get = command({"GET", "greeting"});
  REQUIRE_MESSAGE(get, show(get));
  CHECK_EQ(get->type, redis::reply::kind::string);
  CHECK_EQ(get->str, "hello");

  auto missing = command({"GET", "nothing-here"});
  REQUIRE_MESSAGE(missing, show(missing));
  CHECK_EQ(missing->type, redis::reply::kind::nil);

  // Pipelined: all sent before the first reply, answered in order.
  auto replies = std::make_shared<inbox<result>>();
  io.call([this, replies] {
    for (int i = 0; i < 100; ++i)
      conn->command({"INCR", "counter"}, [replies](result r) {
        replies->push(std::move(r));
      });
  });
  for (int64_t i = 1; i <= 100; ++i) {
    auto r = replies->pop();
    REQUIRE(r);
    REQUIRE_MESSAGE(*r, show(*r));
    CHECK_EQ((*r)->type, redis::reply::kind::integer);
    CHECK_EQ((*r)->integer, i);
  }
}

TEST_CASE_FIXTURE(client_fixture,
                  "keys and values are binary-safe: NUL bytes and every other "
                  "byte round-trip") {
  redis_server server;
  open_connection(options_for(server.url()));
  REQUIRE(wait_for(conn_states, redis::state::up));

  std::string key{"k\0ey", 4};
  std::string value;
  for (int i = 0; i < 256; ++i)
    value += static_cast<char>(i);
  value += std::string{"\0\r\n\0", 4};
  REQUIRE(command({"SET", key, value}));
  auto get = command({"GET", key});
  REQUIRE_MESSAGE(get, show(get));
  CHECK_EQ(get->str.size(), value.size());
  CHECK(get->str == value);
  // The key is not cut at its NUL.
  auto cut = command({"EXISTS", "k"});
  REQUIRE(cut);
  CHECK_EQ(cut->integer, 0);
}

TEST_CASE_FIXTURE(client_fixture,
                  "an error reply is a reply of kind error, and the "
                  "connection stays up") {
  redis_server server;
  open_connection(options_for(server.url()));
  REQUIRE(wait_for(conn_states, redis::state::up));

  REQUIRE(command({"SET", "word", "not a number"}));
  auto incr = command({"INCR", "word"});
  REQUIRE_MESSAGE(incr, show(incr)); // the command reached Redis: no caf error
  CHECK(incr->is_error());
  CHECK_MESSAGE(incr->str.rfind("ERR", 0) == 0, incr->str);

  auto unknown = command({"NO-SUCH-COMMAND"});
  REQUIRE(unknown);
  CHECK(unknown->is_error());
  CHECK_EQ(to_string(*unknown).rfind("(error) ERR unknown command", 0), 0);

  auto ping = command({"PING"});
  REQUIRE(ping);
  CHECK_EQ(ping->str, "PONG");
  CHECK(io.call([this] {
    return conn->up();
  }));
  CHECK_EQ(conn_states.size(), 0); // no down report came
}

TEST_CASE_FIXTURE(client_fixture,
                  "array replies keep their shape: LRANGE, and a nested "
                  "EVAL result") {
  redis_server server;
  open_connection(options_for(server.url()));
  REQUIRE(wait_for(conn_states, redis::state::up));

  REQUIRE(command({"RPUSH", "list", "a", std::string{"b\0c", 3}, "d"}));
  auto range = command({"LRANGE", "list", "0", "-1"});
  REQUIRE_MESSAGE(range, show(range));
  REQUIRE_EQ(range->type, redis::reply::kind::array);
  REQUIRE_EQ(range->elements.size(), 3);
  CHECK_EQ(range->elements[0].str, "a");
  CHECK(range->elements[1].str == std::string("b\0c", 3));
  CHECK_EQ(range->elements[2].str, "d");

  auto empty = command({"LRANGE", "no-list", "0", "-1"});
  REQUIRE(empty);
  CHECK_EQ(empty->type, redis::reply::kind::array);
  CHECK(empty->elements.empty());

  auto nested = command(
    {"EVAL", "return {1, 'two', {3, false}, redis.error_reply('bad')}", "0"});
  REQUIRE_MESSAGE(nested, show(nested));
  // Redis 7 puts "ERR " before the text of redis.error_reply().
  auto shown = to_string(*nested);
  CHECK_MESSAGE(shown.rfind(R"([(integer) 1, "two", [(integer) 3, (nil)], )"
                            R"((error) )",
                            0)
                  == 0,
                shown);
  REQUIRE_EQ(nested->elements.size(), 4);
  CHECK(nested->elements[3].is_error());
  CHECK_MESSAGE(nested->elements[3].str.find("bad") != std::string::npos,
                nested->elements[3].str);
}

TEST_CASE_FIXTURE(client_fixture,
                  "commands that would turn a command connection into a "
                  "subscriber are refused") {
  redis_server server;
  open_connection(options_for(server.url()));
  REQUIRE(wait_for(conn_states, redis::state::up));
  for (auto name : {"SUBSCRIBE", "psubscribe", "Unsubscribe", "MONITOR"}) {
    CAPTURE(name);
    auto r = command({name, "x"});
    CHECK(failed_with(r, caf::sec::invalid_argument));
    CHECK_MESSAGE(error_text(r).find("redis::subscriber") != std::string::npos,
                  error_text(r));
  }
  CHECK(failed_with(command({}), caf::sec::invalid_argument));
  CHECK(command({"PING"})); // still usable
}

// -- pub/sub ------------------------------------------------------------------

TEST_CASE_FIXTURE(client_fixture,
                  "a subscriber receives what a connection publishes on its "
                  "channels, and nothing after unsubscribing") {
  redis_server server;
  open_connection(options_for(server.url()));
  open_subscriber(options_for(server.url()), {"news", "sports"});
  REQUIRE(wait_for(conn_states, redis::state::up));
  // Up after both subscriptions were confirmed.
  auto first = subscribed.pop();
  auto second = subscribed.pop();
  REQUIRE(first);
  REQUIRE(second);
  CHECK_EQ(*first + "," + *second, "news,sports");
  REQUIRE(wait_for(sub_states, redis::state::up));

  std::string payload{"{\"x\":1}\0tail", 12};
  auto published = command({"PUBLISH", "news", payload});
  REQUIRE(published);
  CHECK_EQ(published->integer, 1); // one subscriber: ours
  auto msg = messages.pop();
  REQUIRE(msg);
  CHECK_EQ(msg->first, "news");
  CHECK(msg->second == payload);

  REQUIRE(command({"PUBLISH", "weather", "rain"})); // not subscribed
  // A channel added while up is subscribed at once.
  io.call([this] {
    sub->subscribe("weather");
  });
  auto added = subscribed.pop();
  REQUIRE(added);
  CHECK_EQ(*added, "weather");
  REQUIRE(command({"PUBLISH", "weather", "sun"}));
  msg = messages.pop();
  REQUIRE(msg);
  CHECK_EQ(msg->first, "weather");
  CHECK_EQ(msg->second, "sun"); // not "rain": that came before

  // After unsubscribe() returns, nothing of the channel comes through.
  auto left = io.call([this] {
    sub->unsubscribe("news");
    sub->unsubscribe("never-subscribed");
    return std::vector<std::string>(sub->channels().begin(),
                                    sub->channels().end());
  });
  CHECK_EQ(left, std::vector<std::string>{"sports", "weather"});
  REQUIRE(command({"PUBLISH", "news", "late"}));
  REQUIRE(command({"PUBLISH", "sports", "goal"}));
  msg = messages.pop();
  REQUIRE(msg);
  CHECK_EQ(msg->first, "sports");
  CHECK_EQ(msg->second, "goal");
  CHECK_EQ(messages.size(), 0);
}

TEST_CASE_FIXTURE(client_fixture,
                  "ten thousand messages arrive complete and in publish "
                  "order") {
  redis_server server;
  open_connection(options_for(server.url()));
  open_subscriber(options_for(server.url()), {"stream"});
  REQUIRE(wait_for(conn_states, redis::state::up));
  REQUIRE(wait_for(sub_states, redis::state::up));

  constexpr int count = 10'000;
  auto outcomes = std::make_shared<inbox<result>>();
  io.call([this, outcomes] {
    for (int i = 0; i < count; ++i)
      conn->command({"PUBLISH", "stream", std::to_string(i)},
                    [outcomes](result r) {
                      if (!r || r->integer != 1)
                        outcomes->push(std::move(r));
                    });
  });
  for (int i = 0; i < count; ++i) {
    auto msg = messages.pop();
    REQUIRE_MESSAGE(msg, "message " << i << " missing");
    REQUIRE_EQ(msg->second, std::to_string(i));
  }
  CHECK_EQ(outcomes->size(), 0); // every PUBLISH reached the subscriber
}

// -- AUTH and SELECT ----------------------------------------------------------

TEST_CASE_FIXTURE(client_fixture,
                  "AUTH: the right password connects, a wrong or missing one "
                  "is reported clearly and commands fail at once") {
  redis_server server{{"--requirepass", "s3cret"}};

  open_connection(
    options_for("redis://:s3cret@127.0.0.1:" + std::to_string(server.port())));
  open_subscriber(
    options_for("redis://:s3cret@127.0.0.1:" + std::to_string(server.port())),
    {"locked"});
  REQUIRE(wait_for(conn_states, redis::state::up));
  REQUIRE(wait_for(sub_states, redis::state::up));
  REQUIRE(command({"PUBLISH", "locked", "in"}));
  auto msg = messages.pop();
  REQUIRE(msg);
  CHECK_EQ(msg->second, "in");

  // A wrong password: down, with Redis' own words, and the password is
  // not repeated.
  auto wrong = open_extra(
    options_for("redis://:hunter2@127.0.0.1:" + std::to_string(server.port())));
  auto why = wait_for(*wrong.states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("AUTH refused: WRONGPASS") != std::string::npos,
                *why);
  CHECK(why->find("hunter2") == std::string::npos);
  auto refused = command_on(*wrong.conn, {"PING"});
  CHECK(failed_with(refused, caf::sec::unavailable_or_would_block));
  CHECK_MESSAGE(error_text(refused).find("WRONGPASS") != std::string::npos,
                error_text(refused));

  // No password at all: the server's NOAUTH.
  auto none = open_extra(options_for(server.url()));
  why = wait_for(*none.states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("NOAUTH") != std::string::npos, *why);
  // Neither ever came up, and neither stops trying.
  REQUIRE(wait_for(*wrong.states, redis::state::down));
  REQUIRE(wait_for(*none.states, redis::state::down));
  CHECK_FALSE(io.call([&] {
    return wrong.conn->up() || none.conn->up();
  }));
}

TEST_CASE_FIXTURE(client_fixture,
                  "an ACL user logs in, and the url's database is selected") {
  redis_server server{
    {"--user", "alice", "on", ">wonderland", "~*", "&*", "+@all"}};
  auto port = std::to_string(server.port());
  open_connection(
    options_for("redis://alice:wonderland@127.0.0.1:" + port + "/2"));
  REQUIRE(wait_for(conn_states, redis::state::up));
  auto who = command({"ACL", "WHOAMI"});
  REQUIRE_MESSAGE(who, show(who));
  CHECK_EQ(who->str, "alice");
  REQUIRE(command({"SET", "where", "db2"}));

  // Seen from database 0 and 2 by another connection.
  auto other
    = open_extra(options_for("redis://alice:wonderland@127.0.0.1:" + port));
  REQUIRE(wait_for(*other.states, redis::state::up));
  auto in_db0 = command_on(*other.conn, {"GET", "where"});
  REQUIRE_MESSAGE(in_db0, show(in_db0));
  CHECK_EQ(in_db0->type, redis::reply::kind::nil);
  REQUIRE(command_on(*other.conn, {"SELECT", "2"}));
  auto in_db2 = command_on(*other.conn, {"GET", "where"});
  REQUIRE(in_db2);
  CHECK_EQ(in_db2->str, "db2");
}

TEST_CASE_FIXTURE(client_fixture,
                  "a channel the ACL forbids: the subscriber goes down with "
                  "Redis' NOPERM, for every channel of its connection") {
  redis_server server{{"--user", "bob", "on", ">builder", "~*", "resetchannels",
                       "&allowed", "+@all"}};
  auto opts = options_for("redis://bob:builder@127.0.0.1:"
                          + std::to_string(server.port()));
  opts.backoff_initial = 1s; // one attempt is enough to look at
  open_subscriber(opts, {"allowed", "forbidden"});
  auto why = wait_for(sub_states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("NOPERM") != std::string::npos, *why);
  CHECK_FALSE(io.call([this] {
    return sub->up();
  }));
}

// -- when Redis goes away -----------------------------------------------------

TEST_CASE_FIXTURE(client_fixture,
                  "a server that is not there: down with the reason, "
                  "commands fail at once, and attempts go on") {
  uint16_t port;
  {
    redis_server gone;
    port = gone.port();
  } // nothing listens there now
  auto opts = options_for("redis://127.0.0.1:" + std::to_string(port));
  opts.backoff_initial = 20ms;
  open_connection(opts);
  auto why = wait_for(conn_states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(
    why->find("cannot connect: Connection refused") != std::string::npos, *why);
  CHECK(why->find(std::to_string(port)) != std::string::npos);
  REQUIRE(wait_for(conn_states, redis::state::down)); // a second attempt

  // Fails soon, but never inside command() itself.
  auto called_inside = io.call([this] {
    auto inside = std::make_shared<bool>(true);
    auto called = std::make_shared<bool>(false);
    conn->command({"PING"}, [inside, called](result r) {
      *called = *inside;
      CHECK(failed_with(r, caf::sec::unavailable_or_would_block));
    });
    *inside = false;
    return called;
  });
  auto r = command({"PING"});
  CHECK(failed_with(r, caf::sec::unavailable_or_would_block));
  CHECK_MESSAGE(error_text(r).find("Connection refused") != std::string::npos,
                error_text(r));
  CHECK_FALSE(*called_inside);
}

TEST_CASE_FIXTURE(client_fixture,
                  "Redis killed: down reports, the command in flight fails, "
                  "and commands while down fail at once") {
  redis_server server;
  open_connection(options_for(server.url()));
  open_subscriber(options_for(server.url()), {"news"});
  REQUIRE(wait_for(conn_states, redis::state::up));
  REQUIRE(wait_for(sub_states, redis::state::up));

  // A command that waits in Redis until the end.
  auto blocked = std::make_shared<inbox<result>>();
  io.call([this, blocked] {
    conn->command({"BLPOP", "never", "0"}, [blocked](result r) {
      blocked->push(std::move(r));
    });
  });
  // Make sure it reached Redis (INFO on a second connection).
  auto watcher = open_extra(options_for(server.url()));
  REQUIRE(wait_for(*watcher.states, redis::state::up));
  bool in_redis = false;
  for (int i = 0; i < 500 && !in_redis; ++i) {
    auto info = command_on(*watcher.conn, {"INFO", "clients"});
    in_redis = info && info->str.find("blocked_clients:1") != std::string::npos;
    if (!in_redis)
      std::this_thread::sleep_for(10ms);
  }
  REQUIRE(in_redis);

  server.kill();
  auto why = wait_for(conn_states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("connection lost") != std::string::npos, *why);
  REQUIRE(wait_for(sub_states, redis::state::down));
  auto lost = blocked->pop();
  REQUIRE(lost);
  CHECK_MESSAGE(failed_with(*lost, caf::sec::socket_disconnected), show(*lost));
  CHECK_EQ(blocked->size(), 0); // exactly once

  auto refused = command({"GET", "x"});
  CHECK(failed_with(refused, caf::sec::unavailable_or_would_block));
  CHECK_FALSE(io.call([this] {
    return conn->up() || sub->up();
  }));
}

TEST_CASE_FIXTURE(client_fixture,
                  "Redis restarted: the connection comes back, and the "
                  "subscriber resubscribes by itself and receives again "
                  "within 5 s") {
  redis_server server;
  open_connection(options_for(server.url()));
  open_subscriber(options_for(server.url()), {"a", "b", "c"});
  REQUIRE(wait_for(conn_states, redis::state::up));
  REQUIRE(wait_for(sub_states, redis::state::up));
  for (int i = 0; i < 3; ++i)
    REQUIRE(subscribed.pop());

  server.kill();
  REQUIRE(wait_for(conn_states, redis::state::down));
  REQUIRE(wait_for(sub_states, redis::state::down));
  // While down, the set may change: only the set changes.
  io.call([this] {
    sub->unsubscribe("b");
    sub->subscribe("d");
  });
  std::this_thread::sleep_for(300ms); // a few failed attempts

  auto restarted = std::chrono::steady_clock::now();
  server.restart();
  REQUIRE(wait_for(sub_states, redis::state::up));
  auto resubscribed = std::chrono::steady_clock::now() - restarted;
  CHECK_MESSAGE(resubscribed < 5s,
                "resubscribed after "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(
                       resubscribed)
                       .count()
                  << " ms");
  // Each channel of the set confirmed once, before the up report.
  std::vector<std::string> confirmed;
  while (subscribed.size() > 0)
    confirmed.push_back(*subscribed.pop());
  std::sort(confirmed.begin(), confirmed.end());
  CHECK_EQ(confirmed, std::vector<std::string>{"a", "c", "d"});

  REQUIRE(wait_for(conn_states, redis::state::up));
  for (auto channel : {"a", "b", "c", "d"})
    REQUIRE(command({"PUBLISH", channel, std::string{"after "} + channel}));
  for (auto channel : {"a", "c", "d"}) {
    auto msg = messages.pop(5s);
    REQUIRE(msg);
    CHECK_EQ(msg->first, channel);
    CHECK_EQ(msg->second, std::string{"after "} + channel);
  }
  CHECK_EQ(messages.size(), 0); // nothing of "b"
}

TEST_CASE_FIXTURE(client_fixture,
                  "a hung Redis: a reply overdue is a loss, and the connect "
                  "timeout bounds each attempt until it answers again") {
  redis_server server;
  auto opts = options_for(server.url());
  opts.reply_timeout = 300ms;
  opts.connect_timeout = 300ms;
  opts.backoff_initial = 20ms;
  opts.backoff_max = 100ms;
  open_connection(opts);
  REQUIRE(wait_for(conn_states, redis::state::up));

  server.pause();
  auto r = command({"GET", "x"});
  CHECK(failed_with(r, caf::sec::socket_disconnected));
  CHECK_MESSAGE(error_text(r).find("no reply within 300ms")
                  != std::string::npos,
                error_text(r));
  auto why = wait_for(conn_states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("no reply within 300ms") != std::string::npos, *why);
  // The kernel still accepts connections for it; nothing answers them.
  why = wait_for(conn_states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("no answer to the handshake within 300ms")
                  != std::string::npos,
                *why);

  server.resume();
  REQUIRE(wait_for(conn_states, redis::state::up));
  auto ping = command({"PING"});
  REQUIRE_MESSAGE(ping, show(ping));
}

TEST_CASE_FIXTURE(client_fixture,
                  "a reply that comes byte by byte is read whole, and a "
                  "server that dies in the middle of one fails the commands "
                  "waiting") {
  fake_redis fake;
  connect_to(fake);

  auto outcomes = std::make_shared<inbox<result>>();
  auto send = [this, outcomes](std::vector<std::string> argv) {
    io.call([this, outcomes, argv] {
      conn->command(argv, [outcomes](result r) {
        outcomes->push(r);
      });
    });
  };
  send({"LRANGE", "k", "0", "-1"});
  REQUIRE(fake.receive("*4\r\n$6\r\nLRANGE\r\n$1\r\nk\r\n$1\r\n0\r\n"
                       "$2\r\n-1\r\n"));
  REQUIRE(fake.send_slowly("*2\r\n$5\r\nhello\r\n:42\r\n"));
  auto whole = outcomes->pop();
  REQUIRE(whole);
  REQUIRE_MESSAGE(*whole, show(*whole));
  CHECK_EQ(to_string(**whole), R"(["hello", (integer) 42])");

  send({"GET", "a"});
  send({"GET", "b"});
  REQUIRE(fake.receive("*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
                       "*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"));
  REQUIRE(fake.send("$100\r\nthe first reply, cut"));
  fake.close_peer();
  for (int i = 0; i < 2; ++i) {
    auto cut = outcomes->pop();
    REQUIRE(cut);
    CHECK_MESSAGE(failed_with(*cut, caf::sec::socket_disconnected), show(*cut));
  }
  auto why = wait_for(conn_states, redis::state::down);
  REQUIRE(why);
  CHECK_MESSAGE(why->find("connection lost: Server closed the connection")
                  != std::string::npos,
                *why);
  CHECK_EQ(outcomes->size(), 0);
}

TEST_CASE_FIXTURE(client_fixture,
                  "a server gone while a command is written raises no "
                  "SIGPIPE: the command fails and the state goes down") {
  // hiredis 0.14 writes with write(2), without MSG_NOSIGNAL, and this test
  // binary does not ignore SIGPIPE: without the adapter's guard, the
  // process dies here.
  fake_redis fake;
  connect_to(fake);
  auto outcome = std::make_shared<inbox<result>>();
  io.call([this, &fake, outcome] {
    // On the I/O thread, so that the client hears of nothing before it
    // writes: the write is the first thing it does afterwards.
    fake.fin_then_reset();
    conn->command({"PING"}, [outcome](result r) {
      outcome->push(r);
    });
  });
  auto r = outcome->pop();
  REQUIRE(r);
  CHECK_MESSAGE(failed_with(*r, caf::sec::socket_disconnected), show(*r));
  auto why = wait_for(conn_states, redis::state::down);
  REQUIRE(why);
  MESSAGE("the client saw: " << *why);
}

// -- stop ---------------------------------------------------------------------

TEST_CASE_FIXTURE(client_fixture,
                  "stop() with commands in flight calls each handler once, "
                  "with an error, before it returns, and nothing after") {
  redis_server server;
  open_connection(options_for(server.url()));
  open_subscriber(options_for(server.url()), {"news"});
  REQUIRE(wait_for(conn_states, redis::state::up));
  REQUIRE(wait_for(sub_states, redis::state::up));

  struct tally {
    int calls = 0;
    int errors = 0;
  };
  auto counts = std::make_shared<tally>();
  auto at_return = io.call([this, counts] {
    for (int i = 0; i < 100; ++i)
      conn->command({"INCR", "n"}, [counts](result r) {
        ++counts->calls;
        if (failed_with(r, caf::sec::socket_disconnected))
          ++counts->errors;
      });
    conn->stop();
    sub->stop();
    CHECK_FALSE(conn->up());
    CHECK_FALSE(sub->up());
    return *counts;
  });
  CHECK_EQ(at_return.calls, 100);
  CHECK_EQ(at_return.errors, 100);

  // Nothing more: no handler, no state report, no message, even with the
  // server still publishing.
  auto states_before = conn_states.size() + sub_states.size();
  auto spare = open_extra(options_for(server.url()));
  REQUIRE(wait_for(*spare.states, redis::state::up));
  auto published = command_on(*spare.conn, {"PUBLISH", "news", "x"});
  REQUIRE(published);
  CHECK_EQ(published->integer, 0); // nobody listens
  std::this_thread::sleep_for(200ms);
  io.call([] {}); // whatever was queued has run
  CHECK_EQ(counts->calls, 100);
  CHECK_EQ(conn_states.size() + sub_states.size(), states_before);
  CHECK_EQ(messages.size(), 0);

  // A command after stop() fails like one while down; start() again works.
  auto after = command({"PING"});
  CHECK(failed_with(after, caf::sec::unavailable_or_would_block));
  CHECK_MESSAGE(error_text(after).find("stopped") != std::string::npos,
                error_text(after));
  io.call([this] {
    conn->start();
    sub->start();
  });
  REQUIRE(wait_for(conn_states, redis::state::up));
  REQUIRE(wait_for(sub_states, redis::state::up));
  REQUIRE(command({"PUBLISH", "news", "again"}));
  auto msg = messages.pop();
  REQUIRE(msg);
  CHECK_EQ(msg->second, "again");
}

TEST_CASE_FIXTURE(client_fixture,
                  "a connection stopped from its own state handler stays "
                  "stopped: from the up report, and from the down report") {
  redis_server server;
  auto reports = std::make_shared<inbox<state_report>>();
  auto stop_on = [this, reports, &server](redis::state when) {
    return io.call([this, reports, &server, when] {
      extras.push_back(std::make_unique<redis::connection>(
        io.context(), options_for(server.url())));
      auto* c = extras.back().get();
      c->on_state([c, reports, when](redis::state s, const std::string& why) {
        reports->push({s, why});
        if (s == when)
          c->stop();
      });
      c->start();
      return c;
    });
  };
  auto* stops_when_up = stop_on(redis::state::up);
  auto first = reports->pop();
  REQUIRE(first);
  CHECK_EQ(first->first, redis::state::up);
  CHECK_FALSE(io.call([stops_when_up] {
    return stops_when_up->up();
  }));

  auto* stops_when_down = stop_on(redis::state::down);
  auto second = reports->pop();
  REQUIRE(second);
  CHECK_EQ(second->first, redis::state::up);
  server.restart(); // a kill, then a server again
  auto third = reports->pop();
  REQUIRE(third);
  CHECK_EQ(third->first, redis::state::down);
  // Neither comes back, though the server is there.
  CHECK_FALSE(reports->pop(300ms));
  CHECK_FALSE(io.call([stops_when_down] {
    return stops_when_down->up();
  }));
}

TEST_CASE_FIXTURE(client_fixture,
                  "a connection destroyed from its own handler, with commands "
                  "in flight, fails the rest and calls nothing after") {
  redis_server server;
  open_connection(options_for(server.url()));
  REQUIRE(wait_for(conn_states, redis::state::up));
  auto outcomes = std::make_shared<inbox<result>>();
  io.call([this, outcomes] {
    for (int i = 0; i < 10; ++i)
      conn->command({"PING"}, [this, outcomes](result r) {
        outcomes->push(r);
        // The first reply destroys the connection, inside hiredis' reply
        // callback: the free is deferred until it returns.
        if (r && conn)
          conn.reset();
      });
  });
  auto first = outcomes->pop();
  REQUIRE(first);
  CHECK(*first);
  for (int i = 1; i < 10; ++i) {
    auto x = outcomes->pop();
    REQUIRE(x);
    CHECK(failed_with(*x, caf::sec::socket_disconnected));
  }
  io.call([] {});
  CHECK_EQ(outcomes->size(), 0);
}
