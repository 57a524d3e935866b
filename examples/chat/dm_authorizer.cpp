#include "dm_authorizer.hpp"

#include "room_policy.hpp"

namespace chat {

livehub::authorizer_actor::behavior_type dm_authorizer(std::string prefix) {
  return {
    [prefix](livehub::authorize_atom, const livehub::identity& who,
             livehub::auth_action, const std::string& channel) {
      // The same rule for both actions: a private room's users read it and
      // write to it; nobody else does either.
      return channel.compare(0, prefix.size(), prefix) == 0
        && dm_member(channel, who.user);
    },
  };
}

} // namespace chat
