#include "protocol/token.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <caf/sec.hpp>

#include "livehub/config.hpp"

namespace livehub::token {

namespace {

refusal refuse(std::string reason) {
  return refusal{std::move(reason)};
}

bool base64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
    || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/// Decodes one base64url part (no padding) with OpenSSL's decoder; none when
/// malformed.
std::optional<std::string> base64url_decode(std::string_view part) {
  if (part.empty() || part.size() % 4 == 1)
    return std::nullopt;
  std::string std_b64{part};
  for (auto& c : std_b64)
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  auto padding = (4 - std_b64.size() % 4) % 4;
  std_b64.append(padding, '=');
  std::string out(std_b64.size() / 4 * 3, '\0');
  auto n
    = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(std_b64.data()),
                      static_cast<int>(std_b64.size()));
  if (n < 0)
    return std::nullopt;
  // EVP_DecodeBlock counts the padding's zero bytes too.
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

/// The family of `alg` ("HS256" -> hmac), none for anything else ("none").
std::optional<key_kind> kind_of(std::string_view alg) {
  if (alg == "HS256" || alg == "HS384" || alg == "HS512")
    return key_kind::hmac;
  if (alg == "RS256" || alg == "RS384" || alg == "RS512")
    return key_kind::rsa;
  if (alg == "ES256" || alg == "ES384" || alg == "ES512")
    return key_kind::ec;
  return std::nullopt;
}

/// `alg` as a refusal may repeat it: clients read refusals in error frames,
/// and a token's header holds any bytes (invalid UTF-8 breaks a text frame).
/// Up to 16 printable ASCII characters are shown, anything else is not.
std::string shown_alg(std::string_view alg) {
  auto printable = [](char c) {
    return c > ' ' && c < 0x7f;
  };
  if (alg.empty() || alg.size() > 16
      || !std::all_of(alg.begin(), alg.end(), printable))
    return "(unprintable)";
  return std::string{alg};
}

std::optional<key_kind> public_key_kind(const std::string& pem) {
  auto bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio)
    return std::nullopt;
  auto key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!key)
    return std::nullopt;
  std::optional<key_kind> result;
  switch (EVP_PKEY_base_id(key)) {
    case EVP_PKEY_RSA: result = key_kind::rsa; break;
    case EVP_PKEY_EC: result = key_kind::ec; break;
    default: break;
  }
  EVP_PKEY_free(key);
  return result;
}

std::string to_json(const rapidjson::Value& x) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buf};
  x.Accept(writer);
  return {buf.GetString(), buf.GetSize()};
}

/// Reads an optional unix-time claim; false when present but not a number.
bool read_time(const rapidjson::Value& obj, const char* name, int64_t& out) {
  auto i = obj.FindMember(name);
  if (i == obj.MemberEnd())
    return true;
  auto& v = i->value;
  if (v.IsInt64())
    out = v.GetInt64();
  else if (v.IsUint64())
    out = INT64_MAX;
  else if (v.IsDouble() && v.GetDouble() > -9.2e18 && v.GetDouble() < 9.2e18)
    out = static_cast<int64_t>(v.GetDouble());
  else
    return false;
  return true;
}

/// Reads an optional array of non-empty strings; false when malformed.
bool read_patterns(const rapidjson::Value& obj, const char* name,
                   std::vector<std::string>& out) {
  auto i = obj.FindMember(name);
  if (i == obj.MemberEnd())
    return true;
  if (!i->value.IsArray())
    return false;
  for (auto& x : i->value.GetArray()) {
    if (!x.IsString() || x.GetStringLength() == 0)
      return false;
    out.emplace_back(x.GetString(), x.GetStringLength());
  }
  return true;
}

struct jwt_deleter {
  void operator()(jwt_t* x) const {
    jwt_free(x);
  }
};

} // namespace

std::variant<std::string, refusal> header_alg(std::string_view jwt) {
  if (jwt.empty())
    return refuse("no token");
  if (jwt.size() > max_token_size)
    return refuse("token longer than " + std::to_string(max_token_size)
                  + " bytes");
  auto dot1 = jwt.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : jwt.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos
      || jwt.find('.', dot2 + 1) != std::string_view::npos)
    return refuse("malformed token: not three parts");
  for (auto c : jwt)
    if (c != '.' && !base64url_char(c))
      return refuse("malformed token: not base64url");
  auto header = base64url_decode(jwt.substr(0, dot1));
  if (!header)
    return refuse("malformed token header");
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseStopWhenDoneFlag>(header->data(), header->size());
  if (doc.HasParseError() || !doc.IsObject())
    return refuse("malformed token header");
  auto alg = doc.FindMember("alg");
  if (alg == doc.MemberEnd() || !alg->value.IsString())
    return refuse("token header has no alg");
  return std::string{alg->value.GetString(), alg->value.GetStringLength()};
}

std::variant<claims, refusal> read_claims(std::string_view payload_json) {
  rapidjson::Document doc;
  doc.Parse(payload_json.data(), payload_json.size());
  if (doc.HasParseError() || !doc.IsObject())
    return refuse("malformed token payload");
  claims result;
  auto sub = doc.FindMember("sub");
  if (sub == doc.MemberEnd() || !sub->value.IsString()
      || sub->value.GetStringLength() == 0)
    return refuse("token has no sub");
  result.sub.assign(sub->value.GetString(), sub->value.GetStringLength());
  if (!read_time(doc, "exp", result.exp) || !read_time(doc, "nbf", result.nbf)
      || !read_time(doc, "iat", result.iat))
    return refuse("token times (exp, nbf, iat) must be numbers");
  if (!read_patterns(doc, "channels", result.channels))
    return refuse("token claim channels must be an array of patterns");
  if (!read_patterns(doc, "publish", result.publish))
    return refuse("token claim publish must be an array of patterns");
  if (auto ch = doc.FindMember("channel"); ch != doc.MemberEnd()) {
    if (!ch->value.IsString())
      return refuse("token claim channel must be a string");
    result.channel.assign(ch->value.GetString(), ch->value.GetStringLength());
  }
  if (auto info = doc.FindMember("info"); info != doc.MemberEnd()) {
    auto text = to_json(info->value);
    if (text.size() > max_info_size)
      return refuse("token claim info is larger than 1 KiB");
    result.info = json_text::trusted(std::move(text));
  }
  return result;
}

caf::expected<std::shared_ptr<const verifier>>
verifier::make(std::string hmac_secret, std::string public_pem,
               caf::timespan leeway) {
  if (hmac_secret.empty() && public_pem.empty())
    return std::shared_ptr<const verifier>{};
  std::shared_ptr<verifier> result{new verifier};
  result->secret_ = std::move(hmac_secret);
  if (!public_pem.empty()) {
    auto kind = public_key_kind(public_pem);
    if (!kind)
      return caf::make_error(caf::sec::invalid_argument,
                             "livehub.token-public-key holds no RSA or EC "
                             "public key");
    result->public_kind_ = *kind;
    result->public_pem_ = std::move(public_pem);
  }
  result->leeway_
    = std::chrono::duration_cast<std::chrono::seconds>(leeway).count();
  return std::shared_ptr<const verifier>{std::move(result)};
}

caf::expected<std::shared_ptr<const verifier>>
verifier::make(const hub_config& cfg) {
  std::string pem;
  if (!cfg.token_public_key.empty()) {
    std::ifstream in{cfg.token_public_key};
    if (!in)
      return caf::make_error(caf::sec::invalid_argument,
                             "cannot read livehub.token-public-key \""
                               + cfg.token_public_key + "\"");
    pem.assign(std::istreambuf_iterator<char>{in}, {});
  }
  return make(cfg.token_hmac_secret, std::move(pem), cfg.token_leeway);
}

std::variant<claims, refusal> verifier::verify(std::string_view jwt,
                                               int64_t now) const {
  // 1. What the token says it is, checked against what verifies it: an alg
  //    of another family than the key (HS256 against an RSA public key: the
  //    algorithm-confusion attack) or "none" never reaches libjwt.
  auto alg = header_alg(jwt);
  if (auto err = std::get_if<refusal>(&alg))
    return std::move(*err);
  auto& alg_name = std::get<std::string>(alg);
  auto kind = kind_of(alg_name);
  if (!kind)
    return refuse("token alg " + shown_alg(alg_name) + " is not accepted");
  const std::string* key = nullptr;
  if (*kind == key_kind::hmac && !secret_.empty())
    key = &secret_;
  else if (*kind != key_kind::hmac && !public_pem_.empty()
           && *kind == public_kind_)
    key = &public_pem_;
  if (!key)
    return refuse("token alg " + alg_name + " does not match the server's key");
  // 2. The signature, by libjwt (which wants a NUL-terminated token).
  std::string text{jwt};
  jwt_t* raw = nullptr;
  if (jwt_decode(&raw, text.c_str(),
                 reinterpret_cast<const unsigned char*>(key->data()),
                 static_cast<int>(key->size()))
        != 0
      || !raw)
    return refuse("bad token signature");
  std::unique_ptr<jwt_t, jwt_deleter> decoded{raw};
  // libjwt verified with the header's alg; it must be the one checked above.
  auto verified_alg = jwt_alg_str(jwt_get_alg(decoded.get()));
  if (!verified_alg || kind_of(verified_alg) != kind)
    return refuse("token alg does not match the server's key");
  // 3. The claims, and their times.
  auto payload = jwt_get_grants_json(decoded.get(), nullptr);
  if (!payload)
    return refuse("malformed token payload");
  auto result = read_claims(payload);
  free(payload);
  if (auto c = std::get_if<claims>(&result)) {
    // now - leeway: exp + leeway overflows for an exp near INT64_MAX (a
    // signed token may say anything), now and the leeway cannot.
    if (c->exp != 0 && now - leeway_ > c->exp)
      return refuse("token expired");
    if (c->nbf != 0 && now + leeway_ < c->nbf)
      return refuse("token not yet valid");
    if (c->iat != 0 && now + leeway_ < c->iat)
      return refuse("token issued in the future");
  }
  return result;
}

int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace livehub::token
