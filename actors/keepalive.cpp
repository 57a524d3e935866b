#include "actors/keepalive.hpp"

#include <algorithm>

#include "actors/counters.hpp"
#include "actors/sink.hpp"

#include <caf/send.hpp>

namespace livehub {

const char* keepalive_state::name = "livehub.keepalive";

caf::timespan sweep_period(const hub_config& cfg) {
  using namespace std::chrono;
  auto shortest
    = std::min({cfg.ping_interval, cfg.pong_timeout, cfg.write_timeout});
  return std::clamp(caf::timespan{shortest / 4},
                    caf::timespan{milliseconds(10)}, caf::timespan{seconds(1)});
}

void keepalive_state::check(watch& w, time_point now) {
  // The client actor's deadline: no connect in time, or the token expired.
  if (auto d = w.out->get_deadline(); d.code != 0 && now >= d.when) {
    if (d.code == sink::token_expired_code) {
      hub_counters::add(counters->expired_disconnects);
      w.out->close(d.code, "token expired");
    } else {
      hub_counters::add(counters->unauthorized_disconnects);
      w.out->close(d.code, "unauthorized");
      if (cfg->observer)
        caf::anon_send(cfg->observer, refused_event{"auth", w.peer});
    }
    return;
  }
  // A pong answers every ping sent before it.
  if (w.out->take_pong())
    w.awaiting_pong = false;
  if (w.awaiting_pong && now - w.ping_sent >= cfg->pong_timeout) {
    w.out->close(1008, "pong timeout");
    return;
  }
  if (now >= w.next_ping) {
    w.out->ping();
    if (!w.awaiting_pong) {
      w.awaiting_pong = true;
      w.ping_sent = now;
    }
    w.next_ping = now + cfg->ping_interval;
  }
  auto progress = w.out->write_progress();
  if (progress.queued == 0 || progress.sent != w.last_sent) {
    w.stalled = false;
    w.last_sent = progress.sent;
  } else if (!w.stalled) {
    w.stalled = true;
    w.stalled_since = now;
  } else if (now - w.stalled_since >= cfg->write_timeout) {
    hub_counters::add(counters->slow_consumer_disconnects);
    w.out->close(sink::slow_consumer_code, "slow consumer");
  }
}

keepalive_actor::behavior_type
keepalive(keepalive_actor::stateful_pointer<keepalive_state> self,
          std::shared_ptr<const hub_config> cfg, hub_counters_ptr counters) {
  self->state.cfg = std::move(cfg);
  self->state.counters = std::move(counters);
  self->set_down_handler([self](const caf::down_msg& msg) {
    self->state.connections.erase(msg.source);
  });
  auto period = sweep_period(*self->state.cfg);
  self->delayed_send(self, period, caf::tick_atom::value);
  return {
    [self](caf::join_atom, connection_ref& ref) {
      auto& st = self->state;
      keepalive_state::watch w;
      w.out = std::move(ref.out);
      w.peer = std::move(ref.peer);
      w.next_ping = self->clock().now() + st.cfg->ping_interval;
      if (st.connections.emplace(ref.address(), std::move(w)).second)
        self->monitor(ref.client);
    },
    [self, period](caf::tick_atom) {
      auto& st = self->state;
      auto now = self->clock().now();
      // A closed connection stays until its client actor's down message.
      for (auto& kvp : st.connections)
        if (!kvp.second.out->closed())
          st.check(kvp.second, now);
      self->delayed_send(self, period, caf::tick_atom::value);
    },
  };
}

} // namespace livehub
