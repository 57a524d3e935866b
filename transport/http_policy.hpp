// The HTTP decisions of the server, free of websocketpp so that they are
// tested (and fuzzed) on their own: origin checks, bearer keys, query
// strings, static file paths, which handler a request goes to, and whether
// its connection stays open after the response.
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

/// True when the comma-separated header value `list` names `token`
/// (case-insensitive, spaces around items ignored): "keep-alive, Upgrade"
/// names "upgrade".
bool has_token(std::string_view list, std::string_view token);

/// Whether a plain HTTP request lets its connection carry another request
/// after the response (keep-alive), by its version (e.g. "HTTP/1.1") and
/// headers (empty: absent): HTTP/1.1 unless `Connection` names `close`,
/// HTTP/1.0 only when it names `keep-alive`, no other version. Never when
/// the request's end is in doubt: with a `Transfer-Encoding` (livehub reads
/// no chunked body) or a `Content-Length` other than plain digits (two of
/// them arrive as "5, 5").
bool keeps_connection(std::string_view version, std::string_view connection,
                      std::string_view transfer_encoding,
                      std::string_view content_length);

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
