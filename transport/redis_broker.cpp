// The Redis broker: one I/O thread of its own, and per shard one command
// connection (PUBLISH) and one subscriber (SUBSCRIBE). Every Redis call runs
// on that thread; the hub's threads post to it.
//
// Redis channels: `PREFIX:ch:NAME` for channel NAME, `PREFIX:all` for "*".
// A message is the publishing node's 16-hex-digit id, then:
// - `{...}`: a publication's frame; a node drops its own echo (it delivered
//   locally already);
// - `#EPOCH#{...}`: a history channel's publication, numbered by the
//   stream; every node delivers it from here, its publisher included;
// - `!{...}`: a presence event; the sweep of dead nodes' members sends them
//   under the id `sweeper_id`, which no node has.
//
// Keys, on the channel's shard (see docs/cluster.md):
// - `PREFIX:stream:NAME`, a stream of the frames (entry ID OFFSET-0, fields
//   `t`, ms since the epoch, and `f`, the frame), trimmed to history-size;
//   `PREFIX:meta:NAME`, a hash of `epoch` and `offset`; both expire
//   history-ttl after the last publication;
// - `PREFIX:presence:NAME`, a hash of client id -> identity JSON, and
//   `PREFIX:presence-expiry:NAME`, a sorted set of client id -> expiry (ms
//   since the epoch), refreshed by the member's node.
// Every change of them runs in one Lua script with its PUBLISH.
#include "transport/redis_broker.hpp"

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <caf/sec.hpp>

#include <openssl/evp.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "actors/history.hpp"
#include "livehub/messages.hpp"
#include "protocol/codec.hpp"
#include "transport/redis.hpp"

namespace livehub::transport {

namespace {

/// The length of a node's id (client_policy::node), which starts every
/// message.
constexpr size_t node_id_size = 16;

/// Longest wait for Redis to confirm a SUBSCRIBE. A Redis that hangs with
/// its connections open says nothing; past this the subscribe is answered
/// anyway (its client must not wait forever), and the channel gets what
/// Redis delivers once it answers again.
constexpr auto confirm_limit = std::chrono::seconds{5};

using clock_type = std::chrono::steady_clock;

/// The id under which the presence sweep publishes leave events: no node
/// has it (node ids are hex digits), so every node delivers them.
constexpr std::string_view sweeper_id = "................";

/// `now`, Redis' clock in ms, in the scripts below.
#define LIVEHUB_REDIS_NOW                                                      \
  "local t = redis.call('TIME')\n"                                             \
  "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

/// KEYS: stream, meta. ARGV: frame head, max length, ttl (ms), epoch for a
/// new stream, Redis channel, node id. Returns the offset.
constexpr const char* publish_numbered_script = LIVEHUB_REDIS_NOW
  "local epoch = redis.call('HGET', KEYS[2], 'epoch')\n"
  "if not epoch then\n"
  "  epoch = ARGV[4]\n"
  "  redis.call('DEL', KEYS[1])\n"
  "  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)\n"
  "end\n"
  "local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)\n"
  "local frame = ARGV[1] .. ',\"offset\":' .. offset .. '}'\n"
  "redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], offset .. '-0', 't', now,\n"
  "           'f', frame)\n"
  "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
  "redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
  "redis.call('PUBLISH', ARGV[5], ARGV[6] .. '#' .. epoch .. '#' .. frame)\n"
  "return offset\n";

/// KEYS: stream, meta. ARGV: epoch for a new stream, ttl (ms). Returns
/// {epoch, offset, age (ms), frame, age, frame, ...}, oldest first, without
/// publications older than the ttl.
constexpr const char* load_stream_script = LIVEHUB_REDIS_NOW
  "local epoch = redis.call('HGET', KEYS[2], 'epoch')\n"
  "if not epoch then\n"
  "  epoch = ARGV[1]\n"
  "  redis.call('DEL', KEYS[1])\n"
  "  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)\n"
  "  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
  "end\n"
  "local out = {epoch, redis.call('HGET', KEYS[2], 'offset')}\n"
  "for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do\n"
  "  local age = now - tonumber(e[2][2])\n"
  "  if age < tonumber(ARGV[2]) then\n"
  "    out[#out + 1] = math.max(age, 0)\n"
  "    out[#out + 1] = e[2][4]\n"
  "  end\n"
  "end\n"
  "return out\n";

/// KEYS: presence, presence-expiry. ARGV: client, entry, ttl (ms), Redis
/// channel, message.
constexpr const char* presence_join_script = LIVEHUB_REDIS_NOW
  "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
  "redis.call('ZADD', KEYS[2], now + ARGV[3], ARGV[1])\n"
  "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
  "redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
  "redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
  "return 1\n";

/// KEYS: presence, presence-expiry. ARGV: client, Redis channel, message.
constexpr const char* presence_leave_script
  = "if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "  redis.call('PUBLISH', ARGV[2], ARGV[3])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/// KEYS: presence, presence-expiry. ARGV: ttl (ms), Redis channel, start of
/// a leave message (up to the identity), then client, entry, ... of this
/// node's members. Refreshes them, then removes the expired records, each
/// with a leave message. Returns how many it removed.
constexpr const char* presence_refresh_script = LIVEHUB_REDIS_NOW
  "for i = 4, #ARGV, 2 do\n"
  "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
  "  redis.call('ZADD', KEYS[2], now + ARGV[1], ARGV[i])\n"
  "end\n"
  "if #ARGV >= 4 then\n"
  "  redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
  "  redis.call('PEXPIRE', KEYS[2], ARGV[1])\n"
  "end\n"
  "local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)\n"
  "for _, c in ipairs(gone) do\n"
  "  local e = redis.call('HGET', KEYS[1], c)\n"
  "  redis.call('HDEL', KEYS[1], c)\n"
  "  redis.call('ZREM', KEYS[2], c)\n"
  "  if e then redis.call('PUBLISH', ARGV[2], ARGV[3] .. e .. '}') end\n"
  "end\n"
  "return #gone\n";

/// KEYS: presence, presence-expiry. Returns the identities of the records
/// that have not expired.
constexpr const char* presence_script = LIVEHUB_REDIS_NOW
  "local out = {}\n"
  "local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')\n"
  "for _, c in ipairs(live) do\n"
  "  local e = redis.call('HGET', KEYS[1], c)\n"
  "  if e then out[#out + 1] = e end\n"
  "end\n"
  "return out\n";

#undef LIVEHUB_REDIS_NOW

/// Every script, for SCRIPT LOAD.
constexpr const char* scripts[] = {
  publish_numbered_script, load_stream_script,      presence_join_script,
  presence_leave_script,   presence_refresh_script, presence_script,
};

/// The SHA-1 of `script` in hex: its name for EVALSHA. Called on the
/// broker's thread only.
const std::string& script_sha(const char* script) {
  static std::map<const char*, std::string> cache;
  auto& sha = cache[script];
  if (sha.empty()) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_Digest(script, std::strlen(script), digest, &size, EVP_sha1(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < size; ++i) {
      sha += hex[digest[i] >> 4];
      sha += hex[digest[i] & 0xF];
    }
  }
  return sha;
}

/// A positive decimal number of `x`.
std::string ms(std::chrono::milliseconds x) {
  return std::to_string(std::max<int64_t>(x.count(), 1));
}

class redis_broker : public broker {
 public:
  redis_broker(std::vector<redis::url> urls, redis_broker_options opts)
    : prefix_(std::move(opts.prefix)), history_size_(opts.history_size),
      history_ttl_(opts.history_ttl), presence_ttl_(opts.presence_ttl),
      work_(asio::make_work_guard(io_)), sweep_(io_) {
    for (auto& url : urls) {
      redis::options opts;
      opts.address = url;
      // Reconnect attempts at most ~4 s apart: back within 5 s of Redis.
      opts.backoff_max = std::chrono::seconds{4};
      auto s = std::make_unique<shard>(io_, opts);
      shards_.push_back(std::move(s));
    }
  }

  ~redis_broker() override {
    stop();
  }

  void start(const std::string& node, remote_handler handler) override {
    node_ = node;
    handler_ = std::move(handler);
    for (size_t i = 0; i < shards_.size(); ++i) {
      auto& s = *shards_[i];
      s.commands.on_state([this, i](redis::state st, const std::string&) {
        auto& sh = *shards_[i];
        sh.commands_up = st == redis::state::up;
        if (sh.commands_up)
          load_scripts(sh); // before any command that runs them
        refresh_up();
      });
      s.messages.on_state([this, i](redis::state st, const std::string&) {
        auto& sh = *shards_[i];
        sh.messages_up = st == redis::state::up;
        if (!sh.messages_up)
          sh.release_all(); // nothing to wait for while down
        refresh_up();
      });
      s.messages.on_subscribed([this, i](std::string_view channel) {
        shards_[i]->confirmed(channel);
      });
      s.messages.on_message([this](std::string_view, std::string_view payload) {
        received(payload);
      });
    }
    // The "*" channel, on the first shard only: each node gets every "*"
    // publication once.
    shards_.front()->messages.subscribe(prefix_ + ":all");
    for (auto& s : shards_) {
      s->commands.start();
      s->messages.start();
    }
    arm_sweep();
    thread_ = std::thread{[this] {
      io_.run();
    }};
  }

  void stop() override {
    std::unique_lock<std::mutex> guard{stop_mtx_};
    if (stopped_ || !thread_.joinable()) {
      stopped_ = true;
      return;
    }
    stopped_ = true;
    asio::post(io_, [this] {
      sweep_.cancel();
      for (auto& s : shards_) {
        s->commands.stop();
        s->messages.stop();
        s->release_all();
      }
      work_.reset();
      io_.stop();
    });
    if (thread_.get_id() == std::this_thread::get_id())
      thread_.detach(); // stopped from its own handler: cannot join
    else
      thread_.join();
    handler_ = nullptr;
    up_ = false;
  }

  bool up() const override {
    return up_.load(std::memory_order_relaxed);
  }

  void publish(const std::string& channel, const frame_ptr& frame) override {
    auto name = redis_name(channel);
    auto& s = shard_for(channel);
    asio::post(io_, [&s, name = std::move(name), this, frame] {
      std::string payload;
      payload.reserve(node_.size() + frame->size());
      payload += node_;
      payload += *frame;
      s.commands.command({"PUBLISH", name, std::move(payload)},
                         [](caf::expected<redis::reply>) {
                           // Lost with the connection: the node was up when
                           // it accepted it; Redis offers no more.
                         });
    });
  }

  void subscribe(const std::string& channel,
                 std::function<void()> ready) override {
    auto name = redis_name(channel);
    auto& s = shard_for(channel);
    asio::post(
      io_, [&s, name = std::move(name), ready = std::move(ready)]() mutable {
        if (!s.messages.up()) {
          // Down: nothing is published meanwhile; it subscribes when back.
          s.messages.subscribe(name);
          ready();
          return;
        }
        auto& waiting = s.waiting[name];
        if (waiting.empty() && s.messages.channels().count(name) > 0) {
          ready(); // subscribed already, and confirmed
          return;
        }
        waiting.push_back(
          {clock_type::now() + confirm_limit, std::move(ready)});
        s.messages.subscribe(name);
      });
  }

  void unsubscribe(const std::string& channel) override {
    auto name = redis_name(channel);
    auto& s = shard_for(channel);
    asio::post(io_, [&s, name = std::move(name)] {
      s.messages.unsubscribe(name);
      s.release(name);
    });
  }

  void publish_numbered(const std::string& channel, std::string head) override {
    // Lost with the connection: as publish().
    run(channel, publish_numbered_script, stream_keys(channel),
        {std::move(head), std::to_string(history_size_), ms(history_ttl_),
         new_epoch(), redis_name(channel), node_});
  }

  void load_stream(const std::string& channel, stream_handler done) override {
    run(channel, load_stream_script, stream_keys(channel),
        {new_epoch(), ms(history_ttl_)},
        [done = std::move(done)](caf::expected<redis::reply> r) {
          if (auto err = failed(r))
            return done(std::move(err));
          auto& xs = r->elements;
          if (r->type != redis::reply::kind::array || xs.size() < 2
              || xs.size() % 2 != 0)
            return done(caf::make_error(caf::sec::runtime_error,
                                        "Redis: bad stream reply"));
          stream_state st;
          st.epoch = xs[0].str;
          st.offset = std::strtoull(xs[1].str.c_str(), nullptr, 10);
          for (size_t i = 2; i + 1 < xs.size(); i += 2)
            st.frames.emplace_back(
              std::make_shared<const std::string>(std::move(xs[i + 1].str)),
              std::chrono::milliseconds{xs[i].integer});
          done(std::move(st));
        });
  }

  void touch_streams(std::vector<std::string> channels) override {
    // Lost with the connection: the next sweep renews them.
    asio::post(io_, [this, channels = std::move(channels)] {
      for (auto& channel : channels)
        for (auto& k : stream_keys(channel))
          shard_for(channel).commands.command({"PEXPIRE", k, ms(history_ttl_)},
                                              ignore_reply);
    });
  }

  void presence_join(const std::string& channel, presence_member who,
                     frame_ptr event) override {
    // Lost with the connection: the next refresh records it.
    run(channel, presence_join_script, presence_keys(channel),
        {std::move(who.client), std::move(who.entry), ms(presence_ttl_),
         redis_name(channel), node_ + "!" + *event});
  }

  void presence_leave(const std::string& channel, const std::string& client,
                      frame_ptr event) override {
    // Lost with the connection: the record expires.
    run(channel, presence_leave_script, presence_keys(channel),
        {client, redis_name(channel), node_ + "!" + *event});
  }

  void presence_refresh(const std::string& channel,
                        std::vector<presence_member> members) override {
    std::vector<std::string> args;
    args.reserve(3 + 2 * members.size());
    args.push_back(ms(presence_ttl_));
    args.push_back(redis_name(channel));
    args.push_back(std::string{sweeper_id} + "!" + leave_head(channel));
    for (auto& m : members) {
      args.push_back(std::move(m.client));
      args.push_back(std::move(m.entry));
    }
    // Lost with the connection: the next one refreshes.
    run(channel, presence_refresh_script, presence_keys(channel),
        std::move(args));
  }

  void presence(const std::string& channel, presence_handler done) override {
    run(channel, presence_script, presence_keys(channel), {},
        [done = std::move(done)](caf::expected<redis::reply> r) {
          if (auto err = failed(r))
            return done(std::move(err));
          if (r->type != redis::reply::kind::array)
            return done(caf::make_error(caf::sec::runtime_error,
                                        "Redis: bad presence reply"));
          std::vector<std::string> result;
          for (auto& x : r->elements)
            result.push_back(std::move(x.str));
          done(std::move(result));
        });
  }

 private:
  struct shard {
    shard(asio::io_context& io, const redis::options& opts)
      : commands(io, opts), messages(io, opts) {
      // nop
    }

    /// Redis confirmed a SUBSCRIBE of `channel`: its oldest waiting
    /// subscribe is ready.
    void confirmed(std::string_view channel) {
      auto i = waiting.find(channel);
      if (i == waiting.end() || i->second.empty())
        return;
      auto f = std::move(i->second.front().ready);
      i->second.pop_front();
      if (i->second.empty())
        waiting.erase(i);
      f();
    }

    /// Answers the subscribes that waited past their deadline.
    void expire(clock_type::time_point now) {
      std::vector<std::function<void()>> due;
      for (auto i = waiting.begin(); i != waiting.end();) {
        auto& q = i->second;
        while (!q.empty() && q.front().deadline <= now) {
          due.push_back(std::move(q.front().ready));
          q.pop_front();
        }
        i = q.empty() ? waiting.erase(i) : std::next(i);
      }
      for (auto& f : due)
        f();
    }

    void release(const std::string& channel) {
      auto i = waiting.find(channel);
      if (i == waiting.end())
        return;
      auto fs = std::move(i->second);
      waiting.erase(i);
      for (auto& w : fs)
        w.ready();
    }

    void release_all() {
      auto all = std::move(waiting);
      waiting.clear();
      for (auto& kvp : all)
        for (auto& w : kvp.second)
          w.ready();
    }

    redis::connection commands;
    redis::subscriber messages;
    bool commands_up = false;
    bool messages_up = false;
    struct waiter {
      clock_type::time_point deadline;
      std::function<void()> ready;
    };

    /// Subscribes waiting for Redis' confirmation, per Redis channel, in
    /// the order they were sent.
    std::map<std::string, std::deque<waiter>, std::less<>> waiting;
  };

  std::string redis_name(const std::string& channel) const {
    return channel == "*" ? prefix_ + ":all" : prefix_ + ":ch:" + channel;
  }

  shard& shard_for(const std::string& channel) {
    if (channel == "*")
      return *shards_.front();
    return *shards_[shard_of(channel, shards_.size())];
  }

  /// Once a second: answers subscribes Redis left unconfirmed too long.
  void arm_sweep() {
    sweep_.expires_after(std::chrono::seconds{1});
    sweep_.async_wait([this](const asio::error_code& ec) {
      if (ec)
        return;
      auto now = clock_type::now();
      for (auto& s : shards_)
        s->expire(now);
      arm_sweep();
    });
  }

  void refresh_up() {
    bool all = true;
    for (auto& s : shards_)
      all = all && s->commands_up && s->messages_up;
    up_ = all;
  }

  void received(std::string_view payload) {
    if (payload.size() <= node_id_size || !handler_)
      return; // not ours to read
    bool own = payload.substr(0, node_id_size) == node_;
    auto rest = payload.substr(node_id_size);
    switch (rest.front()) {
      case '#': {
        // Numbered: delivered from here on every node, its own included.
        auto end = rest.find('#', 1);
        if (end == std::string_view::npos)
          return;
        std::string epoch{rest.substr(1, end - 1)};
        handler_(std::make_shared<const std::string>(rest.substr(end + 1)),
                 remote_kind::numbered, epoch);
        return;
      }
      case '!':
        if (!own)
          handler_(std::make_shared<const std::string>(rest.substr(1)),
                   remote_kind::presence, std::string{});
        return;
      default:
        if (!own) // our own echo: delivered locally already
          handler_(std::make_shared<const std::string>(rest),
                   remote_kind::publication, std::string{});
    }
  }

  /// Runs `script` on `s`'s command connection, by its SHA-1 (loaded on
  /// every connection before anything else, see start()): a publication
  /// then costs Redis its arguments only. Should Redis have lost it (SCRIPT
  /// FLUSH, a failover), the script is sent whole.
  static void eval(shard& s, const char* script, std::vector<std::string> keys,
                   std::vector<std::string> args, redis::reply_handler f) {
    std::vector<std::string> argv;
    argv.reserve(3 + keys.size() + args.size());
    argv.emplace_back("EVALSHA");
    argv.push_back(script_sha(script));
    argv.push_back(std::to_string(keys.size()));
    for (auto& x : keys)
      argv.push_back(std::move(x));
    for (auto& x : args)
      argv.push_back(std::move(x));
    auto retry = argv;
    s.commands.command(std::move(argv),
                       [&s, script, retry = std::move(retry), f = std::move(f)](
                         caf::expected<redis::reply> r) mutable {
                         if (r && r->is_error()
                             && r->str.rfind("NOSCRIPT", 0) == 0) {
                           retry[0] = "EVAL";
                           retry[1] = script;
                           s.commands.command(std::move(retry), std::move(f));
                           return;
                         }
                         f(std::move(r));
                       });
  }

  /// Loads every script into Redis' cache (a connection just came up).
  static void load_scripts(shard& s) {
    // Lost with the connection: loaded again when it is back; missing, EVAL
    // replaces EVALSHA.
    for (auto script : scripts)
      s.commands.command({"SCRIPT", "LOAD", script}, ignore_reply);
  }

  /// A leave frame of `channel` up to its identity: encoded as
  /// codec::encode_publication does it.
  static std::string leave_head(const std::string& channel) {
    publication pub{channel, "leave", json_text::trusted("0")};
    auto frame = codec::encode_publication(pub);
    return frame->substr(0, frame->size() - 2); // without `0}`
  }

  std::string key(const char* kind, const std::string& channel) const {
    return prefix_ + ":" + kind + ":" + channel;
  }
  /// A history channel's keys: its stream and its meta hash.
  std::vector<std::string> stream_keys(const std::string& channel) const {
    return {key("stream", channel), key("meta", channel)};
  }

  /// A presence channel's keys: its members and their expiries.
  std::vector<std::string> presence_keys(const std::string& channel) const {
    return {key("presence", channel), key("presence-expiry", channel)};
  }

  /// For replies nobody waits for: what a lost connection loses is said
  /// where each such command is sent.
  static void ignore_reply(caf::expected<redis::reply>) {
    // nop
  }

  /// Runs `script` with `keys` and `args` on the shard of `channel`, from
  /// the broker's thread; `done` gets the reply.
  void run(const std::string& channel, const char* script,
           std::vector<std::string> keys, std::vector<std::string> args,
           redis::reply_handler done = ignore_reply) {
    asio::post(io_,
               [&s = shard_for(channel), script, keys = std::move(keys),
                args = std::move(args), done = std::move(done)]() mutable {
                 eval(s, script, std::move(keys), std::move(args),
                      std::move(done));
               });
  }

  /// An error of a script's reply, or none.
  static caf::error failed(const caf::expected<redis::reply>& r) {
    if (!r)
      return r.error();
    if (r->is_error())
      return caf::make_error(caf::sec::runtime_error, "Redis: " + r->str);
    return caf::none;
  }

  std::string prefix_;
  size_t history_size_;
  std::chrono::milliseconds history_ttl_;
  std::chrono::milliseconds presence_ttl_;
  std::string node_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer sweep_;
  std::vector<std::unique_ptr<shard>> shards_;
  remote_handler handler_;
  std::atomic<bool> up_{false};
  std::thread thread_;
  std::mutex stop_mtx_;
  bool stopped_ = false;
};

} // namespace

size_t shard_of(const std::string& channel, size_t shards) {
  uint64_t h = 14695981039346656037ull;
  for (auto c : channel) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return shards > 0 ? static_cast<size_t>(h % shards) : 0;
}

caf::expected<broker_ptr> make_redis_broker(redis_broker_options opts) {
  if (opts.urls.empty())
    return caf::make_error(caf::sec::invalid_argument,
                           "livehub.redis-urls is empty");
  std::vector<redis::url> urls;
  for (auto& text : opts.urls) {
    auto u = redis::url::parse(text);
    if (!u)
      return std::move(u.error());
    urls.push_back(std::move(*u));
  }
  return broker_ptr{
    std::make_shared<redis_broker>(std::move(urls), std::move(opts))};
}

} // namespace livehub::transport
