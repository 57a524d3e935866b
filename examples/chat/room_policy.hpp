// The chat demo's rules for what browsers publish to rooms.
#pragma once

#include <string>

#include "livehub/messages.hpp"

namespace chat {

/// Longest name and message text, in bytes.
constexpr size_t max_name_size = 32;
constexpr size_t max_text_size = 2000;

/// Checks a client's publication to a room: channel `room:<name>` (1 to 64
/// of A-Z a-z 0-9 _ -), event `message`, data `{"name":N,"text":T}` with
/// non-blank strings of at most 32 and 2000 bytes. Returns the reason to
/// refuse it, or an empty string. Thread-safe (no state).
std::string check_room_message(const livehub::publication& x);

} // namespace chat
