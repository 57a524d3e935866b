#include "room_policy.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

#include <rapidjson/document.h>

namespace chat {

namespace {

constexpr std::string_view room_prefix = "room:";
constexpr std::string_view dm_prefix = "dm:";

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

/// 1 to `max` of A-Z a-z 0-9 _ -.
bool plain_name(std::string_view name, size_t max) {
  return !name.empty() && name.size() <= max
    && std::all_of(name.begin(), name.end(), [](unsigned char c) {
         return std::isalnum(c) || c == '_' || c == '-';
       });
}

bool valid_room(std::string_view channel) {
  return starts_with(channel, room_prefix)
    && plain_name(channel.substr(room_prefix.size()), 64);
}

/// The two users of a valid private room channel, else two empty views.
std::pair<std::string_view, std::string_view>
dm_users(std::string_view channel) {
  if (!starts_with(channel, dm_prefix))
    return {};
  auto pair = channel.substr(dm_prefix.size());
  auto plus = pair.find('+');
  if (plus == std::string_view::npos)
    return {};
  auto a = pair.substr(0, plus);
  auto b = pair.substr(plus + 1);
  // Sorted and distinct: exactly one channel per pair of users.
  if (!valid_user_name(a) || !valid_user_name(b) || !(a < b))
    return {};
  return {a, b};
}

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isspace(c);
  });
}

/// Empty if `doc[key]` is a non-blank string of at most `max` bytes.
std::string check_text(const rapidjson::Document& doc, const char* key,
                       size_t max) {
  auto i = doc.FindMember(key);
  if (i == doc.MemberEnd() || !i->value.IsString())
    return std::string{"\""} + key + "\" must be a string";
  std::string_view s{i->value.GetString(), i->value.GetStringLength()};
  if (blank(s))
    return std::string{"\""} + key + "\" must not be empty";
  if (s.size() > max)
    return std::string{"\""} + key + "\" is longer than " + std::to_string(max)
      + " bytes";
  return {};
}

/// Checks the message and, when `user` is not empty, that its name is
/// `user`.
std::string check(const livehub::publication& x, std::string_view user) {
  if (starts_with(x.channel, dm_prefix)) {
    if (dm_users(x.channel).first.empty())
      return "private rooms are channels dm:<a>+<b>: two different user "
             "names (1 to 32 letters, digits, '_' or '-') in sorted order";
  } else if (!valid_room(x.channel)) {
    return "rooms are channels room:<name>, the name 1 to 64 letters, digits, "
           "'_' or '-'";
  }
  if (x.type != "message")
    return "rooms take events of type \"message\"";
  rapidjson::Document doc;
  doc.Parse(x.data.str().c_str(), x.data.str().size());
  if (doc.HasParseError() || !doc.IsObject())
    return "a chat message is {\"name\":...,\"text\":...}";
  for (auto& member : doc.GetObject()) {
    std::string_view key{member.name.GetString(),
                         member.name.GetStringLength()};
    if (key != "name" && key != "text")
      return "a chat message has only \"name\" and \"text\"";
  }
  if (auto err = check_text(doc, "name", max_name_size); !err.empty())
    return err;
  if (!user.empty()) {
    auto& name = doc["name"];
    if (std::string_view{name.GetString(), name.GetStringLength()} != user)
      return "\"name\" must be your user name, \"" + std::string{user} + "\"";
  }
  return check_text(doc, "text", max_text_size);
}

} // namespace

bool valid_user_name(std::string_view name) {
  return plain_name(name, max_name_size);
}

std::string dm_channel(std::string_view a, std::string_view b) {
  if (b < a)
    std::swap(a, b);
  return std::string{dm_prefix} + std::string{a} + "+" + std::string{b};
}

bool dm_member(std::string_view channel, std::string_view user) {
  auto [a, b] = dm_users(channel);
  return !a.empty() && (user == a || user == b);
}

std::string check_room_message(const livehub::publication& x) {
  return check(x, {});
}

std::string check_room_message(const livehub::publication& x,
                               const livehub::identity& who) {
  return check(x, who.user);
}

} // namespace chat
