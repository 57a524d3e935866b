// Forward declarations of livehub's public types.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace livehub {

struct hub_config;
struct hub_stats;
struct publication;
class json_text;
class server;

/// A publication encoded once as its wire frame, shared by every delivery.
using frame_ptr = std::shared_ptr<const std::string>;

} // namespace livehub
