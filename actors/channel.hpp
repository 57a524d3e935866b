// channel: one actor per topic. Owns its fanout (its subscribers, monitored);
// its hub and client actors deliver publications through that fanout.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/fanout.hpp"
#include "actors/history.hpp"
#include "actors/hub_internal.hpp"

namespace livehub {

/// The channel's interface, used by its hub only.
using channel_actor = caf::typed_actor<
  /// Adds a connection; replies once publications reach it.
  caf::replies_to<caf::subscribe_atom, connection_ref>::with<caf::ok_atom>,
  /// Adds a connection to a history or presence channel (the history is
  /// null on a channel without): replays and replies first, under the
  /// history's lock, and announces who joined (see subscribe_request).
  caf::replies_to<caf::subscribe_atom, connection_ref, subscribe_request,
                  std::shared_ptr<channel_history>>::with<caf::ok_atom>,
  /// Who is subscribed (a presence channel).
  caf::replies_to<presence_atom>::with<std::vector<identity>>,
  /// Adds an application actor, with its filter (null: none; subscribing
  /// again replaces it).
  caf::replies_to<caf::subscribe_atom, subscriber_actor,
                  tag_filter_ptr>::with<caf::ok_atom>,
  /// Adds an application actor to a history channel, with what it missed
  /// since a position (under the history's lock).
  caf::replies_to<caf::subscribe_atom, subscriber_actor, stream_position,
                  std::shared_ptr<channel_history>>::with<history_page>,
  /// Removes a connection or actor; replies once nothing more reaches it.
  caf::replies_to<caf::unsubscribe_atom, caf::actor_addr>::with<caf::ok_atom>,
  /// The hub removed this channel: quit.
  caf::reacts_to<caf::close_atom>,
  /// Refreshes this node's presence members with the broker.
  caf::reacts_to<caf::tick_atom>,
  /// Retries the subscribes held while the history (a cluster's mirror)
  /// loads.
  caf::reacts_to<history_atom>>;

struct channel_state {
  /// The channel's name.
  std::string topic;

  /// The hub that routes to this channel and decides its removal.
  hub_internal_actor hub;

  hub_counters_ptr counters;

  /// The other nodes (null: none); they share presence through it.
  broker_ptr broker;

  /// Whether the presence refresh (tick_atom) is running.
  bool refreshing = false;

  /// Subscribes that wait for their history (a cluster's mirror) to load,
  /// in arrival order (see channel_history::live).
  std::deque<std::pair<history_ptr, std::function<void()>>> held;

  /// The channel's subscribers, shared with the hub (which delivers through
  /// it); changed under its lock.
  fanout_ptr fanout;

  /// Position of each subscriber in `fanout->connections` or
  /// `fanout->actors`.
  std::unordered_map<caf::actor_addr, size_t> index;

  /// Subscribes seen so far; the hub compares it with the subscribes it
  /// routed here before it removes an idle channel.
  uint64_t subscribes_seen = 0;
  /// A presence channel's subscribed connections and who they are.
  std::unordered_map<caf::actor_addr, identity> members;

  /// A presence event (`join`, `leave`) about someone: its publication and
  /// its frame, encoded once.
  struct presence_event {
    publication pub;
    frame_ptr frame;
  };

  /// The `type` event about `who`.
  presence_event event(const char* type, const identity& who) const;

  /// Delivers `ev` about `who` to the channel's subscribers. With a broker,
  /// a join starts the refresh of this node's members, and a leave is
  /// recorded for the cluster and told to the other nodes.
  void announce(channel_actor::pointer self, const identity& who,
                const presence_event& ev);

  /// With a broker: records `who` joining for the cluster and tells the
  /// other nodes (`join`: its event).
  void record_join(const identity& who, const presence_event& join);

  /// Adds the connection of `ref` (monitored) with its filter, lagging from
  /// the start when its recovery's replay already filled its queue; false
  /// when it is subscribed already (its filter is replaced then).
  bool add(channel_actor::pointer self, connection_ref& ref, bool lagging);

  /// Adds an application actor (monitored) with `filter`; when it is
  /// subscribed already, replaces its filter.
  void add(channel_actor::pointer self, subscriber_actor who,
           tag_filter_ptr filter);

  /// Removes `who`; returns false when it was not subscribed.
  bool remove(channel_actor::pointer self, const caf::actor_addr& who);

  /// Tells the hub when no subscriber is left.
  void report_if_idle(channel_actor::pointer self);

  static const char* name;
};

/// Spawned by the hub for `topic`, with the fanout the hub delivers through
/// and the hub's broker (null: none).
channel_actor::behavior_type
channel(channel_actor::stateful_pointer<channel_state> self, std::string topic,
        hub_internal_actor hub, fanout_ptr fanout, hub_counters_ptr counters,
        broker_ptr broker);

} // namespace livehub
