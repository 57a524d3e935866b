#include "login.hpp"

#include <cstdint>
#include <stdexcept>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "room_policy.hpp"
#include "tools/token/sign.hpp"

namespace chat {

namespace {

using livehub::http_reply;

/// A JSON object text written by `fill(writer)`.
template<class F>
std::string json_object(F fill) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> out{buf};
  out.StartObject();
  fill(out);
  out.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

http_reply error(int status, const std::string& code,
                 const std::string& message) {
  http_reply reply;
  reply.status = status;
  reply.body = json_object([&](auto& out) {
    out.Key("error");
    out.String(message.c_str(), message.size());
    out.Key("code");
    out.String(code.c_str(), code.size());
  });
  return reply;
}

http_reply wrong_method(const char* allow) {
  auto reply = error(405, "method_not_allowed", std::string{"use "} + allow);
  reply.headers.emplace_back("Allow", allow);
  return reply;
}

/// The claims of a login token for `name` (a valid user name).
std::string login_claims(const std::string& name, int64_t now) {
  return json_object([&](auto& out) {
    out.Key("sub");
    out.String(name.c_str(), name.size());
    // Every room to every logged-in user; private rooms are left to the
    // authorizer (dm_authorizer.hpp), which knows their two users.
    out.Key("channels");
    out.StartArray();
    out.String("room:*");
    out.EndArray();
    out.Key("publish");
    out.StartArray();
    out.String("room:*");
    out.EndArray();
    out.Key("info");
    out.StartObject();
    out.Key("name");
    out.String(name.c_str(), name.size());
    out.EndObject();
    out.Key("iat");
    out.Int64(now);
    out.Key("exp");
    out.Int64(now + token_lifetime.count());
  });
}

http_reply login(const livehub::http_request& req, const std::string& secret) {
  rapidjson::Document doc;
  doc.Parse(req.body.c_str(), req.body.size());
  if (doc.HasParseError() || !doc.IsObject())
    return error(400, "bad_command", "the body is {\"name\":\"...\"}");
  auto i = doc.FindMember("name");
  if (i == doc.MemberEnd() || !i->value.IsString())
    return error(400, "bad_command", "\"name\" must be a string");
  std::string name{i->value.GetString(), i->value.GetStringLength()};
  if (!valid_user_name(name))
    return error(400, "bad_command",
                 "a name is 1 to 32 letters, digits, '_' or '-'");
  // No password, no account: whoever asks for a valid name gets it (see
  // login.hpp: a demo of the token flow, not an authentication system).
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  std::string token;
  try {
    token = livehub::token_tool::sign_token("HS256", secret,
                                            login_claims(name, now));
  } catch (const std::exception& e) {
    return error(500, "internal", e.what());
  }
  http_reply reply;
  reply.body = json_object([&](auto& out) {
    out.Key("token");
    out.String(token.c_str(), token.size());
    out.Key("user");
    out.String(name.c_str(), name.size());
    out.Key("expires");
    out.Int64(now + token_lifetime.count());
  });
  return reply;
}

} // namespace

std::optional<http_reply> answer_chat_api(const livehub::http_request& req,
                                          const std::string& hmac_secret) {
  bool login_mode = !hmac_secret.empty();
  if (req.path == "/api/chat") {
    if (req.method != "GET")
      return wrong_method("GET");
    http_reply reply;
    reply.body = login_mode ? R"({"login":true})" : R"({"login":false})";
    return reply;
  }
  if (req.path == "/api/login" && login_mode) {
    if (req.method != "POST")
      return wrong_method("POST");
    return login(req, hmac_secret);
  }
  return std::nullopt;
}

} // namespace chat
