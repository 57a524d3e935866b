// The Redis client of redis.hpp: urls, replies, and the two connections on
// hiredis' asynchronous API. How the parts fit:
//
//   connection / subscriber        the handles an application holds
//     └─ command_client / subscription_client   (shared, on the I/O thread)
//          └─ client               connect, handshake, up/down, backoff, stop
//               └─ link            one hiredis context: one attempt, from
//                    │             connect to loss, and its replies
//                    └─ asio_events  the context's socket on the io_context
//
// A hiredis context cannot reconnect, so every attempt makes a new link. The
// client drops a link by close() (its own decision: a timeout, a refused
// handshake, stop()) or hears from the link that hiredis lost it. Either way
// the link is detached first: whatever hiredis still calls on it while it
// frees the context (every pending callback with a NULL reply, onDisconnect)
// reaches nobody, and the handlers of the commands still waiting are failed
// by the client, in order, exactly once.
#include "transport/redis.hpp"

#include <caf/sec.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <deque>
#include <optional>
#include <random>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "transport/redis_asio.hpp"

namespace livehub::redis {

namespace {

using clock_type = std::chrono::steady_clock;

// -- errors -------------------------------------------------------------------

caf::error bad_url(const std::string& why) {
  return caf::make_error(caf::sec::invalid_argument,
                         "invalid redis url: " + why);
}

/// The command did not reach Redis.
caf::error not_sent(const std::string& why) {
  return caf::make_error(caf::sec::unavailable_or_would_block,
                         "redis: not connected: " + why);
}

/// The command was sent; its outcome is unknown.
caf::error no_reply(const std::string& why) {
  return caf::make_error(caf::sec::socket_disconnected,
                         "redis: no reply: " + why);
}

caf::error bad_command(const std::string& why) {
  return caf::make_error(caf::sec::invalid_argument, "redis: " + why);
}

/// "3s", "250ms".
std::string text(std::chrono::milliseconds x) {
  if (x.count() % 1000 == 0)
    return std::to_string(x.count() / 1000) + "s";
  return std::to_string(x.count()) + "ms";
}

bool iequals(std::string_view x, std::string_view y) {
  return x.size() == y.size()
    && std::equal(x.begin(), x.end(), y.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a))
             == std::tolower(static_cast<unsigned char>(b));
         });
}

// -- url ----------------------------------------------------------------------

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/// Decodes %XX escapes; false for a malformed one.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size())
      return false;
    auto hi = hex_value(in[i + 1]);
    auto lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0)
      return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

/// Digits only, at most `max`.
std::optional<long> parse_number(std::string_view x, long max) {
  if (x.empty() || x.size() > 10)
    return std::nullopt;
  long result = 0;
  for (auto c : x) {
    if (c < '0' || c > '9')
      return std::nullopt;
    result = result * 10 + (c - '0');
  }
  if (result > max)
    return std::nullopt;
  return result;
}

bool host_char(char c, bool ipv6) {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '-' || c == '.' || c == '_'
    || (ipv6 && (c == ':' || c == '%'));
}

// -- replies ------------------------------------------------------------------

reply convert(const redisReply& r) {
  reply x;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      x.type = reply::kind::string;
      x.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      x.type = reply::kind::status;
      x.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      x.type = reply::kind::error;
      x.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      x.type = reply::kind::integer;
      x.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      x.type = reply::kind::array;
      x.elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i)
        x.elements.push_back(convert(*r.element[i]));
      break;
    default: // REDIS_REPLY_NIL
      break;
  }
  return x;
}

void quote(const std::string& x, std::string& out) {
  out += '"';
  for (auto c : x) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

void render(const reply& x, std::string& out) {
  switch (x.type) {
    case reply::kind::nil: out += "(nil)"; break;
    case reply::kind::integer:
      out += "(integer) ";
      out += std::to_string(x.integer);
      break;
    case reply::kind::string: quote(x.str, out); break;
    case reply::kind::status: out += x.str; break;
    case reply::kind::error:
      out += "(error) ";
      out += x.str;
      break;
    case reply::kind::array:
      out += '[';
      for (size_t i = 0; i < x.elements.size(); ++i) {
        if (i > 0)
          out += ", ";
        render(x.elements[i], out);
      }
      out += ']';
      break;
  }
}

/// Commands that would switch a connection into a mode where replies no
/// longer answer commands one by one.
bool switches_mode(std::string_view name) {
  for (auto x : {"subscribe", "psubscribe", "ssubscribe", "unsubscribe",
                 "punsubscribe", "sunsubscribe", "monitor"})
    if (iequals(name, x))
      return true;
  return false;
}

} // namespace

caf::expected<url> url::parse(std::string_view text) {
  constexpr std::string_view scheme = "redis://";
  if (text.size() >= 9 && iequals(text.substr(0, 9), "rediss://"))
    return bad_url("rediss:// (TLS) is not supported");
  if (text.size() < scheme.size()
      || !iequals(text.substr(0, scheme.size()), scheme))
    return bad_url("it must start with redis://");
  auto rest = text.substr(scheme.size());
  url result;
  // The last '@' ends the password, which may hold any other character.
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    auto userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos)
      return bad_url("a password is written :password@ or user:password@");
    if (!percent_decode(userinfo.substr(0, colon), result.user)
        || !percent_decode(userinfo.substr(colon + 1), result.password))
      return bad_url("bad percent-encoding in the user or password");
    if (!result.user.empty() && result.password.empty())
      return bad_url("a user needs a password");
  }
  if (rest.find_first_of("?#") != std::string_view::npos)
    return bad_url("query parameters are not supported");
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  auto path = slash == std::string_view::npos ? std::string_view{}
                                              : rest.substr(slash + 1);
  std::string_view host;
  std::optional<std::string_view> port;
  bool ipv6 = !authority.empty() && authority.front() == '[';
  if (ipv6) {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return bad_url("an IPv6 address needs its closing ']'");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return bad_url("only ':' and a port may follow ']'");
      port = after.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    if (colon != authority.rfind(':'))
      return bad_url("an IPv6 address goes in brackets: redis://[::1]:6379");
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos)
      port = authority.substr(colon + 1);
  }
  if (host.empty())
    return bad_url("no host");
  if (!std::all_of(host.begin(), host.end(), [ipv6](char c) {
        return host_char(c, ipv6);
      }))
    return bad_url("the host holds characters a host cannot have");
  result.host = std::string{host};
  if (port) {
    auto n = parse_number(*port, 65535);
    if (!n || *n == 0)
      return bad_url("the port must be a number from 1 to 65535");
    result.port = static_cast<uint16_t>(*n);
  }
  if (!path.empty()) {
    auto n = parse_number(path, INT_MAX);
    if (!n)
      return bad_url("the database (after '/') must be a number from 0 to "
                     + std::to_string(INT_MAX));
    result.db = static_cast<int>(*n);
  }
  return result;
}

std::string to_string(const url& x) {
  std::string result = "redis://";
  if (!x.password.empty())
    result += x.user + ":***@";
  if (x.host.find(':') != std::string::npos)
    result += "[" + x.host + "]";
  else
    result += x.host;
  result += ":" + std::to_string(x.port);
  if (x.db != 0)
    result += "/" + std::to_string(x.db);
  return result;
}

std::string to_string(const reply& x) {
  std::string result;
  render(x, result);
  return result;
}

const char* to_string(state x) {
  return x == state::up ? "up" : "down";
}

namespace detail {

// -- link: one hiredis context ------------------------------------------------

class link;

/// What a link tells the client that made it.
class link_owner {
 public:
  virtual ~link_owner() = default;

  /// hiredis lost the connection, or could not make it; `l` is detached and
  /// its pending handlers are waiting in take_pending().
  virtual void link_lost(link& l, const std::string& what) = 0;

  /// A pub/sub reply: a subscription confirmed, or a message.
  virtual void link_push(link& l, const redisReply& r) = 0;
};

class link : public std::enable_shared_from_this<link> {
 public:
  /// A command sent, waiting for its reply.
  struct pending {
    reply_handler done;
    clock_type::time_point sent;
  };

  /// Starts connecting to `where` (without blocking, except for a name that
  /// getaddrinfo() must resolve). Null, and `error` says why, when hiredis
  /// gave up at once.
  static std::shared_ptr<link> open(asio::io_context& io, const url& where,
                                    link_owner& owner, std::string& error) {
    auto* ac = redisAsyncConnect(where.host.c_str(), where.port);
    if (ac == nullptr) {
      error = "out of memory";
      return nullptr;
    }
    if (ac->err != 0) {
      error = ac->errstr != nullptr ? ac->errstr : "cannot connect";
      redisAsyncFree(ac);
      return nullptr;
    }
    redisEnableKeepAlive(&ac->c); // find a vanished peer, eventually
    auto result = std::make_shared<link>(owner, ac);
    std::error_code ec;
    auto* raw = result.get();
    if (!asio_events::attach(
          ac, io, result,
          [raw] {
            raw->lost();
          },
          ec)) {
      result->owner_ = nullptr;
      result->ac_ = nullptr;
      redisAsyncFree(ac);
      error = "cannot watch the socket: " + ec.message();
      return nullptr;
    }
    ac->data = raw;
    redisAsyncSetConnectCallback(ac, &link::on_connect);
    redisAsyncSetDisconnectCallback(ac, &link::on_disconnect);
    return result;
  }

  /// For make_shared only; use open().
  link(link_owner& owner, redisAsyncContext* ac) : owner_(&owner), ac_(ac) {
    // nop
  }

  link(const link&) = delete;
  link& operator=(const link&) = delete;

  /// True once the TCP connection was made.
  bool connected() const noexcept {
    return connected_;
  }

  /// Queues a command (hiredis writes it when the socket takes it, after
  /// connecting if need be). On success, `done` is moved into the link and
  /// will see the reply, unless the link is detached first: then its owner
  /// fails it. On failure, `done` is left alone.
  bool send(const std::vector<std::string>& argv, reply_handler& done) {
    if (!call(argv, &link::on_reply))
      return false;
    pending_.push_back({std::move(done), clock_type::now()});
    return true;
  }

  /// Queues SUBSCRIBE or UNSUBSCRIBE: their replies come to link_push().
  bool send_pubsub(const std::vector<std::string>& argv) {
    return call(argv, &link::on_push);
  }

  /// When the oldest command waiting for its reply was sent.
  std::optional<clock_type::time_point> oldest_sent() const {
    if (pending_.empty())
      return std::nullopt;
    return pending_.front().sent;
  }

  /// The handlers still waiting, in the order sent.
  std::deque<pending> take_pending() {
    return std::exchange(pending_, {});
  }

  /// Detaches the link from its owner and frees the context: at once, or,
  /// inside a reply callback, when it returns (hiredis defers the free). The
  /// caller fails the handlers returned.
  std::deque<pending> close() {
    auto self = shared_from_this(); // hiredis calls back while it frees
    owner_ = nullptr;
    if (auto* ac = std::exchange(ac_, nullptr))
      redisAsyncFree(ac);
    return take_pending();
  }

 private:
  bool call(const std::vector<std::string>& argv, redisCallbackFn* fn) {
    if (ac_ == nullptr || owner_ == nullptr || argv.empty())
      return false;
    // Most commands have a few arguments: no allocation for them.
    constexpr size_t few = 8;
    const char* ptr_buf[few];
    size_t len_buf[few];
    std::vector<const char*> ptr_vec;
    std::vector<size_t> len_vec;
    auto* ptrs = ptr_buf;
    auto* lens = len_buf;
    if (argv.size() > few) {
      ptr_vec.resize(argv.size());
      len_vec.resize(argv.size());
      ptrs = ptr_vec.data();
      lens = len_vec.data();
    }
    for (size_t i = 0; i < argv.size(); ++i) {
      ptrs[i] = argv[i].data();
      lens[i] = argv[i].size();
    }
    return redisAsyncCommandArgv(ac_, fn, nullptr,
                                 static_cast<int>(argv.size()), ptrs, lens)
      == REDIS_OK;
  }

  /// hiredis is freeing the context on its own (an error or the peer
  /// closing): tell the owner, once, unless detached.
  void lost() {
    auto* owner = std::exchange(owner_, nullptr);
    if (owner == nullptr)
      return;
    std::string what = "connection closed";
    if (ac_ != nullptr && ac_->c.err != 0)
      what = ac_->c.errstr;
    // hiredis frees it: never call redisAsyncFree() on it again.
    ac_ = nullptr;
    owner->link_lost(*this, what);
  }

  static link& of(const redisAsyncContext* ac) {
    return *static_cast<link*>(ac->data);
  }

  static void on_connect(const redisAsyncContext* ac, int status) {
    // On failure hiredis frees the context next: lost() reports it.
    if (status == REDIS_OK)
      of(ac).connected_ = true;
  }

  static void on_disconnect(const redisAsyncContext* ac, int) {
    of(ac).lost();
  }

  // A regular reply, or NULL: the context is being freed.
  static void on_reply(redisAsyncContext* ac, void* r, void*) {
    auto& l = of(ac);
    if (l.owner_ == nullptr)
      return; // detached: the owner has taken the handlers
    if (r == nullptr) {
      l.lost();
      return;
    }
    if (l.pending_.empty())
      return; // cannot happen: hiredis calls back once per command
    auto done = std::move(l.pending_.front().done);
    l.pending_.pop_front();
    done(convert(*static_cast<const redisReply*>(r)));
  }

  // A pub/sub reply, or NULL: the context is being freed.
  static void on_push(redisAsyncContext* ac, void* r, void*) {
    auto& l = of(ac);
    if (l.owner_ == nullptr)
      return;
    if (r == nullptr) {
      l.lost();
      return;
    }
    l.owner_->link_push(l, *static_cast<const redisReply*>(r));
  }

  /// Null once detached.
  link_owner* owner_;
  /// Null once freed, or being freed by hiredis.
  redisAsyncContext* ac_;
  bool connected_ = false;
  std::deque<pending> pending_;
};

// -- client: connect, handshake, report, retry --------------------------------

class client : public link_owner, public std::enable_shared_from_this<client> {
 public:
  client(asio::io_context& io, options opts)
    : io_(io), opts_(std::move(opts)), where_(to_string(opts_.address)),
      connect_timer_(io), retry_timer_(io), rng_(std::random_device{}()) {
    // nop
  }

  ~client() override {
    // The handles stop before they let go; this is a safety net.
    if (link_)
      link_->close();
  }

  void on_state(state_handler f) {
    on_state_ = std::move(f);
  }

  bool up() const noexcept {
    return up_;
  }

  void start() {
    if (running_)
      return;
    running_ = true;
    failures_ = 0;
    last_error_.clear();
    auto gen = ++generation_;
    // Not inside start(): no callback runs inside a call of the caller's.
    asio::post(io_, [w = weak_from_this(), gen] {
      if (auto self = w.lock(); self && self->generation_ == gen)
        self->connect();
    });
  }

  void stop() {
    auto self = shared_from_this();
    running_ = false;
    ++generation_;
    up_ = false;
    connect_timer_.cancel();
    retry_timer_.cancel();
    if (auto l = std::move(link_))
      for (auto& p : l->close())
        doomed_.emplace_back(std::move(p.done), no_reply("stopped"));
    link_gone();
    drain(doomed_.size());
  }

 protected:
  /// The handshake succeeded on link_: the client's own commands may go.
  virtual void handshake_done() = 0;

  /// link_ is gone (lost, dropped, stopped): forget what belonged to it.
  virtual void link_gone() = 0;

  void report_up() {
    up_ = true;
    failures_ = 0;
    last_error_.clear();
    connect_timer_.cancel();
    if (on_state_)
      on_state_(state::up, {});
  }

  /// Abandons link_: its commands fail, the state goes down, a retry
  /// follows.
  void drop(const std::string& why) {
    std::deque<link::pending> pending;
    if (auto l = std::move(link_))
      pending = l->close();
    went_down(std::move(pending), why);
  }

  /// `f` fails soon, from the io_context (never inside the caller's call).
  void fail_soon(reply_handler f, caf::error err) {
    doomed_.emplace_back(std::move(f), std::move(err));
    if (drain_posted_)
      return;
    drain_posted_ = true;
    asio::post(io_, [w = weak_from_this()] {
      if (auto self = w.lock()) {
        self->drain_posted_ = false;
        self->drain(self->doomed_.size());
      }
    });
  }

  /// Why commands cannot go now.
  std::string why_down() const {
    if (!running_)
      return "stopped";
    return last_error_.empty() ? where_ + ": connecting" : last_error_;
  }

  asio::io_context& io_;
  const options opts_;
  /// The server, for messages (no password).
  const std::string where_;
  /// Set while an attempt is under way or up.
  std::shared_ptr<link> link_;
  bool up_ = false;
  /// Changes whenever a pending step (a timer, a posted call, a handshake
  /// reply) may have become stale: each checks the value it saw.
  uint64_t generation_ = 0;

 private:
  void connect() {
    auto gen = ++generation_;
    std::string error;
    auto l = link::open(io_, opts_.address, *this, error);
    if (!l) {
      went_down({}, where_ + ": cannot connect: " + error);
      return;
    }
    link_ = l;
    connect_timer_.expires_after(opts_.connect_timeout);
    connect_timer_.async_wait(
      [w = weak_from_this(), gen](const std::error_code& ec) {
        auto self = w.lock();
        if (!self || ec == asio::error::operation_aborted
            || self->generation_ != gen || self->up_ || !self->link_)
          return;
        auto limit = " within " + text(self->opts_.connect_timeout);
        if (!self->link_->connected())
          self->drop(self->where_ + ": cannot connect" + limit);
        else if (self->handshake_left_ > 0)
          self->drop(self->where_ + ": no answer to the handshake" + limit);
        else // a subscriber waiting for its SUBSCRIBE to be confirmed
          self->drop(self->where_ + ": subscriptions not confirmed" + limit);
      });
    // The handshake, pipelined: hiredis sends it once connected. PING when
    // there is nothing else to ask, so that up means Redis answered.
    auto& a = opts_.address;
    std::vector<std::vector<std::string>> steps;
    if (!a.password.empty()) {
      if (a.user.empty())
        steps.push_back({"AUTH", a.password});
      else
        steps.push_back({"AUTH", a.user, a.password});
    }
    if (a.db != 0)
      steps.push_back({"SELECT", std::to_string(a.db)});
    if (steps.empty())
      steps.push_back({"PING"});
    handshake_left_ = steps.size();
    for (auto& step : steps) {
      reply_handler h = [w = weak_from_this(), gen,
                         name = step[0]](caf::expected<reply> r) {
        if (auto self = w.lock())
          self->handshake_step(gen, r, name);
      };
      if (!l->send(step, h)) {
        drop(where_ + ": cannot send " + step[0]);
        return;
      }
    }
  }

  void handshake_step(uint64_t gen, const caf::expected<reply>& r,
                      const std::string& name) {
    // Another attempt's, or a loss (link_lost reports that).
    if (gen != generation_ || !r)
      return;
    if (r->is_error()) {
      drop(where_ + ": " + name + " refused: " + r->str);
      return;
    }
    if (--handshake_left_ == 0)
      handshake_done();
  }

  void link_lost(link& l, const std::string& what) override {
    if (&l != link_.get())
      return;
    auto lost = std::move(link_);
    went_down(lost->take_pending(),
              where_
                + (lost->connected() ? ": connection lost: "
                                     : ": cannot connect: ")
                + what);
  }

  /// After a failed attempt or a loss: fail the commands left, report
  /// down, and retry after the backoff.
  void went_down(std::deque<link::pending> pending, const std::string& why) {
    auto self = shared_from_this();
    auto gen = ++generation_;
    up_ = false;
    last_error_ = why;
    connect_timer_.cancel();
    for (auto& p : pending)
      doomed_.emplace_back(std::move(p.done), no_reply(why));
    link_gone();
    drain(doomed_.size());
    if (gen != generation_)
      return; // a handler stopped (or restarted) the client
    if (on_state_)
      on_state_(state::down, why);
    if (gen != generation_)
      return;
    schedule_retry();
  }

  void schedule_retry() {
    auto base = std::max(opts_.backoff_initial, std::chrono::milliseconds{1});
    for (unsigned i = 0; i < failures_ && base < opts_.backoff_max; ++i)
      base *= 2;
    base = std::min(base, std::max(opts_.backoff_max, opts_.backoff_initial));
    ++failures_;
    // Equal jitter: somewhere in the upper half of the backoff.
    auto half = base / 2;
    std::uniform_int_distribution<int64_t> jitter{0, (base - half).count()};
    retry_timer_.expires_after(half + std::chrono::milliseconds{jitter(rng_)});
    retry_timer_.async_wait(
      [w = weak_from_this(), gen = generation_](const std::error_code& ec) {
        auto self = w.lock();
        if (self && ec != asio::error::operation_aborted
            && self->generation_ == gen)
          self->connect();
      });
  }

  /// Calls the first `n` doomed handlers (those added meanwhile wait for
  /// their own drain, so a handler that retries at once cannot loop here).
  void drain(size_t n) {
    auto self = shared_from_this();
    while (n-- > 0 && !doomed_.empty()) {
      auto [f, err] = std::move(doomed_.front());
      doomed_.pop_front();
      if (f)
        f(std::move(err));
    }
  }

  bool running_ = false;
  size_t handshake_left_ = 0;
  /// Failed attempts since the last up: the backoff's exponent.
  unsigned failures_ = 0;
  std::string last_error_;
  state_handler on_state_;
  asio::steady_timer connect_timer_;
  asio::steady_timer retry_timer_;
  std::minstd_rand rng_;
  /// Handlers to fail, in order, with their errors.
  std::deque<std::pair<reply_handler, caf::error>> doomed_;
  bool drain_posted_ = false;
};

// -- commands -----------------------------------------------------------------

class command_client final : public client {
 public:
  command_client(asio::io_context& io, options opts)
    : client(io, std::move(opts)), watchdog_(io) {
    // nop
  }

  void command(std::vector<std::string> argv, reply_handler f) {
    if (argv.empty()) {
      fail_soon(std::move(f), bad_command("an empty command"));
      return;
    }
    if (switches_mode(argv.front())) {
      fail_soon(std::move(f),
                bad_command(argv.front() + " needs a redis::subscriber"));
      return;
    }
    if (!up_ || !link_) {
      fail_soon(std::move(f), not_sent(why_down()));
      return;
    }
    if (!link_->send(argv, f)) {
      fail_soon(std::move(f), not_sent(where_ + ": hiredis refused it"));
      return;
    }
    watch();
  }

 private:
  void handshake_done() override {
    report_up();
  }

  void link_push(link&, const redisReply&) override {
    // nop: this connection subscribes to nothing
  }

  void link_gone() override {
    ++watch_;
    watching_ = false;
    watchdog_.cancel();
  }

  // One timer watches the oldest reply outstanding; it is set again only
  // when it fires, not per command.
  void watch() {
    if (watching_ || opts_.reply_timeout.count() <= 0 || !link_)
      return;
    auto oldest = link_->oldest_sent();
    if (!oldest)
      return;
    watching_ = true;
    watchdog_.expires_at(*oldest + opts_.reply_timeout);
    watchdog_.async_wait(
      [w = weak_from_this(), id = watch_](const std::error_code& ec) {
        auto self = std::static_pointer_cast<command_client>(w.lock());
        if (!self || ec == asio::error::operation_aborted || id != self->watch_)
          return;
        self->watching_ = false;
        self->check_replies();
      });
  }

  void check_replies() {
    if (!link_)
      return;
    auto oldest = link_->oldest_sent();
    if (!oldest)
      return;
    if (clock_type::now() - *oldest >= opts_.reply_timeout)
      drop(where_ + ": no reply within " + text(opts_.reply_timeout));
    else
      watch();
  }

  asio::steady_timer watchdog_;
  bool watching_ = false;
  uint64_t watch_ = 0;
};

// -- pub/sub ------------------------------------------------------------------

class subscription_client final : public client {
 public:
  using client::client;

  void on_message(message_handler f) {
    on_message_ = std::move(f);
  }

  void on_subscribed(subscribed_handler f) {
    on_subscribed_ = std::move(f);
  }

  void subscribe(std::string channel) {
    auto [pos, added] = wanted_.insert(std::move(channel));
    if (added && ready_)
      link_->send_pubsub({"SUBSCRIBE", *pos});
  }

  void unsubscribe(std::string_view channel) {
    auto pos = wanted_.find(channel);
    if (pos == wanted_.end())
      return;
    // A SUBSCRIBE of it may still be awaited: Redis confirms it all the
    // same, before this UNSUBSCRIBE, so the up report does not wait for it.
    if (ready_)
      link_->send_pubsub({"UNSUBSCRIBE", *pos});
    wanted_.erase(pos);
  }

  const std::set<std::string, std::less<>>& channels() const noexcept {
    return wanted_;
  }

 private:
  void handshake_done() override {
    ready_ = true;
    if (wanted_.empty()) {
      report_up();
      return;
    }
    awaiting_ = wanted_;
    std::vector<std::string> argv;
    argv.reserve(wanted_.size() + 1);
    argv.emplace_back("SUBSCRIBE");
    argv.insert(argv.end(), wanted_.begin(), wanted_.end());
    if (!link_->send_pubsub(argv))
      drop(where_ + ": cannot send SUBSCRIBE");
  }

  void link_gone() override {
    ready_ = false;
    awaiting_.clear();
  }

  void link_push(link& l, const redisReply& r) override {
    if (&l != link_.get() || r.type != REDIS_REPLY_ARRAY || r.elements < 3)
      return;
    auto* kind = r.element[0];
    auto* name = r.element[1];
    if (kind->type != REDIS_REPLY_STRING || name->type != REDIS_REPLY_STRING)
      return;
    std::string_view what{kind->str, kind->len};
    std::string_view channel{name->str, name->len};
    auto self = shared_from_this();
    if (what == "message") {
      auto* payload = r.element[2];
      if (payload->type == REDIS_REPLY_STRING && on_message_
          && wanted_.find(channel) != wanted_.end())
        on_message_(channel, {payload->str, payload->len});
    } else if (what == "subscribe") {
      if (auto pos = awaiting_.find(channel); pos != awaiting_.end())
        awaiting_.erase(pos);
      auto gen = generation_;
      if (on_subscribed_ && wanted_.find(channel) != wanted_.end())
        on_subscribed_(channel);
      if (gen == generation_ && ready_ && !up_ && awaiting_.empty())
        report_up();
    }
  }

  message_handler on_message_;
  subscribed_handler on_subscribed_;
  /// The channels wanted, kept across connections.
  std::set<std::string, std::less<>> wanted_;
  /// Re-subscribed channels not confirmed yet; up when empty.
  std::set<std::string, std::less<>> awaiting_;
  /// The handshake is done on link_: SUBSCRIBE and UNSUBSCRIBE go out.
  bool ready_ = false;
};

} // namespace detail

// -- the handles --------------------------------------------------------------

connection::connection(asio::io_context& io, options opts)
  : impl_(std::make_shared<detail::command_client>(io, std::move(opts))) {
  // nop
}

connection::~connection() {
  if (impl_)
    impl_->stop();
}

connection::connection(connection&&) noexcept = default;

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (impl_)
      impl_->stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

void connection::on_state(state_handler f) {
  impl_->on_state(std::move(f));
}

void connection::start() {
  impl_->start();
}

void connection::stop() {
  impl_->stop();
}

bool connection::up() const noexcept {
  return impl_ && impl_->up();
}

void connection::command(std::vector<std::string> argv, reply_handler f) {
  impl_->command(std::move(argv), std::move(f));
}

subscriber::subscriber(asio::io_context& io, options opts)
  : impl_(std::make_shared<detail::subscription_client>(io, std::move(opts))) {
  // nop
}

subscriber::~subscriber() {
  if (impl_)
    impl_->stop();
}

subscriber::subscriber(subscriber&&) noexcept = default;

subscriber& subscriber::operator=(subscriber&& other) noexcept {
  if (this != &other) {
    if (impl_)
      impl_->stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

void subscriber::on_state(state_handler f) {
  impl_->on_state(std::move(f));
}

void subscriber::on_message(message_handler f) {
  impl_->on_message(std::move(f));
}

void subscriber::on_subscribed(subscribed_handler f) {
  impl_->on_subscribed(std::move(f));
}

void subscriber::start() {
  impl_->start();
}

void subscriber::stop() {
  impl_->stop();
}

bool subscriber::up() const noexcept {
  return impl_ && impl_->up();
}

void subscriber::subscribe(std::string channel) {
  impl_->subscribe(std::move(channel));
}

void subscriber::unsubscribe(std::string_view channel) {
  impl_->unsubscribe(channel);
}

const std::set<std::string, std::less<>>&
subscriber::channels() const noexcept {
  return impl_->channels();
}

} // namespace livehub::redis
