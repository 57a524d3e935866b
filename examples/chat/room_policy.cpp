#include "room_policy.hpp"

#include <algorithm>
#include <cctype>

#include <rapidjson/document.h>

namespace chat {

namespace {

bool valid_room(const std::string& channel) {
  constexpr std::string_view prefix = "room:";
  if (channel.compare(0, prefix.size(), prefix) != 0)
    return false;
  auto name = std::string_view{channel}.substr(prefix.size());
  return !name.empty() && name.size() <= 64
    && std::all_of(name.begin(), name.end(), [](unsigned char c) {
         return std::isalnum(c) || c == '_' || c == '-';
       });
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

} // namespace

std::string check_room_message(const livehub::publication& x) {
  if (!valid_room(x.channel))
    return "rooms are channels room:<name>, the name 1 to 64 letters, digits, "
           "'_' or '-'";
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
  return check_text(doc, "text", max_text_size);
}

} // namespace chat
