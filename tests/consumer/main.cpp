// Links against an installed livehub through find_package(livehub): spawns a
// hub, subscribes an actor, publishes, and checks the publication arrives.
#include <iostream>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <livehub/all.hpp>

int main() {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto hub = livehub::spawn_hub(sys, livehub::hub_config{});
  caf::scoped_actor self{sys};
  auto me = caf::actor_cast<livehub::subscriber_actor>(self);
  int result = 1;
  self
    ->request(hub, std::chrono::seconds(5), caf::subscribe_atom::value,
              std::string{"consumer"}, me)
    .receive([](caf::ok_atom) {}, [](caf::error&) {});
  if (!livehub::publish(hub, "consumer", "hello", R"({"ok":true})")) {
    self->receive(
      [&](const livehub::publication& x) {
        std::cout << x.channel << " " << x.type << " " << x.data.str() << "\n";
        result = x.data.str() == R"({"ok":true})" ? 0 : 1;
      },
      caf::after(std::chrono::seconds(5)) >> [] {});
  }
  caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
  return result;
}
