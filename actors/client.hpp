// client: one actor per connection. Parses its commands in order, keeps its
// identity (connect, refresh) and subscriptions, authorizes them, enforces
// the rate limits, and quits when the connection closes (monitors then clean
// up channels, hub and keepalive).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor_clock.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/hub_internal.hpp"
#include "actors/sink.hpp"
#include "protocol/codec.hpp"

namespace livehub {

/// What the transport tells a client actor about its connection.
using client_actor = caf::typed_actor<
  /// A text message arrived.
  caf::reacts_to<text_atom, std::string>,
  /// The connection ended.
  caf::reacts_to<closed_atom>,
  /// The connection ended with this close code and reason (sent where an
  /// observer wants to know).
  caf::reacts_to<closed_atom, uint16_t, std::string>>;

/// What a connection may do, decided at the upgrade.
struct client_rights {
  /// A trusted publisher may publish to any channel, "*" included.
  bool trusted = false;
  /// The peer's address; only filled where an observer wants it.
  std::string peer;
};

/// A token bucket: `rate` tokens per second, at most `burst`.
struct rate_bucket {
  using time_point = caf::actor_clock::time_point;

  double tokens = -1; // < 0: full, not yet used
  time_point last;

  /// Takes one token at `now`; false when none is left.
  bool take(time_point now, double rate, double burst);
};

/// What a `connect` established: who the connection is, and what its token
/// allows.
struct client_session {
  identity who;
  /// The token's `channels` and `publish` patterns.
  std::vector<std::string> channels;
  std::vector<std::string> publish;
  /// The token's `exp` (unix seconds); 0: none.
  int64_t expires = 0;
  /// A `connect` made it (else it only holds the client id that presence
  /// needed first).
  bool connected = false;
};

/// The channels one connection subscribed to, each with its filter (null:
/// none). A vector sorted by channel: most connections hold a handful of
/// subscriptions, and an idle one pays for every byte (an unordered_map's
/// bucket array and node cost about 170 B more for one subscription).
class subscription_list {
 public:
  /// `channel`'s filter, or null when not subscribed to it (a subscription
  /// without a filter is a pointer to a null filter).
  const tag_filter_ptr* find(std::string_view channel) const;

  /// Subscribes to `channel` with `filter`, or replaces its filter.
  void set(const std::string& channel, tag_filter_ptr filter);

  void erase(std::string_view channel);

  size_t size() const {
    return entries_.size();
  }

 private:
  /// Sorted by channel.
  std::vector<std::pair<std::string, tag_filter_ptr>> entries_;
};

struct client_state {
  hub_internal_actor hub;
  std::shared_ptr<sink> out;
  /// The hub's config (its channel policy), counters and routes (the hub's
  /// channels: publications go straight to their subscribers).
  hub_shared shared;
  client_rights rights;
  /// The channels subscribed to, with each subscription's filter (null:
  /// none).
  subscription_list subscriptions;
  /// Set by a successful `connect` (or, holding just a client id, by the
  /// first presence subscribe); null before.
  std::unique_ptr<client_session> session;
  /// All commands, and client publications (untrusted connections only).
  rate_bucket commands;
  rate_bucket publications;
  /// Commands refused in a row for the command rate; past command-burst the
  /// connection is closed with 4029.
  uint32_t refused_in_a_row = 0;
  /// The connection is being closed by this actor: ignore what still comes.
  bool closing = false;

  /// Sends a reply frame, counting a slow consumer if it is refused so.
  void reply(const frame_ptr& frame);

  /// Sends an error frame (and counts it).
  void fail(codec::error_code code, std::string_view message,
            std::string_view id);

  /// Closes the connection with `code` (4001 or 4029) and counts it.
  void close(uint16_t code);

  /// The connection's identity (empty before connect).
  const identity& who() const;

  /// The connection's identity, with a client id made now if it has none.
  const identity& identified();

  /// Tells the observer (if any) `event`.
  template<class Event>
  void observe(Event&& event) {
    if (auto& observer = shared.cfg->observer)
      caf::anon_send(observer, std::forward<Event>(event));
  }

  static const char* name;
};

/// Spawned by the transport for each opened connection.
client_actor::behavior_type
client(client_actor::stateful_pointer<client_state> self,
       hub_internal_actor hub, std::shared_ptr<sink> out, hub_shared shared,
       client_rights rights);

} // namespace livehub
