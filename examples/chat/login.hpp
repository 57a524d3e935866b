// The chat's own HTTP routes on livehub's port (hub_config::http_handler):
// which mode the page is in, and, in login mode, a login that hands out
// tokens.
//
// DEMO ONLY: the login takes any valid name, with no password and no
// account. It shows the token flow (a backend signs a token, the page
// connects with it, livehub checks it and authorizes channels by it); it is
// not an authentication system. A real application signs tokens only for
// users it has authenticated (session cookie, password, SSO, ...).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "livehub/http.hpp"

namespace chat {

/// How long a login token is valid (the page gets a fresh one before then).
constexpr std::chrono::seconds token_lifetime{3600};

/// Answers the chat's routes, or none for every other request:
///
/// - `GET /api/chat` → `{"login":true}` when `hmac_secret` is set (login
///   mode), `{"login":false}` otherwise (open mode: no tokens).
/// - `POST /api/login` with `{"name":"alice"}`, only when `hmac_secret` is
///   set: the name is 1 to 32 of A-Z a-z 0-9 _ -; answers
///   `{"token":T,"user":"alice","expires":E}`, T an HS256 token with
///   `sub` alice, `channels` and `publish` ["room:*"], `info`
///   {"name":"alice"}, `iat` now and `exp` E = now + token_lifetime. Bad
///   input: 400 `{"error":...,"code":"bad_command"}`.
///
/// Other methods on those paths: 405. Thread-safe (no state).
std::optional<livehub::http_reply>
answer_chat_api(const livehub::http_request& req,
                const std::string& hmac_secret);

} // namespace chat
