// fanout: the subscribers of one channel, as publications reach them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <caf/actor_addr.hpp>

#include "actors/history.hpp"
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

  /// A history channel's stream broke (a cluster's mirror, see
  /// deliver_numbered): every connection not lagging yet lags from here and
  /// gets `gap` once it may (the caller holds no fanout lock).
  void gap_all(const std::string& channel, const frame_ptr& gap);

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

/// Delivers `pub` (not to "*", not on a history channel), which another
/// node published, to this node's subscribers; `frame` is its frame as that
/// node encoded it.
void deliver_remote(const hub_shared& shared, const publication& pub,
                    const frame_ptr& frame);

/// Delivers a publication of a history channel numbered by the broker's
/// shared stream (`pub.offset`, `epoch`; any node's, this one's included)
/// to this node's subscribers, through the channel's mirror of the stream:
/// stored, then delivered, in offset order. While the mirror loads, it
/// waits in the mirror; after a break in the offsets (or a new epoch) every
/// connection gets a gap and the mirror loads again (install_stream).
void deliver_numbered(const hub_shared& shared, const publication& pub,
                      const frame_ptr& frame, const std::string& epoch);

/// Replaces the content of `history` with `stream` (what the broker keeps;
/// `max_size` at most), read back from its frames. Needs `history.mtx`.
void load_stream_into(channel_history& history, const stream_state& stream,
                      size_t max_size);

/// Makes the mirror of `topic` live with `stream` (none: the
/// broker could not be read, then it goes on from the first publication it
/// has waiting), then delivers what waited. Connections subscribed
/// meanwhile get a gap when the stream is elsewhere than the mirror was.
void install_stream(const hub_shared& shared, const std::string& topic,
                    const history_ptr& mirror,
                    caf::expected<stream_state> stream);

/// The last `limit` (at most history-size) publications of history channel
/// `topic` that pass `filter` (null: all), with its position, read here:
/// from the stream itself on one node (made when missing), from the
/// channel's mirror on a cluster when it is live. None when this node has
/// no live mirror: the hub reads the broker's (history_atom).
std::optional<history_frames>
read_local_history(const hub_shared& shared, const std::string& topic,
                   uint64_t limit, const tag_filter_ptr& filter);

} // namespace livehub
