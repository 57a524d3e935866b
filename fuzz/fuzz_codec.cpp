// libFuzzer target: the wire codec (protocol/codec.hpp) on arbitrary bytes.
// Every input goes through parse_command, parse_publish, is_batch +
// parse_publish_batch, parse_publication_frame (a stored history frame) and
// json_text::parse and tag_filter::parse; what parses is re-encoded (with
// offsets, in replies, positions and gaps) and must hold what the protocol
// promises: channel names and event types valid, frames valid JSON (by an
// independent strict reader, strict_json.hpp) that parse back to the same
// publication, json_text compact and stable and accepting exactly what is JSON.
// Any broken promise aborts (a finding).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "livehub/json.hpp"
#include "livehub/messages.hpp"
#include "protocol/codec.hpp"
#include "strict_json.hpp"

using namespace livehub;

namespace {

/// Reports a broken invariant with the text involved, then aborts.
[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "fuzz_codec: %s\n  text: %.*s\n", what,
               static_cast<int>(text.size()), text.data());
  std::abort();
}

void check(bool ok, const char* what, std::string_view text) {
  if (!ok)
    fail(what, text);
}

/// `text` is one JSON value, by the codec's own reader and by an
/// independent strict one.
bool valid_json(std::string_view text) {
  return json_text::parse(text) && fuzz::strict_json::valid(text);
}

/// `frame` is a JSON object, as a client reads it.
bool json_object(std::string_view frame) {
  return fuzz::strict_json::object(frame);
}

/// A json_text is compact, valid JSON and its own parse.
void check_json_text(const json_text& x, std::string_view input) {
  auto again = json_text::parse(x.str());
  check(static_cast<bool>(again), "json_text does not parse again", x.str());
  check(again->str() == x.str(), "json_text is not stable under parse", input);
  check(fuzz::strict_json::valid(x.str()), "json_text holds invalid JSON",
        x.str());
}

/// A parsed publication: valid names, and its frame parses back to it.
void check_publication(const publication& x, std::string_view input) {
  check(codec::valid_channel_name(x.channel), "invalid channel accepted",
        input);
  check(codec::valid_event_type(x.type), "invalid event type accepted", input);
  check(!validate(x), "validate() refuses a parsed publication", input);
  check_json_text(x.data, input);
  auto frame = codec::encode_publication(x);
  check(valid_json(*frame), "encode_publication is not valid JSON", *frame);
  check(json_object(*frame), "encode_publication is no JSON object", *frame);
  auto back = codec::parse_publish(*frame);
  auto y = std::get_if<publication>(&back);
  check(y != nullptr, "encoded publication does not parse again", *frame);
  check(y->channel == x.channel && y->type == x.type && y->data == x.data
          && y->tags == x.tags,
        "encoded publication parses to another one", *frame);
  // With an offset (history channels), as stored and read back. Offsets
  // count publications from 1: parse_publication_frame reads up to 16
  // digits, far beyond what a channel reaches (and beyond 2^53, the last
  // integer JavaScript clients read exactly).
  for (uint64_t offset : {uint64_t{1}, uint64_t{1} << 53}) {
    auto stored = codec::encode_publication(x, offset);
    check(json_object(*stored), "a stored publication is no JSON object",
          *stored);
    auto z = codec::parse_publication_frame(*stored);
    check(z && z->channel == x.channel && z->type == x.type && z->data == x.data
            && z->offset == offset && z->tags == x.tags,
          "a stored publication reads back as another one", *stored);
  }
}

void check_id(const std::string& id, std::string_view input) {
  check(id.size() <= codec::max_id_size, "id longer than max_id_size", input);
  for (auto frame :
       {codec::encode_ok(id), codec::encode_pong(id),
        codec::encode_error(codec::error_code::bad_command, "message", id),
        codec::encode_refreshed(id, 42)}) {
    check(json_object(*frame), "a reply with this id is no JSON object",
          *frame);
  }
}

void fuzz_command(std::string_view text) {
  auto parsed = codec::parse_command(text);
  if (auto err = std::get_if<codec::parse_error>(&parsed)) {
    check_id(err->id, text);
    auto frame = codec::encode_error(err->code, err->message, err->id);
    check(json_object(*frame), "error frame is no JSON object", *frame);
    return;
  }
  auto& cmd = std::get<codec::command>(parsed);
  check_id(cmd.id, text);
  switch (cmd.type) {
    case codec::command_type::publish:
      check(codec::valid_event_type(cmd.event), "invalid event accepted", text);
      check_json_text(cmd.data, text);
      check_publication(publication{cmd.channel, cmd.event, cmd.data}, text);
      break;
    case codec::command_type::connect:
    case codec::command_type::refresh:
      check(cmd.info.str().size() <= codec::max_info_size,
            "info larger than max_info_size", text);
      check_json_text(cmd.info, text);
      break;
    case codec::command_type::history: {
      auto reply = codec::encode_history(
        cmd.id, {codec::encode_publication({cmd.channel, "t", {}}, 7)},
        cmd.limit, "epoch", true);
      check(json_object(reply), "a history reply is no JSON object", reply);
      break;
    }
    default: break; // the channel check below is all
  }
  // Every command but these names a channel.
  if (cmd.type != codec::command_type::connect
      && cmd.type != codec::command_type::refresh
      && cmd.type != codec::command_type::ping)
    check(codec::valid_channel_name(cmd.channel), "invalid channel accepted",
          text);
  if (cmd.since) {
    // The position a subscribe names comes back in replies and gaps.
    check(cmd.type == codec::command_type::subscribe,
          "since outside a subscribe", text);
    auto& since = *cmd.since;
    for (auto frame :
         {codec::encode_position(cmd.id, since.offset, since.epoch, true),
          codec::encode_gap(cmd.channel, since.offset, since.epoch)})
      check(json_object(*frame), "a position frame is no JSON object", *frame);
  }
}

void fuzz_publish(std::string_view text) {
  auto parsed = codec::parse_publish(text);
  auto single = std::get_if<publication>(&parsed);
  if (single)
    check_publication(*single, text);
  // The same text as a batch of one and of two: the batch splitter must
  // find exactly the element(s) parse_publish accepted, with equal results.
  if (single) {
    for (size_t copies : {1, 2}) {
      std::string batch = "[" + std::string{text};
      if (copies == 2)
        batch += "," + std::string{text};
      batch += "]";
      check(codec::is_batch(batch), "is_batch is false for an array", batch);
      auto items = codec::parse_publish_batch(batch);
      auto list = std::get_if<0>(&items);
      check(list != nullptr && list->size() == copies,
            "a batch of accepted publications is refused or miscounted", batch);
      for (auto& item : *list) {
        auto x = std::get_if<publication>(&item);
        check(x != nullptr && x->channel == single->channel
                && x->type == single->type && x->data == single->data,
              "a batch item differs from the publication alone", batch);
      }
    }
  }
}

void fuzz_stored(std::string_view text) {
  // parse_publication_frame reads frames this codec made (check_publication
  // checks that round trip); on anything else it must not crash, and what
  // it keeps as data is JSON.
  if (auto x = codec::parse_publication_frame(text))
    check_json_text(x->data, text);
}

void fuzz_batch(std::string_view text) {
  if (!codec::is_batch(text))
    return;
  auto parsed = codec::parse_publish_batch(text);
  if (auto list = std::get_if<0>(&parsed))
    for (auto& item : *list)
      if (auto x = std::get_if<publication>(&item))
        check_publication(*x, text);
}

void fuzz_json_text(std::string_view text) {
  // The codec accepts exactly the JSON texts (up to its depth limit) that a
  // strict reader accepts.
  auto x = json_text::parse(text);
  auto strict = fuzz::strict_json::valid(text, codec::max_json_depth);
  check(static_cast<bool>(x) == strict,
        x ? "json_text accepts invalid JSON" : "json_text refuses valid JSON",
        text);
  if (!x)
    return;
  check_json_text(*x, text);
  // A value json_text accepts inside an object is a command's data: the
  // object reader must accept it too (same limits, one level deeper).
  auto wrapped = R"({"type":"publish","channel":"c","event":"e","data":)"
    + x->str() + "}";
  auto cmd = codec::parse_command(wrapped);
  auto c = std::get_if<codec::command>(&cmd);
  check(c != nullptr, "parse_command refuses data json_text accepts", wrapped);
  check(c->data == *x, "command data differs from json_text", wrapped);
}

/// Tag filters: whatever compiles has a compact source that compiles to the
/// same filter, and evaluating it on tags made from the input neither
/// crashes nor differs between the two.
void fuzz_filter(std::string_view text) {
  auto f = tag_filter::parse(text);
  if (!f)
    return;
  check(!f->source().empty() && valid_json(f->source()),
        "a filter's source is no JSON", text);
  auto again = tag_filter::parse(f->source());
  check(static_cast<bool>(again) && *again == *f,
        "a filter's source does not compile to it", text);
  // Tags from the input's bytes: keys and values of one to three bytes.
  tag_map tags;
  for (size_t i = 0; i + 1 < text.size() && tags.size() < max_tags; i += 4)
    tags.emplace(std::string{text.substr(i, 1)},
                 std::string{text.substr(i + 1, 3)});
  check(f->matches(tags) == again->matches(tags),
        "a filter and its source's compilation disagree", text);
  check(f->matches({}) == again->matches({}),
        "a filter and its source's compilation disagree on no tags", text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  fuzz_command(text);
  fuzz_publish(text);
  fuzz_batch(text);
  fuzz_stored(text);
  fuzz_json_text(text);
  fuzz_filter(text);
  // Names and patterns: a name always matches itself as a pattern.
  auto half = text.substr(0, text.size() / 2);
  check(codec::glob_match(half, half), "a pattern does not match itself", half);
  check(codec::glob_match("*", text), "\"*\" does not match", text);
  codec::glob_match(half, text.substr(half.size()));
  return 0;
}
