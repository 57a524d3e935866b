// hub_config: the one table of `livehub.*` settings, and what is built on it:
// the CAF options with their help, read_config, validate() and the
// description that tests compare with docs/configuration.md.
#include "livehub/config.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/config_value.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "protocol/token.hpp"
#include "transport/redis.hpp"
#include "transport/settings.hpp"

namespace livehub {

namespace {

using namespace std::chrono_literals;
using settings::reader;
using strings = std::vector<std::string>;
using optional_strings = std::optional<strings>;

// -- values as caf-application.ini writes them ------------------------------

std::string render(const std::string& x) {
  return caf::to_string(caf::config_value{x}); // quoted: "/ws"
}

std::string render(const strings& x) {
  return caf::to_string(caf::config_value{x}); // ["a", "b"]
}

// Unset: the value depends on other settings (see hub_config).
std::string render(const optional_strings& x) {
  return x ? render(*x) : "unset";
}

std::string render(uint16_t x) {
  return std::to_string(x);
}

std::string render(size_t x) {
  return std::to_string(x);
}

// CAF itself would write 60s as "1min"; seconds and smaller units keep the
// seed hub's familiar figures (54s, 60s, 10s). Both parse.
std::string render(caf::timespan x) {
  const std::pair<caf::timespan, const char*> units[]
    = {{1s, "s"}, {1ms, "ms"}, {1us, "us"}, {1ns, "ns"}};
  for (auto& [unit, suffix] : units)
    if (x % unit == caf::timespan::zero())
      return std::to_string(x / unit) + suffix;
  return std::to_string(x.count()) + "ns"; // unreachable: 1ns divides all
}

template<class T>
constexpr const char* type_name = nullptr;
template<>
constexpr const char* type_name<std::string> = "string";
template<>
constexpr const char* type_name<uint16_t> = "uint16";
template<>
constexpr const char* type_name<size_t> = "size_t";
template<>
constexpr const char* type_name<caf::timespan> = "timespan";
template<>
constexpr const char* type_name<strings> = "list of strings";
template<>
constexpr const char* type_name<optional_strings> = "list of strings";

// -- validation rules -------------------------------------------------------

/// Says why `value` is invalid ("must be at least 1"), after the option's
/// name, or returns an empty string when it is valid. It sees the whole
/// config for rules that relate two settings.
template<class T>
using rule = std::function<std::string(const T& value, const hub_config& cfg)>;

std::string not_empty(const std::string& x, const hub_config&) {
  return x.empty() ? "is empty" : "";
}

std::string starts_with_slash(const std::string& x, const hub_config&) {
  return x.empty() || x.front() != '/' ? "must start with '/'" : "";
}

/// `at_least(64, " bytes")` rejects 63 with "must be at least 64 bytes".
template<class Bound>
auto at_least(Bound min, const char* unit = "") {
  return [min, unit](const auto& x, const hub_config&) -> std::string {
    using value = std::decay_t<decltype(x)>;
    if (x < value(min))
      return "must be at least " + render(value(min)) + unit;
    return {};
  };
}

/// `between(1, 64)` rejects 0 and 65 with "must be 1 to 64".
template<class Bound>
auto between(Bound min, Bound max) {
  return [min, max](const auto& x, const hub_config&) -> std::string {
    using value = std::decay_t<decltype(x)>;
    if (x < value(min) || x > value(max))
      return "must be " + render(value(min)) + " to " + render(value(max));
    return {};
  };
}

/// A send queue must take at least one message of the largest size.
std::string holds_largest_message(const size_t& x, const hub_config& cfg) {
  return x < cfg.max_message_size ? "must be at least livehub.max-message-size"
                                  : "";
}

std::string origins(const strings& xs, const hub_config&) {
  for (auto& origin : xs)
    if (origin != "*" && origin.find("://") == std::string::npos)
      return "entry \"" + origin + "\" is not an origin like https://host:port";
  return {};
}

std::string no_empty_pattern(const strings& xs, const hub_config&) {
  for (auto& pattern : xs)
    if (pattern.empty())
      return "has an empty pattern";
  return {};
}

std::string no_empty_pattern_if_set(const optional_strings& xs,
                                    const hub_config& cfg) {
  return xs ? no_empty_pattern(*xs, cfg) : "";
}

/// The key file must exist and hold a PEM RSA or EC public key (a wrong key
/// would fail every token: say it at start).
std::string readable_public_key(const std::string& path, const hub_config&) {
  if (path.empty())
    return {};
  std::ifstream in{path};
  if (!in)
    return "cannot read \"" + path + "\"";
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  auto made = token::verifier::make("", std::move(text), {});
  if (!made)
    return "\"" + path
      + "\" holds no PEM RSA or EC public key (-----BEGIN "
        "PUBLIC KEY-----)";
  return {};
}

/// Both TLS files or neither, and each readable.
std::string tls_file(const std::string& path, const hub_config& cfg) {
  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
    return "needs both livehub.tls-cert-file and livehub.tls-key-file";
  if (!path.empty() && !std::ifstream{path})
    return "cannot read \"" + path + "\"";
  return {};
}

std::string broker_name(const std::string& x, const hub_config&) {
  return x == "local" || x == "redis" ? "" : "must be local or redis";
}

/// Each URL parses; with broker = redis there is at least one.
std::string redis_urls(const strings& xs, const hub_config& cfg) {
  if (cfg.broker == "redis" && xs.empty())
    return "is empty (broker = redis needs at least one)";
  for (size_t i = 0; i < xs.size(); ++i)
    if (auto u = redis::url::parse(xs[i]); !u)
      return "entry " + std::to_string(i + 1) + ": "
        + u.error().context().get_as<std::string>(0);
  return {};
}

// -- the table --------------------------------------------------------------

/// One setting: a hub_config field and its CAF option `livehub.<name>`.
template<class T>
struct setting {
  /// Below `livehub.`; the field's name with '-' for '_'.
  const char* name;
  /// The field; its initialiser in hub_config is the only written default.
  T hub_config::*field;
  reader read_by;
  /// For `--help`, without the default: add_options appends it.
  const char* help;
  /// Empty: every value of type T is valid.
  rule<T> check = {};
};

template<class T>
setting(const char*, T hub_config::*, reader, const char*) -> setting<T>;

template<class T, class Rule>
setting(const char*, T hub_config::*, reader, const char*, Rule) -> setting<T>;

using any_setting = std::variant<setting<std::string>, setting<uint16_t>,
                                 setting<size_t>, setting<caf::timespan>,
                                 setting<strings>, setting<optional_strings>>;

/// Every `livehub.*` setting, in hub_config's order; validate() reports the
/// first invalid one in this order. Not here: `client_publish_check`, a
/// std::function that only code can set, so it has no option and no default
/// to print.
const std::vector<any_setting>& table() {
  static const std::vector<any_setting> rows{
    // -- network
    setting{"host", &hub_config::host, reader::server,
            "address the server binds to", not_empty},
    setting{"port", &hub_config::port, reader::server,
            "TCP port; 0 picks a free one"},
    setting{"path", &hub_config::path, reader::server,
            "the WebSocket upgrade path", starts_with_slash},
    setting{"web-root", &hub_config::web_root, reader::server,
            "directory served as static files; empty: none"},
    // -- keepalive
    setting{"ping-interval", &hub_config::ping_interval, reader::server,
            "a WebSocket ping is sent this often", at_least(1ms)},
    setting{"pong-timeout", &hub_config::pong_timeout, reader::server,
            "close a connection that answers no ping within this",
            at_least(1ms)},
    setting{"write-timeout", &hub_config::write_timeout, reader::server,
            "close a connection whose queued frames stall this long",
            at_least(1ms)},
    // -- HTTP keep-alive
    setting{"http-idle-timeout", &hub_config::http_idle_timeout, reader::server,
            "close a kept-alive HTTP connection idle this long", at_least(1ms)},
    setting{"http-max-requests", &hub_config::http_max_requests, reader::server,
            "HTTP requests per connection; 1: no keep-alive", at_least(1)},
    // -- limits
    setting{"max-message-size", &hub_config::max_message_size, reader::server,
            "bytes per incoming message and HTTP publish body",
            at_least(64, " bytes")},
    setting{"send-queue-limit", &hub_config::send_queue_limit, reader::server,
            "frames queued per connection before it is closed", at_least(1)},
    setting{"send-queue-bytes", &hub_config::send_queue_bytes, reader::server,
            "bytes queued per connection before it is closed",
            holds_largest_message},
    setting{"max-subscriptions", &hub_config::max_subscriptions, reader::hub,
            "channels one connection may subscribe to"},
    setting{"max-connections", &hub_config::max_connections, reader::server,
            "open WebSocket connections", at_least(1)},
    setting{"max-pending-commands", &hub_config::max_pending_commands,
            reader::server, "commands of one connection not yet processed",
            at_least(1)},
    // -- security
    setting{"allowed-origins", &hub_config::allowed_origins, reader::server,
            "browser origins allowed; empty: same origin only", origins},
    setting{"api-key", &hub_config::api_key, reader::server,
            "key for publishing; empty: loopback peers only"},
    setting{"client-publish", &hub_config::client_publish, reader::hub,
            "channel patterns on which clients may publish", no_empty_pattern},
    // -- identity (tokens)
    setting{"token-hmac-secret", &hub_config::token_hmac_secret, reader::hub,
            "HS256 secret of tokens; set: connections must connect"},
    setting{"token-public-key", &hub_config::token_public_key, reader::hub,
            "PEM public key file (RS256/ES256) of tokens", readable_public_key},
    setting{"token-leeway", &hub_config::token_leeway, reader::hub,
            "tolerance for the exp, nbf and iat of tokens"},
    setting{"connect-timeout", &hub_config::connect_timeout, reader::hub,
            "with tokens, close (4001) a connection not connected by then",
            at_least(1ms)},
    setting{"public-channels", &hub_config::public_channels, reader::hub,
            "channel patterns anyone may subscribe to; unset: [\"*\"] "
            "without a token key, [] with one",
            no_empty_pattern_if_set},
    setting{"authorize-timeout", &hub_config::authorize_timeout, reader::hub,
            "how long the application's authorizer may take", at_least(1ms)},
    // -- history
    setting{"history-channels", &hub_config::history_channels, reader::hub,
            "channel patterns with offsets, history and recovery",
            no_empty_pattern},
    setting{"history-size", &hub_config::history_size, reader::hub,
            "publications kept per history channel",
            between(size_t{1}, size_t{100000})},
    setting{"history-ttl", &hub_config::history_ttl, reader::hub,
            "how long a publication stays in history", at_least(1ms)},
    // -- presence
    setting{"presence-channels", &hub_config::presence_channels, reader::hub,
            "channel patterns whose subscribers are known and announced",
            no_empty_pattern},
    // -- rate limits
    setting{"command-rate", &hub_config::command_rate, reader::hub,
            "commands per second per connection", at_least(1)},
    setting{"command-burst", &hub_config::command_burst, reader::hub,
            "command bucket size per connection", at_least(1)},
    setting{"client-publish-rate", &hub_config::client_publish_rate,
            reader::hub, "client publications per second per connection",
            at_least(1)},
    setting{"max-connections-per-ip", &hub_config::max_connections_per_ip,
            reader::server, "connections per peer address", at_least(1)},
    // -- TLS
    setting{"tls-cert-file", &hub_config::tls_cert_file, reader::server,
            "PEM certificate (chain); with the key: wss:// and https:// only",
            tls_file},
    setting{"tls-key-file", &hub_config::tls_key_file, reader::server,
            "PEM private key of the certificate", tls_file},
    // -- several nodes
    setting{"broker", &hub_config::broker, reader::hub,
            "local (one node) or redis (a cluster through Redis)", broker_name},
    setting{"redis-urls", &hub_config::redis_urls, reader::hub,
            "redis:// URLs; several shard the channels", redis_urls},
    setting{"redis-prefix", &hub_config::redis_prefix, reader::hub,
            "prefix of livehub's Redis channel names", not_empty},
    // -- threads
    setting{"io-threads", &hub_config::io_threads, reader::server,
            "threads running the WebSocket and HTTP I/O", between(1, 64)},
  };
  return rows;
}

/// Calls `f` with each row of the table, as its `setting<T>`.
template<class F>
void for_each_setting(F f) {
  for (auto& row : table())
    std::visit(f, row);
}

// -- what each operation does with one setting ------------------------------

std::string option_name(const char* name) {
  return std::string{"livehub."} + name;
}

std::string help_text(const char* help, const std::string& default_text) {
  return std::string{help} + " (default " + default_text + ")";
}

caf::error invalid(std::string what) {
  return caf::make_error(caf::sec::invalid_argument,
                         "invalid livehub configuration: " + std::move(what));
}

template<class T>
void add_option(caf::config_option_adder& adder, const setting<T>& s,
                const hub_config& defaults) {
  // caf::string_view converts from char arrays and strings, not from pointers.
  caf::string_view name{s.name, std::strlen(s.name)};
  adder.add<T>(name, help_text(s.help, render(defaults.*s.field)));
}

template<class T>
void read_setting(const caf::actor_system_config& cfg, const setting<T>& s,
                  hub_config& out) {
  out.*s.field = caf::get_or(cfg, option_name(s.name), out.*s.field);
}

void read_setting(const caf::actor_system_config& cfg,
                  const setting<optional_strings>& s, hub_config& out) {
  if (auto x = caf::get_if<strings>(&cfg, option_name(s.name)))
    out.*s.field = *x;
}

void add_option(caf::config_option_adder& adder,
                const setting<optional_strings>& s,
                const hub_config& defaults) {
  caf::string_view name{s.name, std::strlen(s.name)};
  adder.add<strings>(name, help_text(s.help, render(defaults.*s.field)));
}

template<class T>
caf::error check_setting(const setting<T>& s, const hub_config& cfg) {
  if (!s.check)
    return caf::none;
  auto why = s.check(cfg.*s.field, cfg);
  if (why.empty())
    return caf::none;
  return invalid(option_name(s.name) + " " + why);
}

template<class T>
settings::description
describe_setting(const setting<T>& s, const hub_config& defaults) {
  return {s.name, type_name<T>, render(defaults.*s.field), s.help, s.read_by};
}

} // namespace

caf::error hub_config::validate() const {
  caf::error first;
  for_each_setting([&](auto& s) {
    if (!first)
      first = check_setting(s, *this);
  });
  return first;
}

std::string http_request::header(std::string_view name) const {
  auto same = [&](const std::string& x) {
    return x.size() == name.size()
      && std::equal(x.begin(), x.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a))
               == std::tolower(static_cast<unsigned char>(b));
           });
  };
  for (auto& [key, value] : headers)
    if (same(key))
      return value;
  return {};
}

size_t worker_threads(const hub_config& cfg) {
  size_t cores = std::thread::hardware_concurrency();
  return cores > cfg.io_threads ? cores - cfg.io_threads : 1;
}

void add_options(caf::config_option_set& opts) {
  caf::config_option_adder adder{opts, "livehub"};
  const hub_config defaults;
  for_each_setting([&](auto& s) {
    add_option(adder, s, defaults);
  });
}

caf::expected<hub_config> read_config(const caf::actor_system_config& cfg) {
  hub_config result;
  for_each_setting([&](auto& s) {
    read_setting(cfg, s, result);
  });
  if (auto err = result.validate())
    return err;
  return result;
}

namespace settings {

const char* to_string(reader x) {
  return x == reader::hub ? "hub" : "server";
}

std::vector<description> describe() {
  const hub_config defaults;
  std::vector<description> result;
  for_each_setting([&](auto& s) {
    result.push_back(describe_setting(s, defaults));
  });
  return result;
}

} // namespace settings

} // namespace livehub
