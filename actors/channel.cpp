#include "actors/channel.hpp"

#include "actors/counters.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

const char* channel_state::name = "livehub.channel";

bool channel_state::remove(const caf::actor_addr& who) {
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
    announce("leave", gone);
  }
  return true;
}

void channel_state::announce(const char* type, const identity& who) {
  publication pub{topic, type, json_text::trusted(codec::encode_identity(who))};
  fanout->deliver(pub, *counters);
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
  if (index.empty())
    self->send(hub, idle_atom::value, topic, subscribes_seen);
}

channel_actor::behavior_type
channel(channel_actor::stateful_pointer<channel_state> self, std::string topic,
        hub_internal_actor hub, fanout_ptr fanout, hub_counters_ptr counters) {
  auto& st = self->state;
  st.topic = std::move(topic);
  st.hub = hub;
  st.fanout = std::move(fanout);
  st.counters = std::move(counters);
  // A subscriber that goes away leaves. The channel itself ends when the hub
  // closes it: idle, or the hub ending (see ~hub_state).
  self->set_down_handler([self](const caf::down_msg& msg) {
    if (self->state.remove(msg.source))
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
           history_ptr& history) {
      auto& st = self->state;
      ++st.subscribes_seen;
      auto who = ref.address();
      auto out = ref.out;
      // Joining a presence channel: announced to everyone once subscribed,
      // the new member included.
      bool joins = req.presence && st.members.count(who) == 0;
      auto announce_join = [&] {
        if (joins) {
          st.members.emplace(who, req.who);
          st.announce("join", req.who);
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
                           codec::encode_gap(st.topic, offset,
                                             history->epoch()));
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
    },
    [self](caf::subscribe_atom, subscriber_actor& who, stream_position& since,
           history_ptr& history) {
      auto& st = self->state;
      ++st.subscribes_seen;
      std::unique_lock<std::mutex> guard{history->mtx};
      std::optional<std::vector<frame_ptr>> missed;
      if (since.epoch == history->epoch())
        missed = history->after(since.offset);
      auto page = read_page(*history,
                            missed ? *missed : std::vector<frame_ptr>{});
      page.recovered = missed.has_value();
      st.add(self, std::move(who), nullptr);
      return page;
    },
    [self](caf::subscribe_atom, subscriber_actor& who, tag_filter_ptr& filter) {
      auto& st = self->state;
      ++st.subscribes_seen;
      st.add(self, std::move(who), std::move(filter));
      return caf::ok_atom::value;
    },
    [self](caf::unsubscribe_atom, const caf::actor_addr& who) {
      if (self->state.remove(who)) {
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
  };
}

} // namespace livehub
