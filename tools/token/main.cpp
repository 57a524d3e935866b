// livehub-token: signs the tokens with which livehub connections identify
// themselves (PROTOCOL.md, "Identity and authorization"), for scripts, tests
// and trying livehub by hand. Run `livehub-token --help`, e.g.
//
//   livehub-token --secret S --sub alice --channels 'room:*' --ttl 1h
//
// prints a token valid for one hour that lets user alice subscribe to every
// channel matching room:*. Errors go to stderr, with exit code 2.

#include "tools/token/sign.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using namespace livehub::token_tool;

namespace {

constexpr std::string_view usage
  = R"(Usage: livehub-token KEY --sub USER [CLAIMS...]

Prints a signed livehub token (a JWT) and a newline.

KEY, one of:
  --secret S            HMAC secret (HS256, as livehub.token-hmac-secret)
  --secret-file F       the secret is the content of file F (a final newline
                        is ignored)
  --key F               PEM private key file (RSA or EC, not encrypted); the
                        server holds its public key (livehub.token-public-key)
  --alg A               RS256, RS384, RS512, ES256, ES384, ES512 with --key
                        (default: ES256, ES384 or ES512 for an EC key on
                        P-256, P-384 or P-521, else RS256); HS256,
                        HS384, HS512 with a secret (default HS256)

CLAIMS:
  --sub USER            the user (claim "sub"); required
  --channels P,...      glob patterns USER may subscribe to (claim
                        "channels"); repeatable, comma-separated
  --publish P,...       glob patterns USER may publish to (claim "publish");
                        repeatable, comma-separated
  --info JSON           any JSON shown in presence, at most 1024 bytes
                        compact (claim "info")
  --channel C           makes a subscription token for channel C (claim
                        "channel")
  --ttl D               expires D from now (claim "exp"; default 1h; 0: never)
  --nbf D               not valid before D from now (claim "nbf")
                        D is 90 (seconds), 30s, 15m, 1h or 2d.
"iat" is always now.

  --help                this text
)";

struct options {
  std::optional<std::string> secret;
  std::optional<std::string> secret_file;
  std::optional<std::string> key_file;
  std::optional<std::string> alg;
  std::optional<std::string> sub;
  std::vector<std::string> channels;
  std::vector<std::string> publish;
  std::optional<std::string> info;
  std::optional<std::string> channel;
  std::chrono::seconds ttl{3600};
  std::optional<std::chrono::seconds> nbf;
  bool help = false;
};

/// Appends the comma-separated items of `text` to `out`.
void append_patterns(std::string_view option, const std::string& text,
                     std::vector<std::string>& out) {
  size_t begin = 0;
  for (;;) {
    auto end = text.find(',', begin);
    auto item = text.substr(begin, end - begin);
    if (item.empty())
      throw std::runtime_error(std::string{option} + ": empty pattern in \""
                               + text + "\"");
    out.push_back(item);
    if (end == std::string::npos)
      return;
    begin = end + 1;
  }
}

options parse_args(int argc, char** argv) {
  options opts;
  auto once = [](std::optional<std::string>& field, std::string_view name,
                 std::string value) {
    if (field)
      throw std::runtime_error(std::string{name} + " given twice");
    field = std::move(value);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      opts.help = true;
      continue;
    }
    if (arg.substr(0, 2) != "--")
      throw std::runtime_error("unexpected argument \"" + std::string{arg}
                               + "\"");
    // Both `--name value` and `--name=value`.
    std::string name{arg};
    std::string value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw std::runtime_error(name + " needs a value");
    }
    if (name == "--secret")
      once(opts.secret, name, value);
    else if (name == "--secret-file")
      once(opts.secret_file, name, value);
    else if (name == "--key")
      once(opts.key_file, name, value);
    else if (name == "--alg")
      once(opts.alg, name, value);
    else if (name == "--sub")
      once(opts.sub, name, value);
    else if (name == "--channels")
      append_patterns(name, value, opts.channels);
    else if (name == "--publish")
      append_patterns(name, value, opts.publish);
    else if (name == "--info")
      once(opts.info, name, value);
    else if (name == "--channel")
      once(opts.channel, name, value);
    else if (name == "--ttl")
      opts.ttl = parse_duration(value);
    else if (name == "--nbf")
      opts.nbf = parse_duration(value);
    else
      throw std::runtime_error("unknown option " + name);
  }
  return opts;
}

/// Writes JSON strings, refusing text that is not UTF-8 (no verifier could
/// read it).
using json_writer
  = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>,
                      rapidjson::UTF8<>, rapidjson::CrtAllocator,
                      rapidjson::kWriteValidateEncodingFlag>;

void write_string(json_writer& out, std::string_view option,
                  const std::string& value) {
  if (!out.String(value.data(), static_cast<rapidjson::SizeType>(value.size())))
    throw std::runtime_error(std::string{option} + " is not valid UTF-8");
}

void write_patterns(json_writer& out, const char* claim,
                    std::string_view option,
                    const std::vector<std::string>& patterns) {
  if (patterns.empty())
    return;
  out.Key(claim);
  out.StartArray();
  for (auto& pattern : patterns)
    write_string(out, option, pattern);
  out.EndArray();
}

/// Checks --info and writes it compact.
void write_info(json_writer& out, const std::string& text) {
  constexpr size_t max_info_bytes = 1024;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag
            | rapidjson::kParseFullPrecisionFlag>(text.data(), text.size());
  if (doc.HasParseError())
    throw std::runtime_error(std::string{"--info is not valid JSON: "}
                             + rapidjson::GetParseError_En(doc.GetParseError())
                             + " (at byte "
                             + std::to_string(doc.GetErrorOffset()) + ")");
  rapidjson::StringBuffer compact;
  rapidjson::Writer<rapidjson::StringBuffer> compact_writer{compact};
  doc.Accept(compact_writer);
  if (compact.GetSize() > max_info_bytes)
    throw std::runtime_error("--info is " + std::to_string(compact.GetSize())
                             + " bytes of compact JSON, more than the "
                             + std::to_string(max_info_bytes) + " allowed");
  out.Key("info");
  doc.Accept(out);
}

std::string make_claims(const options& opts) {
  using namespace std::chrono;
  auto now = duration_cast<seconds>(system_clock::now().time_since_epoch());
  rapidjson::StringBuffer buf;
  json_writer out{buf};
  out.StartObject();
  out.Key("sub");
  write_string(out, "--sub", *opts.sub);
  out.Key("iat");
  out.Int64(now.count());
  if (opts.ttl.count() > 0) {
    out.Key("exp");
    out.Int64((now + opts.ttl).count());
  }
  if (opts.nbf) {
    out.Key("nbf");
    out.Int64((now + *opts.nbf).count());
  }
  write_patterns(out, "channels", "--channels", opts.channels);
  write_patterns(out, "publish", "--publish", opts.publish);
  if (opts.info)
    write_info(out, *opts.info);
  if (opts.channel) {
    out.Key("channel");
    write_string(out, "--channel", *opts.channel);
  }
  out.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::string sign_with_secret(const options& opts, const std::string& claims) {
  std::string secret;
  if (opts.secret) {
    secret = *opts.secret;
  } else {
    secret = read_file(*opts.secret_file);
    // `echo S > file` and `openssl rand -hex 32 > file` end with a newline
    // that nobody means as part of the secret.
    if (!secret.empty() && secret.back() == '\n')
      secret.pop_back();
    if (!secret.empty() && secret.back() == '\r')
      secret.pop_back();
  }
  if (secret.empty())
    throw std::runtime_error("the secret is empty");
  auto alg = opts.alg.value_or("HS256");
  if (!starts_with(alg, "HS"))
    throw std::runtime_error("--alg " + alg
                             + " needs --key; a secret signs HS256, "
                               "HS384 or HS512");
  return sign_token(alg, secret, claims);
}

std::string sign_with_key(const options& opts, const std::string& claims) {
  auto pem = read_file(*opts.key_file);
  if (opts.alg) {
    if (!starts_with(*opts.alg, "RS") && !starts_with(*opts.alg, "ES"))
      throw std::runtime_error(
        "--alg " + *opts.alg
        + " does not sign with --key; "
          "use RS256, RS384, RS512, ES256, ES384 or ES512");
    return sign_token(*opts.alg, pem, claims);
  }
  // A PKCS#8 key ("BEGIN PRIVATE KEY", what `openssl genpkey` writes) does
  // not say its kind or curve, and we read no ASN.1 ourselves. sign_token
  // refuses a key of the wrong kind or curve, so we try: RSA first (unless
  // the PEM says EC), then the EC curves in turn.
  auto is_ec = pem.find("BEGIN EC PRIVATE KEY") != std::string::npos;
  std::vector<const char*> candidates{"ES256", "ES384", "ES512"};
  if (!is_ec)
    candidates.insert(candidates.begin(), "RS256");
  std::optional<std::runtime_error> first_error;
  for (auto alg : candidates) {
    try {
      return sign_token(alg, pem, claims);
    } catch (const std::runtime_error& e) {
      if (!first_error)
        first_error = e;
    }
  }
  throw *first_error;
}

int run(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  if (opts.help) {
    std::cout << usage;
    return 0;
  }
  int keys = (opts.secret ? 1 : 0) + (opts.secret_file ? 1 : 0)
    + (opts.key_file ? 1 : 0);
  if (keys != 1)
    throw std::runtime_error(
      "give exactly one of --secret, --secret-file and --key");
  if (!opts.sub || opts.sub->empty())
    throw std::runtime_error("--sub USER is required");
  auto claims = make_claims(opts);
  auto token = opts.key_file ? sign_with_key(opts, claims)
                             : sign_with_secret(opts, claims);
  std::cout << token << '\n' << std::flush;
  if (!std::cout)
    throw std::runtime_error("cannot write the token to stdout");
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "livehub-token: " << e.what() << "\n"
              << "Run livehub-token --help for usage.\n";
    return 2;
  }
}
