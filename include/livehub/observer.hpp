// Observing connections: an application actor that receives an event when a
// connection opens, identifies itself, subscribes, unsubscribes, ends or is
// refused. Set it as hub_config::observer.
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>
#include <caf/typed_actor.hpp>

namespace livehub {

/// A connection is open and known: at its successful `connect` where tokens
/// are required, else when it opened (then `user` is empty).
struct connected_event {
  std::string client;
  std::string user;
  /// The peer's IP address, e.g. "127.0.0.1".
  std::string peer;
};

/// A connection ended, with the close code and reason of its closing
/// handshake (the side that closed first), 1006 when it just dropped.
struct disconnected_event {
  std::string client;
  std::string user;
  uint16_t code = 0;
  std::string reason;
};

/// A connection's subscription took effect.
struct subscribed_event {
  std::string client;
  std::string user;
  std::string channel;
};

/// A connection's unsubscribe took effect (not sent for the subscriptions
/// that end with the connection: see disconnected_event).
struct unsubscribed_event {
  std::string client;
  std::string user;
  std::string channel;
};

/// A connection was refused: `reason` is "origin" (403), "capacity" (503),
/// "rate" (429, max-connections-per-ip) or "auth" (closed with 4001).
struct refused_event {
  std::string reason;
  std::string peer;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, connected_event& x) {
  return f(caf::meta::type_name("livehub.connected_event"), x.client, x.user,
           x.peer);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, disconnected_event& x) {
  return f(caf::meta::type_name("livehub.disconnected_event"), x.client, x.user,
           x.code, x.reason);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, subscribed_event& x) {
  return f(caf::meta::type_name("livehub.subscribed_event"), x.client, x.user,
           x.channel);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, unsubscribed_event& x) {
  return f(caf::meta::type_name("livehub.unsubscribed_event"), x.client, x.user,
           x.channel);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, refused_event& x) {
  return f(caf::meta::type_name("livehub.refused_event"), x.reason, x.peer);
}

/// What an observer handles (hub_config::observer). Events are sent, not
/// requested: a slow observer delays nobody.
using observer_actor = caf::typed_actor<
  caf::reacts_to<connected_event>, caf::reacts_to<disconnected_event>,
  caf::reacts_to<subscribed_event>, caf::reacts_to<unsubscribed_event>,
  caf::reacts_to<refused_event>>;

} // namespace livehub
