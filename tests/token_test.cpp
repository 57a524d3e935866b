// Token verification (protocol/token.hpp): what a token must be for livehub
// to trust it, and every way one is refused.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include <jwt.h>

#include "livehub/config.hpp"
#include "protocol/token.hpp"
#include "support/tokens.hpp"

using namespace livehub;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view secret = "test-secret-of-some-length-0123456789";

std::shared_ptr<const token::verifier>
make_verifier(std::string hmac, std::string pem, caf::timespan leeway = 5s) {
  auto v = token::verifier::make(std::move(hmac), std::move(pem), leeway);
  REQUIRE(v);
  REQUIRE(*v);
  return *v;
}

std::string claims(std::string_view extra = {}) {
  std::string result = R"({"sub":"alice")";
  if (!extra.empty())
    result += "," + std::string{extra};
  return result + "}";
}

/// The refusal's reason, or "accepted".
std::string outcome(const token::verifier& v, const std::string& jwt,
                    int64_t now = test::unix_now()) {
  auto result = v.verify(jwt, now);
  if (auto r = std::get_if<token::refusal>(&result))
    return r->reason;
  return "accepted";
}

/// A fresh directory for key files, removed at the end.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/livehub-token-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

} // namespace

TEST_CASE("tokens: a valid HS256 token gives its claims") {
  auto v = make_verifier(std::string{secret}, "");
  auto now = test::unix_now();
  auto jwt = test::hs256(
    secret,
    claims(R"("exp":)" + std::to_string(now + 60)
           + R"(,"channels":["room:*","news"],"publish":["room:*"],)"
             R"("info":{"name":"Alice","n":1.50},"iat":)"
           + std::to_string(now)));
  auto result = v->verify(jwt, now);
  auto c = std::get_if<token::claims>(&result);
  REQUIRE_MESSAGE(c, std::get<token::refusal>(result).reason);
  CHECK(c->sub == "alice");
  CHECK(c->exp == now + 60);
  CHECK(c->iat == now);
  CHECK(c->channels == std::vector<std::string>{"room:*", "news"});
  CHECK(c->publish == std::vector<std::string>{"room:*"});
  // As libjwt re-writes it: keys sorted, numbers normalised.
  CHECK(c->info.str() == R"({"n":1.5,"name":"Alice"})");
  CHECK(c->channel.empty());
}

TEST_CASE("tokens: a wrong secret or a changed payload is refused") {
  auto v = make_verifier(std::string{secret}, "");
  CHECK(outcome(*v, test::hs256("another secret", claims()))
        == "bad token signature");
  auto jwt = test::hs256(secret, claims());
  auto forged = test::forge(R"({"alg":"HS256","typ":"JWT"})",
                            R"({"sub":"mallory"})",
                            jwt.substr(jwt.rfind('.') + 1));
  CHECK(outcome(*v, forged) == "bad token signature");
}

TEST_CASE("tokens: alg none is always refused") {
  auto v = make_verifier(std::string{secret}, "");
  CHECK(outcome(*v, test::forge(R"({"alg":"none"})", claims(), ""))
        == "token alg none is not accepted");
  CHECK(outcome(*v, test::forge(R"({"alg":"none"})", claims(), "c2ln"))
        == "token alg none is not accepted");
  CHECK(outcome(*v, test::forge(R"({"typ":"JWT"})", claims(), "c2ln"))
        == "token header has no alg");
}

TEST_CASE("tokens: a refusal repeats the alg only when it is short and "
          "printable") {
  // Clients read refusals in error frames (text frames: UTF-8 only); the
  // alg was repeated as it was, bytes that are no UTF-8 included
  // (fuzz/regressions/fuzz_ws/token_alg_not_utf8).
  auto v = make_verifier(std::string{secret}, "");
  auto with_alg = [&](std::string_view alg) {
    return outcome(*v,
                   test::forge(R"({"alg":")" + std::string{alg} + "\"}",
                               claims(), "c2ln"));
  };
  CHECK(with_alg("PS256") == "token alg PS256 is not accepted");
  CHECK(with_alg("\xff\xfe") == "token alg (unprintable) is not accepted");
  CHECK(with_alg("\\udc00") == "token alg (unprintable) is not accepted");
  CHECK(with_alg("a b") == "token alg (unprintable) is not accepted");
  CHECK(with_alg(std::string(17, 'A'))
        == "token alg (unprintable) is not accepted");
}

TEST_CASE("tokens: an RSA public key used as an HMAC secret is refused") {
  temp_dir dir;
  auto rsa = test::make_key_pair("rsa", dir.path.string());
  // The classic algorithm-confusion token: HS256, keyed with the public key
  // the server verifies RS256 tokens with.
  auto attack = test::sign("HS256", rsa.public_pem, claims());
  // libjwt alone accepts it (the reason livehub checks alg first).
  jwt_t* raw = nullptr;
  auto rc
    = jwt_decode(&raw, attack.c_str(),
                 reinterpret_cast<const unsigned char*>(rsa.public_pem.data()),
                 static_cast<int>(rsa.public_pem.size()));
  CHECK(rc == 0);
  if (raw)
    jwt_free(raw);
  auto v = make_verifier("", rsa.public_pem);
  CHECK(outcome(*v, attack)
        == "token alg HS256 does not match the server's key");
  // The honest RS256 token passes.
  CHECK(outcome(*v, test::sign("RS256", rsa.private_pem, claims()))
        == "accepted");
}

TEST_CASE("tokens: RS256 and ES256 need a key of their own kind") {
  temp_dir dir;
  auto rsa = test::make_key_pair("rsa", (dir.path / "rsa").string());
  auto ec = test::make_key_pair("ec", (dir.path / "ec").string());
  auto by_rsa = make_verifier("", rsa.public_pem);
  auto by_ec = make_verifier("", ec.public_pem);
  auto rs = test::sign("RS256", rsa.private_pem, claims());
  auto es = test::sign("ES256", ec.private_pem, claims());
  CHECK(outcome(*by_rsa, rs) == "accepted");
  CHECK(outcome(*by_ec, es) == "accepted");
  CHECK(outcome(*by_rsa, es)
        == "token alg ES256 does not match the server's key");
  CHECK(outcome(*by_ec, rs)
        == "token alg RS256 does not match the server's key");
  // Another key pair of the same kind: a bad signature.
  auto other = test::make_key_pair("rsa", (dir.path / "other").string());
  CHECK(outcome(*by_rsa, test::sign("RS256", other.private_pem, claims()))
        == "bad token signature");
  // A server with both keys takes each token with its own key only.
  auto both = make_verifier(std::string{secret}, rsa.public_pem);
  CHECK(outcome(*both, rs) == "accepted");
  CHECK(outcome(*both, test::hs256(secret, claims())) == "accepted");
  CHECK(outcome(*both, test::sign("HS256", rsa.public_pem, claims()))
        == "bad token signature");
}

TEST_CASE("tokens: exp, nbf and iat are checked with the leeway") {
  auto v = make_verifier(std::string{secret}, "", 5s);
  auto now = test::unix_now();
  auto with = [&](const char* claim, int64_t t) {
    return outcome(*v,
                   test::hs256(secret,
                               claims(std::string{"\""} + claim
                                      + "\":" + std::to_string(t))),
                   now);
  };
  CHECK(with("exp", now + 1) == "accepted");
  CHECK(with("exp", now - 4) == "accepted"); // within the leeway
  CHECK(with("exp", now - 6) == "token expired");
  CHECK(with("nbf", now + 4) == "accepted");
  CHECK(with("nbf", now + 6) == "token not yet valid");
  CHECK(with("iat", now + 4) == "accepted");
  CHECK(with("iat", now + 60) == "token issued in the future");
  CHECK(outcome(*v, test::hs256(secret, claims(R"("exp":"soon")")))
        == "token times (exp, nbf, iat) must be numbers");
}

TEST_CASE("tokens: times at the ends of the 64-bit range are compared "
          "without overflow") {
  // exp + leeway overflowed (undefined behaviour) for an exp within the
  // leeway of INT64_MAX; fuzz/regressions/fuzz_token/exp_int64_max.
  auto v = make_verifier(std::string{secret}, "", 5s);
  auto with = [&](const char* claim, const char* t) {
    return outcome(
      *v, test::hs256(secret, claims(std::string{"\""} + claim + "\":" + t)));
  };
  CHECK(with("exp", "9223372036854775807") == "accepted");
  CHECK(with("exp", "-9223372036854775808") == "token expired");
  CHECK(with("nbf", "9223372036854775807") == "token not yet valid");
  CHECK(with("nbf", "-9223372036854775808") == "accepted");
  CHECK(with("iat", "9223372036854775807") == "token issued in the future");
}

TEST_CASE("tokens: claims of the wrong type or size are refused") {
  auto v = make_verifier(std::string{secret}, "");
  CHECK(outcome(*v, test::hs256(secret, R"({"name":"alice"})"))
        == "token has no sub");
  CHECK(outcome(*v, test::hs256(secret, R"({"sub":""})"))
        == "token has no sub");
  CHECK(outcome(*v, test::hs256(secret, R"({"sub":42})"))
        == "token has no sub");
  CHECK(outcome(*v, test::hs256(secret, claims(R"("channels":"room:*")")))
        == "token claim channels must be an array of patterns");
  CHECK(outcome(*v, test::hs256(secret, claims(R"("channels":["a",""])")))
        == "token claim channels must be an array of patterns");
  CHECK(outcome(*v, test::hs256(secret, claims(R"("publish":[1])")))
        == "token claim publish must be an array of patterns");
  CHECK(outcome(*v, test::hs256(secret, claims(R"("channel":["a"])")))
        == "token claim channel must be a string");
  std::string big = R"("info":")" + std::string(1100, 'x') + "\"";
  CHECK(outcome(*v, test::hs256(secret, claims(big)))
        == "token claim info is larger than 1 KiB");
  // Unknown claims are ignored.
  CHECK(outcome(*v, test::hs256(secret, claims(R"("role":"admin")")))
        == "accepted");
}

TEST_CASE("tokens: malformed tokens are refused before any crypto") {
  auto v = make_verifier(std::string{secret}, "");
  CHECK(outcome(*v, "") == "no token");
  CHECK(outcome(*v, "abc") == "malformed token: not three parts");
  CHECK(outcome(*v, "a.b") == "malformed token: not three parts");
  CHECK(outcome(*v, "a.b.c.d") == "malformed token: not three parts");
  CHECK(outcome(*v, "a b.c.d") == "malformed token: not base64url");
  CHECK(outcome(*v, "e30=.e30.c2ln") == "malformed token: not base64url");
  CHECK(outcome(*v, "x.e30.c2ln") == "malformed token header");
  CHECK(outcome(*v, test::base64url("[1]") + ".e30.c2ln")
        == "malformed token header");
  CHECK(outcome(*v, test::base64url(R"({"alg":5})") + ".e30.c2ln")
        == "token header has no alg");
  std::string huge(token::max_token_size + 1, 'a');
  CHECK(outcome(*v, huge) == "token longer than 8192 bytes");
}

TEST_CASE("tokens: a verifier needs a usable key") {
  auto none = token::verifier::make("", "", 5s);
  REQUIRE(none);
  CHECK(*none == nullptr);
  CHECK(!token::verifier::make("", "-----BEGIN PUBLIC KEY-----\nxx\n", 5s));
  hub_config cfg;
  cfg.token_public_key = "/nonexistent/key.pem";
  CHECK(!token::verifier::make(cfg));
  CHECK(cfg.validate());
}
