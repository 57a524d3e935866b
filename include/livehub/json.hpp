// json_text: a JSON value held as validated, compact JSON text.
#pragma once

#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace livehub {

/// A JSON value held as text. Only `parse` makes one, so a `json_text` always
/// holds exactly one valid JSON value: numbers keep their exact digits,
/// strings their characters; insignificant whitespace is removed.
class json_text {
 public:
  /// The JSON `null`.
  json_text() : text_("null") {
    // nop
  }

  /// Validates `text` (UTF-8, at most `max_depth` levels of nesting) and
  /// returns it in compact form, or an error saying what is wrong.
  static caf::expected<json_text> parse(std::string_view text,
                                        size_t max_depth = 128);

  /// Wraps text already validated by livehub's codec.
  static json_text trusted(std::string text) {
    json_text result;
    result.text_ = std::move(text);
    return result;
  }

  const std::string& str() const noexcept {
    return text_;
  }

  friend bool operator==(const json_text& x, const json_text& y) {
    return x.text_ == y.text_;
  }

  template<class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, json_text& x) {
    return f(x.text_);
  }

 private:
  std::string text_;
};

} // namespace livehub
