// Who a connection is (its identity) and how an application authorizes it:
// the authorizer actor that livehub asks when nothing else decides whether a
// connection may subscribe to or publish on a channel.
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "livehub/json.hpp"
#include "livehub/messages.hpp"

namespace livehub {

/// A connection's identity, as its `connect` command (and token) set it.
struct identity {
  /// A server-made identifier of the connection, unique across the cluster;
  /// empty until the connection sent `connect`.
  std::string client;

  /// The token's `sub`; empty for anonymous connections.
  std::string user;

  /// The token's `info` claim (or, without tokens, the `connect` command's
  /// `info`): any JSON value, at most 1 KiB; `null` when none.
  json_text info;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, identity& x) {
  return f(caf::meta::type_name("livehub.identity"), x.client, x.user, x.info);
}

/// What a connection asks to do on a channel.
enum class auth_action : uint8_t {
  subscribe,
  publish,
};

/// "subscribe" or "publish".
inline const char* to_string(auth_action x) {
  return x == auth_action::subscribe ? "subscribe" : "publish";
}

/// The application's authorizer: answers whether `identity` may do `action` on
/// the channel (the string). Asked only when nothing else decides (public
/// channels, token claims, subscription tokens); no answer within
/// `livehub.authorize-timeout`, or an error, is a denial. Set it as
/// hub_config::authorizer.
using authorizer_actor
  = caf::typed_actor<caf::replies_to<authorize_atom, identity, auth_action,
                                     std::string>::with<bool>>;

} // namespace livehub
