// The JSON codec on its own: client commands and publish bodies in, frames
// out, including hostile input. No sockets, no actors.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <variant>

#include <rapidjson/document.h>

#include "protocol/codec.hpp"

using namespace livehub;
using namespace livehub::codec;

namespace {

command parse_ok(std::string_view text) {
  auto res = parse_command(text);
  if (auto err = std::get_if<parse_error>(&res))
    FAIL("unexpected ", std::string{to_string(err->code)}, ": ", err->message,
         " for ", std::string{text.substr(0, 200)});
  return std::get<command>(std::move(res));
}

parse_error parse_fails(std::string_view text) {
  auto res = parse_command(text);
  if (std::holds_alternative<command>(res))
    FAIL("unexpectedly parsed: ", std::string{text.substr(0, 200)});
  return std::get<parse_error>(std::move(res));
}

publication publish_ok(std::string_view text) {
  auto res = parse_publish(text);
  if (auto err = std::get_if<parse_error>(&res))
    FAIL("unexpected ", std::string{to_string(err->code)}, ": ", err->message,
         " for ", std::string{text.substr(0, 200)});
  return std::get<publication>(std::move(res));
}

parse_error publish_fails(std::string_view text) {
  auto res = parse_publish(text);
  if (std::holds_alternative<publication>(res))
    FAIL("unexpectedly parsed: ", std::string{text.substr(0, 200)});
  return std::get<parse_error>(std::move(res));
}

/// The error code of a command frame, or "ok".
std::string outcome(std::string_view text) {
  auto res = parse_command(text);
  if (auto err = std::get_if<parse_error>(&res))
    return to_string(err->code);
  return "ok";
}

/// A publish command carrying `data` (raw JSON text).
std::string publish_with(std::string_view data) {
  return R"({"type":"publish","channel":"room:1","event":"e","data":)"
    + std::string{data} + "}";
}

/// The re-written `data` of a publish command.
std::string data_of(std::string_view data) {
  return parse_ok(publish_with(data)).data.str();
}

rapidjson::Document dom(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseFullPrecisionFlag>(text.c_str(), text.size());
  REQUIRE_MESSAGE(!doc.HasParseError(), "not JSON: ", text.substr(0, 200));
  return doc;
}

std::string repeat(std::string_view s, size_t n) {
  std::string result;
  result.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i)
    result += s;
  return result;
}

/// `n` nested arrays around `inner`.
std::string nested(size_t n, std::string_view inner = "") {
  return repeat("[", n) + std::string{inner} + repeat("]", n);
}

} // namespace

// -- command shapes -----------------------------------------------------------

TEST_CASE("subscribe without an id names its channel and has no id") {
  auto cmd = parse_ok(R"({"type":"subscribe","channel":"chat"})");
  CHECK(cmd.type == command_type::subscribe);
  CHECK(cmd.channel == "chat");
  CHECK(cmd.id.empty());
}

TEST_CASE("unsubscribe parses like subscribe") {
  auto cmd = parse_ok(R"({"type":"unsubscribe","channel":"chat","id":2})");
  CHECK(cmd.type == command_type::unsubscribe);
  CHECK(cmd.channel == "chat");
  CHECK(cmd.id == "2");
}

TEST_CASE("field order does not matter") {
  auto cmd = parse_ok(R"({"channel":"chat","id":"x","type":"subscribe"})");
  CHECK(cmd.type == command_type::subscribe);
  CHECK(cmd.channel == "chat");
  CHECK(cmd.id == R"("x")");
}

TEST_CASE("publish carries channel, event and compact data") {
  auto cmd = parse_ok(
    R"({"type":"publish","channel":"room:1","event":"message",)"
    R"("data":{ "text" : "hi", "n" : [1, 2.50] },"id":9})");
  CHECK(cmd.type == command_type::publish);
  CHECK(cmd.channel == "room:1");
  CHECK(cmd.event == "message");
  CHECK(cmd.data.str() == R"({"text":"hi","n":[1,2.50]})");
  CHECK(cmd.id == "9");
}

TEST_CASE("publish without data publishes null") {
  auto cmd = parse_ok(R"({"type":"publish","channel":"c","event":"e"})");
  CHECK(cmd.data.str() == "null");
}

TEST_CASE("publish needs an event of 1 to 255 bytes") {
  CHECK(outcome(R"({"type":"publish","channel":"c","data":1})")
        == "bad_command");
  CHECK(outcome(R"({"type":"publish","channel":"c","event":""})")
        == "bad_command");
  CHECK(outcome(R"({"type":"publish","channel":"c","event":")"
                + std::string(256, 'e') + "\"}")
        == "bad_command");
  CHECK(outcome(R"({"type":"publish","channel":"c","event":"a\nb"})")
        == "bad_command");
  CHECK(outcome(R"({"type":"publish","channel":"c","event":")"
                + std::string(255, 'e') + "\"}")
        == "ok");
}

TEST_CASE("ping needs nothing but its type") {
  auto cmd = parse_ok(R"({"type":"ping"})");
  CHECK(cmd.type == command_type::ping);
  CHECK(cmd.id.empty());
  auto with_id = parse_ok(R"({"type":"ping","id":"p-1"})");
  CHECK(with_id.type == command_type::ping);
  CHECK(with_id.id == R"("p-1")");
}

TEST_CASE("a numeric id is kept as its exact digits") {
  CHECK(parse_ok(R"({"type":"ping","id":0})").id == "0");
  CHECK(parse_ok(R"({"type":"ping","id":-1.50e+3})").id == "-1.50e+3");
  CHECK(parse_ok(R"({"type":"ping","id":12345678901234567890123})").id
        == "12345678901234567890123");
  CHECK(parse_ok(R"({"type":"ping","id":1e400})").id == "1e400");
}

TEST_CASE("a string id is kept as a JSON string literal") {
  CHECK(parse_ok(R"({"type":"ping","id":""})").id == R"("")");
  CHECK(parse_ok(R"({"type":"ping","id":"a\"b\\c"})").id == R"("a\"b\\c")");
  CHECK(parse_ok(R"({"type":"ping","id":"é"})").id == "\"é\"");
}

TEST_CASE("ids echo exactly as sent in ok, pong and error frames") {
  auto sub = parse_ok(R"({"type":"subscribe","channel":"c","id":-0.50})");
  CHECK(*encode_ok(sub.id) == R"({"type":"ok","id":-0.50})");
  auto ping = parse_ok(R"({"type":"ping","id":"a\"b"})");
  CHECK(*encode_pong(ping.id) == R"({"type":"pong","id":"a\"b"})");
  auto err = parse_fails(R"({"type":"nope","id":123456789012345678901})");
  CHECK(err.id == "123456789012345678901");
  CHECK(*encode_error(err.code, "m", err.id)
        == R"({"type":"error","id":123456789012345678901,)"
           R"("code":"unknown_command","message":"m"})");
}

TEST_CASE("an escaped string id echoes as the same JSON value") {
  // Escapes are decoded and re-encoded: the value is the same, the text may
  // differ ("\u0041" comes back as "A").
  auto cmd = parse_ok(R"({"type":"ping","id":"\u0041\u00e9\n"})");
  auto sent = dom(R"({"id":"\u0041\u00e9\n"})");
  auto echoed = dom(*encode_pong(cmd.id));
  CHECK(echoed["id"] == sent["id"]);
}

TEST_CASE("ids up to 64 bytes are accepted, longer ones are bad_command") {
  auto num64 = std::string(64, '7');
  CHECK(parse_ok(R"({"type":"ping","id":)" + num64 + "}").id == num64);
  auto num65 = std::string(65, '7');
  auto err = parse_fails(R"({"type":"ping","id":)" + num65 + "}");
  CHECK(err.code == error_code::bad_command);
  CHECK(err.id.empty()); // too long to echo
  // A string id counts with its quotes.
  auto str62 = std::string(62, 's');
  CHECK(parse_ok(R"({"type":"ping","id":")" + str62 + "\"}").id.size() == 64);
  auto str63 = std::string(63, 's');
  CHECK(outcome(R"({"type":"ping","id":")" + str63 + "\"}") == "bad_command");
}

TEST_CASE("ids that are neither number nor string are bad_command") {
  for (auto id : {"null", "true", "false", "[1]", "{}", R"({"a":1})"}) {
    CAPTURE(id);
    auto err = parse_fails(std::string{R"({"type":"ping","id":)"} + id + "}");
    CHECK(err.code == error_code::bad_command);
    CHECK(err.id.empty());
  }
}

TEST_CASE("unknown fields are ignored, whatever they hold") {
  auto cmd = parse_ok(
    R"({"type":"subscribe","extra":{"deep":[1,{"x":null}],"type":5},)"
    R"("channel":"c","n":1e400,"b":true,"s":"\u00e9","z":null})");
  CHECK(cmd.type == command_type::subscribe);
  CHECK(cmd.channel == "c");
  // Fields of a subscribe that belong to publish are ignored too.
  auto sub
    = parse_ok(R"({"type":"subscribe","channel":"c","event":"e","data":[1]})");
  CHECK(sub.type == command_type::subscribe);
}

TEST_CASE("type names are case-sensitive") {
  CHECK(outcome(R"({"type":"Subscribe","channel":"c"})") == "unknown_command");
  CHECK(outcome(R"({"type":"PING"})") == "unknown_command");
}

// -- error codes --------------------------------------------------------------

TEST_CASE("text that is not JSON is bad_json") {
  for (auto text : {"", " ", "\n\t", "nope", "{", "{\"type\":\"ping\"",
                    "{'type':'ping'}", "{\"type\":\"ping\",}",
                    "{\"type\":ping}", "{\"type\":\"ping\" /* c */}",
                    "{\"type\":\"publish\",\"channel\":\"c\",\"event\":\"e\","
                    "\"data\":NaN}",
                    "{\"type\":\"publish\",\"channel\":\"c\",\"event\":\"e\","
                    "\"data\":01}",
                    "{\"type\":\"publish\",\"channel\":\"c\",\"event\":\"e\","
                    "\"data\":1.}",
                    "{\"type\":\"publish\",\"channel\":\"c\",\"event\":\"e\","
                    "\"data\":+1}",
                    "{\"type\":\"publish\",\"channel\":\"c\",\"event\":\"e\","
                    "\"data\":\"\\x\"}"}) {
    CAPTURE(text);
    auto err = parse_fails(text);
    CHECK(err.code == error_code::bad_json);
    CHECK(!err.message.empty());
  }
}

TEST_CASE("text after the object is bad_json, whitespace is not") {
  CHECK(outcome("{\"type\":\"ping\"} x") == "bad_json");
  CHECK(outcome("{\"type\":\"ping\"}}") == "bad_json");
  CHECK(outcome("{\"type\":\"ping\"},") == "bad_json");
  // Two commands in one frame (the seed hub's coalescing) are not accepted.
  CHECK(outcome("{\"type\":\"ping\"}\n{\"type\":\"ping\"}") == "bad_json");
  CHECK(outcome(std::string{"{\"type\":\"ping\"}\0", 16}) == "bad_json");
  CHECK(outcome(std::string{"{\"type\":\"ping\"}\0garbage", 23}) == "bad_json");
  CHECK(outcome(" \r\n\t{\"type\":\"ping\"} \r\n\t") == "ok");
}

TEST_CASE("a NUL byte inside the text is bad_json") {
  CHECK(outcome(std::string{"{\"type\":\"pi\0ng\"}", 16}) == "bad_json");
  CHECK(outcome(std::string{"{\"type\":\0\"ping\"}", 16}) == "bad_json");
}

TEST_CASE("bad_json keeps an id read before the error") {
  auto err = parse_fails(R"({"id":5,"type":"ping",)");
  CHECK(err.code == error_code::bad_json);
  CHECK(err.id == "5");
}

TEST_CASE("top-level values other than objects are bad_command") {
  for (auto text : {"[]", R"([{"type":"ping"}])", R"("ping")", "42", "1e400",
                    "true", "null", R"(["type","ping"])"}) {
    CAPTURE(text);
    auto err = parse_fails(text);
    CHECK(err.code == error_code::bad_command);
    CHECK(err.id.empty());
  }
}

TEST_CASE("a missing type is bad_command and keeps the id") {
  auto err = parse_fails(R"({"channel":"c","id":3})");
  CHECK(err.code == error_code::bad_command);
  CHECK(err.id == "3");
  CHECK(outcome("{}") == "bad_command");
}

TEST_CASE("fields of the wrong type are bad_command") {
  for (auto text : {
         R"({"type":["subscribe"],"channel":"c"})",
         R"({"type":{"x":"subscribe"},"channel":"c"})",
         R"({"type":1,"channel":"c"})",
         R"({"type":null,"channel":"c"})",
         R"({"type":true,"channel":"c"})",
         R"({"type":"subscribe","channel":1})",
         R"({"type":"subscribe","channel":{"name":"c"}})",
         R"({"type":"subscribe","channel":null})",
         R"({"type":"subscribe","channel":["c"]})",
         R"({"type":"subscribe","channel":false})",
         R"({"type":"publish","channel":"c","event":7})",
         R"({"type":"publish","channel":"c","event":["e"]})",
       }) {
    CAPTURE(text);
    CHECK(outcome(text) == "bad_command");
  }
}

TEST_CASE("a wrong field type is bad_command even for ping") {
  CHECK(outcome(R"({"type":"ping","channel":5})") == "bad_command");
}

TEST_CASE("a missing channel is bad_command") {
  CHECK(outcome(R"({"type":"subscribe"})") == "bad_command");
  CHECK(outcome(R"({"type":"unsubscribe","id":1})") == "bad_command");
  CHECK(outcome(R"({"type":"publish","event":"e"})") == "bad_command");
}

TEST_CASE("an unknown type is unknown_command with the id and the type") {
  auto err = parse_fails(R"({"type":"shout","channel":"c","id":"u1"})");
  CHECK(err.code == error_code::unknown_command);
  CHECK(err.id == R"("u1")");
  CHECK(err.message.find("shout") != std::string::npos);
  CHECK(outcome(R"({"type":""})") == "unknown_command");
}

TEST_CASE("a long unknown type is cut in the message, never mid-character") {
  // 63 ASCII bytes then a two-byte "é": a cut at 64 bytes would split it.
  auto type = std::string(63, 'x') + "é" + std::string(1000, 'y');
  auto err = parse_fails(R"({"type":")" + type + "\"}");
  CHECK(err.code == error_code::unknown_command);
  CHECK(err.message.size() < 200);
  CHECK(err.message.find(std::string(63, 'x')) != std::string::npos);
  CHECK(err.message.find("\xc3\"") == std::string::npos);
  CHECK(valid_event_type(err.message)); // valid UTF-8, no control characters
  auto frame = *encode_error(err.code, err.message, err.id);
  CHECK_FALSE(dom(frame).HasParseError());
}

TEST_CASE("channel syntax errors are bad_channel and keep the id") {
  auto err = parse_fails(R"({"type":"subscribe","channel":"","id":4})");
  CHECK(err.code == error_code::bad_channel);
  CHECK(err.id == "4");
  for (auto channel :
       {R"("")", R"("a\u0000b")", R"("\u001f")", R"("tab\there")",
        R"("del\u007f")", R"("c1\u0080")", R"("c1\u009f")"}) {
    CAPTURE(channel);
    CHECK(
      outcome(std::string{R"({"type":"subscribe","channel":)"} + channel + "}")
      == "bad_channel");
    CHECK(outcome(std::string{R"({"type":"publish","event":"e","channel":)"}
                  + channel + "}")
          == "bad_channel");
  }
  CHECK(outcome(R"({"type":"unsubscribe","channel":")" + std::string(256, 'c')
                + "\"}")
        == "bad_channel");
}

TEST_CASE("a channel of 255 bytes, \"*\" and non-ASCII names pass syntax") {
  CHECK(parse_ok(R"({"type":"subscribe","channel":")" + std::string(255, 'c')
                 + "\"}")
          .channel.size()
        == 255);
  // "*" is refused for subscriptions by the client actor, not the codec.
  CHECK(parse_ok(R"({"type":"subscribe","channel":"*"})").channel == "*");
  CHECK(parse_ok(R"({"type":"subscribe","channel":"\u00e9t\u00e9"})").channel
        == "été");
  CHECK(parse_ok(R"({"type":"subscribe","channel":"nbsp\u00a0"})").channel
        == "nbsp\xc2\xa0");
}

TEST_CASE("the channel check counts bytes, not characters") {
  // 128 two-byte characters are 256 bytes.
  auto name = repeat("é", 128);
  CHECK(outcome(R"({"type":"subscribe","channel":")" + name + "\"}")
        == "bad_channel");
  CHECK(outcome(R"({"type":"subscribe","channel":")" + repeat("é", 127) + "\"}")
        == "ok");
}

// -- hostile input ------------------------------------------------------------

TEST_CASE("100,000 nested arrays at top level are bad_json, not a crash") {
  auto err = parse_fails(nested(100000));
  CHECK(err.code == error_code::bad_json);
  CHECK(outcome(repeat("[", 100000)) == "bad_json");
}

TEST_CASE("100,000 nested arrays inside data are bad_json") {
  CHECK(outcome(publish_with(nested(100000, "1"))) == "bad_json");
  CHECK(outcome(publish_with(repeat("[", 100000))) == "bad_json");
  CHECK(outcome(
          publish_with(repeat(R"({"a":)", 100000) + "1" + repeat("}", 100000)))
        == "bad_json");
}

TEST_CASE("deep nesting in an ignored field is bad_json too") {
  CHECK(outcome(R"({"type":"ping","junk":)" + nested(100000) + "}")
        == "bad_json");
}

TEST_CASE("data may nest 128 levels, not 129") {
  CHECK(data_of(nested(max_json_depth, "7")) == nested(max_json_depth, "7"));
  CHECK(outcome(publish_with(nested(max_json_depth + 1, "7"))) == "bad_json");
}

TEST_CASE("a 1 MiB string in data arrives intact") {
  auto big = std::string(1 << 20, 'x');
  big[12345] = '"'; // escaped in the frame, restored by a JSON parser
  auto text = R"({"type":"publish","channel":"c","event":"e","data":)"
    + codec::quote(big) + "}";
  auto cmd = parse_ok(text);
  auto doc = dom(cmd.data.str());
  REQUIRE(doc.IsString());
  CHECK(std::string{doc.GetString(), doc.GetStringLength()} == big);
}

TEST_CASE("a 1 MiB channel name is bad_channel") {
  CHECK(outcome(R"({"type":"subscribe","channel":")" + std::string(1 << 20, 'c')
                + "\"}")
        == "bad_channel");
}

TEST_CASE("invalid UTF-8 inside strings is bad_json") {
  for (auto bad : {
         std::string{"\xff"},             // never valid
         std::string{"\xc0\x80"},         // overlong NUL
         std::string{"\xe2\x82"},         // truncated sequence
         std::string{"\xed\xa0\x80"},     // a surrogate, encoded
         std::string{"\xf4\x90\x80\x80"}, // beyond U+10FFFF
         std::string{"\x80"},             // lone continuation byte
       }) {
    CAPTURE(bad);
    CHECK(outcome(R"({"type":"subscribe","channel":"a)" + bad + "\"}")
          == "bad_json");
    CHECK(outcome(publish_with("\"a" + bad + "\"")) == "bad_json");
    CHECK(outcome(publish_with(R"({"k)" + bad + R"(":1})")) == "bad_json");
    CHECK(outcome(R"({"type":"ping","id":")" + bad + "\"}") == "bad_json");
    CHECK(outcome(R"({"type":"ping","x)" + bad + R"(":1})") == "bad_json");
  }
}

TEST_CASE("unpaired surrogate escapes are bad_json") {
  // Decoded, these would be invalid UTF-8 in every frame that carries them.
  for (auto esc : {R"(\udc00)", R"(\udfff)", R"(\ud800)", R"(\ud800x)",
                   R"(\ud800\u0041)", R"(\udc00\ud800)"}) {
    CAPTURE(esc);
    auto str = std::string{"\""} + esc + "\"";
    CHECK(outcome(publish_with(str)) == "bad_json");
    CHECK(outcome(publish_with("[{\"k\":" + str + "}]")) == "bad_json");
    CHECK(outcome(publish_with("{" + str + ":1}")) == "bad_json");
    CHECK(outcome(R"({"type":"subscribe","channel":)" + str + "}")
          == "bad_json");
    CHECK(outcome(R"({"type":"ping","id":)" + str + "}") == "bad_json");
    CHECK(outcome(R"({"type":)" + str + "}") == "bad_json");
    CHECK_FALSE(json_text::parse(str));
  }
  // A proper pair is fine.
  CHECK(data_of(R"("\ud83d\ude00")") == "\"\xf0\x9f\x98\x80\"");
}

// -- data fidelity ------------------------------------------------------------

TEST_CASE("numbers in data keep their exact digits") {
  for (auto number : {"12345678901234567890123", "-12345678901234567890123",
                      "1e400", "-1E+400", "1e-400", "-0.0", "-0", "0",
                      "0.1000000000000000055511151231257827", "1.0", "1.50",
                      "2E2", "9007199254740993", "18446744073709551616",
                      "4.9e-324", "1.7976931348623157e309"}) {
    CAPTURE(number);
    CHECK(data_of(number) == number);
    CHECK(data_of(std::string{"["} + number + "]")
          == std::string{"["} + number + "]");
  }
  auto digits400 = "9" + std::string(399, '0');
  CHECK(data_of(digits400) == digits400);
  CHECK(data_of(R"({"n":)" + digits400 + R"(,"m":-)" + digits400 + "}")
        == R"({"n":)" + digits400 + R"(,"m":-)" + digits400 + "}");
}

TEST_CASE("many out-of-range numbers next to strings keep their places") {
  auto data = R"([1e400,"1e400",{"1e999":2e999,"s":"\"3e999"},-4e999,)"
              R"("\\",5e999,0.5])";
  CHECK(data_of(data) == data);
}

TEST_CASE("an out-of-range number does not hide a later syntax error") {
  CHECK(outcome(publish_with("[1e400,]")) == "bad_json");
  CHECK(outcome(publish_with("[1e400,01]")) == "bad_json");
  CHECK(outcome(publish_with("1e400") + " x") == "bad_json");
  CHECK(outcome(publish_with("[1e400,\"\\udc00\"]")) == "bad_json");
  CHECK(outcome(publish_with(nested(200, "1e400"))) == "bad_json");
}

TEST_CASE("strings in data keep their characters") {
  auto data = R"({"s":"\u00e9\ud83d\ude00\/\"\\\b\f\n\r\t\u0001\u001f\u007f)"
              R"( \u2028é😀","\u00e9k":"v"})";
  auto out = data_of(data);
  CHECK(dom(out) == dom(data));
  // Control characters stay escaped, so the frame is still one line of JSON.
  for (char c : out)
    CHECK(static_cast<unsigned char>(c) >= 0x20);
}

TEST_CASE("data whitespace is removed, order and duplicates are kept") {
  CHECK(data_of(" { \"b\" : [ 1 , 2 , { } , [ ] ] ,\n\t\"a\" : null , "
                "\"a\" : true } ")
        == R"({"b":[1,2,{},[]],"a":null,"a":true})");
}

TEST_CASE("data may be any JSON value") {
  CHECK(data_of("null") == "null");
  CHECK(data_of("true") == "true");
  CHECK(data_of("false") == "false");
  CHECK(data_of(R"("text")") == R"("text")");
  CHECK(data_of("[]") == "[]");
  CHECK(data_of("{}") == "{}");
  CHECK(data_of("-5") == "-5");
}

TEST_CASE("a publish frame round-trips to the publication") {
  auto data = R"({"n":12345678901234567890123,"s":"\u00e9\n"})";
  auto cmd = parse_ok(publish_with(data));
  auto frame
    = *encode_publication(publication{cmd.channel, cmd.event, cmd.data});
  CHECK(frame.find("12345678901234567890123") != std::string::npos);
  auto doc = dom(frame);
  CHECK(doc["data"] == dom(data));
  CHECK(std::string{doc["channel"].GetString()} == "room:1");
  CHECK(std::string{doc["type"].GetString()} == "e");
}

// -- publish bodies -----------------------------------------------------------

TEST_CASE("a publish body names channel, type and data") {
  auto pub = publish_ok(R"({"channel":"chat","type":"message",)"
                        R"("data":{"text":"hi","n":1.10}})");
  CHECK(pub.channel == "chat");
  CHECK(pub.type == "message");
  CHECK(pub.data.str() == R"({"text":"hi","n":1.10})");
}

TEST_CASE("a publish body may address \"*\" and may omit data") {
  auto pub = publish_ok(R"({"channel":"*","type":"reload"})");
  CHECK(pub.channel == "*");
  CHECK(pub.data.str() == "null");
}

TEST_CASE("a publish body ignores unknown fields, event and id included") {
  auto pub = publish_ok(
    R"({"id":1,"event":"x","channel":"c","type":"t","data":1e400,"z":[{}]})");
  CHECK(pub.type == "t");
  CHECK(pub.data.str() == "1e400");
}

TEST_CASE("bad publish bodies get the codes of commands") {
  CHECK(publish_fails("").code == error_code::bad_json);
  CHECK(publish_fails(R"({"channel":"c","type":"t"} x)").code
        == error_code::bad_json);
  CHECK(publish_fails(R"({"channel":"c","type":"t","data":"\udc00"})").code
        == error_code::bad_json);
  CHECK(
    publish_fails(R"({"channel":"c","type":"t","data":)" + nested(100000) + "}")
      .code
    == error_code::bad_json);
  CHECK(publish_fails(R"([{"channel":"c","type":"t"}])").code
        == error_code::bad_command);
  CHECK(publish_fails(R"({"type":"t"})").code == error_code::bad_command);
  CHECK(publish_fails(R"({"channel":"c"})").code == error_code::bad_command);
  CHECK(publish_fails(R"({"channel":"c","type":""})").code
        == error_code::bad_command);
  CHECK(
    publish_fails(R"({"channel":"c","type":")" + std::string(256, 't') + "\"}")
      .code
    == error_code::bad_command);
  CHECK(publish_fails(R"({"channel":"c","type":["t"]})").code
        == error_code::bad_command);
  CHECK(publish_fails(R"({"channel":7,"type":"t"})").code
        == error_code::bad_command);
  CHECK(publish_fails(R"({"channel":"","type":"t"})").code
        == error_code::bad_channel);
  CHECK(publish_fails(R"({"channel":"a\u0085","type":"t"})").code
        == error_code::bad_channel);
}

TEST_CASE("publish body errors carry no id") {
  CHECK(publish_fails(R"({"id":1,"channel":"","type":"t"})").id.empty());
  CHECK(publish_fails(R"({"id":1,"channel":"c"})").id.empty());
}

// -- names
// ----------------------------------------------------------------------

TEST_CASE("channel names are 1 to 255 bytes") {
  CHECK_FALSE(valid_channel_name(""));
  CHECK(valid_channel_name("a"));
  CHECK(valid_channel_name(std::string(255, 'a')));
  CHECK_FALSE(valid_channel_name(std::string(256, 'a')));
  CHECK(valid_channel_name("*"));
  CHECK(valid_channel_name("room:*"));
  CHECK(valid_channel_name("with space"));
}

TEST_CASE("channel names have no control characters, C0, DEL or C1") {
  for (int c = 0; c < 0x20; ++c) {
    CAPTURE(c);
    CHECK_FALSE(valid_channel_name(std::string{"a"} + char(c) + "b"));
  }
  CHECK_FALSE(valid_channel_name(std::string{"a\0b", 3}));
  CHECK_FALSE(valid_channel_name("a\x7f"));
  CHECK_FALSE(valid_channel_name("a\xc2\x80"));  // U+0080
  CHECK_FALSE(valid_channel_name("a\xc2\x85"));  // U+0085 NEL
  CHECK_FALSE(valid_channel_name("a\xc2\x9f"));  // U+009F
  CHECK(valid_channel_name("a\xc2\xa0"));        // U+00A0 is no control
  CHECK(valid_channel_name("\xe2\x82\xac"));     // €
  CHECK(valid_channel_name("\xf0\x9f\x98\x80")); // 😀
}

TEST_CASE("channel names are valid UTF-8") {
  CHECK_FALSE(valid_channel_name("\xff"));
  CHECK_FALSE(valid_channel_name("\xc0\xaf"));         // overlong '/'
  CHECK_FALSE(valid_channel_name("\xed\xa0\x80"));     // surrogate
  CHECK_FALSE(valid_channel_name("a\xe2\x82"));        // truncated
  CHECK_FALSE(valid_channel_name("\xf4\x90\x80\x80")); // beyond U+10FFFF
  CHECK_FALSE(valid_channel_name("\x80"));
}

TEST_CASE("event types follow the channel name rules") {
  CHECK(valid_event_type("message"));
  CHECK_FALSE(valid_event_type(""));
  CHECK(valid_event_type(std::string(255, 't')));
  CHECK_FALSE(valid_event_type(std::string(256, 't')));
  CHECK_FALSE(valid_event_type("a\nb"));
  CHECK_FALSE(valid_event_type("a\xc2\x9f"));
  CHECK_FALSE(valid_event_type("\xff"));
}

// -- glob patterns
// --------------------------------------------------------------

TEST_CASE("a prefix pattern matches the prefix and anything after it") {
  CHECK(glob_match("room:*", "room:1"));
  CHECK(glob_match("room:*", "room:lobby:2"));
  CHECK(glob_match("room:*", "room:"));
  CHECK_FALSE(glob_match("room:*", "room"));
  CHECK_FALSE(glob_match("room:*", "xroom:1"));
  CHECK_FALSE(glob_match("room:*", "Room:1"));
}

TEST_CASE("a lone star matches every name") {
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("*", "*"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("**", "x"));
}

TEST_CASE("several stars match runs in order") {
  CHECK(glob_match("a*b*c", "abc"));
  CHECK(glob_match("a*b*c", "aXbYc"));
  CHECK(glob_match("a*b*c", "abbbcbc"));
  CHECK(glob_match("a*b*c", "acbc"));
  CHECK_FALSE(glob_match("a*b*c", "ab"));
  CHECK_FALSE(glob_match("a*b*c", "acb"));
  CHECK_FALSE(glob_match("a*b*c", "abcx"));
  CHECK(glob_match("*:news", "eu:news"));
  CHECK_FALSE(glob_match("*:news", "eu:newsx"));
}

TEST_CASE("a pattern without a star matches only itself") {
  CHECK(glob_match("chat", "chat"));
  CHECK_FALSE(glob_match("chat", "chats"));
  CHECK_FALSE(glob_match("chat", "cha"));
  CHECK_FALSE(glob_match("chat", "*"));
  CHECK_FALSE(glob_match("?", "a")); // no other pattern characters
  CHECK_FALSE(glob_match("[a]", "a"));
  CHECK(glob_match("", ""));
  CHECK_FALSE(glob_match("", "a"));
}

TEST_CASE("pathological patterns finish quickly") {
  auto name = std::string(100000, 'a');
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(glob_match("*a*a*a*a*b", name));
  CHECK(glob_match("*a*a*a*a*a", name));
  CHECK_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", name));
  CHECK_FALSE(glob_match(repeat("*a", 200) + "b", name));
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < std::chrono::seconds{1});
}

// -- encoders -----------------------------------------------------------------

TEST_CASE("encode_publication writes exactly channel, type and data") {
  publication pub{"chat", "message", json_text::trusted(R"({"a":[1,2.50]})")};
  CHECK(*encode_publication(pub)
        == R"({"channel":"chat","type":"message","data":{"a":[1,2.50]}})");
  CHECK(*encode_publication(publication{"*", "reload", json_text{}})
        == R"({"channel":"*","type":"reload","data":null})");
}

TEST_CASE("encode_publication escapes channel and type") {
  publication pub{"a\"b\\c\n\x01/", "t\"\t\x1f", json_text::trusted("1")};
  auto frame = *encode_publication(pub);
  CHECK(frame
        == R"({"channel":"a\"b\\c\n\u0001/","type":"t\"\t\u001F","data":1})");
  auto doc = dom(frame);
  CHECK(std::string{doc["channel"].GetString()} == pub.channel);
  CHECK(std::string{doc["type"].GetString()} == pub.type);
}

TEST_CASE("encode_ok and encode_pong echo an id or leave it out") {
  CHECK(*encode_ok("1") == R"({"type":"ok","id":1})");
  CHECK(*encode_ok(R"("x")") == R"({"type":"ok","id":"x"})");
  CHECK(*encode_ok("") == R"({"type":"ok"})");
  CHECK(*encode_pong("") == R"({"type":"pong"})");
  CHECK(*encode_pong("2.50") == R"({"type":"pong","id":2.50})");
}

TEST_CASE("encode_error writes type, id, code and message") {
  CHECK(*encode_error(error_code::bad_channel, "no", "7")
        == R"({"type":"error","id":7,"code":"bad_channel","message":"no"})");
  CHECK(*encode_error(error_code::bad_json, "x\"y\n", "")
        == R"({"type":"error","code":"bad_json","message":"x\"y\n"})");
}

TEST_CASE("every error code has its wire name") {
  CHECK(std::string{to_string(error_code::bad_json)} == "bad_json");
  CHECK(std::string{to_string(error_code::bad_command)} == "bad_command");
  CHECK(std::string{to_string(error_code::unknown_command)}
        == "unknown_command");
  CHECK(std::string{to_string(error_code::bad_channel)} == "bad_channel");
  CHECK(std::string{to_string(error_code::forbidden)} == "forbidden");
  CHECK(std::string{to_string(error_code::too_many_subscriptions)}
        == "too_many_subscriptions");
  CHECK(std::string{to_string(error_code::rate_limited)} == "rate_limited");
  CHECK(std::string{to_string(error_code::internal)} == "internal");
}

TEST_CASE("error frames of parse errors are valid JSON") {
  for (auto text : {"", "{", "[]", R"({"type":"x","id":"\u00e9"})",
                    R"({"type":"subscribe","channel":"\u0000","id":1})",
                    "{\"type\":\"ping\"} \x01"}) {
    CAPTURE(text);
    auto err = parse_fails(text);
    auto doc = dom(*encode_error(err.code, err.message, err.id));
    CHECK(std::string{doc["type"].GetString()} == "error");
    CHECK(std::string{doc["code"].GetString()} == to_string(err.code));
    CHECK(doc["message"].IsString());
  }
}

TEST_CASE("quote makes a JSON string literal") {
  CHECK(quote("") == R"("")");
  CHECK(quote("a\"b\\c") == R"("a\"b\\c")");
  CHECK(quote(std::string{"\0\x7f", 2}) == "\"\\u0000\x7f\"");
  CHECK(quote("é") == "\"é\"");
}

TEST_CASE("encode_stats reports every counter") {
  hub_stats x;
  x.connections = 1;
  x.channels = 2;
  x.subscriptions = 3;
  x.actor_subscriptions = 4;
  x.published = 5;
  x.delivered = 18446744073709551615u;
  x.slow_consumer_disconnects = 7;
  x.command_errors = 8;
  x.rejected_origin = 9;
  x.rejected_capacity = 10;
  auto text = encode_stats(x);
  auto doc = dom(text);
  REQUIRE(doc.IsObject());
  auto field = [&](const char* name) -> uint64_t {
    CAPTURE(name);
    REQUIRE(doc.HasMember(name));
    REQUIRE(doc[name].IsUint64());
    return doc[name].GetUint64();
  };
  CHECK(field("connections") == 1);
  CHECK(field("channels") == 2);
  CHECK(field("subscriptions") == 3);
  CHECK(field("actor_subscriptions") == 4);
  CHECK(field("published") == 5);
  CHECK(field("delivered") == 18446744073709551615u);
  CHECK(field("slow_consumer_disconnects") == 7);
  CHECK(field("command_errors") == 8);
  CHECK(field("rejected_origin") == 9);
  CHECK(field("rejected_capacity") == 10);
  CHECK(text.find("\"delivered\":18446744073709551615") != std::string::npos);
}

// -- json_text, make_publication, validate ------------------------------------

TEST_CASE("a default json_text is null") {
  CHECK(json_text{}.str() == "null");
}

TEST_CASE("json_text::parse compacts any JSON value") {
  auto x = json_text::parse(" { \"a\" : [ 1.0 , 1e400 , \"\\u00e9\" ] } ");
  REQUIRE(x);
  CHECK(x->str() == "{\"a\":[1.0,1e400,\"é\"]}");
  CHECK(json_text::parse("-0.0")->str() == "-0.0");
  CHECK(json_text::parse("\"s\"")->str() == "\"s\"");
  CHECK(json_text::parse(" null ")->str() == "null");
  CHECK(json_text::parse("12345678901234567890123")->str()
        == "12345678901234567890123");
  CHECK(*json_text::parse("[1]") == *json_text::parse(" [ 1 ] "));
}

TEST_CASE("json_text::parse refuses what is not one JSON value") {
  for (auto text : {"", " ", "{", "[1,]", "1 2", "{} {}", "nul", "'s'",
                    "\"\xff\"", "\"\\udc00\"", "[1e400,]"}) {
    CAPTURE(text);
    auto x = json_text::parse(text);
    CHECK_FALSE(x);
  }
  CHECK_FALSE(json_text::parse(std::string{"1\0", 2}));
}

TEST_CASE("json_text::parse limits nesting") {
  CHECK(json_text::parse(nested(128)));
  CHECK_FALSE(json_text::parse(nested(129)));
  CHECK_FALSE(json_text::parse(nested(100000)));
  CHECK(json_text::parse("[[1]]", 2));
  CHECK_FALSE(json_text::parse("[[1]]", 1));
  CHECK(json_text::parse("1", 0));
  CHECK_FALSE(json_text::parse("[]", 0));
  CHECK_FALSE(json_text::parse("[1e400,[2]]", 1));
}

TEST_CASE("make_publication checks channel, type and data") {
  auto pub = make_publication("chat", "message", R"( {"n": 1.50} )");
  REQUIRE(pub);
  CHECK(pub->channel == "chat");
  CHECK(pub->type == "message");
  CHECK(pub->data.str() == R"({"n":1.50})");
  CHECK(make_publication("*", "reload", "null"));
  CHECK_FALSE(make_publication("", "t", "1"));
  CHECK_FALSE(make_publication(std::string(256, 'c'), "t", "1"));
  CHECK_FALSE(make_publication("a\x7f", "t", "1"));
  CHECK_FALSE(make_publication("c", "", "1"));
  CHECK_FALSE(make_publication("c", std::string(256, 't'), "1"));
  CHECK_FALSE(make_publication("c", "t", "{"));
  CHECK_FALSE(make_publication("c", "t", ""));
  CHECK_FALSE(make_publication("c", "t", nested(129)));
}

TEST_CASE("validate accepts good publications and names what is wrong") {
  CHECK_FALSE(validate(publication{"chat", "message", json_text{}}));
  CHECK_FALSE(validate(publication{"*", "message", json_text{}}));
  CHECK(validate(publication{"", "message", json_text{}}));
  CHECK(validate(publication{"a\nb", "message", json_text{}}));
  CHECK(validate(publication{"\xff", "message", json_text{}}));
  CHECK(validate(publication{"chat", "", json_text{}}));
  CHECK(validate(publication{"chat", std::string(256, 't'), json_text{}}));
}

// -- POST /api/publish batches ------------------------------------------------

namespace {

/// The items of a batch body, which must be a well-formed array.
std::vector<std::variant<publication, parse_error>>
batch_items(std::string_view text) {
  auto res = parse_publish_batch(text);
  REQUIRE(
    std::holds_alternative<std::vector<std::variant<publication, parse_error>>>(
      res));
  return std::get<0>(std::move(res));
}

} // namespace

TEST_CASE("a batch body is an array, a single publication is not") {
  CHECK(is_batch(R"([{"channel":"a","type":"t","data":1}])"));
  CHECK(is_batch(" \n\t[]"));
  CHECK_FALSE(is_batch(R"({"channel":"a","type":"t","data":1})"));
  CHECK_FALSE(is_batch(""));
  CHECK_FALSE(is_batch("  "));
}

TEST_CASE("a batch is parsed item by item, in order, each as one publish") {
  auto items = batch_items(
    R"( [ {"channel":"a","type":"t","data":{"s":"x,]}\"["}},
          {"channel":"b","type":"u","data":[1,[2,{"c":3}]]} ,
          {"channel":"a","type":"t","data":12345678901234567890123} ] )");
  REQUIRE(items.size() == 3);
  auto& first = std::get<publication>(items[0]);
  CHECK(first.channel == "a");
  CHECK(first.data.str() == R"({"s":"x,]}\"["})");
  auto& second = std::get<publication>(items[1]);
  CHECK(second.channel == "b");
  CHECK(second.data.str() == R"([1,[2,{"c":3}]])");
  CHECK(std::get<publication>(items[2]).data.str()
        == "12345678901234567890123");
  CHECK(batch_items("[]").empty());
}

TEST_CASE("a bad item of a batch is its own error, and the others stand") {
  auto items = batch_items(
    R"([{"channel":"a","type":"t","data":1}, {"channel":"","type":"t"}, 7,
        {"channel":"a","type":"t","data":{bad}}, {"type":"t"},
        {"channel":"a","type":"t","data":2} {"channel":"a"}])");
  REQUIRE(items.size() == 6);
  CHECK(std::holds_alternative<publication>(items[0]));
  CHECK(std::get<parse_error>(items[1]).code == error_code::bad_channel);
  CHECK(std::get<parse_error>(items[2]).code == error_code::bad_command);
  CHECK(std::get<parse_error>(items[3]).code == error_code::bad_json);
  CHECK(std::get<parse_error>(items[4]).code == error_code::bad_command);
  // Two objects without a comma between them are one bad item.
  CHECK(std::get<parse_error>(items[5]).code == error_code::bad_json);
}

TEST_CASE("a body that is no well-formed array is one bad_json error") {
  for (auto text : {"[", "[{\"channel\":\"a\"}", "[1,]", "[,1]", "[1] x",
                    "[\"unterminated]", "[1,2]]", "[1 2"}) {
    INFO("body: " << text);
    auto res = parse_publish_batch(text);
    REQUIRE(std::holds_alternative<parse_error>(res));
    CHECK(std::get<parse_error>(res).code == error_code::bad_json);
  }
  // Nesting is bounded while splitting, before any item is parsed.
  std::string deep = "[" + std::string(200, '[') + std::string(200, ']') + "]";
  auto res = parse_publish_batch(deep);
  REQUIRE(std::holds_alternative<parse_error>(res));
  CHECK(std::get<parse_error>(res).message.find("deeper") != std::string::npos);
}
