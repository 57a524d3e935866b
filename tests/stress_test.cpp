// Stress tests of the structures on the hot path (fanout, route_table, sink,
// the transport's outboxes), meant for ASan and UBSan: ThreadSanitizer is
// unusable with Debian's CAF. Many threads publish, subscribe, unsubscribe,
// close connections and drain sinks at once, for a bounded time and count;
// then the test checks what every subscriber received:
//
// - each publication is on a channel the subscriber was subscribed to at that
//   moment, within that subscription's window (below);
// - per channel and publisher the sequence numbers strictly increase: no
//   frame is duplicated or reordered;
// - every publication certainly made while a subscription held arrived;
// - once everyone left, the hub's counters are back to zero, its route table
//   is empty, and its totals match what the subscribers saw.
//
// Windows. Each publisher numbers its publications per channel and keeps two
// marks per channel (see ledger): `started`, raised before publication s is
// sent, and `completed`, raised once s certainly reached every subscriber of
// that moment. A subscriber reads `completed` before it sends `subscribe`
// (every frame it gets is newer), `started` when the subscribe's ok arrives
// (every newer publication must arrive...), `completed` before it sends
// `unsubscribe` (...up to this one), and `started` when the unsubscribe's ok
// arrives (no newer one may). Frames and replies of a connection are
// recorded in one ordered stream, so a subscription's frames are those of its
// channel up to its unsubscribe's ok.
//
// Only outcomes are asserted, never durations: the time bounds only keep the
// run short, and every wait is a generous bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <rapidjson/document.h>

#include "actors/client.hpp"
#include "actors/counters.hpp"
#include "actors/fanout.hpp"
#include "actors/hub_internal.hpp"
#include "actors/routes.hpp"
#include "actors/sink.hpp"
#include "livehub/all.hpp"
#include "support/ws_client.hpp"

using namespace std::chrono_literals;
using livehub::frame_ptr;

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int channel_count = 5;

/// Row of "*" in per-channel tables.
constexpr int all_channels = channel_count;

constexpr int publisher_count = 4;

/// How long each test's workers run at most (see budget).
constexpr auto run_time = 2s;

/// How long anything that must happen may take: generous, because a loaded
/// 2-core machine under ASan is slow, and a passing test never waits it out.
constexpr auto wait_time = 20s;

/// Send-queue limit of the subscribers that read: never reached.
constexpr size_t roomy_queue = 1'000'000;

/// Send-queue limit of the subscribers that never read.
constexpr size_t stalled_queue = 48;

std::string channel_name(int c) {
  return "stress-" + std::to_string(c);
}

/// The index of channel `name`, all_channels for "*", -1 if unknown.
int channel_index(std::string_view name) {
  if (name == "*")
    return all_channels;
  for (int c = 0; c < channel_count; ++c)
    if (name == channel_name(c))
      return c;
  return -1;
}

/// The data of publication `seq` of `publisher`.
std::string payload(int publisher, uint64_t seq) {
  return R"({"p":)" + std::to_string(publisher) + R"(,"s":)"
    + std::to_string(seq) + "}";
}

std::string channel_command(const char* type, int c, uint64_t id) {
  return std::string{R"({"type":")"} + type + R"(","channel":")"
    + channel_name(c) + R"(","id":)" + std::to_string(id) + "}";
}

std::string ping_command(uint64_t id) {
  return R"({"type":"ping","id":)" + std::to_string(id) + "}";
}

std::string publish_command(int c, const std::string& data, uint64_t id) {
  return R"({"type":"publish","channel":")" + channel_name(c)
    + R"(","event":"t","data":)" + data + R"(,"id":)" + std::to_string(id)
    + "}";
}

frame_ptr make_frame(std::string text) {
  return std::make_shared<const std::string>(std::move(text));
}

/// When a worker stops: after `max` steps, or at `end` once it took at least
/// `min` (so that every kind of step runs even on a loaded machine).
class budget {
 public:
  budget(size_t min, size_t max, clock_type::time_point end)
    : min_(min), max_(max), end_(end) {
    // nop
  }

  bool next() {
    if (n_ >= max_ || (n_ >= min_ && clock_type::now() >= end_))
      return false;
    ++n_;
    return true;
  }

  size_t steps() const {
    return n_;
  }

 private:
  size_t n_ = 0;
  size_t min_;
  size_t max_;
  clock_type::time_point end_;
};

/// Violations found by worker threads; the test's thread asserts on them.
class failure_log {
 public:
  void add(std::string what) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (items_.size() < 20)
      items_.push_back(std::move(what));
    ++count_;
  }

  size_t count() const {
    std::unique_lock<std::mutex> guard{mtx_};
    return count_;
  }

  std::vector<std::string> items() const {
    std::unique_lock<std::mutex> guard{mtx_};
    return items_;
  }

 private:
  mutable std::mutex mtx_;
  std::vector<std::string> items_;
  size_t count_ = 0;
};

/// Reports what the workers found, on the test's thread.
void report(const failure_log& fails) {
  for (auto& what : fails.items())
    FAIL_CHECK(what);
  CHECK(fails.count() == 0);
}

// -- what was published ---------------------------------------------------

/// One mark per publisher.
using marks_row = std::array<uint64_t, publisher_count>;

/// Each publisher's marks per channel (see the windows above).
class ledger {
 public:
  ledger() {
    for (auto& row : started_)
      for (auto& x : row)
        x.store(0);
    for (auto& row : completed_)
      for (auto& x : row)
        x.store(0);
  }

  /// Publication `seq` of `p` on `c` is about to be sent.
  void start(int p, int c, uint64_t seq) {
    started_[p][c].store(seq);
  }

  /// Publication `seq` of `p` on `c` reached every subscriber of `c`.
  void complete(int p, int c, uint64_t seq) {
    completed_[p][c].store(seq);
  }

  marks_row started(int c) const {
    return row(started_, c);
  }

  marks_row completed(int c) const {
    return row(completed_, c);
  }

 private:
  using table = std::array<std::array<std::atomic<uint64_t>, channel_count>,
                           publisher_count>;

  static marks_row row(const table& t, int c) {
    marks_row result;
    for (int p = 0; p < publisher_count; ++p)
      result[p] = t[p][c].load();
    return result;
  }

  table started_;
  table completed_;
};

// -- what a subscriber received -------------------------------------------

/// The id and type of a reply frame (`{"type":"ok","id":7}`), if it is one.
std::optional<std::pair<uint64_t, std::string>>
parse_reply(const std::string& text) {
  constexpr std::string_view prefix = R"({"type")";
  if (text.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject())
    return std::nullopt;
  auto type = doc.FindMember("type");
  auto id = doc.FindMember("id");
  if (type == doc.MemberEnd() || !type->value.IsString()
      || id == doc.MemberEnd() || !id->value.IsUint64())
    return std::nullopt;
  return std::make_pair(id->value.GetUint64(),
                        std::string{type->value.GetString()});
}

/// Everything one subscriber received, in order: publications and replies.
/// Thread-safe.
class recording {
 public:
  void add(frame_ptr frame) {
    auto reply = parse_reply(*frame);
    std::unique_lock<std::mutex> guard{mtx_};
    frames_.push_back(std::move(frame));
    if (reply) {
      replies_.emplace(reply->first, std::move(reply->second));
      cv_.notify_all();
    }
  }

  /// The connection closed: nothing more arrives.
  void end() {
    std::unique_lock<std::mutex> guard{mtx_};
    ended_ = true;
    cv_.notify_all();
  }

  bool ended() const {
    std::unique_lock<std::mutex> guard{mtx_};
    return ended_;
  }

  /// The type of the reply to `id` ("ok", "pong", "error"); empty if none.
  std::string reply(uint64_t id) const {
    std::unique_lock<std::mutex> guard{mtx_};
    auto i = replies_.find(id);
    return i != replies_.end() ? i->second : std::string{};
  }

  /// Waits for the reply to `id`: its type, or "ended" once the connection
  /// closed without it, or "timeout".
  std::string wait_reply(uint64_t id) {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait_for(guard, wait_time, [&] {
      return ended_ || replies_.count(id) > 0;
    });
    auto i = replies_.find(id);
    if (i != replies_.end())
      return i->second;
    return ended_ ? "ended" : "timeout";
  }

  /// Waits until the connection closed or `deadline`.
  void wait_ended(clock_type::time_point deadline) {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait_until(guard, deadline, [&] {
      return ended_;
    });
  }

  std::vector<frame_ptr> frames() const {
    std::unique_lock<std::mutex> guard{mtx_};
    return frames_;
  }

 private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<frame_ptr> frames_;
  std::unordered_map<uint64_t, std::string> replies_;
  bool ended_ = false;
};

/// One subscription to one channel, from its subscribe to its unsubscribe's
/// ok, with the marks of its window (per publisher).
struct subscription {
  int channel = 0;
  /// `completed` before the subscribe was sent: every frame is newer.
  marks_row after{};
  /// `started` when the subscribe's ok arrived: every newer publication...
  marks_row sure_from{};
  /// ...up to `completed` before the unsubscribe was sent must arrive.
  marks_row sure_to{};
  /// `started` when the unsubscribe's ok arrived: no frame is newer.
  marks_row until{};
  /// The unsubscribe's id; 0: none sent.
  uint64_t unsubscribe_id = 0;
  /// The subscribe's ok arrived.
  bool confirmed = false;
  /// The unsubscribe's ok arrived.
  bool ended = false;
};

/// What the check of one subscriber needs.
struct subscriber_log {
  std::string name;
  std::shared_ptr<recording> rec = std::make_shared<recording>();
  std::vector<subscription> subscriptions;
  /// Channel -> its subscription in progress (its driver's bookkeeping).
  std::map<int, size_t> current;
};

/// Sends a subscribe from `conn` (see sim_connection, actor_connection and
/// ws_connection), keeping its window in `conn.log`; false when the
/// connection ended first.
template<class Connection>
bool subscribe(Connection& conn, const ledger& marks, failure_log& fails,
               int c) {
  auto& log = conn.log;
  auto index = log.subscriptions.size();
  subscription sub;
  sub.channel = c;
  sub.after = marks.completed(c);
  log.subscriptions.push_back(sub);
  log.current[c] = index;
  auto id = conn.next_id();
  conn.command("subscribe", c, id);
  auto reply = conn.wait_reply(id);
  if (reply == "ok") {
    log.subscriptions[index].sure_from = marks.started(c);
    log.subscriptions[index].confirmed = true;
    return true;
  }
  if (reply != "ended")
    fails.add(log.name + ": subscribe to " + channel_name(c) + ": " + reply);
  return false;
}

/// Sends an unsubscribe from `conn` for its subscription to `c`; false when
/// the connection ended first.
template<class Connection>
bool unsubscribe(Connection& conn, const ledger& marks, failure_log& fails,
                 int c) {
  auto& log = conn.log;
  auto index = log.current.at(c);
  auto id = conn.next_id();
  log.subscriptions[index].sure_to = marks.completed(c);
  log.subscriptions[index].unsubscribe_id = id;
  conn.command("unsubscribe", c, id);
  auto reply = conn.wait_reply(id);
  if (reply == "ok") {
    log.subscriptions[index].until = marks.started(c);
    log.subscriptions[index].ended = true;
    log.current.erase(c);
    return true;
  }
  if (reply != "ended")
    fails.add(log.name + ": unsubscribe from " + channel_name(c) + ": "
              + reply);
  return false;
}

/// Pings from `conn`; false when the connection ended first.
template<class Connection>
bool ping(Connection& conn, failure_log& fails) {
  auto id = conn.next_id();
  conn.send(ping_command(id));
  auto reply = conn.wait_reply(id);
  if (reply != "pong" && reply != "ended")
    fails.add(conn.log.name + ": ping: " + reply);
  return reply == "pong";
}

/// Channels `conn` is (or is not) subscribed to.
template<class Connection>
std::vector<int> channels_of(const Connection& conn, bool subscribed) {
  std::vector<int> result;
  for (int c = 0; c < channel_count; ++c)
    if ((conn.log.current.count(c) > 0) == subscribed)
      result.push_back(c);
  return result;
}

/// A random element of `xs`, or -1.
int pick(std::mt19937& rng, const std::vector<int>& xs) {
  if (xs.empty())
    return -1;
  return xs[rng() % xs.size()];
}

/// Totals of the checks, for the coverage message and the counters.
struct check_totals {
  uint64_t subscribers = 0;
  uint64_t publication_frames = 0;
  uint64_t subscriptions = 0;
  /// Subscriptions whose window was checked for completeness.
  uint64_t complete_windows = 0;
  /// Publications those windows required.
  uint64_t required = 0;
};

/// The `p` and `s` of a publication's data, if it has them.
std::optional<std::pair<int, uint64_t>>
publisher_and_seq(const rapidjson::Value& data) {
  if (!data.IsObject())
    return std::nullopt;
  auto p = data.FindMember("p");
  auto s = data.FindMember("s");
  if (p == data.MemberEnd() || !p->value.IsInt() || s == data.MemberEnd()
      || !s->value.IsUint64())
    return std::nullopt;
  auto publisher = p->value.GetInt();
  if (publisher < 0 || publisher >= publisher_count)
    return std::nullopt;
  return std::make_pair(publisher, s->value.GetUint64());
}

/// Checks the stream of one subscriber against its subscriptions (see the
/// windows above).
void check_stream(const subscriber_log& log, failure_log& fails,
                  check_totals& totals) {
  auto frames = log.rec->frames();
  auto& subs = log.subscriptions;
  std::array<std::vector<size_t>, channel_count> by_channel;
  std::unordered_map<uint64_t, int> unsubscribe_ids;
  for (size_t i = 0; i < subs.size(); ++i) {
    by_channel[subs[i].channel].push_back(i);
    if (subs[i].unsubscribe_id != 0)
      unsubscribe_ids.emplace(subs[i].unsubscribe_id, subs[i].channel);
  }
  // Per channel, the subscription its frames belong to now.
  std::array<size_t, channel_count> pos{};
  std::array<std::array<uint64_t, publisher_count>, channel_count + 1> last{};
  std::vector<std::array<std::vector<uint64_t>, publisher_count>> received(
    subs.size());
  auto fail = [&](size_t k, const std::string& what) {
    fails.add(log.name + ", frame " + std::to_string(k) + ": " + what);
  };
  for (size_t k = 0; k < frames.size(); ++k) {
    auto& text = *frames[k];
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    if (doc.HasParseError() || !doc.IsObject()) {
      fail(k, "not a JSON object: " + text);
      continue;
    }
    auto channel = doc.FindMember("channel");
    if (channel != doc.MemberEnd()) {
      ++totals.publication_frames;
      auto data = doc.FindMember("data");
      auto c = channel->value.IsString()
        ? channel_index(channel->value.GetString())
        : -1;
      auto ps = data != doc.MemberEnd() ? publisher_and_seq(data->value)
                                        : std::nullopt;
      if (c < 0 || !ps) {
        fail(k, "not a publication of this test: " + text);
        continue;
      }
      auto [p, seq] = *ps;
      if (seq <= last[c][p])
        fail(k,
             "duplicated or reordered: " + text + " after seq "
               + std::to_string(last[c][p]));
      last[c][p] = std::max(last[c][p], seq);
      if (c == all_channels)
        continue; // "*" reaches every connection
      if (pos[c] >= by_channel[c].size()) {
        fail(k, "not subscribed to its channel: " + text);
        continue;
      }
      auto index = by_channel[c][pos[c]];
      auto& sub = subs[index];
      if (seq <= sub.after[p])
        fail(k,
             "published before the subscribe: " + text
               + ", publisher had "
                 "completed "
               + std::to_string(sub.after[p]));
      if (sub.ended && seq > sub.until[p])
        fail(k,
             "published after the unsubscribe's ok: " + text
               + ", publisher had started only "
               + std::to_string(sub.until[p]));
      received[index][p].push_back(seq);
      continue;
    }
    auto reply = parse_reply(text);
    if (!reply) {
      fail(k, "neither a publication nor a reply: " + text);
      continue;
    }
    if (reply->second == "error") {
      fail(k, "error reply: " + text);
      continue;
    }
    auto i = unsubscribe_ids.find(reply->first);
    if (reply->second != "ok" || i == unsubscribe_ids.end())
      continue;
    // An unsubscribe's ok: later frames of its channel belong to the next
    // subscription.
    auto c = i->second;
    if (pos[c] < by_channel[c].size()
        && subs[by_channel[c][pos[c]]].unsubscribe_id == reply->first)
      ++pos[c];
    else
      fail(k, "an unsubscribe's ok out of place: " + text);
  }
  // Every publication certainly made while a subscription held arrived.
  for (size_t index = 0; index < subs.size(); ++index) {
    auto& sub = subs[index];
    ++totals.subscriptions;
    if (!sub.confirmed || !sub.ended)
      continue;
    ++totals.complete_windows;
    for (int p = 0; p < publisher_count; ++p) {
      auto from = sub.sure_from[p];
      auto to = sub.sure_to[p];
      if (to <= from)
        continue;
      totals.required += to - from;
      auto& got = received[index][p];
      auto first = std::upper_bound(got.begin(), got.end(), from);
      auto past = std::upper_bound(got.begin(), got.end(), to);
      auto found = static_cast<uint64_t>(past - first);
      if (found != to - from)
        fails.add(log.name + ": " + std::to_string(to - from - found) + " of "
                  + std::to_string(to - from) + " publications "
                  + std::to_string(from + 1) + ".." + std::to_string(to)
                  + " of publisher " + std::to_string(p) + " on "
                  + channel_name(sub.channel)
                  + " missing between subscribe and unsubscribe");
    }
  }
  ++totals.subscribers;
}

// -- layer 1: the structures and actors, with simulated connections ------

/// A sink that records every frame in its recording, with writes that the
/// writer thread completes (as the transport would; a stalled sink is never
/// drained). It checks the contract of sink.hpp: no do_* call after detach,
/// no send, ping or second close after close, one detach.
class recording_sink : public livehub::sink {
 public:
  recording_sink(std::string name, size_t max_frames, bool drained,
                 failure_log& fails)
    : sink(max_frames, 64 * 1024 * 1024), name_(std::move(name)),
      drained_(drained), fails_(fails) {
    // nop
  }

  std::shared_ptr<recording> rec;

  /// The writer thread: every byte handed so far is written.
  void drain() {
    if (drained_)
      written_.store(handed_.load());
  }

  /// May the writer thread close it at random (a subscriber that reads)?
  bool closable() const {
    return closable_;
  }

  void set_closable(bool x) {
    closable_ = x;
  }

  std::optional<uint16_t> close_code() const {
    std::unique_lock<std::mutex> guard{mtx_};
    return close_code_;
  }

 protected:
  bool do_send(const frame_ptr& frame, time_point) override {
    expect("do_send", true);
    handed_.fetch_add(frame->size());
    rec->add(frame);
    return true;
  }

  uint64_t do_written() override {
    expect("do_written", false);
    return written_.load();
  }

  void do_close(uint16_t code, const std::string&) override {
    expect("do_close", true);
    {
      std::unique_lock<std::mutex> guard{mtx_};
      close_code_ = code;
    }
    rec->end();
  }

  void do_ping() override {
    expect("do_ping", true);
  }

  void do_consumed() override {
    expect("do_consumed", false);
  }

  void do_detach() override {
    {
      std::unique_lock<std::mutex> guard{mtx_};
      if (detached_)
        fails_.add(name_ + ": detached twice");
      detached_ = true;
    }
    rec->end();
  }

 private:
  /// Records a violation if `what` runs after detach (or after close, when
  /// `open` says it must not).
  void expect(const char* what, bool open) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (detached_ || (open && close_code_))
      fails_.add(name_ + ": " + what + " after "
                 + (detached_ ? "detach" : "close"));
  }

  std::string name_;
  bool drained_;
  std::atomic<bool> closable_{false};
  failure_log& fails_;
  std::atomic<uint64_t> handed_{0};
  std::atomic<uint64_t> written_{0};
  mutable std::mutex mtx_;
  std::optional<uint16_t> close_code_;
  bool detached_ = false;
};

caf::actor_system_config& with_workers(caf::actor_system_config& cfg) {
  cfg.set("scheduler.max-threads", size_t{2});
  return cfg;
}

/// A hub in an actor system with 2 workers, and everything its simulated
/// connections and their checks share.
struct sim_hub {
  sim_hub() : sys(with_workers(sys_cfg)) {
    hub = livehub::spawn_hub(sys, cfg);
    caf::scoped_actor self{sys};
    caf::error err;
    self->request(livehub::internal(hub), wait_time, caf::get_atom::value)
      .receive(
        [&](livehub::hub_shared& x) {
          shared = std::move(x);
        },
        [&](caf::error& x) {
          err = std::move(x);
        });
    REQUIRE_MESSAGE(shared.routes, "no hub_shared: " << sys.render(err));
  }

  ~sim_hub() {
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  }

  livehub::hub_stats stats() {
    caf::scoped_actor self{sys};
    livehub::hub_stats result;
    self->request(hub, wait_time, livehub::stats_atom::value)
      .receive(
        [&](livehub::hub_stats& x) {
          result = x;
        },
        [&](caf::error& err) {
          fails.add("stats: " + sys.render(err));
        });
    return result;
  }

  void add_sink(const std::shared_ptr<recording_sink>& out) {
    std::unique_lock<std::mutex> guard{mtx};
    live.push_back(out);
    all.push_back(out);
  }

  void remove_sink(const std::shared_ptr<recording_sink>& out) {
    std::unique_lock<std::mutex> guard{mtx};
    live.erase(std::remove(live.begin(), live.end(), out), live.end());
  }

  std::vector<std::shared_ptr<recording_sink>> live_sinks() {
    std::unique_lock<std::mutex> guard{mtx};
    return live;
  }

  void keep(subscriber_log&& log) {
    std::unique_lock<std::mutex> guard{mtx};
    logs.push_back(std::move(log));
  }

  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  livehub::hub_config cfg;
  livehub::hub_actor hub;
  livehub::hub_shared shared;
  failure_log fails;
  ledger marks;
  std::mutex mtx;
  /// Sinks of open connections (the writer thread's work).
  std::vector<std::shared_ptr<recording_sink>> live;
  std::vector<std::shared_ptr<recording_sink>> all;
  /// Logs of the subscribers that are done.
  std::vector<subscriber_log> logs;
};

/// A connection as the transport opens and ends one (server::impl's on_open
/// and on_end), with a recording sink in place of a socket.
class sim_connection {
 public:
  sim_connection(sim_hub& h, std::string name, bool trusted = false,
                 size_t max_frames = roomy_queue, bool drained = true)
    : h_(h) {
    log.name = std::move(name);
    out = std::make_shared<recording_sink>(log.name, max_frames, drained,
                                           h.fails);
    out->rec = log.rec;
    h.add_sink(out);
    client_ = h.sys.spawn(livehub::client, livehub::internal(h.hub),
                          std::shared_ptr<livehub::sink>{out}, h.shared,
                          livehub::client_rights{trusted, {}});
    livehub::connection_ref ref{
      caf::actor_cast<caf::strong_actor_ptr>(client_), out, {}};
    caf::anon_send(livehub::internal(h.hub), caf::join_atom::value,
                   std::move(ref));
  }

  sim_connection(const sim_connection&) = delete;
  sim_connection& operator=(const sim_connection&) = delete;

  ~sim_connection() {
    end();
    h_.keep(std::move(log));
  }

  uint64_t next_id() {
    return ++ids_;
  }

  /// A text message from the peer.
  void send(std::string text) {
    caf::anon_send(client_, livehub::text_atom::value, std::move(text));
  }

  void command(const char* type, int c, uint64_t id) {
    send(channel_command(type, c, id));
  }

  std::string wait_reply(uint64_t id) {
    return log.rec->wait_reply(id);
  }

  /// True once the sink was closed (by the writer thread, or as a slow
  /// consumer) or detached.
  bool ended() const {
    return log.rec->ended();
  }

  /// The connection ends: the sink is detached, the client actor told.
  void end() {
    if (std::exchange(ended_, true))
      return;
    out->detach();
    caf::anon_send(client_, livehub::closed_atom::value);
    h_.remove_sink(out);
  }

  subscriber_log log;
  std::shared_ptr<recording_sink> out;

 private:
  sim_hub& h_;
  livehub::client_actor client_;
  uint64_t ids_ = 0;
  bool ended_ = false;
};

/// An application actor that subscribes through the hub's public API when
/// its driver says so, recording publications and replies as a connection's
/// frames. Responses are handled with `then`, in mailbox order: an
/// unsubscribe's ok comes after every publication the channel let through.
caf::behavior app_subscriber(caf::event_based_actor* self,
                             livehub::hub_actor hub,
                             std::shared_ptr<recording> rec) {
  auto reply = [rec](const char* type, uint64_t id) {
    rec->add(make_frame(std::string{R"({"type":")"} + type + R"(","id":)"
                        + std::to_string(id) + "}"));
  };
  return {
    [rec](const livehub::publication& pub) {
      rec->add(make_frame(R"({"channel":")" + pub.channel + R"(","type":")"
                          + pub.type + R"(","data":)" + pub.data.str() + "}"));
    },
    [self, hub, reply](caf::subscribe_atom, std::string& channel, uint64_t id) {
      self
        ->request(hub, caf::infinite, caf::subscribe_atom::value,
                  std::move(channel),
                  caf::actor_cast<livehub::subscriber_actor>(self))
        .then(
          [reply, id](caf::ok_atom) {
            reply("ok", id);
          },
          [reply, id](caf::error&) {
            reply("error", id);
          });
    },
    [self, hub, reply](caf::unsubscribe_atom, std::string& channel,
                       uint64_t id) {
      self
        ->request(hub, caf::infinite, caf::unsubscribe_atom::value,
                  std::move(channel), self->address())
        .then(
          [reply, id](caf::ok_atom) {
            reply("ok", id);
          },
          [reply, id](caf::error&) {
            reply("error", id);
          });
    },
  };
}

/// Drives an app_subscriber with the commands of a connection.
class actor_connection {
 public:
  actor_connection(sim_hub& h, std::string name) : h_(h) {
    log.name = std::move(name);
    actor_ = h.sys.spawn(app_subscriber, h.hub, log.rec);
  }

  ~actor_connection() {
    caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
    h_.keep(std::move(log));
  }

  uint64_t next_id() {
    return ++ids_;
  }

  /// A "subscribe" or "unsubscribe" of channel `c`.
  void command(const char* type, int c, uint64_t id) {
    if (std::string_view{type} == "subscribe")
      caf::anon_send(actor_, caf::subscribe_atom::value, channel_name(c), id);
    else
      caf::anon_send(actor_, caf::unsubscribe_atom::value, channel_name(c), id);
  }

  std::string wait_reply(uint64_t id) {
    return log.rec->wait_reply(id);
  }

  subscriber_log log;

 private:
  sim_hub& h_;
  caf::actor actor_;
  uint64_t ids_ = 0;
};

/// A subscriber that reads: subscribes, unsubscribes, pings and closes at
/// random, and reconnects after every close (its own or the writer's).
void run_sim_subscriber(sim_hub& h, int k, clock_type::time_point end) {
  std::mt19937 rng(static_cast<unsigned>(k + 1));
  budget steps{40, 4000, end};
  std::unique_ptr<sim_connection> conn;
  int generation = 0;
  while (steps.next()) {
    if (!conn || conn->ended()) {
      conn.reset();
      conn = std::make_unique<sim_connection>(
        h,
        "subscriber " + std::to_string(k) + "." + std::to_string(++generation));
      conn->out->set_closable(true);
    }
    auto roll = rng() % 100;
    if (roll < 40) {
      auto c = pick(rng, channels_of(*conn, false));
      if (c >= 0)
        subscribe(*conn, h.marks, h.fails, c);
    } else if (roll < 75) {
      auto c = pick(rng, channels_of(*conn, true));
      if (c >= 0)
        unsubscribe(*conn, h.marks, h.fails, c);
    } else if (roll < 85) {
      ping(*conn, h.fails);
    } else if (roll < 92) {
      conn.reset(); // ends abruptly, subscribed or not
    } else {
      std::this_thread::sleep_for(1ms);
    }
  }
  // Half leave cleanly (each window then checked to its end), half abruptly.
  if (conn && k % 2 == 0) {
    conn->out->set_closable(false);
    for (auto c : channels_of(*conn, true))
      if (!unsubscribe(*conn, h.marks, h.fails, c))
        break;
  }
}

/// A subscriber that never reads: its queue fills up and it is closed as a
/// slow consumer, then it comes back.
void run_stalled_subscriber(sim_hub& h, clock_type::time_point end) {
  budget steps{3, 1000, end};
  while (steps.next()) {
    sim_connection conn{h, "stalled " + std::to_string(steps.steps()), false,
                        stalled_queue, false};
    for (int c = 0; c < channel_count; ++c)
      if (!subscribe(conn, h.marks, h.fails, c))
        break;
    conn.log.rec->wait_ended(end);
  }
}

/// An application actor subscribing and unsubscribing; unsubscribes from
/// everything at the end.
void run_actor_subscriber(sim_hub& h, int k, clock_type::time_point end) {
  std::mt19937 rng(static_cast<unsigned>(100 + k));
  budget steps{40, 4000, end};
  actor_connection conn{h, "actor " + std::to_string(k)};
  while (steps.next()) {
    auto roll = rng() % 100;
    if (roll < 45) {
      auto c = pick(rng, channels_of(conn, false));
      if (c >= 0)
        subscribe(conn, h.marks, h.fails, c);
    } else if (roll < 90) {
      auto c = pick(rng, channels_of(conn, true));
      if (c >= 0)
        unsubscribe(conn, h.marks, h.fails, c);
    } else {
      std::this_thread::sleep_for(1ms);
    }
  }
  for (auto c : channels_of(conn, true))
    unsubscribe(conn, h.marks, h.fails, c);
}

/// Publishes through the hub with livehub::publish (publisher `p`), now and
/// then to "*"; waits for the hub every 64 publications, so that its mailbox
/// stays short. Returns the number of publications.
template<class Hub>
uint64_t run_app_publisher(Hub& h, int p, clock_type::time_point end) {
  std::mt19937 rng(static_cast<unsigned>(200 + p));
  budget steps{300, 20000, end};
  std::array<uint64_t, channel_count> seq{};
  uint64_t all_seq = 0;
  caf::scoped_actor self{h.sys};
  while (steps.next()) {
    if (p == 0 && steps.steps() % 50 == 0) {
      if (auto err = livehub::publish(h.hub, "*", "t", payload(p, ++all_seq)))
        h.fails.add("publish to *: " + h.sys.render(err));
    } else {
      auto c = static_cast<int>(rng() % channel_count);
      auto s = ++seq[c];
      h.marks.start(p, c, s);
      if (auto err = livehub::publish(h.hub, channel_name(c), "t",
                                      payload(p, s)))
        h.fails.add("publish: " + h.sys.render(err));
      // Once sent to the hub, the hub delivers it before anything sent
      // later: it certainly reaches every subscriber of this moment.
      h.marks.complete(p, c, s);
    }
    if (steps.steps() % 64 == 0)
      self->request(h.hub, wait_time, livehub::stats_atom::value)
        .receive([](livehub::hub_stats&) {},
                 [&](caf::error& err) {
                   h.fails.add("stats: " + h.sys.render(err));
                 });
  }
  return steps.steps();
}

/// Publishes as a trusted connection (publisher `p`), with at most 32
/// publications unanswered; a publication is complete at its ok (sent after
/// its delivery). Returns the number of publications.
template<class Connection, class Hub>
uint64_t run_connection_publisher(Hub& h, Connection& conn, int p,
                                  clock_type::time_point end) {
  std::mt19937 rng(static_cast<unsigned>(300 + p));
  budget steps{300, 20000, end};
  std::array<uint64_t, channel_count> seq{};
  struct pending {
    uint64_t id;
    int channel;
    uint64_t seq;
  };
  std::deque<pending> unanswered;
  auto answered = [&] {
    auto x = unanswered.front();
    unanswered.pop_front();
    auto reply = conn.wait_reply(x.id);
    if (reply != "ok") {
      h.fails.add(conn.log.name + ": publish: " + reply);
      return false;
    }
    h.marks.complete(p, x.channel, x.seq);
    return true;
  };
  uint64_t sent = 0;
  while (steps.next()) {
    auto c = static_cast<int>(rng() % channel_count);
    auto s = ++seq[c];
    auto id = conn.next_id();
    h.marks.start(p, c, s);
    conn.send(publish_command(c, payload(p, s), id));
    ++sent;
    unanswered.push_back({id, c, s});
    if (unanswered.size() >= 32 && !answered())
      return sent;
  }
  while (!unanswered.empty())
    if (!answered())
      break;
  return sent;
}

/// Delivers straight through the route table, as a client actor does, from
/// a plain thread (publisher `p`; not counted as published by the hub).
void run_route_publisher(sim_hub& h, int p, clock_type::time_point end) {
  std::mt19937 rng(static_cast<unsigned>(400 + p));
  budget steps{300, 20000, end};
  std::array<uint64_t, channel_count> seq{};
  while (steps.next()) {
    auto c = static_cast<int>(rng() % channel_count);
    auto s = ++seq[c];
    auto pub = livehub::make_publication(channel_name(c), "t", payload(p, s));
    if (!pub) {
      h.fails.add("make_publication: " + h.sys.render(pub.error()));
      return;
    }
    h.marks.start(p, c, s);
    if (auto subscribers = h.shared.routes->find(channel_name(c)))
      subscribers->deliver(*pub, *h.shared.counters);
    h.marks.complete(p, c, s);
    if (steps.steps() % 64 == 0)
      std::this_thread::yield();
  }
}

/// Plays the transport's writes and the keepalive: completes the writes of
/// every open connection, asks for progress, pings, and now and then closes
/// a connection that reads.
void run_writer(sim_hub& h, const std::atomic<bool>& stop) {
  std::mt19937 rng(500);
  for (size_t round = 0; !stop.load(); ++round) {
    auto sinks = h.live_sinks();
    for (auto& out : sinks) {
      out->drain();
      out->write_progress();
      out->queued_frames();
      if (round % 16 == 0)
        out->ping();
    }
    if (round % 20 == 19) {
      std::vector<std::shared_ptr<recording_sink>> closable;
      for (auto& out : sinks)
        if (out->closable())
          closable.push_back(out);
      if (!closable.empty())
        closable[rng() % closable.size()]->close(4000, "closed by the test");
    }
    std::this_thread::sleep_for(1ms);
  }
}

/// Polls until `pred` holds for the stats or wait_time passed; returns the
/// last stats.
template<class Stats, class Pred>
Stats wait_until(std::function<Stats()> get, Pred pred) {
  auto deadline = clock_type::now() + wait_time;
  auto stats = get();
  while (!pred(stats) && clock_type::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    stats = get();
  }
  return stats;
}

// -- layer 2: a real server ------------------------------------------------

/// A hub served on a free port of 127.0.0.1 with 3 I/O threads.
struct served_hub {
  served_hub() : sys(with_workers(sys_cfg)) {
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 3;
    cfg.send_queue_limit = roomy_queue;
    cfg.send_queue_bytes = 256 * 1024 * 1024;
    // Only the stalled client stops reading, and only for the run.
    cfg.write_timeout = std::chrono::seconds(120);
    hub = livehub::spawn_hub(sys, cfg);
    auto started = livehub::server::start(sys, hub, cfg);
    if (!started) {
      caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
      FAIL("server::start failed: " << sys.render(started.error()));
    }
    srv = std::move(*started);
    port = srv->port();
  }

  ~served_hub() {
    srv->stop();
    srv.reset();
    caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  }

  void keep(subscriber_log&& log) {
    std::unique_lock<std::mutex> guard{mtx};
    logs.push_back(std::move(log));
  }

  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  livehub::hub_config cfg;
  livehub::hub_actor hub;
  std::unique_ptr<livehub::server> srv;
  uint16_t port = 0;
  failure_log fails;
  ledger marks;
  std::mutex mtx;
  std::vector<subscriber_log> logs;
};

/// A WebSocket connection of the test client, recording what it reads.
class ws_connection {
 public:
  ws_connection(served_hub& h, std::string name) : h_(h), client_(h.port) {
    log.name = std::move(name);
    if (client_.status() != 101) {
      h.fails.add(log.name + ": upgrade answered "
                  + std::to_string(client_.status()));
      ended_ = true;
    }
  }

  ws_connection(const ws_connection&) = delete;
  ws_connection& operator=(const ws_connection&) = delete;

  ~ws_connection() {
    client_.drop();
    h_.keep(std::move(log));
  }

  uint64_t next_id() {
    return ++ids_;
  }

  void send(const std::string& text) {
    if (!ended_ && !client_.send_text(text)) {
      h_.fails.add(log.name + ": could not send " + text);
      ended_ = true;
    }
  }

  void command(const char* type, int c, uint64_t id) {
    send(channel_command(type, c, id));
  }

  /// Reads until the reply to `id`; returns its type (or "ended").
  std::string wait_reply(uint64_t id) {
    auto deadline = clock_type::now() + wait_time;
    for (;;) {
      if (auto reply = log.rec->reply(id); !reply.empty())
        return reply;
      if (ended_)
        return "ended";
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - clock_type::now());
      if (left <= 0ms) {
        h_.fails.add(log.name + ": no reply to " + std::to_string(id));
        ended_ = true;
        return "timeout";
      }
      take(client_.receive(left));
    }
  }

  /// Reads whatever arrives for `duration`.
  void drain(std::chrono::milliseconds duration) {
    auto deadline = clock_type::now() + duration;
    while (!ended_ && clock_type::now() < deadline) {
      auto msg = client_.receive(1ms);
      if (msg.kind == livehub::test::ws_kind::timeout)
        break;
      take(std::move(msg));
    }
  }

  /// Closes the socket without a close frame.
  void drop() {
    client_.drop();
    ended_ = true;
  }

  /// The close handshake (what it reads meanwhile is not recorded: only
  /// subscriptions still open lose frames, and those are not checked for
  /// completeness).
  void close() {
    if (!ended_)
      client_.close(1000);
    ended_ = true;
  }

  bool ended() const {
    return ended_;
  }

  subscriber_log log;

 private:
  void take(livehub::test::ws_message msg) {
    using livehub::test::ws_kind;
    switch (msg.kind) {
      case ws_kind::text: log.rec->add(make_frame(std::move(msg.data))); break;
      case ws_kind::timeout: break;
      default:
        h_.fails.add(log.name
                     + ": the server ended the connection: " + msg.describe());
        ended_ = true;
    }
  }

  served_hub& h_;
  livehub::test::ws_client client_;
  uint64_t ids_ = 0;
  bool ended_ = false;
};

/// A WebSocket subscriber: subscribes, unsubscribes, reads, pauses, drops
/// and closes at random, reconnecting after each close.
void run_ws_subscriber(served_hub& h, int k, clock_type::time_point end) {
  std::mt19937 rng(static_cast<unsigned>(600 + k));
  budget steps{30, 3000, end};
  std::unique_ptr<ws_connection> conn;
  int generation = 0;
  while (steps.next()) {
    if (!conn || conn->ended())
      conn = std::make_unique<ws_connection>(h,
                                             "ws subscriber "
                                               + std::to_string(k) + "."
                                               + std::to_string(++generation));
    auto roll = rng() % 100;
    if (roll < 35) {
      auto c = pick(rng, channels_of(*conn, false));
      if (c >= 0)
        subscribe(*conn, h.marks, h.fails, c);
    } else if (roll < 65) {
      auto c = pick(rng, channels_of(*conn, true));
      if (c >= 0)
        unsubscribe(*conn, h.marks, h.fails, c);
    } else if (roll < 75) {
      conn->drain(5ms);
    } else if (roll < 80) {
      ping(*conn, h.fails);
    } else if (roll < 85) {
      std::this_thread::sleep_for(20ms); // not reading: the server queues
    } else if (roll < 91) {
      conn->drop();
      conn.reset();
    } else if (roll < 95) {
      conn->close();
      conn.reset();
    } else {
      conn->drain(1ms);
    }
  }
  if (conn && k % 2 == 0) {
    for (auto c : channels_of(*conn, true))
      if (!unsubscribe(*conn, h.marks, h.fails, c))
        break;
    conn->close();
  }
}

using stats_map = std::map<std::string, uint64_t>;

/// The integer fields of `GET /api/stats` (empty on failure).
stats_map http_stats(served_hub& h) {
  auto res = livehub::test::http_request(h.port, "GET", "/api/stats", {});
  stats_map out;
  rapidjson::Document doc;
  doc.Parse(res.body.data(), res.body.size());
  if (res.status != 200 || doc.HasParseError() || !doc.IsObject()) {
    h.fails.add("GET /api/stats: " + std::to_string(res.status) + " "
                + res.body);
    return out;
  }
  for (auto& member : doc.GetObject())
    if (member.value.IsUint64())
      out[member.name.GetString()] = member.value.GetUint64();
  return out;
}

} // namespace

TEST_SUITE_BEGIN("stress");

TEST_CASE("while threads publish, subscribe, close and drain at once, every "
          "subscriber gets exactly its channels' frames, in order") {
  sim_hub h;
  auto end = clock_type::now() + run_time;
  std::atomic<bool> stop_writer{false};
  std::atomic<uint64_t> published{0};
  std::thread writer{[&] {
    run_writer(h, stop_writer);
  }};
  std::vector<std::thread> workers;
  for (int k = 0; k < 4; ++k)
    workers.emplace_back([&h, k, end] {
      run_sim_subscriber(h, k, end);
    });
  workers.emplace_back([&h, end] {
    run_stalled_subscriber(h, end);
  });
  for (int k = 0; k < 2; ++k)
    workers.emplace_back([&h, k, end] {
      run_actor_subscriber(h, k, end);
    });
  for (int p = 0; p < 2; ++p)
    workers.emplace_back([&h, &published, p, end] {
      published += run_app_publisher(h, p, end);
    });
  workers.emplace_back([&h, &published, end] {
    sim_connection conn{h, "publisher", true};
    published += run_connection_publisher(h, conn, 2, end);
  });
  workers.emplace_back([&h, end] {
    run_route_publisher(h, 3, end);
  });
  for (auto& t : workers)
    t.join();
  stop_writer = true;
  writer.join();
  // Everyone left: the hub forgets every connection, the channels go idle
  // and leave the hub and its route table.
  auto routes_empty = [&] {
    for (int c = 0; c < channel_count; ++c)
      if (h.shared.routes->find(channel_name(c)) != nullptr)
        return false;
    return true;
  };
  auto stats = wait_until<livehub::hub_stats>(
    [&] {
      return h.stats();
    },
    [&](const livehub::hub_stats& s) {
      return s.connections == 0 && s.subscriptions == 0
        && s.actor_subscriptions == 0 && s.channels == 0 && routes_empty();
    });
  CHECK(stats.connections == 0);
  CHECK(stats.subscriptions == 0);
  CHECK(stats.actor_subscriptions == 0);
  CHECK(stats.channels == 0);
  CHECK(routes_empty());
  check_totals totals;
  for (auto& log : h.logs)
    check_stream(log, h.fails, totals);
  report(h.fails);
  // The hub's totals match what the subscribers saw.
  CHECK(stats.delivered == totals.publication_frames);
  CHECK(stats.published == published.load());
  CHECK(stats.command_errors == 0);
  uint64_t slow = 0;
  uint64_t closed_by_test = 0;
  for (auto& out : h.all) {
    auto code = out->close_code();
    slow += code == livehub::sink::slow_consumer_code;
    closed_by_test += code == 4000;
  }
  CHECK(stats.slow_consumer_disconnects == slow);
  MESSAGE(totals.subscribers
          << " subscribers (" << closed_by_test << " closed by the writer, "
          << slow << " slow consumers), " << totals.subscriptions
          << " subscriptions (" << totals.complete_windows
          << " checked for completeness, " << totals.required
          << " publications required), " << totals.publication_frames
          << " frames from " << published.load()
          << " publications through hub and clients");
}

TEST_CASE("through a server with 3 I/O threads, clients that come and go get "
          "only their channels' frames, in order, and the stats return to "
          "zero") {
  served_hub h;
  auto end = clock_type::now() + run_time;
  std::atomic<uint64_t> published{0};
  // A client that never reads: its frames pile up in the server until it
  // drops its connection at the end.
  livehub::test::ws_options stalled_opts;
  stalled_opts.receive_buffer = 2048;
  livehub::test::ws_client stalled{h.port, stalled_opts};
  REQUIRE(stalled.status() == 101);
  for (int c = 0; c < channel_count; ++c)
    REQUIRE(stalled.send_text(R"({"type":"subscribe","channel":")"
                              + channel_name(c) + R"("})"));
  std::vector<std::thread> workers;
  for (int k = 0; k < 4; ++k)
    workers.emplace_back([&h, k, end] {
      run_ws_subscriber(h, k, end);
    });
  for (int p = 0; p < 2; ++p)
    workers.emplace_back([&h, &published, p, end] {
      published += run_app_publisher(h, p, end);
    });
  for (int p = 2; p < 4; ++p)
    workers.emplace_back([&h, &published, p, end] {
      // A loopback connection without Origin is a trusted publisher.
      ws_connection conn{h, "ws publisher " + std::to_string(p)};
      published += run_connection_publisher(h, conn, p, end);
      conn.close();
    });
  for (auto& t : workers)
    t.join();
  stalled.drop();
  auto stats = wait_until<stats_map>(
    [&] {
      return http_stats(h);
    },
    [](stats_map& s) {
      return s["connections"] == 0 && s["subscriptions"] == 0
        && s["channels"] == 0;
    });
  CHECK(stats["connections"] == 0);
  CHECK(stats["subscriptions"] == 0);
  CHECK(stats["channels"] == 0);
  CHECK(stats["published"] == published.load());
  CHECK(stats["command_errors"] == 0);
  check_totals totals;
  for (auto& log : h.logs)
    check_stream(log, h.fails, totals);
  report(h.fails);
  MESSAGE(totals.subscribers
          << " connections, " << totals.subscriptions << " subscriptions ("
          << totals.complete_windows << " checked for completeness, "
          << totals.required << " publications required), "
          << totals.publication_frames << " frames read, from "
          << published.load() << " publications");
}

TEST_SUITE_END();
