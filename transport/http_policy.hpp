// The HTTP decisions of the server, free of websocketpp so that they are
// tested (and fuzzed) on their own: origin checks, bearer keys, query
// strings, static file paths, and which handler a request goes to.
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

/// The handler of a plain HTTP request (after its Origin passed).
enum class handler {
  publish,          ///< POST /api/publish
  stats,            ///< GET /api/stats
  channels,         ///< GET /api/channels
  history,          ///< GET /api/history
  presence,         ///< GET /api/presence
  metrics,          ///< GET /metrics
  healthz,          ///< GET /healthz
  readyz,           ///< GET /readyz
  upgrade_required, ///< the WebSocket path without an upgrade: 426
  static_file,      ///< GET of anything else, with a web root
  wrong_method,     ///< a known path with another method: 405
  not_found,        ///< anything else: 404
};

/// Where a request goes, and for wrong_method the one method its path takes.
struct route {
  handler to = handler::not_found;
  const char* allow = nullptr;
};

/// Routes a request by its method and target (the path before `?` counts):
/// the API paths first, then `ws_path` (the WebSocket path), then static
/// files when `serves_static` (a web root is set) and the method is GET.
route route_request(std::string_view method, std::string_view target,
                    std::string_view ws_path, bool serves_static);

} // namespace livehub::http_policy
