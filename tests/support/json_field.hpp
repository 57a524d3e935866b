// Reading one member of a JSON frame in a test.
#pragma once

#include <string>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace livehub::test {

/// Member `key` of the JSON object `frame` as text: a string's value without
/// quotes, anything else as its JSON text (`42`, `true`, `null`, `[...]`);
/// "<missing>" when absent, "<not an object>" when `frame` is no object.
inline std::string json_field(const std::string& frame, const char* key) {
  rapidjson::Document doc;
  doc.Parse(frame.data(), frame.size());
  if (doc.HasParseError() || !doc.IsObject())
    return "<not an object>";
  auto i = doc.FindMember(key);
  if (i == doc.MemberEnd())
    return "<missing>";
  if (i->value.IsString())
    return {i->value.GetString(), i->value.GetStringLength()};
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  i->value.Accept(w);
  return {buf.GetString(), buf.GetSize()};
}

} // namespace livehub::test
