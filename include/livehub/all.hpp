// Umbrella header: everything an application needs to embed livehub.
#pragma once

#include "livehub/config.hpp"
#include "livehub/filter.hpp"
#include "livehub/fwd.hpp"
#include "livehub/hub.hpp"
#include "livehub/identity.hpp"
#include "livehub/json.hpp"
#include "livehub/main.hpp"
#include "livehub/messages.hpp"
#include "livehub/observer.hpp"
#include "livehub/server.hpp"
