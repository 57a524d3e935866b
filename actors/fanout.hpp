// fanout: the subscribers of one channel, as publications reach them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include <caf/actor_addr.hpp>

#include "actors/hub_internal.hpp"

namespace livehub {

/// The subscribers of one channel (connections and application actors), and
/// how a publication reaches them. Shared by the channel actor and its hub.
///
/// The channel owns the membership: it adds, removes and monitors
/// subscribers, changing the lists under `mtx`. The hub delivers every
/// publication through deliver(), and so do client actors for what their
/// connection publishes (see route_table): a publication costs no message to
/// the channel (with many quiet channels, waking one channel per publication
/// was a large share of the CPU), and from a WebSocket none to the hub.
struct fanout {
  /// A connection subscriber: frames go straight to its sink.
  struct connection_entry {
    caf::actor_addr client;
    std::shared_ptr<sink> out;
    /// History channels: the connection's queue was full, it was sent a
    /// gap (once drained) and gets nothing more of this channel until it
    /// subscribes again with `since`.
    bool lagging = false;
    /// Only publications whose tags pass reach it (null: all).
    tag_filter_ptr filter = nullptr;
  };

  /// An application actor subscriber.
  struct actor_entry {
    subscriber_actor who;
    tag_filter_ptr filter = nullptr;
  };

  /// A publication of a history channel, as delivered: its offset and its
  /// stream's epoch.
  struct position {
    uint64_t offset = 0;
    const std::string* epoch = nullptr;
  };

  /// Encodes `pub` once (if any connection subscribes), queues the frame on
  /// every subscribed connection and sends `pub` to every subscribed actor;
  /// adds the deliveries and slow consumers to `counters`.
  void deliver(const publication& pub, hub_counters& counters);

  /// As above, with the frame already encoded; on a history channel with
  /// its position (offset 0: none): actors get the offset in their copy,
  /// and a connection whose queue is full lags (see connection_entry)
  /// rather than being closed.
  void deliver(const publication& pub, const frame_ptr& frame,
               hub_counters& counters, position pos);

  /// A lagging connection subscribed again (recovered): deliver to it again.
  /// The caller holds no lock.
  void resume(const caf::actor_addr& client);

  /// Adds a connection (the caller holds no lock).
  void add(connection_entry entry);

  /// Adds an application actor (the caller holds no lock).
  void add(actor_entry entry);

  /// Replaces the filter of subscriber `who` (the caller holds no lock).
  void set_filter(const caf::actor_addr& who, tag_filter_ptr filter);

  /// Guards both lists. deliver() holds it across the whole delivery: once
  /// a channel removed a subscriber under it, no delivery that started before
  /// can still reach that subscriber, which is what makes an unsubscribe's
  /// `ok` final.
  std::mutex mtx;
  std::vector<connection_entry> connections;
  std::vector<actor_entry> actors;
  /// `connections.size()`, readable without the lock: deliver() encodes
  /// before locking only when a connection may want the frame.
  std::atomic<size_t> connection_count{0};
};

using fanout_ptr = std::shared_ptr<fanout>;

/// True when `topic` is a history channel under `cfg`.
bool is_history_channel(const hub_config& cfg, const std::string& topic);

/// True when `topic` is a presence channel under `cfg`.
bool is_presence_channel(const hub_config& cfg, const std::string& topic);

/// True when `shared` has a broker and it is down: then the publication at
/// hand must be refused (and is counted as broker_refused), not accepted
/// and lost.
bool refuse_for_broker(const hub_shared& shared);

/// Publishes `pub` (not to "*") to its channel's subscribers, as the hub and
/// client actors do, and to the other nodes through the broker, if any. On
/// a history channel, under the channel's history lock: the next offset,
/// the frame with it stored (made the channel's stream if it had none),
/// then delivered. Counts the publication. `now`: the publishing actor's
/// clock. False (nothing delivered, counted as broker_refused) when the
/// broker is down.
bool deliver_publication(const hub_shared& shared, const publication& pub,
                         std::chrono::steady_clock::time_point now);

/// Delivers `pub` (not to "*"), which another node published, to this
/// node's subscribers; `frame` is its frame as that node encoded it. On a
/// history channel it gets this node's next offset, as a local one (each
/// node keeps its own stream; see docs/cluster.md).
void deliver_remote(const hub_shared& shared, const publication& pub,
                    const frame_ptr& frame);

} // namespace livehub
