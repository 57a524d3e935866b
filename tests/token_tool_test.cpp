// livehub-token as its users run it: the tokens it prints carry the claims
// its options say, verify with the matching secret or public key (HS256,
// RS256, ES256), and a mistake in its use gets a reason and exit code 2.
// Also the test support that signs and forges tokens for livehub's tests.
#include <doctest/doctest.h>

#include <jwt.h>
#include <rapidjson/document.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/tokens.hpp"
#include "tools/token/sign.hpp"

extern char** environ;

using namespace livehub::test;
namespace fs = std::filesystem;

namespace {

struct jwt_deleter {
  void operator()(jwt_t* ptr) const {
    jwt_free(ptr);
  }
};

using jwt_ptr = std::unique_ptr<jwt_t, jwt_deleter>;

/// The token verified with `key` (secret or public PEM; empty: no key, as
/// for alg none), or null when libjwt refuses it.
jwt_ptr decode(const std::string& token, const std::string& key) {
  jwt_t* raw = nullptr;
  auto* key_bytes = key.empty()
    ? nullptr
    : reinterpret_cast<const unsigned char*>(key.data());
  if (jwt_decode(&raw, token.c_str(), key_bytes, static_cast<int>(key.size()))
      != 0)
    return nullptr;
  return jwt_ptr{raw};
}

std::string grant(const jwt_ptr& jwt, const char* name) {
  auto* value = jwt_get_grant(jwt.get(), name);
  return value ? value : "<missing>";
}

/// A claim as JSON text ("<missing>" when absent).
std::string grant_json(const jwt_ptr& jwt, const char* name) {
  std::unique_ptr<char, decltype(&free)> json{
    jwt_get_grants_json(jwt.get(), name), &free};
  return json ? json.get() : "<missing>";
}

/// Whether two JSON texts hold the same value (member order aside).
bool same_json(const std::string& lhs, const std::string& rhs) {
  rapidjson::Document x;
  rapidjson::Document y;
  x.Parse(lhs.c_str());
  y.Parse(rhs.c_str());
  return !x.HasParseError() && !y.HasParseError() && x == y;
}

/// An integer claim, or -1 when absent.
long grant_int(const jwt_ptr& jwt, const char* name) {
  errno = 0;
  auto value = jwt_get_grant_int(jwt.get(), name);
  return errno == ENOENT ? -1 : value;
}

/// The three dot-separated parts of a compact token.
std::vector<std::string> parts(const std::string& token) {
  std::vector<std::string> result;
  size_t begin = 0;
  for (;;) {
    auto dot = token.find('.', begin);
    result.push_back(token.substr(begin, dot - begin));
    if (dot == std::string::npos)
      return result;
    begin = dot + 1;
  }
}

struct tool_result {
  int exit_code = -1;
  std::string out;
  std::string err;

  /// The printed token without its newline.
  std::string token() const {
    REQUIRE(exit_code == 0);
    REQUIRE(out.size() > 1);
    REQUIRE(out.back() == '\n');
    return out.substr(0, out.size() - 1);
  }
};

/// A fresh directory under /tmp, removed with everything in it at the end.
struct temp_dir_fixture {
  std::string dir;

  temp_dir_fixture() {
    char tmpl[] = "/tmp/livehub-token-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }

  ~temp_dir_fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  std::string write_file(const std::string& name, const std::string& content) {
    auto path = dir + "/" + name;
    std::ofstream{path, std::ios::binary} << content;
    return path;
  }

  /// Runs livehub-token with `args`; its stdout and stderr go to files, so
  /// that no pipe can fill up.
  tool_result livehub_token(std::vector<std::string> args) {
    auto out_path = dir + "/stdout";
    auto err_path = dir + "/stderr";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    args.insert(args.begin(), LIVEHUB_TOKEN_BIN);
    std::vector<char*> argv;
    for (auto& arg : args)
      argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    REQUIRE(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ)
            == 0);
    posix_spawn_file_actions_destroy(&actions);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    tool_result result;
    result.exit_code = WEXITSTATUS(status);
    result.out = livehub::token_tool::read_file(out_path);
    result.err = livehub::token_tool::read_file(err_path);
    return result;
  }
};

} // namespace

TEST_CASE_FIXTURE(temp_dir_fixture,
                  "an HS256 token from livehub-token carries every claim its "
                  "options set") {
  auto before = unix_now();
  auto result = livehub_token(
    {"--secret", "s3cret", "--sub", "alice", "--channels", "room:*",
     "--channels", "news,alerts", "--publish", "room:*", "--info",
     R"({"name":"Alice","tags":[1,2]})", "--ttl", "1h", "--nbf", "30s"});
  auto after = unix_now();
  CHECK(result.err == "");
  auto jwt = decode(result.token(), "s3cret");
  REQUIRE(jwt != nullptr);
  CHECK(jwt_get_alg(jwt.get()) == JWT_ALG_HS256);
  CHECK(grant(jwt, "sub") == "alice");
  CHECK(
    same_json(grant_json(jwt, "channels"), R"(["room:*","news","alerts"])"));
  CHECK(same_json(grant_json(jwt, "publish"), R"(["room:*"])"));
  CHECK(same_json(grant_json(jwt, "info"), R"({"tags":[1,2],"name":"Alice"})"));
  CHECK(grant(jwt, "channel") == "<missing>");
  auto iat = grant_int(jwt, "iat");
  CHECK(iat >= before);
  CHECK(iat <= after);
  CHECK(grant_int(jwt, "exp") == iat + 3600);
  CHECK(grant_int(jwt, "nbf") == iat + 30);
  // Only the same secret verifies it.
  CHECK(decode(result.token(), "another secret") == nullptr);
}

TEST_CASE_FIXTURE(temp_dir_fixture,
                  "an RS256 subscription token is signed with the private key "
                  "and verifies with the public key") {
  auto keys = make_key_pair("rsa", dir + "/keys");
  CHECK(keys.public_pem.rfind("-----BEGIN PUBLIC KEY-----", 0) == 0);
  auto result = livehub_token({"--key", keys.private_path, "--sub", "bob",
                               "--channel", "room:lobby", "--ttl", "15m"});
  CHECK(result.err == "");
  auto jwt = decode(result.token(), keys.public_pem);
  REQUIRE(jwt != nullptr);
  CHECK(jwt_get_alg(jwt.get()) == JWT_ALG_RS256);
  CHECK(grant(jwt, "sub") == "bob");
  CHECK(grant(jwt, "channel") == "room:lobby");
  CHECK(grant_json(jwt, "channels") == "<missing>");
  CHECK(grant_json(jwt, "info") == "<missing>");
  CHECK(grant_int(jwt, "nbf") == -1);
  CHECK(grant_int(jwt, "exp") == grant_int(jwt, "iat") + 900);
  // Another key pair's public key does not verify it.
  auto others = make_key_pair("rsa", dir + "/other");
  CHECK(decode(result.token(), others.public_pem) == nullptr);
}

TEST_CASE_FIXTURE(temp_dir_fixture,
                  "an EC key signs ES256 with or without --alg") {
  auto keys = make_key_pair("ec", dir);
  for (auto with_alg : {false, true}) {
    CAPTURE(with_alg);
    std::vector<std::string> args{"--key",      keys.private_path,
                                  "--sub",      "carol",
                                  "--channels", "room:*",
                                  "--ttl",      "2d"};
    if (with_alg)
      args.insert(args.end(), {"--alg", "ES256"});
    auto result = livehub_token(args);
    CHECK(result.err == "");
    auto jwt = decode(result.token(), keys.public_pem);
    REQUIRE(jwt != nullptr);
    CHECK(jwt_get_alg(jwt.get()) == JWT_ALG_ES256);
    CHECK(grant(jwt, "sub") == "carol");
    CHECK(grant_int(jwt, "exp") == grant_int(jwt, "iat") + 2 * 86400);
    // RFC 7518 wants R and S side by side (64 bytes, 86 base64url
    // characters), not OpenSSL's DER, or other verifiers refuse it.
    CHECK(parts(result.token()).at(2).size() == 86);
  }
}

TEST_CASE_FIXTURE(temp_dir_fixture,
                  "--ttl 0 makes a token without expiry and a secret file's "
                  "final newline is not part of the secret") {
  auto secret_path = write_file("secret", "from-a-file\n");
  auto result = livehub_token(
    {"--secret-file", secret_path, "--sub", "dave", "--ttl", "0"});
  CHECK(result.err == "");
  auto jwt = decode(result.token(), "from-a-file");
  REQUIRE(jwt != nullptr);
  CHECK(grant(jwt, "sub") == "dave");
  CHECK(grant_int(jwt, "exp") == -1);
  CHECK(grant_int(jwt, "iat") > 0);
}

TEST_CASE_FIXTURE(temp_dir_fixture, "--help prints the usage and exits 0") {
  auto result = livehub_token({"--help"});
  CHECK(result.exit_code == 0);
  CHECK(result.out.find("--secret") != std::string::npos);
  CHECK(result.out.find("--ttl") != std::string::npos);
  CHECK(result.err == "");
}

TEST_CASE_FIXTURE(temp_dir_fixture,
                  "a mistake in its use exits 2 with a reason on stderr and "
                  "prints no token") {
  auto keys = make_key_pair("ec", dir);
  std::vector<std::vector<std::string>> mistakes{
    {},
    {"--secret", "s"},              // no --sub
    {"--secret", "s", "--sub", ""}, // empty --sub
    {"--sub", "alice"},             // no key
    {"--secret", "s", "--key", keys.private_path, "--sub", "alice"},
    {"--secret", "s", "--sub", "alice", "--ttl", "soon"},
    {"--secret", "s", "--sub", "alice", "--ttl", "-5m"},
    {"--secret", "s", "--sub", "alice", "--ttl", "1.5h"},
    {"--secret", "s", "--sub", "alice", "--ttl", "10x"},
    {"--secret", "s", "--sub", "alice", "--ttl", "99999999999d"},
    {"--secret", "s", "--sub", "alice", "--nbf", ""},
    {"--secret", "s", "--sub", "alice", "--info", "{not json"},
    {"--secret", "s", "--sub", "alice", "--info", R"({"a":1} trailing)"},
    {"--secret", "s", "--sub", "alice", "--info",
     "\"" + std::string(1100, 'x') + "\""},
    {"--secret", "s", "--sub", "alice", "--channels", "a,,b"},
    {"--secret", "s", "--sub", "alice", "--alg", "RS256"},
    {"--secret", "s", "--sub", "alice", "--alg", "none"},
    {"--key", keys.private_path, "--sub", "alice", "--alg", "HS256"},
    {"--key", keys.private_path, "--sub", "alice", "--alg", "RS256"},
    {"--key", dir + "/no-such-key.pem", "--sub", "alice"},
    {"--key", dir, "--sub", "alice"},
    {"--key", keys.public_path, "--sub", "alice"},
    {"--key", write_file("junk.pem", "not a key"), "--sub", "alice"},
    {"--secret-file", dir + "/no-such-secret", "--sub", "alice"},
    {"--secret-file", write_file("empty", "\n"), "--sub", "alice"},
    {"--secret", "s", "--sub", "alice", "--frobnicate", "yes"},
    {"--secret", "s", "--sub", "alice", "stray"},
    {"--secret", "s", "--sub"},
    {"--secret", "s", "--sub", "alice", "--sub", "bob"},
  };
  for (auto& args : mistakes) {
    std::string command;
    for (auto& arg : args)
      command += arg + ' ';
    CAPTURE(command);
    auto result = livehub_token(args);
    CHECK(result.exit_code == 2);
    CHECK(result.out == "");
    CHECK(result.err.rfind("livehub-token: ", 0) == 0);
  }
}

TEST_CASE_FIXTURE(temp_dir_fixture, "a 1024-byte info is allowed") {
  auto info = "\"" + std::string(1022, 'x') + "\"";
  auto result
    = livehub_token({"--secret", "s", "--sub", "alice", "--info", info});
  CHECK(result.err == "");
  auto jwt = decode(result.token(), "s");
  REQUIRE(jwt != nullptr);
  CHECK(grant_json(jwt, "info") == info);
}

TEST_CASE("sign_token refuses with a reason what it cannot sign") {
  using livehub::token_tool::sign_token;
  auto claims = R"({"sub":"alice"})";
  CHECK_THROWS_WITH_AS(sign_token("HS257", "s", claims),
                       doctest::Contains("unknown algorithm"),
                       std::runtime_error);
  CHECK_THROWS_AS(sign_token("HS256", "", claims), std::runtime_error);
  CHECK_THROWS_AS(sign_token("none", "s", claims), std::runtime_error);
  CHECK_THROWS_AS(sign_token("HS256", "s", "[1,2]"), std::runtime_error);
  CHECK_THROWS_AS(sign_token("HS256", "s", "{bad"), std::runtime_error);
  CHECK_THROWS_WITH_AS(sign_token("RS256", "not a key", claims),
                       doctest::Contains("PEM private key"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(
    sign_token("ES256",
               "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
               "-----END ENCRYPTED PRIVATE KEY-----\n",
               claims),
    doctest::Contains("encrypted"), std::runtime_error);
  CHECK_THROWS_WITH_AS(sign_token("RS256",
                                  "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                  "-----END PRIVATE KEY-----\n",
                                  claims),
                       doctest::Contains("not a usable RSA private key"),
                       std::runtime_error);
}

TEST_CASE_FIXTURE(temp_dir_fixture,
                  "a key of the other kind or curve does not sign") {
  auto rsa = make_key_pair("rsa", dir);
  auto ec = make_key_pair("ec", dir);
  auto claims = R"({"sub":"alice"})";
  CHECK_THROWS_AS(sign("ES256", rsa.private_pem, claims), std::runtime_error);
  CHECK_THROWS_AS(sign("RS256", ec.private_pem, claims), std::runtime_error);
  // libjwt alone would sign these, with a signature no verifier accepts.
  CHECK_THROWS_WITH_AS(sign("ES384", ec.private_pem, claims),
                       doctest::Contains("not on curve P-384"),
                       std::runtime_error);
  CHECK_THROWS_AS(sign("ES512", ec.private_pem, claims), std::runtime_error);
  auto jwt = decode(sign("RS256", rsa.private_pem, claims), rsa.public_pem);
  REQUIRE(jwt != nullptr);
  CHECK(grant(jwt, "sub") == "alice");
}

TEST_CASE("parse_duration reads seconds, minutes, hours and days") {
  using livehub::token_tool::parse_duration;
  using std::chrono::seconds;
  CHECK(parse_duration("0") == seconds{0});
  CHECK(parse_duration("90") == seconds{90});
  CHECK(parse_duration("30s") == seconds{30});
  CHECK(parse_duration("15m") == seconds{900});
  CHECK(parse_duration("1h") == seconds{3600});
  CHECK(parse_duration("2d") == seconds{172800});
  CHECK(parse_duration("36500d") == seconds{36500LL * 86400});
  for (auto bad : {"", "h", "-1", "+1", "1.5h", "1 h", "1H", "1w", "1hh",
                   "36501d", "99999999999999999999"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_duration(bad), std::runtime_error);
  }
}

TEST_CASE("hs256 signs tokens that libjwt verifies with the same secret") {
  auto token = hs256("k",
                     R"({"sub":"alice","exp":4102444800,"channels":["a"]})");
  auto jwt = decode(token, "k");
  REQUIRE(jwt != nullptr);
  CHECK(jwt_get_alg(jwt.get()) == JWT_ALG_HS256);
  CHECK(grant(jwt, "sub") == "alice");
  CHECK(grant_int(jwt, "exp") == 4102444800L);
  CHECK(same_json(grant_json(jwt, "channels"), R"(["a"])"));
}

TEST_CASE("forge encodes header and payload as libjwt does") {
  auto token = hs256("k", R"({"sub":"alice"})");
  auto signature = parts(token).at(2);
  CHECK(forge(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"alice"})", signature)
        == token);
}

TEST_CASE("base64url follows RFC 4648 without padding") {
  CHECK(base64url("") == "");
  CHECK(base64url("f") == "Zg");
  CHECK(base64url("fo") == "Zm8");
  CHECK(base64url("foo") == "Zm9v");
  CHECK(base64url("foob") == "Zm9vYg");
  CHECK(base64url("fooba") == "Zm9vYmE");
  CHECK(base64url("foobar") == "Zm9vYmFy");
  CHECK(base64url("\xfb\xff") == "-_8");
}

TEST_CASE("an alg none token is refused where a key is given") {
  for (auto& token :
       {forge(R"({"alg":"none","typ":"JWT"})", R"({"sub":"mallory"})", ""),
        sign("none", "", R"({"sub":"mallory"})")}) {
    CAPTURE(token);
    CHECK(decode(token, "s3cret") == nullptr);
    // It is well formed: without a key, libjwt reads it.
    auto jwt = decode(token, "");
    REQUIRE(jwt != nullptr);
    CHECK(jwt_get_alg(jwt.get()) == JWT_ALG_NONE);
    CHECK(grant(jwt, "sub") == "mallory");
  }
}

TEST_CASE("a token with a garbage signature does not verify") {
  auto good = hs256("s3cret", R"({"sub":"alice"})");
  CHECK(decode(good, "s3cret") != nullptr);
  auto garbage = forge(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"alice"})",
                       base64url("not the signature"));
  CHECK(decode(garbage, "s3cret") == nullptr);
  CHECK(
    decode(forge(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"alice"})", "***"),
           "s3cret")
    == nullptr);
}
