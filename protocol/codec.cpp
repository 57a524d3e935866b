// The JSON codec. Input is read with RapidJSON's iterative SAX reader (no
// recursion, so no stack overflow on hostile nesting) and re-written at once
// with a Writer, so `data` keeps its numbers' exact digits
// (kParseNumbersAsStringsFlag) without building a DOM.
#include "protocol/codec.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <optional>
#include <vector>

#include <caf/sec.hpp>

namespace livehub::codec {

namespace {

constexpr unsigned parse_flags = rapidjson::kParseIterativeFlag
  | rapidjson::kParseValidateEncodingFlag
  | rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseStopWhenDoneFlag;

using writer_type = rapidjson::Writer<rapidjson::StringBuffer>;

/// True when a decoded string holds a UTF-16 surrogate (ED A0..ED BF):
/// RapidJSON 1.1.0 decodes a lone low-surrogate escape such as "\udc00" to
/// these bytes, which are not UTF-8, even with kParseValidateEncodingFlag.
bool has_surrogate(const char* str, size_t len) {
  for (size_t i = 0; i + 1 < len; ++i)
    if (static_cast<unsigned char>(str[i]) == 0xed
        && static_cast<unsigned char>(str[i + 1]) >= 0xa0)
      return true;
  return false;
}

/// The typed number callbacks of RapidJSON's SAX interface. With
/// kParseNumbersAsStringsFlag (always set here) numbers arrive as RawNumber
/// only, so these never run; refusing keeps a parse from losing digits.
struct raw_numbers_only {
  bool Int(int) {
    return false;
  }
  bool Uint(unsigned) {
    return false;
  }
  bool Int64(int64_t) {
    return false;
  }
  bool Uint64(uint64_t) {
    return false;
  }
  bool Double(double) {
    return false;
  }
};

/// Re-writes one JSON value compactly, refusing nesting past max_json_depth.
/// Used alone (json_text::parse) and inside object_reader (field `data`).
struct value_writer : raw_numbers_only {
  rapidjson::StringBuffer buf;
  writer_type out{buf};
  size_t depth = 0;
  size_t max_depth = max_json_depth;
  bool too_deep = false;
  bool bad_string = false;

  bool Null() {
    return out.Null();
  }
  bool Bool(bool x) {
    return out.Bool(x);
  }
  bool RawNumber(const char* str, rapidjson::SizeType len, bool) {
    return out.RawValue(str, len, rapidjson::kNumberType);
  }
  bool String(const char* str, rapidjson::SizeType len, bool) {
    if (has_surrogate(str, len))
      return !(bad_string = true);
    return out.String(str, len);
  }
  bool Key(const char* str, rapidjson::SizeType len, bool) {
    if (has_surrogate(str, len))
      return !(bad_string = true);
    return out.Key(str, len);
  }
  bool StartObject() {
    return enter() && out.StartObject();
  }
  bool EndObject(rapidjson::SizeType n) {
    --depth;
    return out.EndObject(n);
  }
  bool StartArray() {
    return enter() && out.StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    --depth;
    return out.EndArray(n);
  }
  bool enter() {
    if (++depth > max_depth) {
      too_deep = true;
      return false;
    }
    return true;
  }
  std::string take() {
    return std::string{buf.GetString(), buf.GetSize()};
  }
  void reset() {
    buf.Clear();
    out.Reset(buf);
    depth = 0;
    too_deep = bad_string = false;
  }
};

/// Reads a top-level object, keeping the string fields `type`, `channel`,
/// `event`, `token`, the raw `id` and the re-written values `data` and
/// `info`; skips other fields.
class object_reader : public raw_numbers_only {
 public:
  std::optional<std::string> type, channel, event, token;
  std::string id;
  std::optional<std::string> data, info, since, limit, offset, tags, filter;
  std::string shape_error; // first field of a wrong type, if any
  bool not_object = false;
  bool too_deep = false;
  bool bad_string = false;

  bool Null() {
    return scalar(
      [](writer_type& w) {
        return w.Null();
      },
      "null");
  }
  bool Bool(bool x) {
    return scalar(
      [x](writer_type& w) {
        return w.Bool(x);
      },
      "a boolean");
  }
  bool RawNumber(const char* str, rapidjson::SizeType len, bool) {
    if (depth_ == 1 && key_ == "id") {
      set_id(std::string{str, len});
      return true;
    }
    return scalar(
      [=](writer_type& w) {
        return w.RawValue(str, len, rapidjson::kNumberType);
      },
      "a number");
  }
  bool String(const char* str, rapidjson::SizeType len, bool) {
    if (has_surrogate(str, len))
      return !(bad_string = true);
    if (depth_ == 0) {
      not_object = true;
      return true;
    }
    if (depth_ == 1 && !in_data_) {
      std::string_view s{str, len};
      if (key_ == "type")
        type = std::string{s};
      else if (key_ == "channel")
        channel = std::string{s};
      else if (key_ == "event")
        event = std::string{s};
      else if (key_ == "token")
        token = std::string{s};
      else if (key_ == "id")
        set_id(quote(s));
      else if (auto target = captured())
        *target = quote(s);
      return true;
    }
    return forward([=](writer_type& w) {
      return w.String(str, len);
    });
  }
  bool Key(const char* str, rapidjson::SizeType len, bool) {
    if (has_surrogate(str, len))
      return !(bad_string = true);
    if (depth_ == 1 && !in_data_) {
      key_.assign(str, len);
      return true;
    }
    return forward([=](writer_type& w) {
      return w.Key(str, len);
    });
  }
  bool StartObject() {
    return start(true);
  }
  bool EndObject(rapidjson::SizeType n) {
    return end([n](writer_type& w) {
      return w.EndObject(n);
    });
  }
  bool StartArray() {
    return start(false);
  }
  bool EndArray(rapidjson::SizeType n) {
    return end([n](writer_type& w) {
      return w.EndArray(n);
    });
  }
  void reset() {
    *this = object_reader{};
  }

 private:
  template<class F>
  bool scalar(F write, const char* what) {
    if (depth_ == 0) {
      not_object = true;
      return true;
    }
    if (depth_ == 1 && !in_data_) {
      if (auto target = captured()) {
        data_.reset(new value_writer);
        write(data_->out);
        *target = data_->take();
        data_.reset();
      } else if (string_field()) {
        wrong_type(what);
      }
      return true;
    }
    return forward(write);
  }

  template<class F>
  bool forward(F write) {
    if (in_data_)
      return write(data_->out);
    return true; // inside a skipped field
  }

  bool start(bool object) {
    if (++depth_ > max_json_depth + 1) {
      too_deep = true;
      return false;
    }
    if (depth_ == 1) {
      if (!object)
        not_object = true;
      return true;
    }
    if (depth_ == 2 && captured()) {
      in_data_ = true;
      data_.reset(new value_writer);
    } else if (depth_ == 2 && string_field()) {
      wrong_type(object ? "an object" : "an array");
    }
    if (in_data_)
      return object ? data_->out.StartObject() : data_->out.StartArray();
    return true;
  }

  template<class F>
  bool end(F write) {
    --depth_;
    if (!in_data_)
      return true;
    auto ok = write(data_->out);
    if (depth_ == 1) {
      in_data_ = false;
      *captured() = data_->take();
      data_.reset();
    }
    return ok;
  }

  /// Where the value of the current top-level field is kept re-written
  /// (`data`, `info`); none for other fields.
  std::optional<std::string>* captured() {
    if (key_ == "data")
      return &data;
    if (key_ == "info")
      return &info;
    if (key_ == "since")
      return &since;
    if (key_ == "limit")
      return &limit;
    if (key_ == "offset")
      return &offset;
    if (key_ == "tags")
      return &tags;
    if (key_ == "filter")
      return &filter;
    return nullptr;
  }

  /// True for the top-level fields that must be strings (or an id).
  bool string_field() const {
    return key_ == "type" || key_ == "channel" || key_ == "event"
      || key_ == "id" || key_ == "token";
  }

  void set_id(std::string raw) {
    if (raw.size() > max_id_size)
      wrong_type("longer than 64 bytes");
    else
      id = std::move(raw);
  }

  void wrong_type(const char* what) {
    if (shape_error.empty())
      shape_error = "field \"" + key_ + "\" must not be " + what;
  }

  size_t depth_ = 0;
  std::string key_;
  bool in_data_ = false;
  std::unique_ptr<value_writer> data_;
};

/// RapidJSON 1.1.0 refuses numbers beyond a double's range ("1e400", 400
/// digits) even with kParseNumbersAsStringsFlag (Tencent/rapidjson#1368).
/// For a second try, mask_numbers replaces each number outside strings with
/// "0" and keeps the originals, which number_restorer passes on instead.
bool is_json_number(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    auto start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9')
      ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-')
    ++i;
  if (i < s.size() && s[i] == '0')
    ++i;
  else if (!digits())
    return false;
  if (i < s.size() && s[i] == '.' && (++i, !digits()))
    return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-'))
      ++i;
    if (!digits())
      return false;
  }
  return i == s.size();
}

std::string mask_numbers(std::string_view text,
                         std::vector<std::string_view>& numbers) {
  auto number_char = [](char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.'
      || c == 'e' || c == 'E';
  };
  std::string result;
  result.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = text[i];
    if (in_string) {
      result += c;
      if (c == '\\' && i + 1 < text.size())
        result += text[++i];
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
      result += c;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      auto end = i;
      while (end < text.size() && number_char(text[end]))
        ++end;
      auto token = text.substr(i, end - i);
      if (is_json_number(token)) {
        numbers.push_back(token);
        result += '0';
      } else {
        result += token;
      }
      i = end - 1;
    } else {
      result += c;
    }
  }
  return result;
}

template<class Handler>
struct number_restorer : raw_numbers_only {
  Handler& h;
  const std::vector<std::string_view>& numbers;
  size_t next = 0;
  bool& too_deep = h.too_deep;
  bool& bad_string = h.bad_string;
  bool Null() {
    return h.Null();
  }
  bool Bool(bool x) {
    return h.Bool(x);
  }
  bool RawNumber(const char*, rapidjson::SizeType, bool copy) {
    if (next == numbers.size())
      return false;
    auto x = numbers[next++];
    return h.RawNumber(x.data(), static_cast<rapidjson::SizeType>(x.size()),
                       copy);
  }
  bool String(const char* str, rapidjson::SizeType len, bool copy) {
    return h.String(str, len, copy);
  }
  bool Key(const char* str, rapidjson::SizeType len, bool copy) {
    return h.Key(str, len, copy);
  }
  bool StartObject() {
    return h.StartObject();
  }
  bool EndObject(rapidjson::SizeType n) {
    return h.EndObject(n);
  }
  bool StartArray() {
    return h.StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    return h.EndArray(n);
  }
};

template<class T>
constexpr bool is_restorer = false;

template<class T>
constexpr bool is_restorer<number_restorer<T>> = true;

/// Runs `handler` over `text`; returns an error message for invalid JSON.
template<class Handler>
std::optional<std::string> read(std::string_view text, Handler& handler) {
  rapidjson::MemoryStream is{text.data(), text.size()};
  rapidjson::Reader reader;
  auto res = reader.Parse<parse_flags>(is, handler);
  if constexpr (!is_restorer<Handler>) {
    if (res.Code() == rapidjson::kParseErrorNumberTooBig) {
      std::vector<std::string_view> numbers;
      auto masked = mask_numbers(text, numbers);
      handler.reset();
      number_restorer<Handler> restorer{{}, handler, numbers};
      return read(masked, restorer);
    }
  }
  if (handler.too_deep)
    return "JSON nested deeper than " + std::to_string(max_json_depth)
      + " levels";
  if (handler.bad_string)
    return "invalid JSON: unpaired UTF-16 surrogate escape in a string";
  if (res.IsError())
    return std::string{"invalid JSON: "}
    + rapidjson::GetParseError_En(res.Code()) + " at offset "
      + std::to_string(res.Offset());
  // kParseStopWhenDoneFlag stops after the value, and on success Offset() is
  // 0: the stream's position marks the end. Only whitespace may follow (a NUL
  // byte ends RapidJSON's input, so it must not end ours).
  for (auto i = is.Tell(); i < text.size(); ++i) {
    auto c = text[i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      return "invalid JSON: text after the value at offset "
        + std::to_string(i);
  }
  return std::nullopt;
}

/// Reads a top-level object; fills `err` and returns false on failure.
bool read_object(std::string_view text, object_reader& obj, parse_error& err) {
  if (auto msg = read(text, obj)) {
    err = parse_error{error_code::bad_json, std::move(*msg), obj.id};
    return false;
  }
  if (obj.not_object) {
    err = parse_error{error_code::bad_command, "expected a JSON object", {}};
    return false;
  }
  if (!obj.shape_error.empty()) {
    err = parse_error{error_code::bad_command, obj.shape_error, obj.id};
    return false;
  }
  return true;
}

bool valid_utf8(std::string_view s) {
  rapidjson::MemoryStream ms{s.data(), s.size()};
  rapidjson::StringBuffer sink;
  while (ms.Tell() < s.size())
    if (!rapidjson::UTF8<>::Validate(ms, sink))
      return false;
  return true;
}

bool has_control_chars(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f)
      return true;
    // C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
    if (c == 0xc2 && i + 1 < s.size()) {
      auto d = static_cast<unsigned char>(s[i + 1]);
      if (d >= 0x80 && d <= 0x9f)
        return true;
    }
  }
  return false;
}

bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= max_name_size && !has_control_chars(s)
    && valid_utf8(s);
}

/// At most `n` bytes of `s`, not splitting a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, size_t n) {
  if (s.size() <= n)
    return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80)
    --n;
  return s.substr(0, n);
}

frame_ptr make_frame(rapidjson::StringBuffer& buf) {
  return std::make_shared<const std::string>(buf.GetString(), buf.GetSize());
}

void write_id(writer_type& w, std::string_view id) {
  if (!id.empty()) {
    w.Key("id");
    w.RawValue(id.data(), id.size(), rapidjson::kStringType);
  }
}

/// A non-negative integer (at most 2^53, as JSON numbers are safe); none
/// otherwise.
std::optional<uint64_t> parse_count(const std::string& text) {
  if (text.empty() || text.size() > 16)
    return std::nullopt;
  uint64_t n = 0;
  for (auto c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

/// `{"offset":K,"epoch":"E"}` (other fields ignored); none when malformed.
std::optional<position> parse_position(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject())
    return std::nullopt;
  auto offset = doc.FindMember("offset");
  auto epoch = doc.FindMember("epoch");
  if (offset == doc.MemberEnd() || !offset->value.IsUint64()
      || epoch == doc.MemberEnd() || !epoch->value.IsString()
      || epoch->value.GetStringLength() > 64)
    return std::nullopt;
  return position{offset->value.GetUint64(),
                  std::string{epoch->value.GetString(),
                              epoch->value.GetStringLength()}};
}

/// A `tags` field's text: an object of strings within the limits (`null`:
/// none). The error message otherwise.
std::variant<tag_map, std::string> parse_tags(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError())
    return std::string{"field \"tags\" is not JSON"};
  tag_map result;
  if (doc.IsNull())
    return result;
  if (!doc.IsObject())
    return std::string{"field \"tags\" must be an object of strings"};
  for (auto& m : doc.GetObject()) {
    if (!m.value.IsString())
      return std::string{"field \"tags\" must be an object of strings"};
    auto inserted
      = result
          .emplace(std::string{m.name.GetString(), m.name.GetStringLength()},
                   std::string{m.value.GetString(), m.value.GetStringLength()})
          .second;
    if (!inserted)
      return std::string{"field \"tags\" has a key twice"};
    if (result.size() > max_tags)
      break;
  }
  if (auto err = validate_tags(result); !err.empty())
    return "field \"tags\": " + err;
  return result;
}

/// A `filter` field's text, compiled (`null`: none). The error message
/// otherwise.
std::variant<tag_filter_ptr, std::string>
parse_filter(const std::string& text) {
  if (text == "null")
    return tag_filter_ptr{};
  auto compiled = tag_filter::parse(text);
  if (!compiled)
    return compiled.error().context().get_as<std::string>(0);
  return std::make_shared<const tag_filter>(std::move(*compiled));
}

} // namespace

const char* to_string(error_code x) {
  switch (x) {
    case error_code::bad_json: return "bad_json";
    case error_code::bad_command: return "bad_command";
    case error_code::unknown_command: return "unknown_command";
    case error_code::bad_channel: return "bad_channel";
    case error_code::forbidden: return "forbidden";
    case error_code::too_many_subscriptions: return "too_many_subscriptions";
    case error_code::rate_limited: return "rate_limited";
    case error_code::unauthorized: return "unauthorized";
    case error_code::unavailable: return "unavailable";
    case error_code::internal: return "internal";
  }
  return "internal";
}

std::variant<command, parse_error> parse_command(std::string_view text) {
  object_reader obj;
  parse_error err;
  if (!read_object(text, obj, err))
    return err;
  auto fail = [&](error_code code, std::string msg) {
    return parse_error{code, std::move(msg), obj.id};
  };
  if (!obj.type)
    return fail(error_code::bad_command, "missing field \"type\"");
  command cmd;
  cmd.id = obj.id;
  auto& t = *obj.type;
  if (t == "ping") {
    cmd.type = command_type::ping;
    return cmd;
  }
  if (t == "connect" || t == "refresh") {
    cmd.type = t == "connect" ? command_type::connect : command_type::refresh;
    if (obj.token)
      cmd.token = std::move(*obj.token);
    else if (cmd.type == command_type::refresh)
      return fail(error_code::bad_command, "missing field \"token\"");
    if (obj.info) {
      if (obj.info->size() > max_info_size)
        return fail(error_code::bad_command,
                    "field \"info\" is larger than 1 KiB");
      cmd.info = json_text::trusted(std::move(*obj.info));
    }
    return cmd;
  }
  if (t == "subscribe")
    cmd.type = command_type::subscribe;
  else if (t == "history")
    cmd.type = command_type::history;
  else if (t == "presence")
    cmd.type = command_type::presence;
  else if (t == "presence_stats")
    cmd.type = command_type::presence_stats;
  else if (t == "unsubscribe")
    cmd.type = command_type::unsubscribe;
  else if (t == "publish")
    cmd.type = command_type::publish;
  else
    return fail(error_code::unknown_command,
                "unknown command type " + quote(utf8_prefix(t, 64)));
  if (!obj.channel)
    return fail(error_code::bad_command, "missing field \"channel\"");
  if (!valid_channel_name(*obj.channel))
    return fail(error_code::bad_channel,
                "channel names are 1 to 255 bytes without control characters");
  cmd.channel = std::move(*obj.channel);
  if (cmd.type == command_type::subscribe && obj.token)
    cmd.token = std::move(*obj.token);
  if ((cmd.type == command_type::subscribe || cmd.type == command_type::history)
      && obj.filter) {
    auto filter = parse_filter(*obj.filter);
    if (auto msg = std::get_if<std::string>(&filter))
      return fail(error_code::bad_command, std::move(*msg));
    cmd.filter = std::move(std::get<tag_filter_ptr>(filter));
  }
  if (cmd.type == command_type::subscribe && obj.since) {
    auto since = parse_position(*obj.since);
    if (!since)
      return fail(error_code::bad_command,
                  "field \"since\" must be {\"offset\":N,\"epoch\":\"E\"}");
    cmd.since = std::move(*since);
  }
  if (cmd.type == command_type::history) {
    if (!obj.limit)
      return fail(error_code::bad_command, "missing field \"limit\"");
    auto n = parse_count(*obj.limit);
    if (!n)
      return fail(error_code::bad_command,
                  "field \"limit\" must be a whole number from 0");
    cmd.limit = *n;
  }
  if (cmd.type == command_type::publish) {
    if (!obj.event)
      return fail(error_code::bad_command, "missing field \"event\"");
    if (!valid_event_type(*obj.event))
      return fail(error_code::bad_command,
                  "event types are 1 to 255 bytes without control characters");
    cmd.event = std::move(*obj.event);
    if (obj.data)
      cmd.data = json_text::trusted(std::move(*obj.data));
    if (obj.tags) {
      auto tags = parse_tags(*obj.tags);
      if (auto msg = std::get_if<std::string>(&tags))
        return fail(error_code::bad_command, std::move(*msg));
      cmd.tags = std::move(std::get<tag_map>(tags));
    }
  }
  return cmd;
}

std::variant<publication, parse_error> parse_publish(std::string_view text) {
  object_reader obj;
  parse_error err;
  if (!read_object(text, obj, err))
    return err;
  if (!obj.channel)
    return parse_error{
      error_code::bad_command, "missing field \"channel\"", {}};
  if (!valid_channel_name(*obj.channel))
    return parse_error{error_code::bad_channel,
                       "channel names are 1 to 255 bytes without control "
                       "characters",
                       {}};
  if (!obj.type)
    return parse_error{error_code::bad_command, "missing field \"type\"", {}};
  if (!valid_event_type(*obj.type))
    return parse_error{error_code::bad_command,
                       "event types are 1 to 255 bytes without control "
                       "characters",
                       {}};
  publication result;
  result.channel = std::move(*obj.channel);
  result.type = std::move(*obj.type);
  if (obj.data)
    result.data = json_text::trusted(std::move(*obj.data));
  if (obj.tags) {
    auto tags = parse_tags(*obj.tags);
    if (auto msg = std::get_if<std::string>(&tags))
      return parse_error{error_code::bad_command, std::move(*msg), {}};
    result.tags = std::move(std::get<tag_map>(tags));
  }
  return result;
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/// The texts of the elements of the JSON array `text`, found by a scan that
/// only tracks strings and nesting (each element is parsed on its own
/// afterwards, which validates it). Constant memory beyond the result.
std::variant<std::vector<std::string_view>, parse_error>
split_array(std::string_view text) {
  auto bad = [](std::string msg) {
    return parse_error{
      error_code::bad_json, "invalid JSON: " + std::move(msg), {}};
  };
  size_t i = 0;
  auto skip_space = [&] {
    while (i < text.size() && is_space(text[i]))
      ++i;
  };
  skip_space();
  if (i == text.size() || text[i] != '[')
    return bad("expected an array");
  ++i;
  std::vector<std::string_view> items;
  skip_space();
  if (i < text.size() && text[i] == ']') {
    ++i;
  } else {
    for (;;) {
      auto start = i;
      size_t depth = 0;
      bool in_string = false;
      for (; i < text.size(); ++i) {
        auto c = text[i];
        if (in_string) {
          if (c == '\\')
            ++i; // the escaped character cannot end the string
          else if (c == '"')
            in_string = false;
        } else if (c == '"') {
          in_string = true;
        } else if (c == '{' || c == '[') {
          if (++depth > max_json_depth)
            return parse_error{error_code::bad_json,
                               "JSON nested deeper than "
                                 + std::to_string(max_json_depth) + " levels",
                               {}};
        } else if (c == '}' || c == ']') {
          if (depth == 0)
            break; // the array's own end
          --depth;
        } else if (c == ',' && depth == 0) {
          break;
        }
      }
      if (i >= text.size())
        return bad("the array does not end");
      auto end = i;
      while (end > start && is_space(text[end - 1]))
        --end;
      if (end == start)
        return bad("an empty element in the array");
      items.push_back(text.substr(start, end - start));
      if (text[i] == ',') {
        ++i;
        continue;
      }
      if (text[i] != ']')
        return bad("unbalanced brackets in the array");
      ++i;
      break;
    }
  }
  skip_space();
  if (i != text.size())
    return bad("text after the array");
  return items;
}

} // namespace

std::optional<publication> parse_publication_frame(std::string_view frame) {
  object_reader obj;
  parse_error err;
  if (!read_object(frame, obj, err) || !obj.channel || !obj.type)
    return std::nullopt;
  publication result;
  result.channel = std::move(*obj.channel);
  result.type = std::move(*obj.type);
  if (obj.data)
    result.data = json_text::trusted(std::move(*obj.data));
  if (obj.offset) {
    auto n = parse_count(*obj.offset);
    if (!n)
      return std::nullopt;
    result.offset = *n;
  }
  if (obj.tags) {
    auto tags = parse_tags(*obj.tags);
    if (!std::holds_alternative<tag_map>(tags))
      return std::nullopt;
    result.tags = std::move(std::get<tag_map>(tags));
  }
  return result;
}

bool is_batch(std::string_view body) {
  for (auto c : body)
    if (!is_space(c))
      return c == '[';
  return false;
}

std::variant<std::vector<std::variant<publication, parse_error>>, parse_error>
parse_publish_batch(std::string_view text) {
  auto split = split_array(text);
  if (auto err = std::get_if<parse_error>(&split))
    return std::move(*err);
  std::vector<std::variant<publication, parse_error>> result;
  auto& items = std::get<std::vector<std::string_view>>(split);
  result.reserve(items.size());
  for (auto item : items)
    result.push_back(parse_publish(item));
  return result;
}

bool valid_channel_name(std::string_view name) {
  return valid_name(name);
}

bool valid_event_type(std::string_view type) {
  return valid_name(type);
}

bool glob_match(std::string_view pattern, std::string_view name) {
  // Iterative matcher with single-star backtracking: linear in practice.
  size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
}

frame_ptr encode_publication(const publication& x, uint64_t offset) {
  rapidjson::StringBuffer buf;
  buf.Reserve(x.channel.size() + x.type.size() + x.data.str().size() + 60);
  writer_type w{buf};
  w.StartObject();
  w.Key("channel");
  w.String(x.channel.data(),
           static_cast<rapidjson::SizeType>(x.channel.size()));
  w.Key("type");
  w.String(x.type.data(), static_cast<rapidjson::SizeType>(x.type.size()));
  w.Key("data");
  w.RawValue(x.data.str().data(), x.data.str().size(), rapidjson::kObjectType);
  if (!x.tags.empty()) {
    w.Key("tags");
    w.StartObject();
    for (auto& [key, value] : x.tags) {
      w.String(key.data(), static_cast<rapidjson::SizeType>(key.size()));
      w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
    }
    w.EndObject();
  }
  if (offset > 0) {
    w.Key("offset");
    w.Uint64(offset);
  }
  w.EndObject();
  return make_frame(buf);
}

namespace {

void write_string(writer_type& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

/// Opens `{"type":"ok"` with the id (if any): a reply's first fields.
void start_ok(writer_type& w, std::string_view id) {
  w.StartObject();
  write_string(w, "type", "ok");
  write_id(w, id);
}

/// `"offset":N,"epoch":"E"`: a position in a history channel's stream.
void write_position(writer_type& w, uint64_t offset, std::string_view epoch) {
  w.Key("offset");
  w.Uint64(offset);
  write_string(w, "epoch", epoch);
}

void write_identity(writer_type& w, const identity& x) {
  w.StartObject();
  write_string(w, "client", x.client);
  write_string(w, "user", x.user);
  w.Key("info");
  w.RawValue(x.info.str().data(), x.info.str().size(), rapidjson::kObjectType);
  w.EndObject();
}

std::string take(const rapidjson::StringBuffer& buf) {
  return std::string{buf.GetString(), buf.GetSize()};
}

} // namespace

std::string encode_identity(const identity& x) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  write_identity(w, x);
  return take(buf);
}

std::optional<identity> parse_identity(std::string_view text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject())
    return std::nullopt;
  auto client = doc.FindMember("client");
  auto user = doc.FindMember("user");
  auto info = doc.FindMember("info");
  if (client == doc.MemberEnd() || !client->value.IsString()
      || user == doc.MemberEnd() || !user->value.IsString()
      || info == doc.MemberEnd())
    return std::nullopt;
  identity result;
  result.client.assign(client->value.GetString(),
                       client->value.GetStringLength());
  result.user.assign(user->value.GetString(), user->value.GetStringLength());
  // `info` as it was written (numbers unchanged): what follows the head
  // encode_identity writes before it.
  rapidjson::StringBuffer head;
  writer_type hw{head};
  hw.StartObject();
  write_string(hw, "client", result.client);
  write_string(hw, "user", result.user);
  hw.Key("info");
  // (The writer puts the key's colon before the value it has not seen.)
  std::string prefix{head.GetString(), head.GetSize()};
  prefix += ':';
  if (text.size() > prefix.size() + 1 && text.substr(0, prefix.size()) == prefix
      && text.back() == '}') {
    result.info = json_text::trusted(
      std::string{text.substr(prefix.size(), text.size() - prefix.size() - 1)});
    return result;
  }
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  info->value.Accept(w);
  result.info = json_text::trusted(take(buf));
  return result;
}

std::string encode_presence(std::string_view id,
                            const std::vector<identity>& clients, bool reply) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  if (reply)
    start_ok(w, id);
  else
    w.StartObject();
  w.Key("clients");
  w.StartArray();
  for (auto& x : clients)
    write_identity(w, x);
  w.EndArray();
  w.EndObject();
  return take(buf);
}

frame_ptr encode_presence_stats(std::string_view id,
                                const std::vector<identity>& clients) {
  // Users: distinct non-empty users, plus every anonymous connection.
  std::vector<std::string_view> users;
  uint64_t anonymous = 0;
  for (auto& x : clients) {
    if (x.user.empty())
      ++anonymous;
    else
      users.push_back(x.user);
  }
  std::sort(users.begin(), users.end());
  auto distinct = static_cast<uint64_t>(std::unique(users.begin(), users.end())
                                        - users.begin());
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  start_ok(w, id);
  w.Key("clients");
  w.Uint64(clients.size());
  w.Key("users");
  w.Uint64(distinct + anonymous);
  w.EndObject();
  return make_frame(buf);
}

frame_ptr encode_gap(std::string_view channel, uint64_t offset,
                     std::string_view epoch) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  w.StartObject();
  write_string(w, "type", "gap");
  write_string(w, "channel", channel);
  write_position(w, offset, epoch);
  w.EndObject();
  return make_frame(buf);
}

frame_ptr encode_position(std::string_view id, uint64_t offset,
                          std::string_view epoch,
                          std::optional<bool> recovered) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  start_ok(w, id);
  if (recovered) {
    w.Key("recovered");
    w.Bool(*recovered);
  }
  write_position(w, offset, epoch);
  w.EndObject();
  return make_frame(buf);
}

std::string
encode_history(std::string_view id, const std::vector<frame_ptr>& publications,
               uint64_t offset, std::string_view epoch, bool reply) {
  size_t size = 80 + epoch.size();
  for (auto& x : publications)
    size += x->size() + 1;
  rapidjson::StringBuffer buf;
  buf.Reserve(size);
  writer_type w{buf};
  if (reply)
    start_ok(w, id);
  else
    w.StartObject();
  w.Key("publications");
  w.StartArray();
  for (auto& x : publications)
    w.RawValue(x->data(), x->size(), rapidjson::kObjectType);
  w.EndArray();
  write_position(w, offset, epoch);
  w.EndObject();
  return take(buf);
}

frame_ptr encode_ok(std::string_view id) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  w.StartObject();
  w.Key("type");
  w.String("ok");
  write_id(w, id);
  w.EndObject();
  return make_frame(buf);
}

frame_ptr encode_connected(std::string_view id, std::string_view client,
                           std::string_view user, int64_t expires) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  start_ok(w, id);
  write_string(w, "client", client);
  write_string(w, "user", user);
  w.Key("expires");
  w.Int64(expires);
  w.EndObject();
  return make_frame(buf);
}

frame_ptr encode_refreshed(std::string_view id, int64_t expires) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  start_ok(w, id);
  w.Key("expires");
  w.Int64(expires);
  w.EndObject();
  return make_frame(buf);
}

frame_ptr encode_pong(std::string_view id) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  w.StartObject();
  w.Key("type");
  w.String("pong");
  write_id(w, id);
  w.EndObject();
  return make_frame(buf);
}

frame_ptr encode_error(error_code code, std::string_view message,
                       std::string_view id) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  w.StartObject();
  w.Key("type");
  w.String("error");
  write_id(w, id);
  w.Key("code");
  w.String(to_string(code));
  w.Key("message");
  w.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  w.EndObject();
  return make_frame(buf);
}

std::string quote(std::string_view s) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string{buf.GetString(), buf.GetSize()};
}

std::string encode_stats(const hub_stats& x) {
  rapidjson::StringBuffer buf;
  writer_type w{buf};
  w.StartObject();
  auto field = [&](const char* key, uint64_t value) {
    w.Key(key);
    w.Uint64(value);
  };
  field("connections", x.connections);
  field("channels", x.channels);
  field("subscriptions", x.subscriptions);
  field("actor_subscriptions", x.actor_subscriptions);
  field("published", x.published);
  field("delivered", x.delivered);
  field("slow_consumer_disconnects", x.slow_consumer_disconnects);
  field("command_errors", x.command_errors);
  field("rejected_origin", x.rejected_origin);
  field("rejected_capacity", x.rejected_capacity);
  field("rejected_rate", x.rejected_rate);
  field("unauthorized_disconnects", x.unauthorized_disconnects);
  field("expired_disconnects", x.expired_disconnects);
  field("rate_limited_disconnects", x.rate_limited_disconnects);
  field("broker_refused", x.broker_refused);
  w.EndObject();
  return std::string{buf.GetString(), buf.GetSize()};
}

} // namespace livehub::codec

namespace livehub {

caf::expected<json_text> json_text::parse(std::string_view text,
                                          size_t max_depth) {
  codec::value_writer out;
  out.max_depth = max_depth;
  if (auto msg = codec::read(text, out))
    return caf::make_error(caf::sec::invalid_argument, std::move(*msg));
  return trusted(out.take());
}

caf::error validate(const publication& x) {
  if (!codec::valid_channel_name(x.channel))
    return caf::make_error(caf::sec::invalid_argument,
                           "bad channel name: channel names are 1 to 255 "
                           "bytes of UTF-8 without control characters");
  if (!codec::valid_event_type(x.type))
    return caf::make_error(caf::sec::invalid_argument,
                           "bad event type: event types are 1 to 255 bytes "
                           "of UTF-8 without control characters");
  if (auto err = validate_tags(x.tags); !err.empty())
    return caf::make_error(caf::sec::invalid_argument, "bad tags: " + err);
  for (auto& [key, value] : x.tags)
    if (!codec::valid_utf8(key) || !codec::valid_utf8(value))
      return caf::make_error(caf::sec::invalid_argument,
                             "bad tags: tags are UTF-8 text");
  return caf::none;
}

caf::expected<publication> make_publication(std::string channel,
                                            std::string type,
                                            std::string_view json_data) {
  auto data = json_text::parse(json_data);
  if (!data)
    return std::move(data.error());
  publication result{std::move(channel), std::move(type), std::move(*data)};
  if (auto err = validate(result))
    return err;
  return result;
}

} // namespace livehub
