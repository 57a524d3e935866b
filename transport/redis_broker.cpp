// The Redis broker: one I/O thread of its own, and per shard one command
// connection (PUBLISH) and one subscriber (SUBSCRIBE). Every Redis call runs
// on that thread; the hub's threads post to it.
//
// Redis channels: `PREFIX:ch:NAME` for channel NAME, `PREFIX:all` for "*".
// A message is this node's 16-hex-digit id followed by the frame: a node
// drops its own echo (it delivered locally already).
#include "transport/redis_broker.hpp"

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <caf/sec.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

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

class redis_broker : public broker {
 public:
  redis_broker(std::vector<redis::url> urls, std::string prefix)
    : prefix_(std::move(prefix)), work_(asio::make_work_guard(io_)),
      sweep_(io_) {
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
        shards_[i]->commands_up = st == redis::state::up;
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
    if (payload.size() <= node_id_size
        || payload.substr(0, node_id_size) == node_)
      return; // not ours to read, or our own echo
    if (handler_)
      handler_(
        std::make_shared<const std::string>(payload.substr(node_id_size)));
  }

  std::string prefix_;
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
    std::make_shared<redis_broker>(std::move(urls), std::move(opts.prefix))};
}

} // namespace livehub::transport
