// The `livehub.*` settings: docs/configuration.md documents exactly the
// settings of the table in transport/config.cpp, with their defaults; and an
// application that declares the options reads back what a user set, or gets
// an error naming the setting that is wrong.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/config_option_set.hpp>
#include <caf/error.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

#include "livehub/config.hpp"
#include "transport/settings.hpp"

using namespace std::chrono_literals;

namespace {

const std::string docs_path = LIVEHUB_SOURCE_DIR "/docs/configuration.md";

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  REQUIRE_MESSAGE(in, "cannot read " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trim(const std::string& x) {
  auto first = x.find_first_not_of(' ');
  if (first == std::string::npos)
    return {};
  return x.substr(first, x.find_last_not_of(' ') - first + 1);
}

/// "| a | b |" -> {"a", "b"}. (No cell of the settings table holds a '|'.)
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> result;
  std::istringstream in{line.substr(1)};
  std::string cell;
  while (std::getline(in, cell, '|'))
    result.push_back(trim(cell));
  if (!result.empty() && result.back().empty())
    result.pop_back();
  return result;
}

bool starts_with(const std::string& x, const std::string& prefix) {
  return x.compare(0, prefix.size(), prefix) == 0;
}

using row = std::map<std::string, std::string>; // column title -> cell

/// The rows of the docs' settings table (the one whose first column is "CAF
/// option"), by option name, e.g. "livehub.port" -> {"default": "`8080`",
/// ...}.
std::map<std::string, row> documented_settings(const std::string& markdown) {
  std::map<std::string, row> result;
  std::vector<std::string> titles; // of the settings table, once inside it
  std::istringstream in{markdown};
  for (std::string line; std::getline(in, line);) {
    if (!starts_with(line, "|")) {
      titles.clear();
      continue;
    }
    auto row_cells = cells(line);
    if (titles.empty()) {
      if (!row_cells.empty() && row_cells.front() == "CAF option")
        titles = row_cells;
      continue;
    }
    auto& option = row_cells.front();
    if (!starts_with(option, "`livehub.") || option.back() != '`')
      continue; // the "| --- |" line
    auto& cols = result[option.substr(1, option.size() - 2)];
    for (size_t i = 0; i < row_cells.size() && i < titles.size(); ++i)
      cols[titles[i]] = row_cells[i];
  }
  return result;
}

/// The keys of the `[livehub]` section in the docs' ```ini example.
std::vector<std::string> ini_example_keys(const std::string& markdown) {
  std::vector<std::string> result;
  std::istringstream in{markdown};
  bool in_ini = false;
  bool in_livehub = false;
  for (std::string line; std::getline(in, line);) {
    if (!in_ini) {
      in_ini = line == "```ini";
      continue;
    }
    if (line == "```")
      break;
    if (starts_with(line, "["))
      in_livehub = line == "[livehub]";
    else if (in_livehub && line.find('=') != std::string::npos)
      result.push_back(trim(line.substr(0, line.find('='))));
  }
  return result;
}

/// The docs' ```ini example, as it would be in caf-application.ini.
std::string ini_example(const std::string& markdown) {
  auto first = markdown.find("```ini\n");
  REQUIRE(first != std::string::npos);
  first += 7;
  return markdown.substr(first, markdown.find("```", first) - first);
}

/// An application's config, as docs/configuration.md shows it.
struct app_config : caf::actor_system_config {
  app_config() {
    livehub::add_options(custom_options_);
  }

  const caf::config_option_set& options() const {
    return custom_options_;
  }
};

/// Parses a command line (and an INI file's text) the way CAF_MAIN or
/// run_server do, then reads the hub config from it.
caf::expected<livehub::hub_config> load(std::vector<std::string> args,
                                        const std::string& ini = "") {
  app_config cfg;
  args.insert(args.begin(), "config_test");
  std::vector<char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.data());
  std::istringstream ini_text{ini};
  if (auto err = cfg.parse(static_cast<int>(argv.size()), argv.data(),
                           ini_text))
    return err;
  return livehub::read_config(cfg);
}

/// The text of an error made by `caf::make_error(code, text)` (to_string
/// would escape its quotes).
std::string error_text(const caf::error& err) {
  auto& context = err.context();
  if (context.match_elements<std::string>())
    return context.get_as<std::string>(0);
  return caf::to_string(err);
}

std::string message(const caf::expected<livehub::hub_config>& x) {
  return x ? std::string{"(no error)"} : error_text(x.error());
}

} // namespace

TEST_CASE("every setting is documented with its type, default and reader") {
  auto documented = documented_settings(read_file(docs_path));
  for (auto& setting : livehub::settings::describe()) {
    auto option = "livehub." + setting.name;
    INFO(option);
    auto i = documented.find(option);
    REQUIRE_MESSAGE(i != documented.end(),
                    option << " has no row in " << docs_path);
    auto& cols = i->second;
    // A cell may add a remark after the value: "`524288` (512 KiB)".
    CHECK_MESSAGE(starts_with(cols["default"],
                              "`" + setting.default_text + "`"),
                  "docs: " << cols["default"] << "; table: `"
                           << setting.default_text << "`");
    CHECK_MESSAGE((cols["type"] == setting.type
                   || starts_with(cols["type"], setting.type + " (")),
                  "docs: " << cols["type"] << "; table: " << setting.type);
    CHECK(cols["read by"] == std::string{to_string(setting.read_by)});
  }
}

TEST_CASE("the documentation lists no setting that does not exist") {
  auto markdown = read_file(docs_path);
  std::set<std::string> names;
  for (auto& setting : livehub::settings::describe())
    names.insert(setting.name);
  for (auto& [option, cols] : documented_settings(markdown)) {
    INFO(option);
    CHECK(names.count(option.substr(8)) == 1);
  }
  auto keys = ini_example_keys(markdown);
  CHECK(!keys.empty());
  for (auto& key : keys) {
    INFO("[livehub] " << key << " in the INI example");
    CHECK(names.count(key) == 1);
  }
}

TEST_CASE("the INI example of the documentation loads") {
  auto cfg = load({}, ini_example(read_file(docs_path)));
  REQUIRE_MESSAGE(cfg, message(cfg));
  CHECK(cfg->web_root == "/srv/chat/www");
  CHECK(cfg->allowed_origins == std::vector<std::string>{"https://a.example"});
  CHECK(cfg->client_publish == std::vector<std::string>{"room:*"});
}

TEST_CASE("each option's help says what it sets and ends with its default") {
  app_config cfg;
  std::set<std::string> names;
  for (auto& setting : livehub::settings::describe()) {
    INFO(setting.name);
    CHECK(names.insert(setting.name).second); // no setting twice
    // The default comes from hub_config{}, never from the help text.
    CHECK(!setting.help.empty());
    CHECK(setting.help.find("default") == std::string::npos);
    auto option
      = cfg.options().qualified_name_lookup("livehub." + setting.name);
    REQUIRE(option != nullptr);
    auto help = std::string{option->description().begin(),
                            option->description().end()};
    CHECK(help == setting.help + " (default " + setting.default_text + ")");
  }
}

TEST_CASE("an unset option reads as hub_config's default") {
  auto cfg = load({});
  REQUIRE_MESSAGE(cfg, message(cfg));
  livehub::hub_config defaults;
  CHECK(cfg->host == defaults.host);
  CHECK(cfg->port == defaults.port);
  CHECK(cfg->path == defaults.path);
  CHECK(cfg->ping_interval == defaults.ping_interval);
  CHECK(cfg->send_queue_bytes == defaults.send_queue_bytes);
  CHECK(cfg->allowed_origins == defaults.allowed_origins);
  CHECK(cfg->io_threads == defaults.io_threads);
  CHECK(cfg->http_idle_timeout == caf::timespan{5s});
  CHECK(cfg->http_max_requests == 1000);
}

TEST_CASE("options given on the command line are what read_config returns") {
  auto cfg = load(
    {"--livehub.host=0.0.0.0", "--livehub.port=0", "--livehub.path=/live",
     "--livehub.ping-interval=30s", "--livehub.write-timeout=1500ms",
     "--livehub.max-message-size=1024", "--livehub.max-subscriptions=10",
     R"(--livehub.client-publish=["room:*","lobby"])",
     "--livehub.api-key=secret", "--livehub.io-threads=2",
     "--livehub.http-idle-timeout=250ms", "--livehub.http-max-requests=7"});
  REQUIRE_MESSAGE(cfg, message(cfg));
  CHECK(cfg->host == "0.0.0.0");
  CHECK(cfg->port == 0);
  CHECK(cfg->path == "/live");
  CHECK(cfg->ping_interval == caf::timespan{30s});
  CHECK(cfg->write_timeout == caf::timespan{1500ms});
  CHECK(cfg->max_message_size == 1024);
  CHECK(cfg->max_subscriptions == 10);
  CHECK(cfg->client_publish == std::vector<std::string>{"room:*", "lobby"});
  CHECK(cfg->api_key == "secret");
  CHECK(cfg->io_threads == 2);
  CHECK(cfg->http_idle_timeout == caf::timespan{250ms});
  CHECK(cfg->http_max_requests == 7);
  CHECK(cfg->pong_timeout == livehub::hub_config{}.pong_timeout); // unset
}

TEST_CASE("an invalid value gets an error that names its option") {
  struct bad_value {
    std::string arg;
    std::string error;
  };
  std::vector<bad_value> bad_values{
    {"--livehub.path=ws", "livehub.path must start with '/'"},
    {"--livehub.ping-interval=0s",
     "livehub.ping-interval must be at least 1ms"},
    {"--livehub.pong-timeout=0s", "livehub.pong-timeout must be at least 1ms"},
    {"--livehub.write-timeout=0ms",
     "livehub.write-timeout must be at least 1ms"},
    {"--livehub.http-idle-timeout=0s",
     "livehub.http-idle-timeout must be at least 1ms"},
    {"--livehub.http-max-requests=0",
     "livehub.http-max-requests must be at least 1"},
    {"--livehub.max-message-size=63",
     "livehub.max-message-size must be at least 64 bytes"},
    {"--livehub.send-queue-limit=0",
     "livehub.send-queue-limit must be at least 1"},
    {"--livehub.send-queue-bytes=524287",
     "livehub.send-queue-bytes must be at least livehub.max-message-size"},
    {"--livehub.max-connections=0",
     "livehub.max-connections must be at least 1"},
    {"--livehub.max-pending-commands=0",
     "livehub.max-pending-commands must be at least 1"},
    {"--livehub.io-threads=0", "livehub.io-threads must be 1 to 64"},
    {"--livehub.io-threads=65", "livehub.io-threads must be 1 to 64"},
    {R"(--livehub.allowed-origins=["example.com"])",
     "livehub.allowed-origins entry \"example.com\" is not an origin like "
     "https://host:port"},
    {R"(--livehub.client-publish=["room:*",""])",
     "livehub.client-publish has an empty pattern"},
  };
  for (auto& bad : bad_values) {
    INFO(bad.arg);
    auto cfg = load({bad.arg});
    REQUIRE(!cfg);
    CHECK(cfg.error() == caf::sec::invalid_argument);
    CHECK(message(cfg) == "invalid livehub configuration: " + bad.error);
  }
}

TEST_CASE("a value not of the option's type is refused by CAF's parser") {
  // The documented syntax: a timespan needs its unit; a port is a uint16.
  for (std::string arg : {"--livehub.ping-interval=5", "--livehub.port=70000",
                          "--livehub.max-connections=-1"}) {
    INFO(arg);
    auto cfg = load({arg});
    REQUIRE(!cfg);
    CHECK(caf::to_string(cfg.error()).find(arg) != std::string::npos);
  }
}

TEST_CASE("the values at the edge of each rule are valid") {
  auto cfg
    = load({"--livehub.ping-interval=1ms", "--livehub.io-threads=64",
            "--livehub.max-message-size=64", "--livehub.send-queue-bytes=64",
            "--livehub.send-queue-limit=1", "--livehub.http-max-requests=1",
            R"(--livehub.allowed-origins=["*","http://a:1"])"});
  CHECK_MESSAGE(cfg, message(cfg));
}

TEST_CASE("validate() checks a hub_config set in code as read_config does") {
  livehub::hub_config cfg;
  CHECK(!cfg.validate());
  cfg.host.clear();
  auto err = cfg.validate();
  REQUIRE(err);
  CHECK(error_text(err)
        == "invalid livehub configuration: livehub.host is empty");
}
