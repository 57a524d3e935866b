// A strict JSON validator for the fuzz targets' invariants, independent of
// RapidJSON (which refuses valid numbers such as 1e400): RFC 8259's grammar,
// UTF-8 without overlong forms or surrogates, and no lone surrogate in a
// \u escape (I-JSON, RFC 7493), as browsers' JSON.parse and every other
// client must read livehub's frames.
#pragma once

#include <cstddef>
#include <string_view>

namespace livehub::fuzz {

class strict_json {
 public:
  /// True when `text` is exactly one JSON value (with optional whitespace)
  /// nested at most `max_depth` levels.
  static bool valid(std::string_view text, size_t max_depth = 256) {
    strict_json p{text, max_depth};
    p.space();
    if (!p.value(0))
      return false;
    p.space();
    return p.i_ == text.size();
  }

  /// Like valid(), and the value is an object.
  static bool object(std::string_view text) {
    size_t i = 0;
    while (i < text.size() && is_space(text[i]))
      ++i;
    return i < text.size() && text[i] == '{' && valid(text);
  }

 private:
  strict_json(std::string_view s, size_t max_depth)
    : s_(s), max_depth_(max_depth) {
    // nop
  }

  static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  }

  bool at(char c) const {
    return i_ < s_.size() && s_[i_] == c;
  }

  bool eat(char c) {
    if (!at(c))
      return false;
    ++i_;
    return true;
  }

  void space() {
    while (i_ < s_.size() && is_space(s_[i_]))
      ++i_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word)
      return false;
    i_ += word.size();
    return true;
  }

  bool value(size_t depth) {
    if (i_ >= s_.size())
      return false;
    switch (s_[i_]) {
      case '{': return depth < max_depth_ && object_value(depth + 1);
      case '[': return depth < max_depth_ && array_value(depth + 1);
      case '"': return string_value();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }

  bool object_value(size_t depth) {
    ++i_; // {
    space();
    if (eat('}'))
      return true;
    for (;;) {
      space();
      if (!at('"') || !string_value())
        return false;
      space();
      if (!eat(':'))
        return false;
      space();
      if (!value(depth))
        return false;
      space();
      if (eat('}'))
        return true;
      if (!eat(','))
        return false;
    }
  }

  bool array_value(size_t depth) {
    ++i_; // [
    space();
    if (eat(']'))
      return true;
    for (;;) {
      space();
      if (!value(depth))
        return false;
      space();
      if (eat(']'))
        return true;
      if (!eat(','))
        return false;
    }
  }

  bool digits() {
    auto start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9')
      ++i_;
    return i_ > start;
  }

  bool number() {
    eat('-');
    if (!eat('0') && !digits())
      return false;
    if (eat('.') && !digits())
      return false;
    if (eat('e') || eat('E')) {
      if (!eat('+'))
        eat('-');
      if (!digits())
        return false;
    }
    return true;
  }

  int hex4() {
    if (i_ + 4 > s_.size())
      return -1;
    int x = 0;
    for (int k = 0; k < 4; ++k) {
      auto c = s_[i_++];
      x *= 16;
      if (c >= '0' && c <= '9')
        x += c - '0';
      else if (c >= 'a' && c <= 'f')
        x += c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        x += c - 'A' + 10;
      else
        return -1;
    }
    return x;
  }

  bool escape() {
    if (i_ >= s_.size())
      return false;
    auto c = s_[i_++];
    if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n'
        || c == 'r' || c == 't')
      return true;
    if (c != 'u')
      return false;
    auto x = hex4();
    if (x < 0 || (x >= 0xdc00 && x <= 0xdfff))
      return false; // malformed, or a low surrogate alone
    if (x < 0xd800 || x > 0xdbff)
      return true;
    // A high surrogate must be followed by an escaped low one.
    if (!literal("\\u"))
      return false;
    auto y = hex4();
    return y >= 0xdc00 && y <= 0xdfff;
  }

  /// One UTF-8 sequence starting at a byte >= 0x80.
  bool utf8() {
    auto byte = [&](size_t k) {
      return static_cast<unsigned char>(s_[k]);
    };
    auto b0 = byte(i_);
    size_t n;
    unsigned cp;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      n = 1;
      cp = b0 & 0x1f;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      n = 2;
      cp = b0 & 0x0f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      n = 3;
      cp = b0 & 0x07;
    } else {
      return false;
    }
    if (i_ + n >= s_.size())
      return false;
    for (size_t k = 1; k <= n; ++k) {
      auto b = byte(i_ + k);
      if ((b & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (b & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i_ += n + 1;
    return true;
  }

  bool string_value() {
    ++i_; // "
    while (i_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20)
        return false;
      if (c == '\\') {
        ++i_;
        if (!escape())
          return false;
      } else if (c >= 0x80) {
        if (!utf8())
          return false;
      } else {
        ++i_;
      }
    }
    return false;
  }

  std::string_view s_;
  size_t max_depth_;
  size_t i_ = 0;
};

} // namespace livehub::fuzz
