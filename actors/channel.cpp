#include "actors/channel.hpp"

#include <optional>

#include "actors/counters.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

const char* channel_state::name = "livehub.channel";

bool channel_state::remove(channel_actor::pointer self,
                           const caf::actor_addr& who) {
  auto i = index.find(who);
  if (i == index.end())
    return false;
  auto pos = i->second;
  index.erase(i);
  std::unique_lock<std::mutex> guard{fanout->mtx};
  auto& connections = fanout->connections;
  auto& actors = fanout->actors;
  // Swap-remove keeps both vectors dense for the fan-out loop.
  if (pos < connections.size() && connections[pos].client == who) {
    if (pos + 1 != connections.size()) {
      connections[pos] = std::move(connections.back());
      index[connections[pos].client] = pos;
    }
    connections.pop_back();
    fanout->connection_count.store(connections.size(),
                                   std::memory_order_relaxed);
    hub_counters::sub(counters->subscriptions);
  } else {
    if (pos + 1 != actors.size()) {
      actors[pos] = std::move(actors.back());
      index[actors[pos].who.address()] = pos;
    }
    actors.pop_back();
    hub_counters::sub(counters->actor_subscriptions);
  }
  if (index.empty())
    hub_counters::sub(counters->channels);
  guard.unlock();
  if (auto m = members.find(who); m != members.end()) {
    auto gone = std::move(m->second);
    members.erase(m);
    announce(self, gone, event("leave", gone));
  }
  return true;
}

channel_state::presence_event channel_state::event(const char* type,
                                                   const identity& who) const {
  publication pub{topic, type, json_text::trusted(codec::encode_identity(who))};
  auto frame = codec::encode_publication(pub);
  return {std::move(pub), std::move(frame)};
}

void channel_state::announce(channel_actor::pointer self, const identity& who,
                             const presence_event& ev) {
  fanout->deliver(ev.pub, ev.frame, *counters, livehub::fanout::position{});
  if (!broker)
    return;
  if (ev.pub.type == "join") {
    // Recorded by record_join() already.
    if (!refreshing) {
      refreshing = true;
      self->delayed_send(self, presence_refresh_period, caf::tick_atom::value);
    }
  } else {
    broker->presence_leave(topic, who.client, ev.frame);
  }
}

void channel_state::record_join(const identity& who,
                                const presence_event& join) {
  if (broker)
    broker->presence_join(topic, {who.client, join.pub.data.str()}, join.frame);
}

bool channel_state::add(channel_actor::pointer self, connection_ref& ref,
                        bool lagging) {
  auto who = ref.address();
  if (index.count(who) > 0) {
    // Subscribed again: its new filter (or none) replaces the old.
    fanout->set_filter(who, std::move(ref.filter));
    return false;
  }
  self->monitor(ref.client);
  // Only this actor changes the lists: their size cannot move between
  // reading it here and adding under the lock.
  index.emplace(who, fanout->connection_count.load());
  fanout->add(livehub::fanout::connection_entry{
    who, std::move(ref.out), lagging, std::move(ref.filter)});
  hub_counters::add(counters->subscriptions);
  if (index.size() == 1)
    hub_counters::add(counters->channels);
  return true;
}

void channel_state::add(channel_actor::pointer self, subscriber_actor who,
                        tag_filter_ptr filter) {
  if (index.count(who.address()) > 0) {
    fanout->set_filter(who.address(), std::move(filter));
    return;
  }
  self->monitor(who);
  index.emplace(who.address(), fanout->actors.size());
  fanout->add(livehub::fanout::actor_entry{std::move(who), std::move(filter)});
  hub_counters::add(counters->actor_subscriptions);
  if (index.size() == 1)
    hub_counters::add(counters->channels);
}

void channel_state::report_if_idle(channel_actor::pointer self) {
  // A held subscribe is on its way in: not idle.
  if (index.empty() && held.empty())
    self->send(hub, idle_atom::value, topic, subscribes_seen);
}

namespace {

using channel_pointer = channel_actor::stateful_pointer<channel_state>;

/// A connection's subscribe to a history or presence channel (see
/// subscribe_request), with the channel's history (null: none).
caf::ok_atom subscribe_connection(channel_pointer self, connection_ref& ref,
                                  subscribe_request& req,
                                  const history_ptr& history) {
  auto& st = self->state;
  auto who = ref.address();
  auto out = ref.out;
  // Joining a presence channel: announced to everyone once subscribed,
  // the new member included.
  bool joins = req.presence && st.members.count(who) == 0;
  // Recorded for the cluster before the reply: a presence command the
  // client sends after it finds it there.
  std::optional<channel_state::presence_event> join;
  if (joins) {
    join = st.event("join", req.who);
    st.record_join(req.who, *join);
  }
  auto announce_join = [&] {
    if (joins) {
      st.members.emplace(who, req.who);
      st.announce(self, req.who, *join);
    }
  };
  if (!history) {
    if (!req.id.empty())
      out->send_reply(codec::encode_ok(req.id));
    st.add(self, ref, false);
    announce_join();
    return caf::ok_atom::value;
  }
  std::unique_lock<std::mutex> guard{history->mtx};
  std::optional<bool> recovered;
  // A replay obeys the rule of live publications: when the queue fills
  // up, the connection lags from there (a gap once drained) and
  // recovers again later.
  bool lagging = false;
  if (req.recover) {
    std::optional<std::vector<frame_ptr>> missed;
    if (req.epoch == history->epoch())
      missed = history->after(req.offset, ref.filter);
    recovered = missed.has_value();
    if (missed) {
      auto now = std::chrono::steady_clock::now();
      auto offset = req.offset;
      for (auto& frame : *missed) {
        if (out->send_history(frame, now) != sink::result::queued) {
          lagging = true;
          out->add_gap(st.topic,
                       codec::encode_gap(st.topic, offset, history->epoch()));
          break;
        }
        ++offset;
      }
    }
  }
  if (!req.id.empty())
    out->send_reply(codec::encode_position(req.id, history->last_offset(),
                                           history->epoch(), recovered));
  if (!st.add(self, ref, lagging) && req.recover && !lagging) {
    // Recovered: this connection gets live publications again.
    out->drop_gap(st.topic);
    st.fanout->resume(who);
  }
  guard.unlock();
  announce_join();
  return caf::ok_atom::value;
}

/// An application actor's subscribe to a history channel, with what it
/// missed since `since`.
history_page subscribe_actor(channel_pointer self, subscriber_actor& who,
                             stream_position& since,
                             const history_ptr& history) {
  auto& st = self->state;
  std::unique_lock<std::mutex> guard{history->mtx};
  std::optional<std::vector<frame_ptr>> missed;
  if (since.epoch == history->epoch())
    missed = history->after(since.offset);
  auto page = read_page(*history, missed ? *missed : std::vector<frame_ptr>{});
  page.recovered = missed.has_value();
  st.add(self, std::move(who), nullptr);
  return page;
}

/// True when `history` answers subscribes now: a cluster's mirror that
/// (re)loads does not (see channel_history::live).
bool answers_now(const history_ptr& history) {
  if (!history)
    return true;
  std::unique_lock<std::mutex> guard{history->mtx};
  return history->live;
}

/// Keeps a subscribe until its history answers (run_held); answered with
/// what `f` returns then.
template<class Result, class F>
caf::result<Result> hold(channel_pointer self, history_ptr history, F f) {
  auto rp = self->make_response_promise<Result>();
  auto& st = self->state;
  st.held.push_back({std::move(history), [rp, f]() mutable {
                       rp.deliver(f());
                     }});
  if (st.held.size() == 1)
    self->delayed_send(self, std::chrono::milliseconds{10},
                       history_atom::value);
  return rp;
}

} // namespace

channel_actor::behavior_type
channel(channel_actor::stateful_pointer<channel_state> self, std::string topic,
        hub_internal_actor hub, fanout_ptr fanout, hub_counters_ptr counters,
        broker_ptr broker) {
  auto& st = self->state;
  st.broker = std::move(broker);
  st.topic = std::move(topic);
  st.hub = hub;
  st.fanout = std::move(fanout);
  st.counters = std::move(counters);
  // A subscriber that goes away leaves. The channel itself ends when the hub
  // closes it: idle, or the hub ending (see ~hub_state).
  self->set_down_handler([self](const caf::down_msg& msg) {
    if (self->state.remove(self, msg.source))
      self->state.report_if_idle(self);
  });
  return {
    [self](caf::subscribe_atom, connection_ref& ref) {
      auto& st = self->state;
      ++st.subscribes_seen;
      st.add(self, ref, false);
      return caf::ok_atom::value;
    },
    [self](caf::subscribe_atom, connection_ref& ref, subscribe_request& req,
           history_ptr& history) -> caf::result<caf::ok_atom> {
      ++self->state.subscribes_seen;
      if (!self->state.held.empty() || !answers_now(history))
        return hold<caf::ok_atom>(
          self, history, [self, ref, req, history]() mutable {
            return subscribe_connection(self, ref, req, history);
          });
      return subscribe_connection(self, ref, req, history);
    },
    [self](caf::subscribe_atom, subscriber_actor& who, stream_position& since,
           history_ptr& history) -> caf::result<history_page> {
      ++self->state.subscribes_seen;
      if (!self->state.held.empty() || !answers_now(history))
        return hold<history_page>(
          self, history, [self, who, since, history]() mutable {
            return subscribe_actor(self, who, since, history);
          });
      return subscribe_actor(self, who, since, history);
    },
    [self](history_atom) {
      // Runs the held subscribes whose history answers now, in order.
      auto& st = self->state;
      while (!st.held.empty() && answers_now(st.held.front().first)) {
        auto f = std::move(st.held.front().second);
        st.held.pop_front();
        f();
      }
      if (!st.held.empty())
        self->delayed_send(self, std::chrono::milliseconds{10},
                           history_atom::value);
      else
        st.report_if_idle(self);
    },
    [self](caf::subscribe_atom, subscriber_actor& who, tag_filter_ptr& filter) {
      auto& st = self->state;
      ++st.subscribes_seen;
      st.add(self, std::move(who), std::move(filter));
      return caf::ok_atom::value;
    },
    [self](caf::unsubscribe_atom, const caf::actor_addr& who) {
      if (self->state.remove(self, who)) {
        self->demonitor(who);
        self->state.report_if_idle(self);
      }
      return caf::ok_atom::value;
    },
    [self](presence_atom) {
      std::vector<identity> result;
      for (auto& kvp : self->state.members)
        result.push_back(kvp.second);
      return result;
    },
    [self](caf::close_atom) {
      self->quit();
    },
    [self](caf::tick_atom) {
      auto& st = self->state;
      if (st.members.empty() || !st.broker) {
        st.refreshing = false;
        return;
      }
      std::vector<presence_member> members;
      members.reserve(st.members.size());
      for (auto& kvp : st.members)
        members.push_back(
          {kvp.second.client, codec::encode_identity(kvp.second)});
      st.broker->presence_refresh(st.topic, std::move(members));
      self->delayed_send(self, presence_refresh_period, caf::tick_atom::value);
    },
  };
}

} // namespace livehub
