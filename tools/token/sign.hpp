// Signing livehub tokens (JWTs, PROTOCOL.md "Identity and authorization")
// with libjwt: the part of the `livehub-token` tool that tests reuse to make
// the tokens they connect with.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace livehub::token_tool {

/// Signs a JWT whose claims are the members of `claims_json` (a JSON object
/// text) with algorithm `alg`: "HS256", "HS384", "HS512" (`key` is the shared
/// secret), "RS256", "RS384", "RS512", "ES256", "ES384", "ES512" (`key` is
/// the text of a PEM private key, not encrypted), or "none" (`key` must be
/// empty; for tests of attacks only). Returns the compact token text.
/// @throws std::runtime_error saying what is wrong with the algorithm, the
///         key or the claims.
std::string sign_token(std::string_view alg, std::string_view key,
                       std::string_view claims_json);

/// The whole content of the file at `path`.
/// @throws std::runtime_error naming the file and the reason.
std::string read_file(const std::string& path);

/// Parses a duration: a whole number of seconds ("90"), or a number with one
/// unit among `s`, `m`, `h` and `d` ("30s", "15m", "1h", "2d").
/// @throws std::runtime_error on anything else (empty, negative, fractional,
///         unknown unit, too large).
std::chrono::seconds parse_duration(std::string_view text);

} // namespace livehub::token_tool
