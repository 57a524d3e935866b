// The HTTP decisions on their own: which origins may connect, which bearer
// keys match, what MIME type a file has, which file a request names, and
// whether a request keeps its connection.
#include <doctest/doctest.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>

#include "transport/http_policy.hpp"

using namespace livehub::http_policy;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> no_list;

bool same_origin(std::string_view origin, std::string_view host) {
  return origin_allowed(no_list, origin, host);
}

std::string mime(std::string_view path) {
  return mime_type(path);
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

/// A web root in a fresh temporary directory:
///
///     base/secret.txt            outside the root
///     base/www/index.html
///     base/www/app.js
///     base/www/my file.txt
///     base/www/sub/index.html
///     base/www/sub/deep/style.css
///     base/www/empty/            no index.html
///     base/www/odd/index.html/   a directory named index.html
///     base/www/pipe              a FIFO
///     base/www/out.txt  -> base/secret.txt
///     base/www/outdir   -> base
///     base/www/in.js    -> base/www/app.js
struct web_root {
  std::string base;
  std::string root;

  web_root() {
    char tmpl[] = "/tmp/livehub-http-policy-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    char real[PATH_MAX];
    REQUIRE(realpath(tmpl, real) != nullptr);
    base = real;
    root = base + "/www";
    fs::create_directories(root + "/sub/deep");
    fs::create_directories(root + "/empty");
    fs::create_directories(root + "/odd/index.html");
    write(base + "/secret.txt");
    write(root + "/index.html");
    write(root + "/app.js");
    write(root + "/my file.txt");
    write(root + "/sub/index.html");
    write(root + "/sub/deep/style.css");
    REQUIRE(mkfifo((root + "/pipe").c_str(), 0600) == 0);
    fs::create_symlink(base + "/secret.txt", root + "/out.txt");
    fs::create_symlink(base, root + "/outdir");
    fs::create_symlink(root + "/app.js", root + "/in.js");
  }

  ~web_root() {
    std::error_code ec;
    fs::remove_all(base, ec);
  }

  static void write(const std::string& path) {
    std::ofstream out{path};
    out << path << '\n';
  }

  std::optional<std::string> get(std::string_view target) const {
    return resolve_static(root, target);
  }

  std::string file(std::string_view rel) const {
    return root + "/" + std::string{rel};
  }
};

} // namespace

// -- origins ------------------------------------------------------------------

TEST_CASE("a request without Origin is allowed") {
  CHECK(same_origin("", "h:8080"));
  CHECK(same_origin("", ""));
  CHECK(origin_allowed({"https://app.example"}, "", "h"));
  CHECK(origin_allowed({"*"}, "", "h"));
}

TEST_CASE("an Origin equal to the Host is allowed") {
  CHECK(same_origin("http://h:8080", "h:8080"));
  CHECK(same_origin("https://h:8443", "h:8443"));
  CHECK(same_origin("http://127.0.0.1:9000", "127.0.0.1:9000"));
  CHECK(same_origin("http://[::1]:8080", "[::1]:8080"));
}

TEST_CASE("default ports count as the same origin") {
  CHECK(same_origin("http://h", "h"));
  CHECK(same_origin("http://h", "h:80"));
  CHECK(same_origin("http://h:80", "h"));
  CHECK(same_origin("https://h", "h"));
  CHECK(same_origin("https://h:443", "h"));
  CHECK(same_origin("https://h", "h:443"));
  CHECK(same_origin("ws://h", "h:80"));
  CHECK(same_origin("wss://h:443", "h"));
  CHECK(same_origin("http://[::1]", "[::1]:80"));
}

TEST_CASE("a different port is another origin") {
  CHECK_FALSE(same_origin("http://h:8080", "h:9090"));
  CHECK_FALSE(same_origin("http://h:8080", "h"));
  CHECK_FALSE(same_origin("http://h", "h:8080"));
  CHECK_FALSE(same_origin("https://h", "h:80")); // 80 is not https' default
  CHECK_FALSE(same_origin("http://h:443", "h")); // 443 is not http's default
  CHECK_FALSE(same_origin("http://h:8080", "h:80"));
  CHECK_FALSE(same_origin("http://h:80", "h:8080"));
}

TEST_CASE("a different host is another origin") {
  CHECK_FALSE(same_origin("http://evil.example", "h"));
  CHECK_FALSE(same_origin("http://h.evil.example", "h"));
  CHECK_FALSE(same_origin("http://evilh", "h"));
  CHECK_FALSE(same_origin("http://h", "h.example"));
  CHECK_FALSE(same_origin("http://localhost:8080", "127.0.0.1:8080"));
}

TEST_CASE("origins and hosts compare case-insensitively") {
  CHECK(same_origin("HTTP://H:8080", "h:8080"));
  CHECK(same_origin("http://h:8080", "H:8080"));
  CHECK(same_origin("HTTPS://Example.COM", "example.com:443"));
}

TEST_CASE("malformed origins are refused") {
  for (auto origin : {"null", "h", "h:8080", "http://h/", "http://h/path",
                      "http://h:8080/x", "//h:8080", "http:/h"}) {
    CAPTURE(origin);
    CHECK_FALSE(same_origin(origin, "h:8080"));
    CHECK_FALSE(same_origin(origin, "h"));
  }
}

TEST_CASE("an Origin without a Host header is refused") {
  CHECK_FALSE(same_origin("http://h", ""));
}

TEST_CASE("with a list, exactly the listed origins are allowed") {
  std::vector<std::string> list{"https://app.example", "http://localhost:3000"};
  CHECK(origin_allowed(list, "https://app.example", "api.example"));
  CHECK(origin_allowed(list, "http://localhost:3000", "localhost:8080"));
  CHECK(origin_allowed(list, "HTTPS://APP.EXAMPLE", "api.example"));
  CHECK_FALSE(origin_allowed(list, "https://evil.example", "api.example"));
  CHECK_FALSE(origin_allowed(list, "http://app.example", "api.example"));
  CHECK_FALSE(origin_allowed(list, "https://app.example.evil", "api.example"));
  CHECK_FALSE(origin_allowed(list, "https://app.example/", "api.example"));
  CHECK_FALSE(origin_allowed(list, "null", "api.example"));
  // Exact matching: a default port written out is not the listed origin.
  CHECK_FALSE(origin_allowed(list, "https://app.example:443", "api.example"));
}

TEST_CASE("with a list, the same origin is refused unless listed") {
  std::vector<std::string> list{"https://app.example"};
  CHECK_FALSE(origin_allowed(list, "http://h:8080", "h:8080"));
  CHECK_FALSE(origin_allowed(list, "http://h", "h"));
}

TEST_CASE("a list entry is matched case-insensitively") {
  std::vector<std::string> list{"HTTPS://App.Example"};
  CHECK(origin_allowed(list, "https://app.example", "x"));
}

TEST_CASE("\"*\" in the list allows every origin") {
  std::vector<std::string> star{"*"};
  CHECK(origin_allowed(star, "https://evil.example", "h"));
  CHECK(origin_allowed(star, "null", "h"));
  CHECK(origin_allowed(star, "http://h:1", ""));
  std::vector<std::string> mixed{"https://app.example", "*"};
  CHECK(origin_allowed(mixed, "https://evil.example", "h"));
}

// -- bearer keys --------------------------------------------------------------

TEST_CASE("the right bearer key matches") {
  CHECK(bearer_matches("Bearer s3cr3t", "s3cr3t"));
  CHECK(
    bearer_matches("Bearer " + std::string(200, 'k'), std::string(200, 'k')));
}

TEST_CASE("a wrong bearer key does not match") {
  CHECK_FALSE(bearer_matches("Bearer s3cr3x", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Bearer S3CR3T", "s3cr3t")); // keys are exact
  CHECK_FALSE(bearer_matches("Bearer s3cr3", "s3cr3t"));  // a prefix
  CHECK_FALSE(bearer_matches("Bearer s", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Bearer s3cr3t!", "s3cr3t")); // longer
  CHECK_FALSE(bearer_matches("Bearer s3cr3t ", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Bearer  s3cr3t", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Bearer ", "s3cr3t"));
  CHECK_FALSE(bearer_matches("", "s3cr3t"));
}

TEST_CASE("only the Bearer scheme carries the key") {
  CHECK_FALSE(bearer_matches("s3cr3t", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Basic s3cr3t", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Bearers3cr3t", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Bearer:s3cr3t", "s3cr3t"));
  CHECK_FALSE(bearer_matches("Token s3cr3t", "s3cr3t"));
}

TEST_CASE("the scheme name is case-insensitive (RFC 7235)") {
  CHECK(bearer_matches("bearer s3cr3t", "s3cr3t"));
  CHECK(bearer_matches("BEARER s3cr3t", "s3cr3t"));
  CHECK(bearer_matches("BeArEr s3cr3t", "s3cr3t"));
}

TEST_CASE("an empty key never matches") {
  CHECK_FALSE(bearer_matches("", ""));
  CHECK_FALSE(bearer_matches("Bearer ", ""));
  CHECK_FALSE(bearer_matches("Bearer", ""));
  CHECK_FALSE(bearer_matches("Bearer x", ""));
}

// -- MIME types ---------------------------------------------------------------

TEST_CASE("JavaScript is served as text/javascript") {
  CHECK(starts_with(mime("app.js"), "text/javascript"));
  CHECK(starts_with(mime("/static/mod.mjs"), "text/javascript"));
  CHECK(mime("app.js") == "text/javascript; charset=utf-8");
}

TEST_CASE("common web files get their types") {
  CHECK(mime("index.html") == "text/html; charset=utf-8");
  CHECK(mime("old.htm") == "text/html; charset=utf-8");
  CHECK(mime("style.css") == "text/css; charset=utf-8");
  CHECK(mime("data.json") == "application/json");
  CHECK(mime("app.js.map") == "application/json");
  CHECK(mime("logo.svg") == "image/svg+xml");
  CHECK(mime("logo.png") == "image/png");
  CHECK(mime("photo.jpg") == "image/jpeg");
  CHECK(mime("photo.jpeg") == "image/jpeg");
  CHECK(mime("favicon.ico") == "image/x-icon");
  CHECK(mime("module.wasm") == "application/wasm");
  CHECK(mime("font.woff2") == "font/woff2");
  CHECK(mime("notes.txt") == "text/plain; charset=utf-8");
}

TEST_CASE("extensions compare case-insensitively") {
  CHECK(mime("APP.JS") == "text/javascript; charset=utf-8");
  CHECK(mime("Index.HTML") == "text/html; charset=utf-8");
  CHECK(mime("STYLE.Css") == "text/css; charset=utf-8");
}

TEST_CASE("unknown or missing extensions are application/octet-stream") {
  CHECK(mime("archive.tar.gz") == "application/octet-stream");
  CHECK(mime("binary.exe") == "application/octet-stream");
  CHECK(mime("Makefile") == "application/octet-stream");
  CHECK(mime("") == "application/octet-stream");
  CHECK(mime("/dir.js/file") == "application/octet-stream");
  CHECK(mime("trailingdot.") == "application/octet-stream");
  CHECK(mime("app.jsx") == "application/octet-stream");
}

// -- static files -------------------------------------------------------------

TEST_CASE_FIXTURE(web_root, "\"/\" serves index.html") {
  CHECK(get("/") == file("index.html"));
}

TEST_CASE_FIXTURE(web_root, "files and nested files resolve under the root") {
  CHECK(get("/app.js") == file("app.js"));
  CHECK(get("/sub/deep/style.css") == file("sub/deep/style.css"));
  CHECK(get("/sub/./deep//style.css") == file("sub/deep/style.css"));
}

TEST_CASE_FIXTURE(web_root, "a directory serves its index.html") {
  CHECK(get("/sub/") == file("sub/index.html"));
  CHECK(get("/sub") == file("sub/index.html"));
  CHECK(get("/sub?x=1") == file("sub/index.html"));
}

TEST_CASE_FIXTURE(web_root, "query strings and fragments are stripped") {
  CHECK(get("/app.js?v=1") == file("app.js"));
  CHECK(get("/app.js?v=../../secret.txt") == file("app.js"));
  CHECK(get("/app.js#top") == file("app.js"));
  CHECK(get("/?x=1") == file("index.html"));
}

TEST_CASE_FIXTURE(web_root, "percent escapes are decoded") {
  CHECK(get("/my%20file.txt") == file("my file.txt"));
  CHECK(get("/app.j%73") == file("app.js"));
  CHECK(get("/sub%2Fdeep%2fstyle.css") == file("sub/deep/style.css"));
}

TEST_CASE_FIXTURE(web_root, "malformed percent escapes are refused") {
  CHECK_FALSE(get("/app.js%"));
  CHECK_FALSE(get("/app.js%2"));
  CHECK_FALSE(get("/%zzapp.js"));
  CHECK_FALSE(get("/%g0"));
}

TEST_CASE_FIXTURE(web_root, "\"..\" never leaves the root") {
  CHECK_FALSE(get("/../secret.txt"));
  CHECK_FALSE(get("/sub/../../secret.txt"));
  CHECK_FALSE(get("/sub/../app.js")); // refused even when it stays inside
  CHECK_FALSE(get("/.."));
  CHECK_FALSE(get("/../"));
  CHECK_FALSE(get("/sub/.."));
}

TEST_CASE_FIXTURE(web_root, "encoded \"..\" never leaves the root") {
  CHECK_FALSE(get("/%2e%2e/secret.txt"));
  CHECK_FALSE(get("/%2E%2E/secret.txt"));
  CHECK_FALSE(get("/.%2e/secret.txt"));
  CHECK_FALSE(get("/%2e%2e%2fsecret.txt"));
  CHECK_FALSE(get("/sub/..%2F..%2Fsecret.txt"));
  CHECK_FALSE(get("/%2e%2e"));
  CHECK_FALSE(get("/..%5csecret.txt")); // backslash
  CHECK_FALSE(get("/..\\secret.txt"));
}

TEST_CASE_FIXTURE(web_root, "absolute-looking targets stay under the root") {
  CHECK_FALSE(get("//etc/passwd"));
  CHECK_FALSE(get("/%2fetc%2fpasswd"));
  CHECK_FALSE(get("etc/passwd"));
  CHECK_FALSE(get("app.js"));
  CHECK_FALSE(get("http://h/app.js"));
  CHECK_FALSE(get("*"));
  CHECK_FALSE(get(""));
  CHECK_FALSE(get("/" + base + "/secret.txt"));
  // A doubled slash before a file inside the root is harmless.
  CHECK(get("//app.js") == file("app.js"));
}

TEST_CASE_FIXTURE(web_root, "symlinks out of the root are refused") {
  CHECK_FALSE(get("/out.txt"));
  CHECK_FALSE(get("/outdir/secret.txt"));
  CHECK_FALSE(get("/outdir/"));
  // A symlink to a file inside the root serves that file.
  CHECK(get("/in.js") == file("app.js"));
}

TEST_CASE_FIXTURE(web_root, "missing files resolve to none") {
  CHECK_FALSE(get("/missing.js"));
  CHECK_FALSE(get("/sub/missing/"));
  CHECK_FALSE(get("/app.js/"));
  CHECK_FALSE(get("/app.js/x"));
}

TEST_CASE_FIXTURE(web_root, "a directory without index.html resolves to none") {
  CHECK_FALSE(get("/empty/"));
  CHECK_FALSE(get("/empty"));
}

TEST_CASE_FIXTURE(web_root,
                  "a directory named index.html resolves to none, no loop") {
  CHECK_FALSE(get("/odd/"));
  CHECK_FALSE(get("/odd"));
  CHECK_FALSE(get("/odd/index.html"));
}

TEST_CASE_FIXTURE(web_root, "special files are not served") {
  CHECK_FALSE(get("/pipe"));
  CHECK_FALSE(get("/."));
}

TEST_CASE_FIXTURE(web_root, "a NUL byte resolves to none") {
  CHECK_FALSE(get("/app.js%00"));
  CHECK_FALSE(get("/app.js%00.png"));
  CHECK_FALSE(get("/%00"));
  CHECK_FALSE(get(std::string{"/app.js\0", 8}));
}

TEST_CASE_FIXTURE(web_root, "a missing or empty root serves nothing") {
  CHECK_FALSE(resolve_static("", "/app.js"));
  CHECK_FALSE(resolve_static(base + "/nowhere", "/"));
  CHECK_FALSE(resolve_static(base + "/nowhere", "/app.js"));
}

TEST_CASE("query parameters are found by name and percent-decoded") {
  using livehub::http_policy::query_param;
  auto target = "/api/channels?limit=10&after=room%3Aa+b&empty=&flag";
  CHECK(query_param(target, "limit") == "10");
  CHECK(query_param(target, "after") == "room:a b"); // + is a space
  CHECK(query_param(target, "empty") == "");
  CHECK(query_param(target, "flag") == "");
  CHECK_FALSE(query_param(target, "missing"));
  CHECK_FALSE(query_param("/api/channels", "limit"));
  CHECK(query_param("/x?a=%2B", "a") == "+");
  CHECK_FALSE(query_param("/x?a=%2", "a")); // malformed escape
  CHECK_FALSE(query_param("/x?a=%zz", "a"));
  CHECK(query_param("/x?aa=1&a=2", "a") == "2"); // whole names only
  CHECK(query_param("/x?a=1#frag", "a") == "1");
}

// -- routing ------------------------------------------------------------------

TEST_CASE("requests go to their handler by method and path") {
  auto to = [](std::string_view method, std::string_view target,
               bool serves_static = true) {
    return route_request(method, target, "/ws", serves_static).to;
  };
  CHECK(to("POST", "/api/publish") == handler::publish);
  CHECK(to("GET", "/api/stats") == handler::stats);
  CHECK(to("GET", "/api/channels?limit=5") == handler::channels);
  CHECK(to("GET", "/metrics") == handler::metrics);
  CHECK(to("GET", "/healthz") == handler::healthz);
  CHECK(to("GET", "/readyz") == handler::readyz);
  CHECK(to("GET", "/ws") == handler::upgrade_required);
  CHECK(to("POST", "/ws?x=1") == handler::upgrade_required);
  CHECK(to("GET", "/app.js") == handler::static_file);
  CHECK(to("GET", "/app.js", false) == handler::not_found);
  CHECK(to("POST", "/app.js") == handler::not_found);
  CHECK(to("GET", "/api/publish/") == handler::static_file); // not the API
}

TEST_CASE("a known path with another method names the one it takes") {
  auto publish = route_request("GET", "/api/publish", "/ws", true);
  CHECK(publish.to == handler::wrong_method);
  CHECK(std::string_view{publish.allow} == "POST");
  auto stats = route_request("post", "/api/stats?x", "/ws", true);
  CHECK(stats.to == handler::wrong_method); // methods are case-sensitive
  CHECK(std::string_view{stats.allow} == "GET");
  CHECK(route_request("GET", "/healthz", "/ws", true).allow == nullptr);
}

TEST_CASE("the API paths come before a WebSocket path of the same name") {
  CHECK(route_request("GET", "/metrics", "/metrics", false).to
        == handler::metrics);
  CHECK(route_request("GET", "/live", "/live", false).to
        == handler::upgrade_required);
}

// -- keep-alive ---------------------------------------------------------------

TEST_CASE("Connection tokens are found case-insensitively in a list") {
  CHECK(has_token("close", "close"));
  CHECK(has_token("Keep-Alive", "keep-alive"));
  CHECK(has_token("keep-alive, Upgrade", "upgrade"));
  CHECK(has_token(" upgrade ,\tkeep-alive\t", "keep-alive"));
  CHECK_FALSE(has_token("", "close"));
  CHECK_FALSE(has_token("closed", "close"));
  CHECK_FALSE(has_token("keep-alive", "close"));
  CHECK_FALSE(has_token(",,", "close"));
}

TEST_CASE("HTTP/1.1 keeps its connection unless it asks to close") {
  CHECK(keeps_connection("HTTP/1.1", "", "", ""));
  CHECK(keeps_connection("HTTP/1.1", "keep-alive", "", "12"));
  CHECK_FALSE(keeps_connection("HTTP/1.1", "close", "", ""));
  CHECK_FALSE(keeps_connection("HTTP/1.1", "keep-alive, Close", "", ""));
}

TEST_CASE("HTTP/1.0 keeps its connection only when it asks to, and other "
          "versions never") {
  CHECK_FALSE(keeps_connection("HTTP/1.0", "", "", ""));
  CHECK(keeps_connection("HTTP/1.0", "Keep-Alive", "", ""));
  CHECK_FALSE(keeps_connection("HTTP/1.0", "keep-alive, close", "", ""));
  CHECK_FALSE(keeps_connection("HTTP/0.9", "keep-alive", "", ""));
  CHECK_FALSE(keeps_connection("HTTP/2.0", "", "", ""));
  CHECK_FALSE(keeps_connection("http/1.1", "", "", ""));
}

TEST_CASE("a request whose end is in doubt never keeps its connection") {
  // Chunked (or any) transfer coding: livehub does not read it.
  CHECK_FALSE(keeps_connection("HTTP/1.1", "", "chunked", ""));
  CHECK_FALSE(keeps_connection("HTTP/1.1", "", "gzip, chunked", "10"));
  // A Content-Length other than plain digits: two headers ("5, 5"), a sign,
  // trailing text. (websocketpp reads such a length with strtoul.)
  CHECK_FALSE(keeps_connection("HTTP/1.1", "", "", "5, 5"));
  CHECK_FALSE(keeps_connection("HTTP/1.1", "", "", "+5"));
  CHECK_FALSE(keeps_connection("HTTP/1.1", "", "", "5abc"));
  CHECK_FALSE(keeps_connection("HTTP/1.1", "", "", "-1"));
  CHECK(keeps_connection("HTTP/1.1", "", "", "0"));
}
