// run_server(): the main() of a livehub server program in one call.
#pragma once

#include <functional>

#include <caf/fwd.hpp>

#include "livehub/config.hpp"

namespace livehub {

/// Adjusts a program's hub_config after the command line and
/// caf-application.ini were read; `cfg` tells which options were set
/// (`caf::get_if`), so a program changes only defaults.
using config_adjuster
  = std::function<void(const caf::actor_system_config& cfg, hub_config& hub)>;

/// Prepares what needs the actor system, once it runs and before the hub is
/// spawned: e.g. spawns the application's authorizer into
/// `hub.authorizer`. run_server ends `hub.authorizer` when it ends the hub;
/// other actors spawned here must end by themselves (e.g. by monitoring the
/// hub's actors), or the program waits for them on exit.
using system_setup
  = std::function<void(caf::actor_system& sys, hub_config& hub)>;

/// Runs a livehub server program; call it as `return run_server(...)` from
/// main(). It blocks SIGINT and SIGTERM (before any thread starts), reads
/// every `livehub.*` option from the command line and caf-application.ini,
/// applies `adjust`, sets `scheduler.max-threads` to worker_threads() unless
/// given, starts the actor system, applies `setup`, spawns the hub, starts the
/// server and prints `listening on HOST:PORT` as the first line of stdout. On
/// SIGINT or SIGTERM it closes every connection with 1001 and returns 0.
/// Invalid options or an address that cannot be bound: a message on stderr
/// after `name`, returns 1.
int run_server(int argc, char** argv, const char* name,
               config_adjuster adjust = {}, system_setup setup = {});

} // namespace livehub
