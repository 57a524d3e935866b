// Tags on publications and filters over them (PROTOCOL.md, "Tags and
// filters"): a subscriber receives only the publications of its channel whose
// tags satisfy its filter.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

namespace livehub {

/// A publication's tags: string keys to string values, at most
/// `max_tags`, keys and values at most `max_tag_size` bytes each (see
/// validate_tags). Ordered by key, and searchable by `std::string_view`.
using tag_map = std::map<std::string, std::string, std::less<>>;

/// Most tags a publication may carry.
constexpr size_t max_tags = 16;

/// Longest tag key or value, in bytes.
constexpr size_t max_tag_size = 64;

/// An error message when `tags` break the limits above, else empty.
std::string validate_tags(const tag_map& tags);

/// A compiled filter expression over tags:
///
///     {"key":K,"op":OP,"value":V}     OP: eq neq starts gt gte lt lte
///     {"key":K,"op":"in","values":[V,...]}        (and nin)
///     {"key":K,"op":"exists"}                     (and nexists)
///     {"and":[E,...]}  {"or":[E,...]}  {"not":E}
///
/// `gt`, `gte`, `lt` and `lte` read the tag as a number (a tag that is not a
/// number does not match); their `value` is a number or a string holding
/// one. A publication without the key matches `neq`, `nin` and `nexists`
/// only. At most `max_nodes` nodes and `max_depth` levels.
///
/// Compiled once (parse); matches() allocates nothing. Immutable, so one
/// filter may be shared by many subscriptions and threads.
class tag_filter {
 public:
  static constexpr size_t max_nodes = 32;
  static constexpr size_t max_depth = 8;

  /// A filter that matches every publication (as no filter at all).
  tag_filter() = default;

  /// Compiles the JSON text of an expression. The error's context is a
  /// message saying what is wrong, for a `bad_command` reply.
  static caf::expected<tag_filter> parse(std::string_view json);

  /// Whether a publication with `tags` passes.
  bool matches(const tag_map& tags) const noexcept;

  /// The expression as JSON text (compact, as parsed); empty for the filter
  /// that matches everything.
  const std::string& source() const noexcept {
    return source_;
  }

  bool empty() const noexcept {
    return nodes_.empty();
  }

  friend bool operator==(const tag_filter& x, const tag_filter& y) {
    return x.source_ == y.source_;
  }

  friend bool operator!=(const tag_filter& x, const tag_filter& y) {
    return !(x == y);
  }

  template<class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, tag_filter& x) {
    // Serialized as its source text, compiled again when loaded.
    auto load = caf::meta::load_callback([&x]() -> caf::error {
      if (x.source_.empty()) {
        x.nodes_.clear();
        return caf::none;
      }
      auto compiled = parse(x.source_);
      if (!compiled)
        return std::move(compiled.error());
      x = std::move(*compiled);
      return caf::none;
    });
    return f(caf::meta::type_name("livehub.tag_filter"), x.source_, load);
  }

 private:
  enum class op : uint8_t {
    eq,
    neq,
    starts,
    gt,
    gte,
    lt,
    lte,
    in,
    nin,
    exists,
    nexists,
    all_of,
    any_of,
    negate,
  };

  /// One node. Children of `all_of`, `any_of` and `negate` follow their
  /// parent in `nodes_` (pre-order); `size` is the node's subtree length.
  struct node {
    op kind = op::exists;
    uint32_t size = 1;
    std::string key;
    std::string value;
    double number = 0;
    std::vector<std::string> values;
  };

  bool eval(size_t index, const tag_map& tags) const noexcept;

  std::vector<node> nodes_;
  std::string source_;

  friend class filter_compiler;
};

/// A shared, compiled filter; null means none (everything passes).
using tag_filter_ptr = std::shared_ptr<const tag_filter>;

/// True when `filter` is null or lets `tags` pass.
inline bool passes(const tag_filter_ptr& filter, const tag_map& tags) noexcept {
  return !filter || filter->matches(tags);
}

} // namespace livehub
