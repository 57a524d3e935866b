// hub: maps channel names to channel actors, spawns them on demand, removes
// them when idle, routes publications, and knows every open connection.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/channel.hpp"
#include "actors/routes.hpp"
#include "livehub/hub.hpp"

namespace livehub {

struct hub_state {
  hub_state() = default;
  hub_state(const hub_state&) = delete;
  hub_state& operator=(const hub_state&) = delete;

  /// Runs when the hub ends, however it ends: closes every connection it
  /// knows with 1001 and tells its client to quit, and closes every channel.
  /// (Rather than each client and channel monitoring the hub: CAF 0.17 keeps
  /// an actor's monitors in a list, so N observers that demonitor it when
  /// they quit cost O(N^2): 5 s to stop a server with 10,000 channels.)
  ~hub_state();

  struct channel_entry {
    channel_actor handle;
    /// Its subscribers; publications go through it (see fanout).
    fanout_ptr subs;
    /// Subscribes routed to `handle`; see channel_state::subscribes_seen.
    uint64_t routed = 0;
  };

  std::unordered_map<std::string, channel_entry> channels;

  /// Reverse map for down messages of channels.
  std::unordered_map<caf::actor_addr, std::string> channel_names;

  /// Every open connection, for `"*"` and stats.
  std::unordered_map<caf::actor_addr, std::shared_ptr<sink>> connections;

  hub_counters_ptr counters;

  /// `channels` as client actors see it (kept in step with it).
  route_table_ptr routes = std::make_shared<route_table>();

  /// The channel for `topic`, spawned (and monitored) when missing; counts
  /// one routed subscribe.
  channel_actor& route_subscribe(hub_actor::pointer self,
                                 const std::string& topic);

  static const char* name;
};

/// The hub's behaviour; `counters` are shared with its channels, clients and
/// server. (Every livehub actor takes arguments: CAF 0.17 dereferences a null
/// argument tuple when spawning a function without any, which UBSan flags.)
hub_actor::behavior_type hub(hub_actor::stateful_pointer<hub_state> self,
                             hub_counters_ptr counters);

} // namespace livehub
