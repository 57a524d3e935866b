// Tags and filters, without actors: tag_filter's semantics and limits, the
// codec reading tags and filters from commands and publish bodies, frames
// carrying tags, and validate().
#include <doctest/doctest.h>

#include <string>
#include <variant>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "livehub/filter.hpp"
#include "livehub/messages.hpp"
#include "protocol/codec.hpp"
#include "support/json_field.hpp"

using namespace livehub;

namespace {

tag_filter compile(const std::string& json) {
  auto f = tag_filter::parse(json);
  REQUIRE_MESSAGE(f, json);
  return std::move(*f);
}

bool match(const std::string& json, const tag_map& tags) {
  return compile(json).matches(tags);
}

/// The error message of a filter that must not compile.
std::string refusal(const std::string& json) {
  auto f = tag_filter::parse(json);
  REQUIRE_MESSAGE(!f, json);
  return f.error().context().get_as<std::string>(0);
}

std::string cmp(const std::string& key, const std::string& op,
                const std::string& value) {
  return R"({"key":")" + key + R"(","op":")" + op + R"(","value":)" + value
    + "}";
}

/// `n` levels of "not" around a comparison (depth n + 1).
std::string nested_not(size_t n) {
  std::string result = cmp("a", "eq", R"("1")");
  for (size_t i = 0; i < n; ++i)
    result = R"({"not":)" + result + "}";
  return result;
}

/// An "and" of `n` comparisons (n + 1 nodes).
std::string wide_and(size_t n) {
  std::string result = R"({"and":[)";
  for (size_t i = 0; i < n; ++i)
    result += (i > 0 ? "," : "") + cmp("a", "eq", R"("1")");
  return result + "]}";
}

} // namespace

TEST_SUITE_BEGIN("filter");

TEST_CASE("filter: comparisons on strings") {
  tag_map t{{"kind", "news"}, {"lang", "en-GB"}};
  CHECK(match(cmp("kind", "eq", R"("news")"), t));
  CHECK_FALSE(match(cmp("kind", "eq", R"("sport")"), t));
  CHECK(match(cmp("kind", "neq", R"("sport")"), t));
  CHECK_FALSE(match(cmp("kind", "neq", R"("news")"), t));
  CHECK(match(cmp("lang", "starts", R"("en")"), t));
  CHECK(match(cmp("lang", "starts", R"("")"), t));
  CHECK(match(cmp("lang", "starts", R"("en-GB")"), t));
  CHECK_FALSE(match(cmp("lang", "starts", R"("en-GBx")"), t));
  CHECK_FALSE(match(cmp("lang", "starts", R"("de")"), t));
  CHECK(match(R"({"key":"kind","op":"in","values":["a","news"]})", t));
  CHECK_FALSE(match(R"({"key":"kind","op":"in","values":["a","b"]})", t));
  CHECK_FALSE(match(R"({"key":"kind","op":"in","values":[]})", t));
  CHECK(match(R"({"key":"kind","op":"nin","values":["a","b"]})", t));
  CHECK_FALSE(match(R"({"key":"kind","op":"nin","values":["news"]})", t));
  CHECK(match(R"({"key":"kind","op":"exists"})", t));
  CHECK_FALSE(match(R"({"key":"kind","op":"nexists"})", t));
}

TEST_CASE("filter: gt, gte, lt and lte read the tag as a number") {
  tag_map t{{"n", "10"}, {"f", "-2.5e1"}, {"s", "ten"},
            {"e", ""},   {"inf", "inf"},  {"x", "10abc"}};
  CHECK(match(cmp("n", "gt", "9"), t));
  CHECK_FALSE(match(cmp("n", "gt", "10"), t));
  CHECK(match(cmp("n", "gte", "10"), t));
  CHECK(match(cmp("n", "lt", "10.5"), t));
  CHECK_FALSE(match(cmp("n", "lt", "10"), t));
  CHECK(match(cmp("n", "lte", "10"), t));
  // The value may be a string holding a number.
  CHECK(match(cmp("n", "gt", R"("9.99")"), t));
  CHECK(match(cmp("f", "lt", "-24"), t));
  CHECK(match(cmp("f", "gte", "-25"), t));
  // Numbers compare as numbers, not as text ("10" > "9").
  CHECK(match(cmp("n", "gt", "9"), t));
  // A tag that is not a number matches none of them.
  for (auto key : {"s", "e", "inf", "x"})
    for (auto op : {"gt", "gte", "lt", "lte"}) {
      INFO(key << " " << op);
      CHECK_FALSE(match(cmp(key, op, "0"), t));
    }
}

TEST_CASE("filter: a missing key matches neq, nin and nexists only") {
  tag_map none;
  tag_map other{{"b", "1"}};
  for (auto& t : {none, other}) {
    CHECK_FALSE(match(cmp("a", "eq", R"("1")"), t));
    CHECK(match(cmp("a", "neq", R"("1")"), t));
    CHECK_FALSE(match(cmp("a", "starts", R"("")"), t));
    for (auto op : {"gt", "gte", "lt", "lte"})
      CHECK_FALSE(match(cmp("a", op, "0"), t));
    CHECK_FALSE(match(R"({"key":"a","op":"in","values":["1"]})", t));
    CHECK(match(R"({"key":"a","op":"nin","values":["1"]})", t));
    CHECK_FALSE(match(R"({"key":"a","op":"exists"})", t));
    CHECK(match(R"({"key":"a","op":"nexists"})", t));
    // not inverts whatever the comparison says.
    CHECK(match(R"({"not":)" + cmp("a", "eq", R"("1")") + "}", t));
  }
}

TEST_CASE("filter: and, or and not combine") {
  tag_map t{{"a", "1"}, {"b", "2"}};
  auto a1 = cmp("a", "eq", R"("1")");
  auto a2 = cmp("a", "eq", R"("2")");
  auto b2 = cmp("b", "eq", R"("2")");
  CHECK(match(R"({"and":[)" + a1 + "," + b2 + "]}", t));
  CHECK_FALSE(match(R"({"and":[)" + a1 + "," + a2 + "]}", t));
  CHECK(match(R"({"or":[)" + a2 + "," + b2 + "]}", t));
  CHECK_FALSE(match(R"({"or":[)" + a2 + "," + a2 + "]}", t));
  CHECK_FALSE(match(R"({"not":)" + a1 + "}", t));
  CHECK(match(R"({"not":)" + a2 + "}", t));
  // Nested: a1 and (a2 or not(b2 and a2)).
  CHECK(match(R"({"and":[)" + a1 + R"(,{"or":[)" + a2 + R"(,{"not":{"and":[)"
                + b2 + "," + a2 + "]}}]}]}",
              t));
  // Siblings after a nested group are reached (pre-order sizes).
  CHECK_FALSE(
    match(R"({"and":[{"or":[)" + a1 + "," + a2 + "]}," + a2 + "]}", t));
  CHECK(match(R"({"or":[{"and":[)" + a1 + "," + a2 + "]}," + b2 + "]}", t));
  // An empty filter matches everything.
  CHECK(tag_filter{}.matches(t));
  CHECK(tag_filter{}.empty());
}

TEST_CASE("filter: at most 32 nodes and depth 8") {
  CHECK(tag_filter::parse(wide_and(31)));
  CHECK(refusal(wide_and(32)).find("more than 32 nodes") != std::string::npos);
  CHECK(tag_filter::parse(nested_not(7))); // depth 8
  CHECK(refusal(nested_not(8)).find("deeper than 8") != std::string::npos);
  // Deep JSON far beyond the limit is refused, not recursed into.
  CHECK(refusal(nested_not(3000)).find("longer than") != std::string::npos);
  CHECK(refusal(nested_not(200)).find("deeper than 8") != std::string::npos);
}

TEST_CASE("filter: malformed expressions are refused with a reason") {
  auto has = [](const std::string& json, const std::string& what) {
    auto msg = refusal(json);
    INFO(json << " -> " << msg);
    CHECK(msg.rfind("invalid filter: ", 0) == 0);
    CHECK(msg.find(what) != std::string::npos);
  };
  has("not json", "not JSON");
  has("[]", "object");
  has(R"("eq")", "object");
  has("{}", "\"key\"");
  has(R"({"key":"a"})", "\"op\"");
  has(R"({"key":1,"op":"eq","value":"1"})", "\"key\"");
  has(R"({"key":"a","op":"like","value":"1"})", "unknown op");
  has(R"({"key":"a","op":"eq"})", "needs \"value\"");
  has(R"({"key":"a","op":"eq","value":1})", "a string");
  has(R"({"key":"a","op":"eq","values":["1"]})", "needs \"value\"");
  has(R"({"key":"a","op":"gt","value":"ten"})", "a number");
  has(R"({"key":"a","op":"gt","value":true})", "a number");
  has(R"({"key":"a","op":"in","value":"1"})", "needs \"values\"");
  has(R"({"key":"a","op":"in","values":[1]})", "array of strings");
  has(R"({"key":"a","op":"exists","value":"1"})", "takes no value");
  has(R"({"key":"a","op":"eq","value":"1","vlaue":"2"})", "unknown field");
  has(R"({"and":[]})", "non-empty array");
  has(R"({"or":{}})", "non-empty array");
  has(R"({"not":[]})", "object");
  has(R"({"and":[1]})", "object");
  has(R"({"key":")" + std::string(65, 'k') + R"(","op":"exists"})",
      "at most 64 bytes");
  has(cmp("a", "eq", '"' + std::string(65, 'v') + '"'), "at most 64 bytes");
  std::string many = R"({"key":"a","op":"in","values":[)";
  for (int i = 0; i < 65; ++i)
    many += (i > 0 ? R"(,"v")" : R"("v")");
  has(many + "]}", "at most 64 values");
  has(cmp("a", "eq", '"' + std::string(9000, 'v') + '"'), "longer than 8192");
  // Text that is no UTF-8, in a key or value, or a lone surrogate escape
  // (which would make the source no UTF-8): refused (found by fuzz_codec).
  has(R"({"key":")" + std::string{"\x9az"} + R"(","op":"exists"})", "UTF-8");
  has(cmp("a", "eq", "\"\xff\""), "UTF-8");
  has(cmp("a", "eq", R"("\udc00")"), "lone surrogate");
}

TEST_CASE("filter: its source is the compact expression, and equality "
          "compares it") {
  auto f = compile(R"( { "key" : "a", "op" : "eq", "value" : "1" } )");
  CHECK(f.source() == R"({"key":"a","op":"eq","value":"1"})");
  CHECK(f == compile(R"({"key":"a","op":"eq","value":"1"})"));
  CHECK(f != compile(R"({"key":"a","op":"eq","value":"2"})"));
  CHECK(tag_filter{}.source().empty());
}

TEST_CASE("filter: numbers read exactly, so the source compiles to the same "
          "filter") {
  // RapidJSON 1.1's default number parse is one ulp off for this one
  // (found by fuzz_codec); the filter reads it correctly rounded.
  auto big = std::string(158, '3') + "36.5";
  auto f = compile(cmp("n", "lte", big));
  auto again = compile(f.source());
  CHECK(f == again);
  CHECK(f.source() == again.source());
  // The tag with the same text compares equal to the value.
  tag_map t{{"n", big}};
  CHECK(f.matches(t));
  CHECK(compile(cmp("n", "gte", big)).matches(t));
  CHECK_FALSE(compile(cmp("n", "lt", big)).matches(t));
  // Integers stay integers; the shortest double form round-trips.
  CHECK(compile(cmp("n", "gt", "-9223372036854775808")).source()
        == cmp("n", "gt", "-9223372036854775808"));
  CHECK(compile(cmp("n", "gt", "18446744073709551615")).source()
        == cmp("n", "gt", "18446744073709551615"));
  CHECK(compile(cmp("n", "gt", "0.1")).source() == cmp("n", "gt", "0.1"));
  // Below a double's range reads as zero, beyond it is refused.
  CHECK(compile(cmp("n", "gt", "1e-400")).matches({{"n", "1e-300"}}));
  CHECK(refusal(cmp("n", "gt", "1e400")).find("not JSON") != std::string::npos);
}

TEST_CASE("filter: survives CAF serialization (compiled again on load)") {
  auto f = compile(R"({"or":[{"key":"a","op":"gt","value":5},)"
                   R"({"key":"b","op":"nexists"}]})");
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  REQUIRE_FALSE(sink(f));
  tag_filter g;
  caf::binary_deserializer source{nullptr, buf};
  REQUIRE_FALSE(source(g));
  CHECK(g == f);
  CHECK(g.matches({{"a", "6"}, {"b", "x"}}));
  CHECK(g.matches({}));
  CHECK_FALSE(g.matches({{"a", "5"}, {"b", "x"}}));
}

TEST_CASE("tags: the publish command and POST bodies carry them") {
  using namespace livehub::codec;
  auto parsed = parse_command(
    R"({"type":"publish","channel":"c","event":"m","data":1,"tags":{"k":"v","n":"2"}})");
  auto cmd = std::get_if<command>(&parsed);
  REQUIRE(cmd);
  CHECK(cmd->tags == tag_map{{"k", "v"}, {"n", "2"}});
  auto body = parse_publish(
    R"({"channel":"c","type":"m","data":null,"tags":{"k":"v"}})");
  auto pub = std::get_if<publication>(&body);
  REQUIRE(pub);
  CHECK(pub->tags == tag_map{{"k", "v"}});
  // null tags are none.
  body = parse_publish(R"({"channel":"c","type":"m","tags":null})");
  REQUIRE(std::get_if<publication>(&body));
  CHECK(std::get<publication>(body).tags.empty());
  // A batch item with bad tags fails alone.
  auto batch = parse_publish_batch(
    R"([{"channel":"c","type":"m","tags":{"k":1}},{"channel":"c","type":"m","tags":{"k":"v"}}])");
  auto items = std::get_if<0>(&batch);
  REQUIRE(items);
  REQUIRE(items->size() == 2);
  CHECK(std::holds_alternative<parse_error>((*items)[0]));
  CHECK(std::holds_alternative<publication>((*items)[1]));
}

TEST_CASE("tags: beyond the limits is bad_command, with a reason") {
  using namespace livehub::codec;
  auto refused = [](const std::string& tags, const std::string& what) {
    INFO(tags);
    auto parsed = parse_command(
      R"({"type":"publish","channel":"c","event":"m","id":3,"tags":)" + tags
      + "}");
    auto err = std::get_if<parse_error>(&parsed);
    REQUIRE(err);
    CHECK(err->code == error_code::bad_command);
    CHECK(err->id == "3");
    CHECK(err->message.find(what) != std::string::npos);
    auto body
      = parse_publish(R"({"channel":"c","type":"m","tags":)" + tags + "}");
    err = std::get_if<parse_error>(&body);
    REQUIRE(err);
    CHECK(err->code == error_code::bad_command);
    CHECK(err->message.find(what) != std::string::npos);
  };
  std::string seventeen = "{";
  for (int i = 0; i < 17; ++i)
    seventeen += (i > 0 ? "," : "") + std::string{"\"k"} + std::to_string(i)
      + "\":\"v\"";
  refused(seventeen + "}", "at most 16 tags");
  refused(R"({")" + std::string(65, 'k') + R"(":"v"})", "at most 64 bytes");
  refused(R"({"k":")" + std::string(65, 'v') + R"("})", "at most 64 bytes");
  refused(R"({"k":1})", "object of strings");
  refused(R"({"k":{"x":"y"}})", "object of strings");
  refused(R"(["k"])", "object of strings");
  refused(R"("k")", "object of strings");
  refused(R"({"k":"v","k":"w"})", "a key twice");
  // At the limits: accepted.
  std::string sixteen = "{";
  for (int i = 0; i < 16; ++i)
    sixteen += (i > 0 ? "," : "") + std::string{"\""} + std::string(62, 'k')
      + std::to_string(10 + i) + "\":\"" + std::string(64, 'v') + "\"";
  auto body
    = parse_publish(R"({"channel":"c","type":"m","tags":)" + sixteen + "}}");
  REQUIRE(std::get_if<publication>(&body));
  CHECK(std::get<publication>(body).tags.size() == 16);
}

TEST_CASE("filter: subscribe and history commands carry a compiled filter") {
  using namespace livehub::codec;
  auto parsed = parse_command(
    R"({"type":"subscribe","channel":"c","id":1,"filter":{"key":"k","op":"eq","value":"v"}})");
  auto cmd = std::get_if<command>(&parsed);
  REQUIRE(cmd);
  REQUIRE(cmd->filter);
  CHECK(cmd->filter->matches({{"k", "v"}}));
  CHECK_FALSE(cmd->filter->matches({{"k", "w"}}));
  parsed = parse_command(
    R"({"type":"history","channel":"c","id":1,"limit":5,"filter":{"key":"k","op":"exists"}})");
  REQUIRE(std::get_if<command>(&parsed));
  CHECK(std::get<command>(parsed).filter);
  // null: none.
  parsed = parse_command(
    R"({"type":"subscribe","channel":"c","id":1,"filter":null})");
  REQUIRE(std::get_if<command>(&parsed));
  CHECK_FALSE(std::get<command>(parsed).filter);
  // A bad filter: bad_command with the id and the reason.
  parsed = parse_command(
    R"({"type":"subscribe","channel":"c","id":9,"filter":{"key":"k","op":"near","value":"v"}})");
  auto err = std::get_if<parse_error>(&parsed);
  REQUIRE(err);
  CHECK(err->code == error_code::bad_command);
  CHECK(err->id == "9");
  CHECK(err->message.find("unknown op") != std::string::npos);
  parsed = parse_command(
    R"({"type":"subscribe","channel":"c","id":9,"filter":"k=v"})");
  REQUIRE(std::get_if<parse_error>(&parsed));
}

TEST_CASE("tags: frames carry them, and stored frames read back with them") {
  publication p{"c", "m", json_text::trusted("1"), 0, {{"b", "2"}, {"a", "x"}}};
  auto frame = codec::encode_publication(p, 7);
  CHECK(
    *frame
    == R"({"channel":"c","type":"m","data":1,"tags":{"a":"x","b":"2"},"offset":7})");
  auto back = codec::parse_publication_frame(*frame);
  REQUIRE(back);
  CHECK(back->tags == p.tags);
  CHECK(back->offset == 7);
  // Without tags the frame is the seed hub's, unchanged.
  p.tags.clear();
  CHECK(*codec::encode_publication(p)
        == R"({"channel":"c","type":"m","data":1})");
  // Tags that need escaping stay valid JSON.
  p.tags = {{"q\"", "line\nbreak"}};
  CHECK(test::json_field(*codec::encode_publication(p), "channel") == "c");
}

TEST_CASE("tags: validate() checks an application's publication") {
  publication p{"c", "m", json_text::trusted("1"), 0, {{"k", "v"}}};
  CHECK_FALSE(validate(p));
  p.tags = {{std::string(65, 'k'), "v"}};
  CHECK(validate(p));
  p.tags = {{"k", std::string(65, 'v')}};
  CHECK(validate(p));
  p.tags.clear();
  for (int i = 0; i < 17; ++i)
    p.tags.emplace("k" + std::to_string(i), "v");
  CHECK(validate(p));
  p.tags = {{"k", "\xff"}};
  CHECK(validate(p));
}

TEST_CASE("identity: reads back as encoded, info unchanged, and refuses "
          "anything else") {
  identity who{"n-1", "ada",
               json_text::trusted(R"({"n":1.0000000000000002e308})")};
  auto text = codec::encode_identity(who);
  auto back = codec::parse_identity(text);
  REQUIRE(back);
  CHECK(back->client == "n-1");
  CHECK(back->user == "ada");
  CHECK(back->info.str() == who.info.str());
  CHECK(codec::encode_identity(*back) == text);
  for (auto bad : {"", "{", "[]", R"({"client":1,"user":"","info":null})",
                   R"({"client":"a","info":null})"})
    CHECK_FALSE(codec::parse_identity(bad));
  // Another order of fields still reads.
  auto other = codec::parse_identity(R"({"info":[1],"user":"u","client":"c"})");
  REQUIRE(other);
  CHECK(other->info.str() == "[1]");
}

TEST_SUITE_END();
