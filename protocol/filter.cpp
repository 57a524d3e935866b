#include "livehub/filter.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace livehub {

namespace {

/// Longest filter expression, in bytes of JSON text: bounds what one
/// subscription keeps.
constexpr size_t max_filter_size = 8192;

/// Most strings in one `in` / `nin`.
constexpr size_t max_filter_values = 64;

/// `s` as a finite number, the whole of it; none otherwise.
bool read_number(std::string_view s, double& out) noexcept {
  if (s.empty())
    return false;
  auto first = s.data();
  auto last = s.data() + s.size();
  auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc{} && end == last && std::isfinite(out);
}

/// Forwards RapidJSON's parse events to a Document, but reads each number
/// from its own text with `from_chars`, which rounds correctly (RapidJSON
/// 1.1's default number parse does not, and its full-precision one has
/// undefined behaviour on some inputs). So a filter's source, where numbers
/// are written in their shortest form, compiles to exactly the same filter.
class exact_numbers {
 public:
  explicit exact_numbers(rapidjson::Document& doc) : doc_(doc) {
    // nop
  }

  bool Null() {
    return doc_.Null();
  }
  bool Bool(bool x) {
    return doc_.Bool(x);
  }
  bool Int(int x) {
    return doc_.Int(x);
  }
  bool Uint(unsigned x) {
    return doc_.Uint(x);
  }
  bool Int64(int64_t x) {
    return doc_.Int64(x);
  }
  bool Uint64(uint64_t x) {
    return doc_.Uint64(x);
  }
  bool Double(double x) {
    return doc_.Double(x);
  }

  bool RawNumber(const char* str, rapidjson::SizeType len, bool) {
    std::string_view text{str, len};
    auto first = text.data();
    auto last = first + text.size();
    if (text.find_first_of(".eE") == std::string_view::npos) {
      if (text.front() == '-') {
        int64_t i = 0;
        if (auto [end, ec] = std::from_chars(first, last, i);
            ec == std::errc{} && end == last)
          return doc_.Int64(i);
      } else {
        uint64_t u = 0;
        if (auto [end, ec] = std::from_chars(first, last, u);
            ec == std::errc{} && end == last)
          return doc_.Uint64(u);
      }
    }
    double d = 0;
    auto [end, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range) {
      // Too small for a double reads as zero, as RapidJSON reads it; too
      // large is an error, as in RapidJSON.
      std::string copy{text};
      d = std::strtod(copy.c_str(), nullptr);
      if (d != 0)
        return false;
    } else if (ec != std::errc{} || end != last) {
      return false;
    }
    return doc_.Double(d);
  }

  bool String(const char* str, rapidjson::SizeType len, bool copy) {
    return doc_.String(str, len, copy);
  }
  bool StartObject() {
    return doc_.StartObject();
  }
  bool Key(const char* str, rapidjson::SizeType len, bool copy) {
    return doc_.Key(str, len, copy);
  }
  bool EndObject(rapidjson::SizeType n) {
    return doc_.EndObject(n);
  }
  bool StartArray() {
    return doc_.StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    return doc_.EndArray(n);
  }

 private:
  rapidjson::Document& doc_;
};

caf::error bad_filter(std::string what) {
  return caf::make_error(caf::sec::invalid_argument,
                         "invalid filter: " + std::move(what));
}

std::string_view view(const rapidjson::Value& x) {
  return {x.GetString(), x.GetStringLength()};
}

} // namespace

std::string validate_tags(const tag_map& tags) {
  if (tags.size() > max_tags)
    return "at most " + std::to_string(max_tags) + " tags";
  for (auto& [key, value] : tags)
    if (key.size() > max_tag_size || value.size() > max_tag_size)
      return "tag keys and values are at most " + std::to_string(max_tag_size)
        + " bytes";
  return {};
}

/// Compiles a parsed expression into tag_filter's pre-order node list.
class filter_compiler {
 public:
  std::vector<tag_filter::node> nodes;
  std::string error;

  bool compile(const rapidjson::Value& x, size_t depth) {
    if (depth > tag_filter::max_depth)
      return fail("deeper than " + std::to_string(tag_filter::max_depth)
                  + " levels");
    if (nodes.size() == tag_filter::max_nodes)
      return fail("more than " + std::to_string(tag_filter::max_nodes)
                  + " nodes");
    if (!x.IsObject())
      return fail("an expression is a JSON object");
    if (x.MemberCount() == 1) {
      auto& m = *x.MemberBegin();
      auto name = view(m.name);
      if (name == "and" || name == "or")
        return compile_list(name == "and" ? op::all_of : op::any_of, m.value,
                            depth);
      if (name == "not")
        return compile_not(m.value, depth);
    }
    return compile_comparison(x);
  }

 private:
  using op = tag_filter::op;

  bool fail(std::string what) {
    if (error.empty())
      error = std::move(what);
    return false;
  }

  bool compile_list(op kind, const rapidjson::Value& items, size_t depth) {
    if (!items.IsArray() || items.Empty())
      return fail("\"and\" and \"or\" take a non-empty array of expressions");
    auto index = nodes.size();
    nodes.emplace_back().kind = kind;
    for (auto& item : items.GetArray())
      if (!compile(item, depth + 1))
        return false;
    nodes[index].size = static_cast<uint32_t>(nodes.size() - index);
    return true;
  }

  bool compile_not(const rapidjson::Value& inner, size_t depth) {
    auto index = nodes.size();
    nodes.emplace_back().kind = op::negate;
    if (!compile(inner, depth + 1))
      return false;
    nodes[index].size = static_cast<uint32_t>(nodes.size() - index);
    return true;
  }

  bool compile_comparison(const rapidjson::Value& x) {
    const rapidjson::Value* key = nullptr;
    const rapidjson::Value* oper = nullptr;
    const rapidjson::Value* value = nullptr;
    const rapidjson::Value* values = nullptr;
    for (auto& m : x.GetObject()) {
      auto name = view(m.name);
      if (name == "key")
        key = &m.value;
      else if (name == "op")
        oper = &m.value;
      else if (name == "value")
        value = &m.value;
      else if (name == "values")
        values = &m.value;
      else
        return fail("unknown field \"" + std::string{name}
                    + "\" (a comparison has key, op and value or values; "
                      "a group is one of and, or, not)");
    }
    if (!key || !key->IsString())
      return fail("a comparison needs \"key\", a string");
    if (key->GetStringLength() > max_tag_size)
      return fail("keys are at most " + std::to_string(max_tag_size)
                  + " bytes");
    if (!oper || !oper->IsString())
      return fail("a comparison needs \"op\", a string");
    tag_filter::node n;
    n.key = std::string{view(*key)};
    auto name = view(*oper);
    static constexpr std::pair<std::string_view, op> ops[] = {
      {"eq", op::eq},         {"neq", op::neq},         {"starts", op::starts},
      {"gt", op::gt},         {"gte", op::gte},         {"lt", op::lt},
      {"lte", op::lte},       {"in", op::in},           {"nin", op::nin},
      {"exists", op::exists}, {"nexists", op::nexists},
    };
    auto i = std::find_if(std::begin(ops), std::end(ops), [name](auto& kvp) {
      return kvp.first == name;
    });
    if (i == std::end(ops))
      return fail("unknown op \"" + std::string{name.substr(0, 32)}
                  + "\" (eq, neq, starts, gt, gte, lt, lte, in, nin, exists, "
                    "nexists)");
    n.kind = i->second;
    switch (n.kind) {
      case op::eq:
      case op::neq:
      case op::starts:
        if (values || !value || !value->IsString())
          return fail("\"" + std::string{name}
                      + "\" needs \"value\", a string");
        if (value->GetStringLength() > max_tag_size)
          return fail("values are at most " + std::to_string(max_tag_size)
                      + " bytes");
        n.value = std::string{view(*value)};
        break;
      case op::gt:
      case op::gte:
      case op::lt:
      case op::lte: {
        bool ok = false;
        if (!values && value && value->IsNumber()) {
          n.number = value->GetDouble();
          ok = std::isfinite(n.number);
        } else if (!values && value && value->IsString()) {
          ok = read_number(view(*value), n.number);
        }
        if (!ok)
          return fail("\"" + std::string{name}
                      + "\" needs \"value\", a number (or a string "
                        "holding one)");
        break;
      }
      case op::in:
      case op::nin:
        if (value || !values || !values->IsArray())
          return fail("\"" + std::string{name}
                      + "\" needs \"values\", an array of strings");
        if (values->Size() > max_filter_values)
          return fail("at most " + std::to_string(max_filter_values)
                      + " values");
        for (auto& v : values->GetArray()) {
          if (!v.IsString())
            return fail("\"" + std::string{name}
                        + "\" needs \"values\", an array of strings");
          n.values.emplace_back(view(v));
        }
        break;
      default: // exists, nexists
        if (value || values)
          return fail("\"" + std::string{name} + "\" takes no value");
    }
    nodes.push_back(std::move(n));
    return true;
  }
};

caf::expected<tag_filter> tag_filter::parse(std::string_view json) {
  if (json.size() > max_filter_size)
    return bad_filter("longer than " + std::to_string(max_filter_size)
                      + " bytes");
  rapidjson::Document doc;
  // Strings must be UTF-8 (the source is written back as JSON text);
  // numbers come as text to exact_numbers.
  constexpr unsigned flags = rapidjson::kParseIterativeFlag
    | rapidjson::kParseValidateEncodingFlag
    | rapidjson::kParseNumbersAsStringsFlag;
  bool parsed = false;
  auto generate = [&](rapidjson::Document& d) {
    rapidjson::Reader reader;
    rapidjson::MemoryStream ms{json.data(), json.size()};
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream>
      in{ms};
    exact_numbers handler{d};
    parsed = !reader.Parse<flags>(in, handler).IsError();
    return parsed;
  };
  doc.Populate(generate);
  if (!parsed)
    return bad_filter("not JSON (or not UTF-8)");
  filter_compiler c;
  if (!c.compile(doc, 1))
    return bad_filter(std::move(c.error));
  tag_filter result;
  result.nodes_ = std::move(c.nodes);
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  doc.Accept(w);
  result.source_.assign(buf.GetString(), buf.GetSize());
  // RapidJSON decodes a lone "\udc00" escape into the UTF-8 form of a
  // surrogate, which is no UTF-8 at all (ED A0..BF ..): refused, as the
  // codec refuses it everywhere else.
  for (size_t i = 0; i + 1 < result.source_.size(); ++i)
    if (static_cast<unsigned char>(result.source_[i]) == 0xED
        && static_cast<unsigned char>(result.source_[i + 1]) >= 0xA0)
      return bad_filter("a string holds a lone surrogate");
  return result;
}

bool tag_filter::matches(const tag_map& tags) const noexcept {
  return nodes_.empty() || eval(0, tags);
}

bool tag_filter::eval(size_t index, const tag_map& tags) const noexcept {
  auto& n = nodes_[index];
  switch (n.kind) {
    case op::all_of:
    case op::any_of: {
      bool any = n.kind == op::any_of;
      for (auto i = index + 1; i < index + n.size; i += nodes_[i].size)
        if (eval(i, tags) == any)
          return any;
      return !any;
    }
    case op::negate: return !eval(index + 1, tags);
    default: break;
  }
  auto i = tags.find(std::string_view{n.key});
  if (i == tags.end())
    return n.kind == op::neq || n.kind == op::nin || n.kind == op::nexists;
  auto& v = i->second;
  double x = 0;
  switch (n.kind) {
    case op::eq: return v == n.value;
    case op::neq: return v != n.value;
    case op::starts: return v.compare(0, n.value.size(), n.value) == 0;
    case op::gt: return read_number(v, x) && x > n.number;
    case op::gte: return read_number(v, x) && x >= n.number;
    case op::lt: return read_number(v, x) && x < n.number;
    case op::lte: return read_number(v, x) && x <= n.number;
    case op::in:
      return std::find(n.values.begin(), n.values.end(), v) != n.values.end();
    case op::nin:
      return std::find(n.values.begin(), n.values.end(), v) == n.values.end();
    case op::exists: return true;
    default: return false; // nexists
  }
}

} // namespace livehub
