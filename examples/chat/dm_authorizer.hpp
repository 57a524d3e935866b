// The chat's authorizer (login mode): who may use a private room.
#pragma once

#include "livehub/identity.hpp"

namespace chat {

/// Allows subscribing to and publishing on a private room `dm:<a>+<b>` to
/// its two users, a and b, and nothing else. livehub asks it only where the
/// token's claims do not decide already (they open `room:*` to every
/// logged-in user). Stateless, so it answers at once.
livehub::authorizer_actor::behavior_type dm_authorizer();

} // namespace chat
