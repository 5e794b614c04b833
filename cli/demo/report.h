// The SVG report of `xent demo`: per model, the training objective and the
// test cross-entropy against the step, and a reliability diagram, for the
// three objectives. Hand-written SVG: no dependency, easy to test.
#pragma once

#include <string>
#include <vector>

#include "demo/train.h"

namespace xent::demo {

// runs: grouped by model, three objectives each. Returns the SVG text.
std::string render_report(const std::vector<RunResult>& runs, const std::string& title);

}  // namespace xent::demo
