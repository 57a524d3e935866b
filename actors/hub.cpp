#include "actors/hub.hpp"

#include <algorithm>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "actors/counters.hpp"
#include "actors/fanout.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"
#include "protocol/token.hpp"

namespace livehub {

const char* hub_state::name = "livehub.hub";

hub_state::~hub_state() {
  if (shared.broker)
    shared.broker->stop();
  for (auto& [addr, out] : connections) {
    out->close(1001, "going away");
    if (auto client = caf::actor_cast<caf::actor>(addr))
      caf::anon_send(client, closed_atom::value);
  }
  shared.routes->clear();
  for (auto& kvp : channels)
    caf::anon_send(kvp.second.handle, caf::close_atom::value);
}

hub_state::channel_entry&
hub_state::route_subscribe(hub_internal_actor::pointer self,
                           const std::string& topic) {
  auto i = channels.find(topic);
  if (i == channels.end()) {
    auto subscribers = std::make_shared<fanout>();
    auto ch = self->spawn(channel, topic,
                          caf::actor_cast<hub_internal_actor>(self),
                          subscribers, shared.counters, shared.broker);
    self->monitor(ch);
    channel_names.emplace(ch.address(), topic);
    shared.routes->set(topic, subscribers);
    i = channels.emplace(topic, channel_entry{ch, std::move(subscribers)})
          .first;
    if (shared.broker) {
      // A history channel's mirror of the shared stream: what arrives from
      // the broker waits in it until it loaded (see channel_history::live).
      if (is_history_channel(*shared.cfg, topic))
        shared.routes->history(topic);
      auto& entry = i->second;
      entry.ready = false;
      entry.generation = ++generations;
      auto hub = caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
      shared.broker->subscribe(topic, [hub, topic, gen = entry.generation] {
        if (auto strong = caf::actor_cast<caf::actor>(hub))
          caf::anon_send(strong, remote_atom::value, topic, gen);
      });
    }
  }
  ++i->second.routed;
  return i->second;
}

void hub_state::drop_channel(
  std::unordered_map<std::string, channel_entry>::iterator i) {
  shared.routes->erase(i->first, i->second.fanout);
  if (shared.broker) {
    shared.broker->unsubscribe(i->first);
    // Its mirror is no longer kept up to date.
    if (is_history_channel(*shared.cfg, i->first))
      shared.routes->drop_history(i->first);
  }
  channels.erase(i);
}

bool hub_state::deliver(const publication& pub,
                        std::chrono::steady_clock::time_point now) {
  // Straight to the subscribers, without a message to the channel.
  if (pub.channel != "*")
    return deliver_publication(shared, pub, now);
  if (refuse_for_broker(shared))
    return false;
  auto frame = codec::encode_publication(pub);
  if (shared.broker)
    shared.broker->publish(pub.channel, frame);
  hub_counters::add(shared.counters->published);
  deliver_everywhere(frame);
  return true;
}

void hub_state::deliver_everywhere(const frame_ptr& frame) {
  auto& counters = *shared.counters;
  auto accepted = std::chrono::steady_clock::now();
  uint64_t delivered = 0;
  uint64_t slow = 0;
  // As a channel's fanout: each I/O thread wakes once, for all its frames.
  send_batch batch;
  for (auto& kvp : connections) {
    switch (kvp.second->send(frame, accepted)) {
      case sink::result::queued: ++delivered; break;
      case sink::result::slow_consumer: ++slow; break;
      case sink::result::closed:
      case sink::result::lagging: break;
    }
  }
  hub_counters::add(counters.delivered, delivered);
  if (slow > 0)
    hub_counters::add(counters.slow_consumer_disconnects, slow);
}

void hub_state::remove_if_idle(hub_internal_actor::pointer self,
                               const caf::actor_addr& source,
                               const std::string& topic, uint64_t seen) {
  auto i = channels.find(topic);
  // Remove the channel only if it has seen every subscribe routed to it;
  // otherwise a subscribe is on its way and the channel stays.
  if (i == channels.end() || i->second.handle.address() != source
      || i->second.routed != seen)
    return;
  self->send(i->second.handle, caf::close_atom::value);
  channel_names.erase(source);
  self->demonitor(source);
  drop_channel(i);
}

channel_page hub_state::page(const std::string& after, uint64_t limit) {
  // Sorted on demand: an operator's request, not a hot path. Only the page
  // is sorted fully.
  std::vector<const std::string*> names;
  for (auto& kvp : channels)
    if (kvp.first > after)
      names.push_back(&kvp.first);
  auto by_name = [](const std::string* x, const std::string* y) {
    return *x < *y;
  };
  auto n = static_cast<size_t>(std::min<uint64_t>(limit, names.size()));
  std::partial_sort(names.begin(), names.begin() + static_cast<ptrdiff_t>(n),
                    names.end(), by_name);
  channel_page result;
  for (size_t i = 0; i < n; ++i) {
    auto& subscribers = *channels.at(*names[i]).fanout;
    std::unique_lock<std::mutex> guard{subscribers.mtx};
    auto count = subscribers.connections.size() + subscribers.actors.size();
    // A channel without subscribers is on its way out (as in stats, it does
    // not count); the page may then be shorter than `limit`.
    if (count > 0)
      result.channels.push_back({*names[i], count});
  }
  if (n < names.size() && n > 0)
    result.next = *names[n - 1];
  return result;
}

void hub_state::forget(const caf::actor_addr& source) {
  if (connections.erase(source) > 0)
    return;
  auto i = channel_names.find(source);
  if (i == channel_names.end())
    return;
  // Erase the name only if it still maps to the actor that went down: a
  // newer channel may already serve it.
  auto j = channels.find(i->second);
  if (j != channels.end() && j->second.handle.address() == source)
    drop_channel(j);
  channel_names.erase(i);
}

namespace {

using hub_pointer = hub_internal_actor::stateful_pointer<hub_state>;

/// Sends a subscribe (`xs`) to the channel of `topic`, made when missing, and
/// answers with the channel's reply: delegated at once once the channel's
/// broker subscription took effect, else when it does (see
/// hub_state::channel_entry::ready).
template<class Result, class... Ts>
caf::result<Result>
route(hub_pointer self, const std::string& topic, Ts&&... xs) {
  auto& entry = self->state.route_subscribe(self, topic);
  if (entry.ready)
    return self->delegate(entry.handle, std::forward<Ts>(xs)...);
  auto rp = self->make_response_promise<Result>();
  entry.waiting.emplace_back([self, rp, ch = entry.handle,
                              args = std::make_tuple(std::decay_t<Ts>(
                                std::forward<Ts>(xs))...)]() mutable {
    std::apply(
      [&](auto&... ys) {
        self->request(ch, caf::infinite, std::move(ys)...)
          .then(
            [rp](Result& r) mutable {
              rp.deliver(std::move(r));
            },
            [rp](caf::error& err) mutable {
              rp.deliver(std::move(err));
            });
      },
      args);
  });
  return rp;
}

/// Runs `f` in `hub` (when it is still there): how an answer from the
/// broker's thread reaches the hub's state and response promises.
void run_in(const caf::weak_actor_ptr& hub, std::function<void()> f) {
  if (auto strong = caf::actor_cast<caf::actor>(hub))
    caf::anon_send(strong, task_atom::value,
                   std::make_shared<std::function<void()>>(std::move(f)));
}

caf::weak_actor_ptr weak_self(hub_pointer self) {
  return caf::actor_cast<caf::weak_actor_ptr>(self->ctrl());
}

/// The channel of `topic` when it still waits for this `generation` of its
/// broker subscription (see hub_state::channel_entry::ready), else null.
hub_state::channel_entry* waiting_entry(hub_state& st, const std::string& topic,
                                        uint64_t generation) {
  auto i = st.channels.find(topic);
  if (i == st.channels.end() || i->second.generation != generation
      || i->second.ready)
    return nullptr;
  return &i->second;
}

/// The channel's broker subscription took effect: its subscribes go on.
void make_ready(hub_state::channel_entry& entry) {
  entry.ready = true;
  auto waiting = std::move(entry.waiting);
  for (auto& f : waiting)
    f();
}

history_page page_of(const history_frames& x);

/// The last `limit` publications of `topic` that pass `filter`, from the
/// stream or this node's live mirror of it, else from the broker; answered
/// as `make(frames)` (history_frames or history_page).
template<class Result, class Make>
caf::result<Result> read_history(hub_pointer self, const std::string& topic,
                                 uint64_t limit, const tag_filter_ptr& filter,
                                 Make make) {
  auto& shared = self->state.shared;
  if (auto local = read_local_history(shared, topic, limit, filter))
    return make(std::move(*local));
  auto n
    = static_cast<size_t>(std::min<uint64_t>(limit, shared.cfg->history_size));
  auto rp = self->make_response_promise<Result>();
  shared.broker->load_stream(
    topic,
    [hub = weak_self(self), rp, n, filter, make,
     size = shared.cfg->history_size](caf::expected<stream_state> st) mutable {
      if (!st) {
        run_in(hub, [rp, err = std::move(st.error())]() mutable {
          rp.deliver(std::move(err));
        });
        return;
      }
      channel_history copy;
      load_stream_into(copy, *st, size);
      auto result = make(
        history_frames{copy.last(n, filter), copy.last_offset(), copy.epoch()});
      run_in(hub, [rp, result = std::move(result)]() mutable {
        rp.deliver(std::move(result));
      });
    });
  return rp;
}

history_page page_of(const history_frames& x) {
  history_page result;
  result.publications.reserve(x.frames.size());
  for (auto& frame : x.frames)
    if (auto pub = codec::parse_publication_frame(*frame))
      result.publications.push_back(std::move(*pub));
  result.position.offset = x.offset;
  result.position.epoch = x.epoch;
  return result;
}

} // namespace

hub_internal_actor::behavior_type
hub(hub_internal_actor::stateful_pointer<hub_state> self, hub_shared shared) {
  self->state.shared = std::move(shared);
  // Every registration is a monitor: a connection's client actor or a
  // channel that goes away is forgotten here without any bookkeeping call.
  self->set_down_handler([self](const caf::down_msg& msg) {
    self->state.forget(msg.source);
  });
  // History channels: a sweep drops what outlived history-ttl, a quarter of
  // the ttl late at most (and at least every 10 s).
  auto& cfg = *self->state.shared.cfg;
  auto sweep = std::clamp(caf::timespan{cfg.history_ttl / 4},
                          caf::timespan{std::chrono::milliseconds(10)},
                          caf::timespan{std::chrono::seconds(10)});
  if (!cfg.history_channels.empty())
    self->delayed_send(self, sweep, caf::tick_atom::value);
  return {
    [self, sweep](caf::tick_atom) {
      auto& st = self->state;
      st.shared.routes->expire_histories(self->clock().now()
                                         - st.shared.cfg->history_ttl);
      if (st.shared.broker) {
        // The shared streams of this node's history channels stay.
        std::vector<std::string> streams;
        for (auto& kvp : st.channels)
          if (is_history_channel(*st.shared.cfg, kvp.first))
            streams.push_back(kvp.first);
        if (!streams.empty())
          st.shared.broker->touch_streams(std::move(streams));
      }
      self->delayed_send(self, sweep, caf::tick_atom::value);
    },
    // -- the application's API --------------------------------------------
    [self](caf::publish_atom, const publication& pub) {
      // Refused when the broker is down: counted (broker_refused), as the
      // API has no reply.
      self->state.deliver(pub, self->clock().now());
    },
    [self](caf::subscribe_atom, const std::string& topic,
           subscriber_actor& who) -> caf::result<caf::ok_atom> {
      if (!codec::valid_channel_name(topic) || topic == "*")
        return caf::make_error(caf::sec::invalid_argument, "bad channel name");
      return route<caf::ok_atom>(self, topic, caf::subscribe_atom::value,
                                 std::move(who), tag_filter_ptr{});
    },
    [self](caf::subscribe_atom, const std::string& topic, subscriber_actor& who,
           tag_filter& filter) -> caf::result<caf::ok_atom> {
      if (!codec::valid_channel_name(topic) || topic == "*")
        return caf::make_error(caf::sec::invalid_argument, "bad channel name");
      tag_filter_ptr compiled;
      if (!filter.empty())
        compiled = std::make_shared<const tag_filter>(std::move(filter));
      return route<caf::ok_atom>(self, topic, caf::subscribe_atom::value,
                                 std::move(who), std::move(compiled));
    },
    [self](caf::unsubscribe_atom, const std::string& topic,
           caf::actor_addr& who) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto i = st.channels.find(topic);
      if (i == st.channels.end())
        return caf::ok_atom::value;
      return self->delegate(i->second.handle, caf::unsubscribe_atom::value,
                            std::move(who));
    },
    [self](stats_atom) {
      auto& st = self->state;
      return st.shared.counters->snapshot(st.connections.size());
    },
    [self](presence_atom,
           const std::string& topic) -> caf::result<std::vector<identity>> {
      auto& st = self->state;
      if (!is_presence_channel(*st.shared.cfg, topic))
        return caf::make_error(caf::sec::invalid_argument,
                               "no presence channel: " + topic);
      if (st.shared.broker) {
        // Every node's members, as the broker keeps them.
        auto rp = self->make_response_promise<std::vector<identity>>();
        st.shared.broker->presence(
          topic,
          [hub = weak_self(self),
           rp](caf::expected<std::vector<std::string>> xs) mutable {
            if (!xs) {
              run_in(hub, [rp, err = std::move(xs.error())]() mutable {
                rp.deliver(std::move(err));
              });
              return;
            }
            std::vector<identity> result;
            for (auto& x : *xs)
              if (auto who = codec::parse_identity(x))
                result.push_back(std::move(*who));
            run_in(hub, [rp, result = std::move(result)]() mutable {
              rp.deliver(std::move(result));
            });
          });
        return rp;
      }
      auto i = st.channels.find(topic);
      if (i == st.channels.end())
        return std::vector<identity>{};
      return self->delegate(i->second.handle, presence_atom::value);
    },
    [self](history_atom, const std::string& topic,
           uint64_t limit) -> caf::result<history_page> {
      auto& st = self->state;
      if (!is_history_channel(*st.shared.cfg, topic))
        return caf::make_error(caf::sec::invalid_argument,
                               "no history channel: " + topic);
      return read_history<history_page>(self, topic, limit, nullptr, page_of);
    },
    [self](history_atom, const std::string& topic, uint64_t limit,
           tag_filter_ptr& filter) -> caf::result<history_frames> {
      if (!is_history_channel(*self->state.shared.cfg, topic))
        return caf::make_error(caf::sec::invalid_argument,
                               "no history channel: " + topic);
      return read_history<history_frames>(self, topic, limit, filter,
                                          [](history_frames x) {
                                            return x;
                                          });
    },
    [self](caf::subscribe_atom, const std::string& topic, subscriber_actor& who,
           stream_position& since) -> caf::result<history_page> {
      auto& st = self->state;
      if (!is_history_channel(*st.shared.cfg, topic))
        return caf::make_error(caf::sec::invalid_argument,
                               "no history channel: " + topic);
      auto history = st.shared.routes->history(topic);
      return route<history_page>(self, topic, caf::subscribe_atom::value,
                                 std::move(who), std::move(since),
                                 std::move(history));
    },
    // -- livehub's own actors and transport -------------------------------
    [self](caf::join_atom, connection_ref& ref) {
      self->monitor(ref.client);
      self->state.connections.emplace(ref.address(), std::move(ref.out));
    },
    [self](caf::get_atom) {
      return self->state.shared;
    },
    [self](caf::subscribe_atom, const std::string& topic,
           connection_ref& ref) -> caf::result<caf::ok_atom> {
      return route<caf::ok_atom>(self, topic, caf::subscribe_atom::value,
                                 std::move(ref));
    },
    [self](caf::subscribe_atom, const std::string& topic, connection_ref& ref,
           subscribe_request& req) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      history_ptr history;
      if (is_history_channel(*st.shared.cfg, topic))
        history = st.shared.routes->history(topic);
      return route<caf::ok_atom>(self, topic, caf::subscribe_atom::value,
                                 std::move(ref), std::move(req),
                                 std::move(history));
    },
    [self](idle_atom, const std::string& topic, uint64_t seen) {
      auto source = caf::actor_cast<caf::actor_addr>(self->current_sender());
      self->state.remove_if_idle(self, source, topic, seen);
    },
    [self](caf::get_atom, channels_atom, const std::string& after,
           uint64_t limit) {
      return self->state.page(after, limit);
    },
    // -- the broker -------------------------------------------------------
    [self](remote_atom, const frame_ptr& frame) {
      self->state.deliver_everywhere(frame);
    },
    [](task_atom, actor_task& f) {
      (*f)();
    },
    [self](remote_atom, const std::string& topic, uint64_t generation) {
      auto& st = self->state;
      auto* entry = waiting_entry(st, topic, generation);
      if (!entry)
        return;
      auto mirror = st.shared.routes->find_history(topic);
      if (!mirror)
        return make_ready(*entry);
      // A history channel: ready once its mirror loaded the stream.
      st.shared.broker->load_stream(
        topic,
        [hub = weak_self(self), shared = st.shared, topic, generation,
         mirror](caf::expected<stream_state> stream) {
          install_stream(shared, topic, mirror, std::move(stream));
          if (auto strong = caf::actor_cast<caf::actor>(hub))
            caf::anon_send(strong, remote_atom::value, topic, generation,
                           caf::ok_atom::value);
        });
    },
    [self](remote_atom, const std::string& topic, uint64_t generation,
           caf::ok_atom) {
      if (auto* entry = waiting_entry(self->state, topic, generation))
        make_ready(*entry);
    },
  };
}

hub_actor spawn_hub(caf::actor_system& sys, const hub_config& cfg) {
  return spawn_hub(sys, cfg, make_broker(cfg));
}

hub_actor spawn_hub(caf::actor_system& sys, const hub_config& cfg,
                    broker_ptr broker) {
  hub_shared shared;
  shared.counters = std::make_shared<hub_counters>();
  shared.routes = std::make_shared<route_table>();
  shared.cfg = std::make_shared<const hub_config>(cfg);
  shared.policy = make_client_policy(cfg);
  shared.broker = broker;
  shared.routes->mirrors = broker != nullptr;
  auto result = sys.spawn(hub, shared);
  if (broker) {
    // Remote publications go straight to the subscribers, as local ones;
    // those to "*" through the hub, which knows every connection. The hub
    // stops the broker when it ends, which drops this handler (and with it
    // the broker's reference to `shared`).
    auto weak = caf::actor_cast<caf::weak_actor_ptr>(result);
    broker->start(shared.policy->node,
                  [weak, shared](const frame_ptr& frame, remote_kind kind,
                                 const std::string& epoch) {
                    auto pub = codec::parse_publication_frame(*frame);
                    if (!pub || !codec::valid_channel_name(pub->channel))
                      return;
                    if (pub->channel == "*") {
                      if (auto hub = caf::actor_cast<caf::actor>(weak))
                        caf::anon_send(hub, remote_atom::value, frame);
                      return;
                    }
                    switch (kind) {
                      case remote_kind::numbered:
                        if (pub->offset > 0)
                          deliver_numbered(shared, *pub, frame, epoch);
                        return;
                      case remote_kind::presence:
                        // As the channel announces its own
                        // (channel_state::announce).
                        if (auto subscribers
                            = shared.routes->find(pub->channel))
                          subscribers->deliver(*pub, frame, *shared.counters,
                                               fanout::position{});
                        return;
                      case remote_kind::publication:
                        deliver_remote(shared, *pub, frame);
                    }
                  });
  }
  return result;
}

history_page read_page(const channel_history& history,
                       const std::vector<frame_ptr>& frames) {
  history_page result;
  result.publications.reserve(frames.size());
  for (auto& frame : frames)
    if (auto pub = codec::parse_publication_frame(*frame))
      result.publications.push_back(std::move(*pub));
  result.position.offset = history.last_offset();
  result.position.epoch = history.epoch();
  return result;
}

std::shared_ptr<const client_policy> make_client_policy(const hub_config& cfg) {
  auto result = std::make_shared<client_policy>();
  result->public_channels = cfg.effective_public_channels();
  // A valid config has a usable key (hub_config::validate parses it); should
  // it be unusable anyway, every token is refused (see client.cpp).
  if (auto v = token::verifier::make(cfg))
    result->verifier = std::move(*v);
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  uint64_t bits = dist(rd);
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = 60; i >= 0; i -= 4)
    result->node += hex[(bits >> i) & 0xF];
  return result;
}

caf::error publish(const hub_actor& hub, std::string channel, std::string type,
                   std::string_view json_data) {
  auto pub = make_publication(std::move(channel), std::move(type), json_data);
  if (!pub)
    return std::move(pub.error());
  caf::anon_send(hub, caf::publish_atom::value, std::move(*pub));
  return caf::none;
}

} // namespace livehub
