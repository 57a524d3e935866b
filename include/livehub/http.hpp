// HTTP requests an application answers itself on livehub's port (e.g. a
// login endpoint that hands out tokens): see hub_config::http_handler.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace livehub {

/// One HTTP request, as hub_config::http_handler sees it.
struct http_request {
  /// "GET", "POST", ...
  std::string method;
  /// The request target: path and query, e.g. "/api/login?next=%2F".
  std::string target;
  /// The path of `target` (without the query).
  std::string path;
  /// The request's headers, names as sent.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The body (at most livehub.max-message-size bytes).
  std::string body;
  /// The peer's IP address, e.g. "127.0.0.1".
  std::string peer;

  /// The value of header `name` (case-insensitive), empty when absent.
  std::string header(std::string_view name) const;
};

/// The application's answer to an http_request.
struct http_reply {
  /// The HTTP status, e.g. 200, 400, 401.
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Further headers. livehub sets Content-Type, Content-Length,
  /// Cache-Control: no-store, X-Content-Type-Options and Connection itself:
  /// `Connection: close` here closes the connection after the reply; other
  /// Connection values, Content-Length and Transfer-Encoding are ignored.
  std::vector<std::pair<std::string, std::string>> headers;
};

} // namespace livehub
