// The chat demo's rules for its channels and for what browsers publish there:
// rooms `room:<name>`, open to everyone, and (with tokens) private rooms
// `dm:<a>+<b>` of two users.
#pragma once

#include <string>
#include <string_view>

#include "livehub/identity.hpp"
#include "livehub/messages.hpp"

namespace chat {

/// Longest name and message text, in bytes.
constexpr size_t max_name_size = 32;
constexpr size_t max_text_size = 2000;

/// Whether `name` can be a user's name in login mode (and so in a private
/// room's channel): 1 to 32 of A-Z a-z 0-9 _ -.
bool valid_user_name(std::string_view name);

/// The private room of users `a` and `b`: `dm:<a>+<b>` with the two names in
/// sorted (byte) order, so that both users compute the same channel.
std::string dm_channel(std::string_view a, std::string_view b);

/// Whether `user` is one of the two users of the private room `channel`;
/// false when `channel` is no valid private room: `dm:<a>+<b>` with valid
/// user names, `a` before `b`.
bool dm_member(std::string_view channel, std::string_view user);

/// Checks a client's publication to a room: channel `room:<name>` (1 to 64
/// of A-Z a-z 0-9 _ -) or a private room `dm:<a>+<b>` (see dm_member), event
/// `message`, data `{"name":N,"text":T}` with non-blank strings of at most
/// 32 and 2000 bytes. Returns the reason to refuse it, or an empty string.
/// Thread-safe (no state).
std::string check_room_message(const livehub::publication& x);

/// As above, and where the publisher is a logged-in user (its identity has a
/// `user`, i.e. with tokens), N must be that user's name: nobody speaks for
/// someone else. Anonymous publishers (no tokens) may pick any name.
std::string check_room_message(const livehub::publication& x,
                               const livehub::identity& who);

} // namespace chat
