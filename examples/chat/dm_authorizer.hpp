// The chat's authorizer (login mode): who may use a private room.
#pragma once

#include <string>

#include "livehub/identity.hpp"

namespace chat {

/// Allows subscribing to and publishing on a private room `dm:<a>+<b>` to
/// its two users, a and b, and nothing else. livehub asks it only where the
/// token's claims do not decide already (they open `room:*` to every
/// logged-in user). Stateless, so it answers at once. `prefix`: that of
/// private rooms, "dm:". (It takes an argument because CAF 0.17 dereferences
/// a null argument tuple when it spawns a function without any, which UBSan
/// reports.)
livehub::authorizer_actor::behavior_type dm_authorizer(std::string prefix);

} // namespace chat
