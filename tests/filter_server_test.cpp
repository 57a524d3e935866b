// Tags and filters over real sockets: POST /api/publish (single and batch)
// with tags, WebSocket subscribers with and without filters, and bad tags
// or filters answered clearly.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "livehub/all.hpp"
#include "support/json_field.hpp"
#include "support/served_hub.hpp"
#include "support/ws_client.hpp"

using namespace livehub::test;

namespace {

http_response post(uint16_t port, const std::string& body) {
  return http_request(port, "POST", "/api/publish",
                      {{"Content-Type", "application/json"}}, body);
}

ws_client subscriber(uint16_t port, const std::string& subscribe) {
  ws_client c{port};
  REQUIRE(c.status() == 101);
  REQUIRE(c.send_text(subscribe));
  auto reply = c.receive();
  REQUIRE_MESSAGE(reply.kind == ws_kind::text, reply.describe());
  REQUIRE_MESSAGE(json_field(reply.data, "type") == "ok", reply.data);
  return c;
}

/// The next text frame (the test fails on anything else).
std::string next(ws_client& c) {
  auto m = c.receive();
  REQUIRE_MESSAGE(m.kind == ws_kind::text, m.describe());
  return m.data;
}

} // namespace

TEST_SUITE_BEGIN("filter");

TEST_CASE("filter: HTTP publications with tags reach only matching "
          "WebSocket subscribers, in order") {
  served_hub h;
  auto vip = subscriber(
    h.port,
    R"({"type":"subscribe","channel":"orders","id":1,"filter":{"or":[{"key":"tier","op":"eq","value":"gold"},{"key":"amount","op":"gt","value":1000}]}})");
  auto all = subscriber(h.port,
                        R"({"type":"subscribe","channel":"orders","id":1})");
  auto res = post(
    h.port,
    R"({"channel":"orders","type":"new","data":1,"tags":{"tier":"gold"}})");
  REQUIRE_MESSAGE(res.status == 202, res.body);
  res = post(
    h.port,
    R"([{"channel":"orders","type":"new","data":2,"tags":{"tier":"silver","amount":"50"}},)"
    R"({"channel":"orders","type":"new","data":3,"tags":{"tier":"silver","amount":"5000"}},)"
    R"({"channel":"orders","type":"new","data":4}])");
  REQUIRE_MESSAGE(res.status == 202, res.body);
  CHECK(
    next(vip)
    == R"({"channel":"orders","type":"new","data":1,"tags":{"tier":"gold"}})");
  CHECK(
    next(vip)
    == R"({"channel":"orders","type":"new","data":3,"tags":{"amount":"5000","tier":"silver"}})");
  for (auto n : {"1", "2", "3", "4"})
    CHECK(json_field(next(all), "data") == n);
  // Nothing more for the filtered one: a ping's pong comes next.
  REQUIRE(vip.send_text(R"({"type":"ping","id":9})"));
  CHECK(json_field(next(vip), "type") == "pong");
}

TEST_CASE("filter: bad tags get 400 with bad_command, a bad filter an error "
          "frame, and the connection stays") {
  served_hub h;
  auto res = post(h.port,
                  R"({"channel":"c","type":"m","data":1,"tags":{"k":["v"]}})");
  CHECK(res.status == 400);
  CHECK(json_field(res.body, "code") == "bad_command");
  CHECK(res.body.find("tags") != std::string::npos);
  ws_client c{h.port};
  REQUIRE(c.status() == 101);
  REQUIRE(c.send_text(
    R"({"type":"subscribe","channel":"c","id":1,"filter":{"not":{"not":{"not":{"not":{"not":{"not":{"not":{"not":{"key":"a","op":"exists"}}}}}}}}}})"));
  auto reply = next(c);
  CHECK(json_field(reply, "type") == "error");
  CHECK(json_field(reply, "code") == "bad_command");
  CHECK(reply.find("deeper than 8") != std::string::npos);
  REQUIRE(c.send_text(R"({"type":"subscribe","channel":"c","id":2})"));
  CHECK(json_field(next(c), "type") == "ok");
  res = post(h.port, R"({"channel":"c","type":"m","data":7})");
  CHECK(res.status == 202);
  CHECK(json_field(next(c), "data") == "7");
}

TEST_SUITE_END();
