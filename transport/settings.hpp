// The table of `livehub.*` settings, as seen from outside transport/config.cpp:
// what each setting is called, its default and who reads it. Internal: tests
// compare it with docs/configuration.md; applications use hub_config.
#pragma once

#include <string>
#include <vector>

namespace livehub::settings {

/// The component that reads a setting from the hub_config it is given.
enum class reader {
  /// spawn_hub: the hub's channel policy, enforced by its client actors for
  /// every server bound to that hub.
  hub,
  /// server::start: transport, limits and security of one server.
  server,
};

/// "hub" or "server", as docs/configuration.md writes it.
const char* to_string(reader x);

/// One setting of the table in transport/config.cpp.
struct description {
  /// The option's name below `livehub.`, e.g. "ping-interval". The hub_config
  /// field has the same name with '_' for '-'.
  std::string name;
  /// The value's type as docs/configuration.md writes it, e.g. "timespan".
  std::string type;
  /// The default of a default-constructed hub_config, written as in
  /// caf-application.ini, e.g. `54s`, `"/ws"` or `[]`.
  std::string default_text;
  /// The `--help` text, without the default (add_options appends it).
  std::string help;
  /// Who reads it.
  reader read_by;
};

/// Every setting, in the table's order (that of hub_config's fields).
std::vector<description> describe();

} // namespace livehub::settings
