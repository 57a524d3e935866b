#include "transport/http_policy.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <sys/stat.h>

namespace livehub::http_policy {

namespace {

std::string lower(std::string_view s) {
  std::string r{s};
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char c) {
    return std::tolower(c);
  });
  return r;
}

/// "host:port" without a default port (80 for http/ws, 443 for https/wss).
std::string normalize_authority(std::string authority,
                                std::string_view scheme) {
  auto strip = [&](std::string_view suffix) {
    if (authority.size() > suffix.size()
        && authority.compare(authority.size() - suffix.size(), suffix.size(),
                             suffix)
          == 0)
      authority.resize(authority.size() - suffix.size());
  };
  if (scheme == "http" || scheme == "ws")
    strip(":80");
  else if (scheme == "https" || scheme == "wss")
    strip(":443");
  return authority;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string r;
  r.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      r += s[i];
      continue;
    }
    if (i + 2 >= s.size())
      return std::nullopt;
    auto hi = hex_value(s[i + 1]);
    auto lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    r += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return r;
}

/// Cuts the first `sep`-separated item off the front of `list`.
std::string_view take_item(std::string_view& list, char sep) {
  auto at = list.find(sep);
  auto item = list.substr(0, at);
  list = at == std::string_view::npos ? std::string_view{}
                                      : list.substr(at + 1);
  return item;
}

} // namespace

std::optional<std::string> query_param(std::string_view target,
                                       std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos)
    return std::nullopt;
  auto query = target.substr(q + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    auto pair = take_item(query, '&');
    auto eq = pair.find('=');
    if (pair.substr(0, eq) != name)
      continue;
    std::string value{eq == std::string_view::npos ? std::string_view{}
                                                   : pair.substr(eq + 1)};
    for (auto& c : value)
      if (c == '+')
        c = ' ';
    return percent_decode(value);
  }
  return std::nullopt;
}

bool origin_allowed(const std::vector<std::string>& allowed,
                    std::string_view origin, std::string_view host) {
  if (origin.empty())
    return true;
  auto o = lower(origin);
  if (!allowed.empty())
    return std::any_of(allowed.begin(), allowed.end(),
                       [&](const std::string& x) {
                         return x == "*" || lower(x) == o;
                       });
  auto sep = o.find("://");
  if (sep == std::string::npos || host.empty())
    return false;
  auto scheme = o.substr(0, sep);
  auto authority = o.substr(sep + 3);
  if (authority.find('/') != std::string::npos)
    return false;
  // The Host header carries no scheme: a default port there means the
  // default port of the Origin's scheme.
  return normalize_authority(authority, scheme)
    == normalize_authority(lower(host), scheme);
}

bool bearer_matches(std::string_view authorization, std::string_view key) {
  // The scheme name is case-insensitive (RFC 7235, section 2.1).
  constexpr std::string_view prefix = "bearer ";
  if (key.empty() || authorization.size() != prefix.size() + key.size()
      || lower(authorization.substr(0, prefix.size())) != prefix)
    return false;
  auto given = authorization.substr(prefix.size());
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i)
    diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

bool has_token(std::string_view list, std::string_view token) {
  auto wanted = lower(token);
  while (!list.empty()) {
    auto item = take_item(list, ',');
    auto first = item.find_first_not_of(" \t");
    if (first == std::string_view::npos)
      continue;
    item = item.substr(first, item.find_last_not_of(" \t") - first + 1);
    if (lower(item) == wanted)
      return true;
  }
  return false;
}

bool keeps_connection(std::string_view version, std::string_view connection,
                      std::string_view transfer_encoding,
                      std::string_view content_length) {
  if (!transfer_encoding.empty())
    return false;
  if (!std::all_of(content_length.begin(), content_length.end(),
                   [](unsigned char c) {
                     return std::isdigit(c) != 0;
                   }))
    return false;
  if (version == "HTTP/1.1")
    return !has_token(connection, "close");
  if (version == "HTTP/1.0")
    return has_token(connection, "keep-alive")
      && !has_token(connection, "close");
  return false;
}

const char* mime_type(std::string_view path) {
  struct entry {
    std::string_view ext;
    const char* type;
  };
  static constexpr entry types[] = {
    {".html", "text/html; charset=utf-8"},
    {".htm", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".gif", "image/gif"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".wasm", "application/wasm"},
    {".woff2", "font/woff2"},
  };
  auto dot = path.rfind('.');
  if (dot != std::string_view::npos) {
    auto ext = lower(path.substr(dot));
    for (auto& x : types)
      if (x.ext == ext)
        return x.type;
  }
  return "application/octet-stream";
}

route route_request(std::string_view method, std::string_view target,
                    std::string_view ws_path, bool serves_static) {
  struct api_path {
    std::string_view path;
    const char* method;
    handler to;
  };
  static constexpr api_path api[] = {
    {"/api/publish", "POST", handler::publish},
    {"/api/stats", "GET", handler::stats},
    {"/api/channels", "GET", handler::channels},
    {"/api/history", "GET", handler::history},
    {"/api/presence", "GET", handler::presence},
    {"/metrics", "GET", handler::metrics},
    {"/healthz", "GET", handler::healthz},
    {"/readyz", "GET", handler::readyz},
  };
  auto path = target.substr(0, target.find('?'));
  for (auto& x : api)
    if (path == x.path)
      return method == x.method ? route{x.to, nullptr}
                                : route{handler::wrong_method, x.method};
  if (path == ws_path)
    return {handler::upgrade_required, nullptr};
  if (serves_static && method == "GET")
    return {handler::static_file, nullptr};
  return {handler::not_found, nullptr};
}

std::optional<std::string> resolve_static(const std::string& root,
                                          std::string_view target) {
  if (root.empty() || target.empty() || target.front() != '/')
    return std::nullopt;
  target = target.substr(0, target.find_first_of("?#"));
  auto path = percent_decode(target);
  if (!path || path->find('\0') != std::string::npos
      || path->find('\\') != std::string::npos)
    return std::nullopt;
  // Refuse any ".." segment outright, then check the real path as well
  // (a symlink inside the root may still point outside it).
  size_t pos = 0;
  while (pos <= path->size()) {
    auto next = path->find('/', pos);
    if (next == std::string::npos)
      next = path->size();
    if (path->compare(pos, next - pos, "..") == 0)
      return std::nullopt;
    pos = next + 1;
  }
  std::string file = root + *path;
  if (file.back() == '/')
    file += "index.html";
  char real_root[PATH_MAX];
  char real_file[PATH_MAX];
  if (!realpath(root.c_str(), real_root) || !realpath(file.c_str(), real_file))
    return std::nullopt;
  std::string_view r{real_root};
  std::string_view f{real_file};
  if (f.size() <= r.size() || f.substr(0, r.size()) != r || f[r.size()] != '/')
    return std::nullopt;
  struct stat st;
  if (stat(real_file, &st) != 0)
    return std::nullopt;
  if (S_ISDIR(st.st_mode)) {
    // A directory named index.html would otherwise recurse without end.
    if (path->back() == '/')
      return std::nullopt;
    return resolve_static(root, std::string{target} + "/");
  }
  if (!S_ISREG(st.st_mode))
    return std::nullopt;
  return std::string{real_file};
}

} // namespace livehub::http_policy
