// The HTTP decisions of the server, free of websocketpp so that they are
// tested on their own: origin checks, bearer keys, static file paths.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace livehub::http_policy {

/// True when a request with header `origin` (empty: none) to `host` (the Host
/// header) may proceed. With no `allowed` list: no Origin, or an Origin whose
/// `host[:port]` (scheme and default port removed) equals `host`. With a list:
/// no Origin or exactly a listed origin (case-insensitive); "*" allows all.
bool origin_allowed(const std::vector<std::string>& allowed,
                    std::string_view origin, std::string_view host);

/// True when `authorization` is `Bearer <key>` (compared in constant time).
bool bearer_matches(std::string_view authorization, std::string_view key);

/// The value of query parameter `name` in `target` (e.g. "/api/channels?
/// limit=10&after=room%3Aa"), percent-decoded, with `+` read as a space (as
/// form encoders write it); none when absent or malformed.
std::optional<std::string> query_param(std::string_view target,
                                       std::string_view name);

/// The Content-Type for a file name, by extension.
const char* mime_type(std::string_view path);

/// The file under `root` that `target` (the request target, e.g.
/// "/app.js?v=1") names, "index.html" for directories; none when it escapes
/// the root, is not a regular file, or is malformed.
std::optional<std::string> resolve_static(const std::string& root,
                                          std::string_view target);

} // namespace livehub::http_policy
