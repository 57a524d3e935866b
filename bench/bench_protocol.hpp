// The subset of livehub's protocol the benchmark's reference servers speak
// (livehub-baseline, livehub-epoll): reading a command or a publish body,
// and the JSON they answer with. Each server keeps its own I/O, subscriber
// lists and writes: what is measured.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace bench {

using writer_t = rapidjson::Writer<rapidjson::StringBuffer>;

/// A WebSocket command as read (see read_command).
struct command {
  enum kind_t {
    subscribe,
    unsubscribe,
    publish,
    ping,
    /// Another type: `unknown_command`.
    unknown,
    /// Not a JSON object, or no string `type`: `error`/`message` say why.
    malformed,
  };
  kind_t kind = malformed;
  /// The `id` as JSON text; empty when none.
  std::string id;
  /// The `channel` when it is a string of 1 to 255 bytes.
  std::optional<std::string> channel;
  /// A publish's `event` (default "message") and `data` (in `doc`).
  std::string event = "message";
  const rapidjson::Value* data = nullptr;
  const char* error = "";
  const char* message = "";
  rapidjson::Document doc;
};

inline std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  writer_t w{buf};
  v.Accept(w);
  return std::string{buf.GetString(), buf.GetSize()};
}

/// Reads one command (`result` is filled in place: it holds the document
/// its `data` points into).
inline void read_command(std::string_view text, command& result) {
  auto& doc = result.doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    result.error = "bad_json";
    result.message = "not a JSON object";
    return;
  }
  if (auto it = doc.FindMember("id"); it != doc.MemberEnd())
    result.id = to_json(it->value);
  auto type = doc.FindMember("type");
  if (type == doc.MemberEnd() || !type->value.IsString()) {
    result.error = "bad_command";
    result.message = "no type";
    return;
  }
  std::string_view t{type->value.GetString(), type->value.GetStringLength()};
  if (auto c = doc.FindMember("channel"); c != doc.MemberEnd()
      && c->value.IsString() && c->value.GetStringLength() > 0
      && c->value.GetStringLength() <= 255)
    result.channel.emplace(c->value.GetString(), c->value.GetStringLength());
  if (t == "subscribe") {
    result.kind = command::subscribe;
  } else if (t == "unsubscribe") {
    result.kind = command::unsubscribe;
  } else if (t == "publish") {
    result.kind = command::publish;
    if (auto e = doc.FindMember("event");
        e != doc.MemberEnd() && e->value.IsString())
      result.event.assign(e->value.GetString(), e->value.GetStringLength());
    if (auto d = doc.FindMember("data"); d != doc.MemberEnd())
      result.data = &d->value;
  } else if (t == "ping") {
    result.kind = command::ping;
  } else {
    result.kind = command::unknown;
  }
}

/// A POST /api/publish body: `{"channel":C,"type":T,"data":D}`.
struct publish_body {
  std::string channel;
  std::string type;
  const rapidjson::Value* data = nullptr;
  rapidjson::Document doc;
};

/// Reads a publish body into `result`; false when it is not one.
inline bool read_publish_body(std::string_view body, publish_body& result) {
  auto& doc = result.doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject())
    return false;
  auto c = doc.FindMember("channel");
  auto t = doc.FindMember("type");
  if (c == doc.MemberEnd() || !c->value.IsString()
      || c->value.GetStringLength() == 0 || t == doc.MemberEnd()
      || !t->value.IsString())
    return false;
  result.channel.assign(c->value.GetString(), c->value.GetStringLength());
  result.type.assign(t->value.GetString(), t->value.GetStringLength());
  if (auto d = doc.FindMember("data"); d != doc.MemberEnd())
    result.data = &d->value;
  return true;
}

/// `{"channel":C,"type":T,"data":D}`, built once per publication.
inline std::string publication_json(std::string_view channel,
                                    std::string_view event,
                                    const rapidjson::Value* data) {
  rapidjson::StringBuffer buf;
  writer_t w{buf};
  w.StartObject();
  w.Key("channel");
  w.String(channel.data(), static_cast<rapidjson::SizeType>(channel.size()));
  w.Key("type");
  w.String(event.data(), static_cast<rapidjson::SizeType>(event.size()));
  w.Key("data");
  if (data)
    data->Accept(w);
  else
    w.Null();
  w.EndObject();
  return std::string{buf.GetString(), buf.GetSize()};
}

inline std::string ok_json(const std::string& id) {
  return "{\"type\":\"ok\",\"id\":" + id + "}";
}

inline std::string pong_json(const std::string& id) {
  return id.empty() ? std::string{"{\"type\":\"pong\"}"}
                    : "{\"type\":\"pong\",\"id\":" + id + "}";
}

inline std::string error_json(const std::string& id, const char* code,
                              const char* message) {
  std::string s = "{\"type\":\"error\",";
  if (!id.empty())
    s += "\"id\":" + id + ",";
  s += std::string{"\"code\":\""} + code + "\",\"message\":\"" + message
    + "\"}";
  return s;
}

/// GET /api/stats.
inline std::string stats_json(size_t connections, size_t channels,
                              uint64_t subscriptions, uint64_t published,
                              uint64_t delivered) {
  return "{\"connections\":" + std::to_string(connections)
    + ",\"channels\":" + std::to_string(channels)
    + ",\"subscriptions\":" + std::to_string(subscriptions)
    + ",\"published\":" + std::to_string(published)
    + ",\"delivered\":" + std::to_string(delivered) + "}";
}

} // namespace bench
