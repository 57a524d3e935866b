// Token verification: JSON Web Tokens (libjwt) as the `connect`, `refresh`
// and `subscribe` commands carry them. livehub checks the token's shape and
// its header's `alg` against the configured key before libjwt verifies the
// signature (never `alg: none`, never an RSA or EC public key used as an HMAC
// secret), then reads and checks the claims itself (libjwt 1.10 checks no
// `exp` or `nbf`). Knows nothing of sockets or actors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "livehub/fwd.hpp"
#include "livehub/json.hpp"

namespace livehub::token {

/// Longest token accepted, in bytes (a token with a 1 KiB `info` and a few
/// dozen patterns is well below it).
constexpr size_t max_token_size = 8 * 1024;

/// Largest `info` claim, in bytes of its JSON text.
constexpr size_t max_info_size = 1024;

/// The claims livehub reads; the others are ignored.
struct claims {
  /// `sub`: the user (required, not empty).
  std::string sub;
  /// `exp`, `nbf`, `iat`: unix seconds; 0 when absent.
  int64_t exp = 0;
  int64_t nbf = 0;
  int64_t iat = 0;
  /// `channels`: patterns the user may subscribe to.
  std::vector<std::string> channels;
  /// `publish`: patterns the user may publish to.
  std::vector<std::string> publish;
  /// `channel`: the channel of a subscription token; empty otherwise.
  std::string channel;
  /// `info`: any JSON value; `null` when absent.
  json_text info;
};

/// Why a token is refused: a short text for the client's error message.
struct refusal {
  std::string reason;
};

/// The algorithm family that a configured key verifies.
enum class key_kind { hmac, rsa, ec };

/// Verifies tokens with the keys of a hub_config. Immutable once made, so
/// client actors share one across threads.
class verifier {
 public:
  /// Reads the configured keys (`token_hmac_secret`, the PEM file of
  /// `token_public_key`); an error for an unreadable or unusable key. None
  /// (a null pointer) when neither is set.
  static caf::expected<std::shared_ptr<const verifier>>
  make(const hub_config& cfg);

  /// A verifier for the given keys (an empty string: that key is not set).
  /// `public_pem` is the text of a PEM public key.
  static caf::expected<std::shared_ptr<const verifier>>
  make(std::string hmac_secret, std::string public_pem, caf::timespan leeway);

  /// Verifies `jwt` at unix time `now`: shape, `alg` against the keys,
  /// signature, `exp`/`nbf`/`iat` within the leeway, then the claims' types.
  std::variant<claims, refusal> verify(std::string_view jwt, int64_t now) const;

  /// The leeway in seconds.
  int64_t leeway() const {
    return leeway_;
  }

 private:
  verifier() = default;

  std::string secret_;
  std::string public_pem_;
  key_kind public_kind_ = key_kind::rsa;
  int64_t leeway_ = 0;
};

/// The `alg` of a token's header, read without verifying anything; none when
/// the token is not three dot-separated base64url parts with a JSON object
/// header holding a string `alg`. (The part of verify() before libjwt.)
std::variant<std::string, refusal> header_alg(std::string_view jwt);

/// Reads the claims livehub uses from a verified token's payload (a JSON
/// object text), checking their types and sizes. (The part of verify()
/// after libjwt.)
std::variant<claims, refusal> read_claims(std::string_view payload_json);

/// The current unix time in seconds.
int64_t unix_now();

} // namespace livehub::token
