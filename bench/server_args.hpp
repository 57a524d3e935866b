// What livehub-baseline and livehub-epoll share: their command line
// (--host, --port, and livehub's own names for them) and the open-file limit
// raised to its maximum (one descriptor per connection).
#pragma once

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include <sys/resource.h>

namespace bench {

struct server_args {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
};

/// Reads `--host=H --port=P` (or `--livehub.host` / `--livehub.port`, with
/// `=` or a space); none after printing the usage of `program` on bad input.
inline std::optional<server_args> parse_server_args(int argc, char** argv,
                                                    const char* program) {
  server_args result;
  long port = result.port;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& name) -> const char* {
      if (arg.rfind(name + "=", 0) == 0)
        return argv[i] + name.size() + 1;
      if (arg == name && i + 1 < argc)
        return argv[++i];
      return nullptr;
    };
    if (auto v = value("--port"); v)
      port = std::strtol(v, nullptr, 10);
    else if (auto v = value("--livehub.port"); v)
      port = std::strtol(v, nullptr, 10);
    else if (auto v = value("--host"); v)
      result.host = v;
    else if (auto v = value("--livehub.host"); v)
      result.host = v;
    else {
      std::cerr << "usage: " << program << " [--host=H] [--port=P]\n";
      return std::nullopt;
    }
  }
  if (port < 0 || port > 65535) {
    std::cerr << program << ": bad port\n";
    return std::nullopt;
  }
  result.port = static_cast<uint16_t>(port);
  // One descriptor per connection.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  return result;
}

} // namespace bench
