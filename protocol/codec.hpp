// The JSON codec (RapidJSON): client commands and HTTP publish bodies in,
// frames out. Knows nothing of sockets or actors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "livehub/fwd.hpp"
#include "livehub/identity.hpp"
#include "livehub/json.hpp"
#include "livehub/messages.hpp"

namespace livehub::codec {

/// Deepest nesting accepted in a command or a publication's data.
constexpr size_t max_json_depth = 128;

/// Longest channel name and event type, in bytes.
constexpr size_t max_name_size = 255;

/// Longest command id, in bytes of its JSON text.
constexpr size_t max_id_size = 64;

/// The error codes of the wire protocol.
enum class error_code {
  bad_json,
  bad_command,
  unknown_command,
  bad_channel,
  forbidden,
  too_many_subscriptions,
  rate_limited,
  unauthorized,
  unavailable,
  internal,
};

/// How many error codes there are (error_code's values are 0 to this - 1).
constexpr size_t error_code_count = static_cast<size_t>(error_code::internal)
  + 1;

/// The wire name of `x`, e.g. "bad_json".
const char* to_string(error_code x);

/// Largest `info` of a connect command, in bytes of its JSON text.
constexpr size_t max_info_size = 1024;

enum class command_type {
  subscribe,
  unsubscribe,
  publish,
  ping,
  connect,
  refresh,
  history,
  presence,
  presence_stats
};

/// A position in a channel's stream: an offset and its epoch.
struct position {
  uint64_t offset = 0;
  std::string epoch;
};

/// One parsed client command. `id` is the raw JSON text of the command's id
/// (a number's digits or a quoted string), empty when it had none.
struct command {
  command_type type = command_type::ping;
  std::string id;
  std::string channel;
  std::string event;
  json_text data;
  /// connect, refresh: the token; subscribe: a subscription token. Empty
  /// when none.
  std::string token;
  /// connect: the `info` field (`null` when none).
  json_text info;
  /// subscribe: the `since` position to recover from, if any.
  std::optional<position> since;
  /// history: how many publications (the last ones).
  uint64_t limit = 0;
  /// publish: the publication's tags.
  tag_map tags;
  /// subscribe, history: the `filter`, compiled; null when none (or
  /// `null`).
  tag_filter_ptr filter;
};

/// Why a frame is not a command; `id` is set when the frame had a readable id.
struct parse_error {
  error_code code = error_code::bad_json;
  std::string message;
  std::string id;
};

/// Parses one client frame: a JSON object with `type` and the fields of that
/// command (see docs/protocol.md). Unknown fields are ignored. Channel names
/// are checked for syntax (`valid_channel_name`), not for permissions.
std::variant<command, parse_error> parse_command(std::string_view text);

/// Parses a `POST /api/publish` body `{"channel":C,"type":T,"data":D}`.
std::variant<publication, parse_error> parse_publish(std::string_view text);

/// Reads back a publication frame this codec made (encode_publication),
/// with its offset; none for anything else.
std::optional<publication> parse_publication_frame(std::string_view frame);

/// True when a `POST /api/publish` body is an array (its first non-space
/// character is `[`): a batch of publications.
bool is_batch(std::string_view body);

/// Parses a batch body `[{"channel":C,"type":T,"data":D}, ...]`: each element
/// as parse_publish would, in order. An error for the whole body only when
/// it is no well-formed array.
std::variant<std::vector<std::variant<publication, parse_error>>, parse_error>
parse_publish_batch(std::string_view text);

/// True for 1 to 255 bytes of valid UTF-8 without control characters (C0,
/// DEL, C1). `"*"` passes: whether it is allowed depends on the use.
bool valid_channel_name(std::string_view name);

/// True for 1 to 255 bytes of valid UTF-8 without control characters.
bool valid_event_type(std::string_view type);

/// True when `name` matches `pattern`, where `*` matches any run of bytes.
bool glob_match(std::string_view pattern, std::string_view name);

/// `{"channel":C,"type":T,"data":D}`, built once per publication; with
/// `"offset":N` added when `offset` is not 0 (history channels).
frame_ptr encode_publication(const publication& x, uint64_t offset = 0);

/// `{"client":C,"user":U,"info":I}`: a presence entry, and the data of join
/// and leave publications.
std::string encode_identity(const identity& x);

/// Reads back an encode_identity() text (as a cluster's presence store
/// keeps it); none when it is not one.
std::optional<identity> parse_identity(std::string_view text);

/// `{"type":"ok","id":ID,"clients":[...]}`, the reply to a presence
/// command; without type and id when not a `reply` (GET /api/presence).
std::string encode_presence(std::string_view id,
                            const std::vector<identity>& clients,
                            bool reply = true);

/// `{"type":"ok","id":ID,"clients":N,"users":M}`: M counts distinct
/// non-empty users plus anonymous connections.
frame_ptr encode_presence_stats(std::string_view id,
                                const std::vector<identity>& clients);

/// `{"type":"gap","channel":C,"offset":K,"epoch":"E"}`: a lagging
/// connection missed what came after offset K of channel C.
frame_ptr encode_gap(std::string_view channel, uint64_t offset,
                     std::string_view epoch);

/// `{"type":"ok","id":ID,"offset":N,"epoch":"E"}`: the reply to a subscribe
/// on a history channel; with `"recovered":B` when it asked for recovery.
frame_ptr encode_position(std::string_view id, uint64_t offset,
                          std::string_view epoch,
                          std::optional<bool> recovered);

/// `{"type":"ok","id":ID,"publications":[...],"offset":O,"epoch":"E"}`, the
/// reply to a history command (no id when empty); without type and id when
/// not a `reply` (the body of GET /api/history).
std::string
encode_history(std::string_view id, const std::vector<frame_ptr>& publications,
               uint64_t offset, std::string_view epoch, bool reply = true);

/// `{"type":"ok","id":ID}`.
frame_ptr encode_ok(std::string_view id);

/// `{"type":"ok","id":ID,"client":C,"user":U,"expires":E}`: the reply to
/// `connect`.
frame_ptr encode_connected(std::string_view id, std::string_view client,
                           std::string_view user, int64_t expires);

/// `{"type":"ok","id":ID,"expires":E}`: the reply to `refresh`.
frame_ptr encode_refreshed(std::string_view id, int64_t expires);

/// `{"type":"pong"}`, with `"id"` when `id` is not empty.
frame_ptr encode_pong(std::string_view id);

/// `{"type":"error","id":ID,"code":CODE,"message":TEXT}` (no id when empty).
frame_ptr encode_error(error_code code, std::string_view message,
                       std::string_view id);

/// `s` as a JSON string literal, quotes included.
std::string quote(std::string_view s);

/// The stats object of `GET /api/stats`.
std::string encode_stats(const hub_stats& x);

} // namespace livehub::codec
