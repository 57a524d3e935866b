#include "tools/token/sign.hpp"

#include <jwt.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace livehub::token_tool {

namespace {

struct jwt_deleter {
  void operator()(jwt_t* ptr) const {
    jwt_free(ptr);
  }
};

struct c_string_deleter {
  void operator()(char* ptr) const {
    free(ptr);
  }
};

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what);
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

/// Refuses, with a message that helps, the keys libjwt would mishandle:
/// for an encrypted PEM key, OpenSSL's default is to ask for the passphrase
/// on the terminal, which would hang a tool run from a script.
void check_private_key(std::string_view alg, std::string_view key) {
  if (key.empty())
    fail(std::string{alg} + " needs a PEM private key, and the key is empty");
  if (contains(key, "ENCRYPTED"))
    fail("encrypted private keys are not supported; decrypt it first, e.g. "
         "`openssl pkey -in key.pem -out plain.pem`");
  if (contains(key, "PUBLIC KEY-----"))
    fail("signing needs the private key, and this is a public key");
  if (!contains(key, "PRIVATE KEY-----"))
    fail(std::string{alg}
         + " needs a PEM private key (\"-----BEGIN ... "
           "PRIVATE KEY-----\"), and the key is not one");
}

/// libjwt signs with whatever curve the EC key is on, but RFC 7518 ties
/// each algorithm to one curve (ES256: P-256, ES384: P-384, ES512: P-521),
/// and verifiers refuse the rest. The curve shows in the signature's length
/// (R and S side by side, each as long as the curve's order).
void check_curve(jwt_alg_t alg, const std::string& token) {
  struct curve {
    jwt_alg_t alg;
    size_t signature_chars; // base64url of R || S
    const char* name;
  };
  static constexpr curve curves[] = {{JWT_ALG_ES256, 86, "P-256"},   // 2 * 32 B
                                     {JWT_ALG_ES384, 128, "P-384"},  // 2 * 48 B
                                     {JWT_ALG_ES512, 176, "P-521"}}; // 2 * 66 B
  for (auto& c : curves)
    if (c.alg == alg
        && token.size() - token.rfind('.') - 1 != c.signature_chars)
      fail(std::string{"cannot sign "} + jwt_alg_str(alg)
           + ": the EC key is not on curve " + c.name
           + " (ES256 needs P-256, ES384 P-384, ES512 P-521)");
}

} // namespace

std::string sign_token(std::string_view alg, std::string_view key,
                       std::string_view claims_json) {
  // libjwt wants NUL-terminated strings.
  std::string alg_name{alg};
  auto alg_id = jwt_str_alg(alg_name.c_str());
  if (alg_id == JWT_ALG_INVAL)
    fail("unknown algorithm \"" + alg_name
         + "\" (expected HS256, HS384, HS512, RS256, RS384, RS512, ES256, "
           "ES384, ES512 or none)");
  // Names like "RS256" say the key's kind in their first letter.
  auto kind = alg_name.front();
  if (alg_id == JWT_ALG_NONE) {
    if (!key.empty())
      fail("algorithm none takes no key");
  } else if (kind == 'H') {
    if (key.empty())
      fail(alg_name + " needs a secret, and the secret is empty");
  } else {
    check_private_key(alg, key);
  }
  jwt_t* raw = nullptr;
  if (auto err = jwt_new(&raw); err != 0)
    fail(std::string{"cannot create a JWT: "} + std::strerror(err));
  std::unique_ptr<jwt_t, jwt_deleter> jwt{raw};
  std::string claims{claims_json};
  if (jwt_add_grants_json(jwt.get(), claims.c_str()) != 0)
    fail("the claims are not a JSON object with distinct names: " + claims);
  auto* key_bytes = alg_id == JWT_ALG_NONE
    ? nullptr
    : reinterpret_cast<const unsigned char*>(key.data());
  if (key.size() > static_cast<size_t>(INT32_MAX))
    fail("the key is too large");
  auto key_len = static_cast<int>(key.size());
  if (auto err = jwt_set_alg(jwt.get(), alg_id, key_bytes, key_len); err != 0)
    fail("cannot use " + alg_name + " with this key: " + std::strerror(err));
  // The key itself is read only now: a PEM that is not a private key of the
  // algorithm's type (RSA for RS*, EC for ES*) fails here.
  errno = 0;
  std::unique_ptr<char, c_string_deleter> token{jwt_encode_str(jwt.get())};
  if (!token) {
    auto err = errno != 0 ? errno : EINVAL;
    std::string why = std::strerror(err);
    if (kind == 'R' || kind == 'E')
      why = "the key is not a usable " + std::string{kind == 'R' ? "RSA" : "EC"}
        + " private key";
    fail("cannot sign " + alg_name + ": " + why);
  }
  std::string result = token.get();
  if (kind == 'E')
    check_curve(alg_id, result);
  return result;
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail("cannot read " + path + ": it is a directory");
  std::ifstream in{path, std::ios::binary};
  if (!in)
    fail("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad())
    fail("cannot read " + path + ": read error");
  return content.str();
}

std::chrono::seconds parse_duration(std::string_view text) {
  auto bad = [&](std::string_view why) -> std::chrono::seconds {
    fail("bad duration \"" + std::string{text} + "\": " + std::string{why}
         + " (examples: 90, 30s, 15m, 1h, 2d)");
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  if (digits == 0)
    return bad("expected a whole number of seconds or of s, m, h or d");
  auto unit = text.substr(digits);
  int64_t factor = 1;
  if (unit == "" || unit == "s")
    factor = 1;
  else if (unit == "m")
    factor = 60;
  else if (unit == "h")
    factor = 3600;
  else if (unit == "d")
    factor = 86400;
  else
    return bad("unknown unit \"" + std::string{unit} + "\"");
  // Bounded so that now + duration fits any clock: 100 years.
  constexpr int64_t max_seconds = int64_t{36500} * 86400;
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    value = value * 10 + (text[i] - '0');
    if (value > max_seconds)
      return bad("longer than 100 years");
  }
  if (value > max_seconds / factor)
    return bad("longer than 100 years");
  return std::chrono::seconds{value * factor};
}

} // namespace livehub::token_tool
