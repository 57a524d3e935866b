// Tokens for livehub's tests (PROTOCOL.md, "Identity and authorization"):
// well-signed ones through libjwt, key pairs made by the `openssl` command,
// and forged ones (alg none, garbage signatures) built by hand.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace livehub::test {

/// A token with the claims of `claims_json` (a JSON object text), signed
/// with `alg` ("HS256", "RS256", "ES256", ..., or "none" with an empty key)
/// and `key` (the HMAC secret or the PEM private key text).
/// @throws std::runtime_error when libjwt cannot sign it.
std::string sign(std::string_view alg, std::string_view key,
                 std::string_view claims_json);

/// `sign("HS256", secret, claims_json)`.
std::string hs256(std::string_view secret, std::string_view claims_json);

/// A key pair in PEM text and in files.
struct key_pair {
  std::string private_pem; ///< PKCS#8 "-----BEGIN PRIVATE KEY-----"
  std::string public_pem;  ///< SPKI "-----BEGIN PUBLIC KEY-----"
  std::string private_path;
  std::string public_path;
};

/// Makes an RSA 2048 (`kind` "rsa") or EC P-256 (`kind` "ec") key pair with
/// the `openssl` command, in files `<kind>_private.pem` and
/// `<kind>_public.pem` of `dir` (created if missing; the caller removes it).
/// @throws std::runtime_error when `openssl` fails, with its messages.
key_pair make_key_pair(const std::string& kind, const std::string& dir);

/// `base64url(header_json) + "." + base64url(payload_json) + "." + signature`,
/// with `signature` taken as it is (already base64url text, or empty, or
/// garbage): for tokens no honest signer makes.
std::string forge(std::string_view header_json, std::string_view payload_json,
                  std::string_view signature);

/// Base64url of `bytes`, without padding (RFC 7515).
std::string base64url(std::string_view bytes);

/// Seconds since the Unix epoch, the unit of `exp`, `nbf` and `iat`.
int64_t unix_now();

} // namespace livehub::test
