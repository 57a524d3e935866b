// keepalive: one actor per server that watches every connection on one
// timer: pings each on schedule, closes those whose ping goes unanswered for
// pong-timeout, those whose queued frames make no progress for
// write-timeout, and those past the deadline their client actor set (no
// connect within connect-timeout: 4001; the token expired: 4002). One sweep
// instead of timers per connection: an idle server does (almost) nothing, and a
// closed connection's actor is freed at once rather than when its last pending
// timer fires.
#pragma once

#include <memory>
#include <unordered_map>

#include <caf/actor_clock.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/hub_internal.hpp"

namespace livehub {

using keepalive_actor = caf::typed_actor<
  /// Watches a connection until its client actor goes down.
  caf::reacts_to<caf::join_atom, connection_ref>,
  /// The sweep timer.
  caf::reacts_to<caf::tick_atom>>;

struct keepalive_state {
  using time_point = caf::actor_clock::time_point;

  struct watch {
    std::shared_ptr<sink> out;
    /// The peer's address, where an observer wants it.
    std::string peer;
    /// When the next ping is due.
    time_point next_ping;
    /// When the oldest unanswered ping went out, if one is unanswered.
    time_point ping_sent;
    bool awaiting_pong = false;
    /// Bytes written at the last sweep, and since when nothing moved while
    /// frames were queued.
    uint64_t last_sent = 0;
    time_point stalled_since;
    bool stalled = false;
  };

  std::unordered_map<caf::actor_addr, watch> connections;
  std::shared_ptr<const hub_config> cfg;
  hub_counters_ptr counters;

  /// Runs the checks of one connection: pings it when due, closes it when
  /// its pong or its writes are overdue.
  void check(watch& w, time_point now);

  static const char* name;
};

/// The sweep period: a quarter of the shortest of ping-interval,
/// pong-timeout and write-timeout, between 10 ms and 1 s, so each deadline
/// is met within a quarter of its length.
caf::timespan sweep_period(const hub_config& cfg);

keepalive_actor::behavior_type
keepalive(keepalive_actor::stateful_pointer<keepalive_state> self,
          std::shared_ptr<const hub_config> cfg, hub_counters_ptr counters);

} // namespace livehub
