// A small Redis client on livehub's own Asio threads, the foundation of the
// Redis broker (PROTOCOL.md, "Several nodes (Redis)"): hiredis 0.14's
// asynchronous API, attached to an asio::io_context by our own adapter
// (redis_asio.hpp).
//
// Two kinds of connection, because RESP2 puts a connection that subscribes
// into a mode where it can do nothing else:
//  - redis::connection sends commands and calls back with their replies;
//  - redis::subscriber keeps a set of channels subscribed and calls back with
//    their messages.
// Both connect on start(), report up once Redis answered (AUTH and SELECT
// done, channels re-subscribed), and reconnect forever, with a capped and
// jittered exponential backoff, until stop().
//
// Threads: a connection belongs to the io_context it was made with. Call its
// member functions, and destroy it, on a thread running that io_context (in
// one of its handlers), or on any one thread while no thread runs it (before
// run(), after it returned). Every callback runs on that context's thread.
// Destroy connections before their io_context.
//
// Callbacks may call anything here, stop() and the destructor included (the
// connection may go from inside its own callback). Set the handlers before
// start(); replacing a handler from inside itself is not allowed. A
// moved-from connection may only be destroyed or assigned to.
//
// Errors of a command (`caf::expected<reply>` holding a caf::error):
//  - `caf::sec::unavailable_or_would_block`: not sent. The connection was
//    down (not connected yet, reconnecting, or stopped). Nothing reached
//    Redis. There is no hidden queue: the caller decides whether to retry.
//  - `caf::sec::socket_disconnected`: sent, but the connection was lost,
//    timed out or stopped before the reply came. The command may or may not
//    have taken effect.
//  - `caf::sec::invalid_argument`: an empty command, or one that would switch
//    the connection into pub/sub or monitor mode (use redis::subscriber).
// The error's context is one string, e.g. "redis: not connected to
// redis://127.0.0.1:6379 (Connection refused)". A Redis error reply (such as
// WRONGTYPE) is not an error here: it is a reply of kind `error`.
//
// Internal to livehub (transport/); hiredis' and Asio's headers stay in
// redis.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace asio {
class io_context;
} // namespace asio

namespace livehub::redis {

// -- where to connect ---------------------------------------------------------

/// A Redis server as `livehub.redis-urls` names it:
/// `redis://[[user]:password@]host[:port][/db]`.
struct url {
  /// A host name or an IP address; IPv6 addresses are written in brackets
  /// in the text (`redis://[::1]:6379`) and stored without them. hiredis
  /// resolves names with a blocking getaddrinfo() on the I/O thread: prefer
  /// addresses, or names the resolver answers at once (/etc/hosts).
  std::string host;
  /// 6379 when the text names none.
  uint16_t port = 6379;
  /// A Redis 6 ACL user; empty for `AUTH password` alone (the default user).
  std::string user;
  /// Empty: no AUTH.
  std::string password;
  /// The database to SELECT; 0 (Redis' default) sends no SELECT.
  int db = 0;

  /// Parses `text`: the scheme `redis://`, an optional `[user]:password@`
  /// (percent-encoding decoded), a host, an optional port (1 to 65535), an
  /// optional `/db` (0 to 2147483647). Anything else is a
  /// `caf::sec::invalid_argument` error that says what is wrong without
  /// repeating the text (it may hold a password).
  static caf::expected<url> parse(std::string_view text);
};

/// `redis://host:port/db` with `***` for a password: safe to log.
std::string to_string(const url& x);

// -- what Redis answers -------------------------------------------------------

/// One Redis reply (RESP2), copied out of hiredis' redisReply.
struct reply {
  enum class kind : uint8_t {
    nil,     ///< a missing value (GET of an absent key)
    integer, ///< `integer`
    string,  ///< a bulk string in `str` (binary-safe)
    status,  ///< a status line such as OK in `str`
    error,   ///< an error line such as "WRONGTYPE ..." in `str`
    array,   ///< `elements` (possibly empty)
  };

  kind type = kind::nil;
  int64_t integer = 0;
  std::string str;
  std::vector<reply> elements;

  bool is_error() const noexcept {
    return type == kind::error;
  }
};

/// The reply as redis-cli would show it, e.g. `"a"`, `(integer) 3`,
/// `(error) ERR ...`, `[1, "two"]`: for logs and test messages.
std::string to_string(const reply& x);

// -- settings and callbacks ---------------------------------------------------

/// Settings of a connection or subscriber.
struct options {
  /// The server.
  redis::url address;
  /// Longest time from the start of a connection attempt until it is up
  /// (TCP connect, AUTH, SELECT, and for a subscriber the re-subscribing);
  /// an attempt that takes longer is abandoned and retried.
  std::chrono::milliseconds connect_timeout = std::chrono::seconds{3};
  /// redis::connection only: longest wait for the oldest reply outstanding.
  /// Replies come in order, so a late one blocks all: past this the
  /// connection counts as lost (its commands fail with socket_disconnected)
  /// and is made anew. Zero waits forever.
  std::chrono::milliseconds reply_timeout = std::chrono::seconds{10};
  /// Delay before the first retry after a failed attempt or a loss; it
  /// doubles with each failed attempt up to `backoff_max`. The delay used
  /// is a random point in the upper half of that (jitter, so that many
  /// nodes do not reconnect in step).
  std::chrono::milliseconds backoff_initial = std::chrono::milliseconds{100};
  std::chrono::milliseconds backoff_max = std::chrono::seconds{5};
};

/// What a connection reports to its state handler.
enum class state {
  /// An attempt failed or an up connection was lost; `why` says what
  /// happened ("Connection refused", "AUTH refused: WRONGPASS ..."). Once per
  /// failed attempt, so repeated while Redis stays away (at most once per
  /// backoff delay).
  down,
  /// The connection is ready: AUTH and SELECT succeeded, and a subscriber is
  /// subscribed to every channel it holds. `why` is empty.
  up,
};

/// "down" or "up".
const char* to_string(state x);

using reply_handler = std::function<void(caf::expected<reply>)>;
using state_handler = std::function<void(state, const std::string& why)>;
/// The views are valid during the call only.
using message_handler
  = std::function<void(std::string_view channel, std::string_view payload)>;
using subscribed_handler = std::function<void(std::string_view channel)>;

namespace detail {
class command_client;
class subscription_client;
} // namespace detail

// -- commands -----------------------------------------------------------------

/// One Redis connection for commands. Replies come in the order the
/// commands were sent; every handler is called exactly once.
class connection {
 public:
  connection(asio::io_context& io, options opts);

  /// Stops.
  ~connection();

  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Called after each connection attempt and each loss (see `state`).
  void on_state(state_handler f);

  /// Connects (from the io_context, not inside this call), and from then on
  /// reconnects after every failure until stop(). Does nothing when started.
  void start();

  /// Disconnects and cancels every timer. Before it returns, it calls the
  /// handler of every command issued before the call that has not had its
  /// reply, with an error; after it returns, no handler and no callback
  /// set before the call is called again. (A command issued after stop(),
  /// or by a handler that stop() calls, fails later, from the io_context,
  /// as one issued while down.) No state handler call: the caller knows.
  /// start() may follow.
  void stop();

  /// True between the `up` report and the next loss or stop().
  bool up() const noexcept;

  /// Sends `argv` (binary-safe: any bytes, NUL included) with
  /// redisAsyncCommandArgv and calls `f` with the reply or an error. While
  /// down, `f` fails soon after, from the io_context, never inside this
  /// call.
  void command(std::vector<std::string> argv, reply_handler f);

 private:
  std::shared_ptr<detail::command_client> impl_;
};

// -- pub/sub ------------------------------------------------------------------

/// One Redis connection in subscribed mode. It holds the set of channels
/// wanted; it subscribes to all of them on every (re)connection by itself,
/// before it reports up. subscribe() and unsubscribe() change the set at any
/// time, and tell Redis at once when connected.
///
/// A subscriber only listens, so it notices a server that closed or reset
/// the connection at once, but not one that hangs with the connection open
/// (stopped, or cut off without a reset): TCP keepalive (as hiredis sets
/// it: idle 15 s, then 3 probes 5 s apart) finds a vanished host after
/// about 30 s. A redis::connection to the same server notices a hang by its
/// reply timeout; stop() and start() make the subscriber connect anew.
class subscriber {
 public:
  subscriber(asio::io_context& io, options opts);

  /// Stops.
  ~subscriber();

  subscriber(subscriber&&) noexcept;
  subscriber& operator=(subscriber&&) noexcept;
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  /// Called after each connection attempt and each loss (see `state`).
  void on_state(state_handler f);

  /// Called with every message published to a channel of the set, in the
  /// order Redis sends them. After unsubscribe(c) returns, no message of c
  /// is passed on, even one already on its way.
  void on_message(message_handler f);

  /// Called when Redis confirmed a subscription of a channel of the set:
  /// from then on, every message published to it arrives (until a loss).
  /// On each reconnection, once per channel, before the `up` report.
  void on_subscribed(subscribed_handler f);

  /// As connection::start().
  void start();

  /// As connection::stop(): no callback after it returns. The set of
  /// channels stays for the next start().
  void stop();

  /// True between the `up` report and the next loss or stop().
  bool up() const noexcept;

  /// Adds `channel` to the set (nothing if it is there).
  void subscribe(std::string channel);

  /// Removes `channel` from the set (nothing if it is not there).
  void unsubscribe(std::string_view channel);

  /// The set of channels wanted.
  const std::set<std::string, std::less<>>& channels() const noexcept;

 private:
  std::shared_ptr<detail::subscription_client> impl_;
};

} // namespace livehub::redis
