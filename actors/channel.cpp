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
      index[actors[pos].address()] = pos;
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
  auto added = [self] {
    auto& st = self->state;
    if (st.index.size() == 1)
      hub_counters::add(st.counters->channels);
  };
  return {
    [self, added](caf::subscribe_atom, connection_ref& ref) {
      auto& st = self->state;
      ++st.subscribes_seen;
      auto who = ref.address();
      if (st.index.count(who) == 0) {
        self->monitor(ref.client);
        // Only this actor changes the lists: their size cannot move between
        // reading it here and adding under the lock.
        st.index.emplace(who, st.fanout->connection_count.load());
        st.fanout->add(
          livehub::fanout::connection_entry{who, std::move(ref.out)});
        hub_counters::add(st.counters->subscriptions);
        added();
      }
      return caf::ok_atom::value;
    },
    [self, added](caf::subscribe_atom, connection_ref& ref,
                  subscribe_request& req, history_ptr& history) {
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
        if (st.index.count(who) == 0) {
          self->monitor(ref.client);
          st.index.emplace(who, st.fanout->connection_count.load());
          st.fanout->add(
            livehub::fanout::connection_entry{who, std::move(ref.out)});
          hub_counters::add(st.counters->subscriptions);
          added();
        }
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
          missed = history->after(req.offset);
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
      if (st.index.count(who) == 0) {
        self->monitor(ref.client);
        st.index.emplace(who, st.fanout->connection_count.load());
        st.fanout->add(
          livehub::fanout::connection_entry{who, std::move(ref.out), lagging});
        hub_counters::add(st.counters->subscriptions);
        added();
      } else if (req.recover && !lagging) {
        // Recovered: this connection gets live publications again.
        out->drop_gap(st.topic);
        st.fanout->resume(who);
      }
      guard.unlock();
      announce_join();
      return caf::ok_atom::value;
    },
    [self, added](caf::subscribe_atom, subscriber_actor& who,
                  stream_position& since, history_ptr& history) {
      auto& st = self->state;
      ++st.subscribes_seen;
      std::unique_lock<std::mutex> guard{history->mtx};
      std::optional<std::vector<frame_ptr>> missed;
      if (since.epoch == history->epoch())
        missed = history->after(since.offset);
      auto page = read_page(*history,
                            missed ? *missed : std::vector<frame_ptr>{});
      page.recovered = missed.has_value();
      if (st.index.count(who.address()) == 0) {
        self->monitor(who);
        st.index.emplace(who.address(), st.fanout->actors.size());
        st.fanout->add(std::move(who));
        hub_counters::add(st.counters->actor_subscriptions);
        added();
      }
      return page;
    },
    [self, added](caf::subscribe_atom, subscriber_actor& who) {
      auto& st = self->state;
      ++st.subscribes_seen;
      if (st.index.count(who.address()) == 0) {
        self->monitor(who);
        st.index.emplace(who.address(), st.fanout->actors.size());
        st.fanout->add(std::move(who));
        hub_counters::add(st.counters->actor_subscriptions);
        added();
      }
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
