// libFuzzer target: token verification (protocol/token.hpp), livehub's part
// around libjwt. The first byte picks what the rest of the input is:
//
//   0  a token as a client sends it: header_alg, and verify by an HS256
//      verifier, an RS256 one and one holding both keys;
//   1  a token payload: read_claims;
//   2  header JSON \n payload JSON, which the harness encodes and signs with
//      HMAC-SHA256 under the verifiers' secret, so that the fuzzer reaches
//      what follows the signature (claims, exp/nbf/iat); and signs again with
//      the RSA public key's PEM text as the HMAC secret (the
//      algorithm-confusion attack), which must never pass;
//   3  header JSON \n payload JSON \n signature text (alg none and other
//      forgeries).
//
// Invariants: verify never accepts a token whose header's alg is not of the
// family of the key that verified it, never alg none, never a forgery; what
// it accepts has a user and is within its times; what it refuses, it says
// in at most 100 bytes of UTF-8 (clients read it in an error frame).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/codec.hpp"
#include "protocol/token.hpp"
#include "strict_json.hpp"

using namespace livehub;
using namespace livehub::token;

namespace {

/// The HS256 secret of the verifiers (the seed tokens are signed with it).
constexpr std::string_view secret = "livehub-fuzz-secret";

/// An RSA 2048 public key (its private half was thrown away: nothing here
/// can sign for it, so the RS256 verifier must accept nothing).
constexpr std::string_view rsa_public_pem = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAkr4l+p0Rezv0d6CTGUSH
rdSPusRiPxhaOEOPOPrgIXYEMpsMd8yXoJLJtdGT/gBBEOA56Ctt3xf3YUcUDUUK
87jsjhmkDMjTDqyQFKVGDXOtxMiUHKFYFwxQ2J7HdnWe7TL/b6uQv/sGRigf9kg4
W3zhQbd4xYub26P9RnafQBIo8KIUbuG/cRMx31hvzIViiAW3BYH0sFkooW/eUg68
ZvsW1jK36M4MtTmOBdw9waCD5ANj7x/zFn7dXh6miZPM7d3wxqxGilOuOYSzjQlp
V4ek+nPWqsJKAXq2opQayBJsBxzLfuWjfwpkyQANQ9BAIncSRGJ/WkO2feMUXIK0
lQIDAQAB
-----END PUBLIC KEY-----
)";

/// "Now" for every verification: 2023-11-14, fixed so findings replay.
constexpr int64_t now = 1700000000;

constexpr auto leeway = std::chrono::seconds(5);

std::shared_ptr<const verifier> hmac_only;
std::shared_ptr<const verifier> rsa_only;
std::shared_ptr<const verifier> both;

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "fuzz_token: %s\n  token: %.*s\n", what,
               static_cast<int>(text.size()), text.data());
  std::abort();
}

void check(bool ok, const char* what, std::string_view text) {
  if (!ok)
    fail(what, text);
}

std::shared_ptr<const verifier> make_verifier(std::string hmac,
                                              std::string pem) {
  auto v = verifier::make(std::move(hmac), std::move(pem), leeway);
  if (!v || !*v)
    fail("cannot make a verifier", "");
  return *v;
}

std::string base64url(std::string_view bytes) {
  static constexpr char digits[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string r;
  size_t i = 0;
  auto byte = [&](size_t k) {
    return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k]));
  };
  for (; i + 2 < bytes.size(); i += 3) {
    auto n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int shift : {18, 12, 6, 0})
      r += digits[(n >> shift) & 63];
  }
  if (auto left = bytes.size() - i; left > 0) {
    auto n = byte(i) << 16 | (left == 2 ? byte(i + 1) << 8 : 0);
    r += digits[(n >> 18) & 63];
    r += digits[(n >> 12) & 63];
    if (left == 2)
      r += digits[(n >> 6) & 63];
  }
  return r;
}

std::string hmac_sha256(std::string_view key, std::string_view text) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac,
       &len);
  return std::string{reinterpret_cast<char*>(mac), len};
}

/// The family of an alg, as verify() must see it (none for anything else).
enum class family { hmac, rsa, ec, other };

family family_of(std::string_view alg) {
  if (alg == "HS256" || alg == "HS384" || alg == "HS512")
    return family::hmac;
  if (alg == "RS256" || alg == "RS384" || alg == "RS512")
    return family::rsa;
  if (alg == "ES256" || alg == "ES384" || alg == "ES512")
    return family::ec;
  return family::other;
}

/// What must hold of a refusal: clients read its reason in an error frame,
/// so it is short UTF-8 text, whatever bytes the token held.
void check_refused(const refusal& r, std::string_view jwt) {
  check(r.reason.size() <= 100, "a refusal reason longer than 100 bytes",
        r.reason);
  check(fuzz::strict_json::valid(codec::quote(r.reason)),
        "a refusal reason that is no UTF-8 text", jwt);
}

/// What must hold of a token `v` accepted: its header's alg is of a family
/// `v` has a key for, and its claims are complete and current.
void check_accepted(const std::variant<claims, refusal>& result,
                    std::string_view jwt, bool has_hmac, bool has_rsa) {
  if (auto r = std::get_if<refusal>(&result))
    return check_refused(*r, jwt);
  auto c = std::get_if<claims>(&result);
  auto alg = header_alg(jwt);
  auto name = std::get_if<std::string>(&alg);
  check(name != nullptr, "accepted a token whose alg header_alg refuses", jwt);
  auto f = family_of(*name);
  check(f != family::other, "accepted alg none or an unknown alg", jwt);
  check((f == family::hmac && has_hmac) || (f == family::rsa && has_rsa),
        "accepted a token whose alg does not match the key", jwt);
  check(!c->sub.empty(), "accepted a token without sub", jwt);
  check(c->info.str().size() <= max_info_size, "accepted a too large info",
        jwt);
  // In 128 bits: the harness must not overflow where livehub must not.
  __int128 t = now;
  __int128 slack = std::chrono::seconds(leeway).count();
  check(c->exp == 0 || t <= __int128{c->exp} + slack,
        "accepted an expired token", jwt);
  check(c->nbf == 0 || __int128{c->nbf} <= t + slack,
        "accepted a token before its nbf", jwt);
  check(c->iat == 0 || __int128{c->iat} <= t + slack,
        "accepted a token issued in the future", jwt);
  for (auto& p : c->channels)
    check(!p.empty(), "accepted an empty channel pattern", jwt);
  for (auto& p : c->publish)
    check(!p.empty(), "accepted an empty publish pattern", jwt);
}

void verify_all(std::string_view jwt) {
  auto alg = header_alg(jwt);
  if (auto r = std::get_if<refusal>(&alg))
    check_refused(*r, jwt);
  check_accepted(hmac_only->verify(jwt, now), jwt, true, false);
  auto by_rsa = rsa_only->verify(jwt, now);
  auto refused = std::get_if<refusal>(&by_rsa);
  check(refused != nullptr,
        "the RS256 verifier accepted a token nobody can sign", jwt);
  check_refused(*refused, jwt);
  check_accepted(both->verify(jwt, now), jwt, true, true);
}

/// Splits `text` at its first newline.
std::pair<std::string_view, std::string_view> split(std::string_view text) {
  auto nl = text.find('\n');
  if (nl == std::string_view::npos)
    return {text, {}};
  return {text.substr(0, nl), text.substr(nl + 1)};
}

void fuzz_signed(std::string_view text) {
  auto [header, payload] = split(text);
  auto signing_input = base64url(header) + "." + base64url(payload);
  // Signed with the verifiers' secret: accepted only when honest.
  auto jwt = signing_input + "."
    + base64url(hmac_sha256(secret, signing_input));
  auto by_hmac = hmac_only->verify(jwt, now);
  check_accepted(by_hmac, jwt, true, false);
  if (std::holds_alternative<claims>(by_hmac)) {
    auto alg = header_alg(jwt);
    check(std::get<std::string>(alg) == "HS256",
          "accepted an HMAC-SHA256 signature for another alg", jwt);
  }
  check_accepted(both->verify(jwt, now), jwt, true, true);
  check(std::holds_alternative<refusal>(rsa_only->verify(jwt, now)),
        "the RS256 verifier accepted an HMAC token", jwt);
  // Signed with the public key's text as the HMAC secret: the confusion
  // attack, which no verifier holding that public key may accept.
  auto forged = signing_input + "."
    + base64url(hmac_sha256(rsa_public_pem, signing_input));
  check(std::holds_alternative<refusal>(rsa_only->verify(forged, now)),
        "algorithm confusion: the RSA public key accepted as HMAC secret",
        forged);
  check(std::holds_alternative<refusal>(both->verify(forged, now)),
        "algorithm confusion (with both keys)", forged);
}

void fuzz_unsigned(std::string_view text) {
  auto [header, rest] = split(text);
  auto [payload, signature] = split(rest);
  auto jwt = base64url(header) + "." + base64url(payload) + "."
    + std::string{signature};
  // Only the true signature passes (the fuzzer may learn it from libjwt's
  // comparison: then the token is honest after all).
  auto honest = base64url(
    hmac_sha256(secret, std::string_view{jwt}.substr(0, jwt.rfind('.'))));
  if (std::holds_alternative<claims>(hmac_only->verify(jwt, now)))
    check(signature == honest, "accepted a forged signature", jwt);
  verify_all(jwt);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  hmac_only = make_verifier(std::string{secret}, "");
  rsa_only = make_verifier("", std::string{rsa_public_pem});
  both = make_verifier(std::string{secret}, std::string{rsa_public_pem});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
  switch (data[0] % 4) {
    case 0: verify_all(text); break;
    case 1: {
      auto result = read_claims(text);
      if (auto r = std::get_if<refusal>(&result))
        check_refused(*r, text);
      break;
    }
    case 2: fuzz_signed(text); break;
    case 3: fuzz_unsigned(text); break;
  }
  return 0;
}
