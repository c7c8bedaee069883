// Precompiled for every CAF translation unit.
#pragma once
#include <caf/all.hpp>
#include <caf/io/all.hpp>
