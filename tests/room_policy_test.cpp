// The chat demo's room rules (examples/chat/room_policy.hpp).
#include <doctest/doctest.h>

#include "room_policy.hpp"

namespace {

std::string check(std::string channel, std::string type, std::string data) {
  auto pub = livehub::make_publication(channel, type, data);
  REQUIRE(pub);
  return chat::check_room_message(*pub);
}

} // namespace

TEST_CASE("room messages are {name, text} in room:<name> channels") {
  CHECK(check("room:lobby", "message", R"({"name":"Ada","text":"hi"})") == "");
  CHECK(check("room:a-b_9", "message", R"({"text":"hi","name":"Ada"})") == "");
  CHECK(check("room:", "message", R"({"name":"A","text":"t"})") != "");
  CHECK(check("room:a b", "message", R"({"name":"A","text":"t"})") != "");
  CHECK(check("room:" + std::string(65, 'x'), "message",
              R"({"name":"A","text":"t"})")
        != "");
  CHECK(check("room:lobby", "typing", R"({"name":"A","text":"t"})")
        == "rooms take events of type \"message\"");
  CHECK(check("room:lobby", "message", R"("hi")") != "");
  CHECK(check("room:lobby", "message", R"({"name":"A"})")
        == "\"text\" must be a string");
  CHECK(check("room:lobby", "message", R"({"name":"  ","text":"t"})")
        == "\"name\" must not be empty");
  CHECK(
    check("room:lobby", "message", R"({"name":"A","text":"t","admin":true})")
    != "");
  CHECK(check("room:lobby", "message",
              R"({"name":")" + std::string(33, 'n') + R"(","text":"t"})")
        == "\"name\" is longer than 32 bytes");
  CHECK(check("room:lobby", "message",
              R"({"name":"A","text":")" + std::string(2001, 't') + R"("})")
        == "\"text\" is longer than 2000 bytes");
  CHECK(check("room:lobby", "message",
              R"({"name":"A","text":")" + std::string(2000, 't') + R"("})")
        == "");
}
