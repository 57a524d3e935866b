// libFuzzer target: the server's HTTP decisions (transport/http_policy.hpp)
// and the publish body parse, as http_routes.cpp makes them. The input is
// split at newlines into the fields of a request:
//
//     method \n target \n Origin \n Host \n Authorization \n api key \n
//     allowed origin \n query name \n body (the rest, newlines included)
//
// Missing fields are empty. Each decision is checked against what it
// promises (see the checks below); routing is also compared with the
// if-chain http_routes.cpp had before route_request() was extracted from it.
#include <sys/stat.h>

#include <cctype>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "protocol/codec.hpp"
#include "transport/http_policy.hpp"

using namespace livehub;
using namespace livehub::http_policy;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "fuzz_http: %s\n  text: %.*s\n", what,
               static_cast<int>(text.size()), text.data());
  std::abort();
}

void check(bool ok, const char* what, std::string_view text) {
  if (!ok)
    fail(what, text);
}

/// The web root resolve_static serves from, made once (see
/// LLVMFuzzerInitialize), with a secret beside it that must never be served:
///
///     base/secret.txt               outside the root
///     base/www/index.html, app.js, my file.txt, sub/index.html,
///              sub/deep/style.css
///     base/www/empty/               no index.html
///     base/www/odd/index.html/      a directory named index.html
///     base/www/out.txt -> base/secret.txt, outdir -> base,
///              in.js -> base/www/app.js
struct web_root {
  std::string base;
  std::string root;
  std::string real_root;

  web_root() {
    // In $TMPDIR (see fuzz/run).
    auto tmpl
      = (fs::temp_directory_path() / "livehub-fuzz-http-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      fail("cannot make a temporary directory", tmpl);
    base = fs::canonical(tmpl).string();
    root = base + "/www";
    fs::create_directories(root + "/sub/deep");
    fs::create_directories(root + "/empty");
    fs::create_directories(root + "/odd/index.html");
    for (auto path : {base + "/secret.txt", root + "/index.html",
                      root + "/app.js", root + "/my file.txt",
                      root + "/sub/index.html", root + "/sub/deep/style.css"})
      std::ofstream{path} << path << '\n';
    fs::create_symlink(base + "/secret.txt", root + "/out.txt");
    fs::create_symlink(base, root + "/outdir");
    fs::create_symlink(root + "/app.js", root + "/in.js");
    real_root = fs::canonical(root).string();
  }

  ~web_root() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }
};

web_root* www;

std::string lower(std::string_view s) {
  std::string r{s};
  for (auto& c : r)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

/// `s` with every byte but the unreserved ones percent-encoded.
std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string r;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      r += static_cast<char>(c);
    } else {
      r += '%';
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  return r;
}

// -- routing ------------------------------------------------------------------

/// The routing rules as the if-chain http_routes.cpp had before
/// route_request() (a new API path joins both), kept as the reference.
route reference_route(std::string_view method, std::string_view target,
                      std::string_view ws_path, bool serves_static) {
  auto path = target.substr(0, target.find('?'));
  auto only = [&](const char* allowed, handler to) {
    return method == allowed ? route{to, nullptr}
                             : route{handler::wrong_method, allowed};
  };
  if (path == "/api/publish")
    return only("POST", handler::publish);
  if (path == "/api/stats")
    return only("GET", handler::stats);
  if (path == "/api/channels")
    return only("GET", handler::channels);
  if (path == "/api/history")
    return only("GET", handler::history);
  if (path == "/api/presence")
    return only("GET", handler::presence);
  if (path == "/metrics")
    return only("GET", handler::metrics);
  if (path == "/healthz")
    return only("GET", handler::healthz);
  if (path == "/readyz")
    return only("GET", handler::readyz);
  if (path == ws_path)
    return {handler::upgrade_required, nullptr};
  if (serves_static && method == "GET")
    return {handler::static_file, nullptr};
  return {handler::not_found, nullptr};
}

void fuzz_route(std::string_view method, std::string_view target,
                std::string_view ws_path, bool serves_static) {
  auto r = route_request(method, target, ws_path, serves_static);
  auto ref = reference_route(method, target, ws_path, serves_static);
  check(r.to == ref.to, "route_request routes elsewhere than before", target);
  check((r.allow == nullptr) == (ref.allow == nullptr)
          && (!r.allow || std::string_view{r.allow} == ref.allow),
        "route_request allows another method than before", target);
  check((r.to == handler::wrong_method) == (r.allow != nullptr),
        "an Allow method without 405, or 405 without one", target);
  if (r.allow)
    check(method != r.allow, "405 for the allowed method", method);
  if (r.to == handler::static_file)
    check(serves_static && method == "GET", "static file without GET", target);
}

// -- policy -------------------------------------------------------------------

void fuzz_origin(std::string_view origin, std::string_view host,
                 std::string_view listed) {
  const std::vector<std::string> none;
  auto same = origin_allowed(none, origin, host);
  if (origin.empty())
    check(same, "a request without Origin is refused", host);
  // Case does not matter: the origin and host compare case-insensitively.
  check(origin_allowed(none, lower(origin), lower(host)) == same,
        "origin check depends on case", origin);
  if (!host.empty() && host.find('/') == std::string_view::npos)
    for (auto scheme : {"http://", "https://", "ws://", "wss://"})
      check(origin_allowed(none, scheme + std::string{host}, host),
            "an Origin naming the Host is refused", host);
  if (same && !origin.empty()) {
    auto o = lower(origin);
    auto sep = o.find("://");
    check(sep != std::string::npos && o.find('/', sep + 3) == std::string::npos,
          "an Origin that is no scheme://authority is allowed", origin);
  }
  const std::vector<std::string> list{std::string{listed}};
  auto by_list = origin_allowed(list, origin, host);
  check(!by_list || origin.empty() || listed == "*"
          || lower(listed) == lower(origin),
        "an Origin not on the list is allowed", origin);
  if (!listed.empty())
    check(origin_allowed(list, listed, host), "a listed origin is refused",
          listed);
  check(origin_allowed({"*"}, origin, host), "\"*\" refuses an origin", origin);
}

void fuzz_bearer(std::string_view authorization, std::string_view key) {
  auto ok = bearer_matches(authorization, key);
  if (key.empty())
    check(!ok, "an empty API key matches", authorization);
  if (ok)
    check(authorization.size() == key.size() + 7
            && lower(authorization.substr(0, 7)) == "bearer "
            && authorization.substr(7) == key,
          "a wrong Authorization matches", authorization);
  if (!key.empty()) {
    check(bearer_matches("Bearer " + std::string{key}, key),
          "the right key does not match", key);
    check(bearer_matches("bEARER " + std::string{key}, key),
          "the scheme name is case-sensitive", key);
  }
}

void fuzz_query(std::string_view target, std::string_view name,
                std::string_view value) {
  query_param(target, name);
  query_param(target, "limit");
  query_param(target, "after");
  // A value written the way a form encoder writes it reads back unchanged.
  if (name.find_first_of("&=#") != std::string_view::npos)
    return;
  auto built = "/api/channels?" + std::string{name} + "="
    + percent_encode(value) + "&" + std::string{name} + "=second";
  auto got = query_param(built, name);
  check(got && *got == value, "a percent-encoded value does not read back",
        built);
}

void fuzz_static(std::string_view target) {
  auto file = resolve_static(www->root, target);
  if (!file)
    return;
  check(file->compare(0, www->real_root.size() + 1, www->real_root + "/") == 0,
        "resolve_static serves a file outside the root", target);
  struct stat st;
  check(stat(file->c_str(), &st) == 0 && S_ISREG(st.st_mode),
        "resolve_static names no regular file", target);
  check(mime_type(*file) != nullptr, "no MIME type", *file);
}

void fuzz_body(std::string_view body) {
  if (codec::is_batch(body)) {
    auto parsed = codec::parse_publish_batch(body);
    if (auto list = std::get_if<0>(&parsed))
      for (auto& item : *list)
        if (auto x = std::get_if<publication>(&item))
          check(codec::valid_channel_name(x->channel), "bad channel in batch",
                body);
    return;
  }
  auto parsed = codec::parse_publish(body);
  if (auto x = std::get_if<publication>(&parsed))
    check(codec::valid_channel_name(x->channel)
            && codec::valid_event_type(x->type),
          "bad publication accepted", body);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  www = new web_root;
  std::atexit([] {
    delete www;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest{reinterpret_cast<const char*>(data), size};
  std::string_view field[8];
  for (auto& f : field) {
    auto nl = rest.find('\n');
    f = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{}
                                        : rest.substr(nl + 1);
  }
  auto& [method, target, origin, host, authorization, key, listed, name]
    = field;
  auto body = rest;
  fuzz_route(method, target, "/ws", true);
  fuzz_route(method, target, "/ws", false);
  fuzz_route(method, target, name, !body.empty());
  fuzz_origin(origin, host, listed);
  fuzz_bearer(authorization, key);
  fuzz_query(target, name, body);
  fuzz_static(target);
  mime_type(target);
  fuzz_body(body);
  return 0;
}
