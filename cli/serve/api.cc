// The JSON API of `xent serve`: requests are checked field by field here,
// then computed by the same functions as `xent explain` (so the page and the
// command line can never disagree) or by libxent directly.
#include "api.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <set>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "common.h"
#include "explain.h"
#include "xent/core.h"
#include "xent/error.h"
#include "xent/gradcheck.h"
#include "xent/smoothing.h"

namespace xent::cli::serve {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& message) { throw ApiError(400, message); }

// Rejects fields the endpoint does not know: a typo ("logit") would
// otherwise be silently ignored and the page would show the wrong case.
void check_fields(const json& j, std::initializer_list<const char*> known, std::string_view where) {
  const std::set<std::string> allowed(known.begin(), known.end());
  for (const auto& [key, value] : j.items())
    if (!allowed.count(key)) bad(fmt::format("{}: unknown field '{}'", where, key));
}

double to_double(const json& v, std::string_view field, std::size_t index) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {  // the output's spelling of the infinities
    const auto& s = v.get_ref<const std::string&>();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "inf") return std::numeric_limits<double>::infinity();
  }
  bad(fmt::format("{}[{}]: expected a number (or \"-inf\"/\"inf\"), got {}", field, index,
                  v.dump().substr(0, 40)));
}

std::vector<double> number_list(const json& j, const char* field) {
  const json& a = j.at(field);
  if (!a.is_array()) bad(fmt::format("{}: expected an array of numbers", field));
  if (a.empty()) bad(fmt::format("{}: is empty (need at least one class)", field));
  if (a.size() > kMaxClasses)
    bad(fmt::format("{}: {} entries; the explorer accepts at most {} classes", field, a.size(),
                    kMaxClasses));
  std::vector<double> v;
  v.reserve(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) v.push_back(to_double(a[i], field, i));
  return v;
}

Unit unit_of(const json& j) {
  if (!j.contains("unit")) return Unit::kNats;
  const json& u = j["unit"];
  if (u == "nats") return Unit::kNats;
  if (u == "bits") return Unit::kBits;
  bad(fmt::format("unit: expected \"nats\" or \"bits\", got {}", u.dump().substr(0, 40)));
}

bool flag(const json& j, const char* field) {
  if (!j.contains(field)) return false;
  if (!j[field].is_boolean()) bad(fmt::format("{}: expected true or false", field));
  return j[field].get<bool>();
}

double number(const json& j, const char* field) {
  const json& v = j.at(field);
  if (!v.is_number()) bad(fmt::format("{}: expected a number, got {}", field, v.dump().substr(0, 40)));
  return v.get<double>();
}

// Runs f, turning the errors of the computation into 400s that keep their
// message (xent::Error names the function, argument and value).
template <class F>
json computed(F&& f) {
  try {
    return f();
  } catch (const xent::Error& e) {
    bad(e.what());
  } catch (const UsageError& e) {
    bad(e.what());
  }
}

std::size_t classes_of(const json& r) {
  std::size_t k = 0;
  for (const char* f : {"p", "q", "logits"})
    if (r.is_object() && r.contains(f) && r[f].is_array()) k = std::max(k, r[f].size());
  return k;
}

}  // namespace

std::size_t request_classes(const json& r) {
  if (r.is_object() && r.contains("requests") && r["requests"].is_array()) {
    std::size_t total = 0;
    for (const json& item : r["requests"]) total += classes_of(item);
    return total;
  }
  return classes_of(r);
}

json parse_body(std::string_view body) {
  std::size_t values = 0;
  // Counted while parsing: a 50 MB array is refused after kMaxJsonValues
  // elements instead of being built first.
  auto limit = [&values](int depth, json::parse_event_t event, json&) {
    if (depth > 16) throw ApiError(400, "bad JSON: nested deeper than 16 levels");
    if (event == json::parse_event_t::value && ++values > kMaxJsonValues)
      throw ApiError(413, fmt::format("request too large: more than {} JSON values", kMaxJsonValues));
    return true;
  };
  json j;
  try {
    j = json::parse(body.begin(), body.end(), limit);
  } catch (const json::parse_error& e) {
    bad(fmt::format("bad JSON: {}", e.what()));
  }
  if (!j.is_object()) bad("bad JSON: the request body must be a JSON object");
  return j;
}

namespace {

// A checked explain request: the options of `xent explain`, and whether the
// per-class "rows" objects are replaced by the one column they add.
struct ExplainRequest {
  ExplainOptions o;
  bool compact = false;
};

ExplainRequest parse_explain(const json& r) {
  if (!r.is_object()) bad("explain: the request must be a JSON object");
  check_fields(r,
               {"p", "q", "logits", "target", "smoothing", "smoothing_mode", "unit", "compare_mse",
                "double_softmax", "preset", "compact"},
               "explain");
  ExplainRequest e;
  ExplainOptions& o = e.o;
  o.unit = unit_of(r);
  o.json = true;
  if (r.contains("p")) o.p = number_list(r, "p");
  if (r.contains("q")) o.q = number_list(r, "q");
  if (r.contains("logits")) o.logits = number_list(r, "logits");
  if (r.contains("target")) {
    const json& t = r["target"];
    if (!t.is_number_integer() || t.get<long long>() < 0)
      bad(fmt::format("target: expected a class index (an integer >= 0), got {}",
                      t.dump().substr(0, 40)));
    o.target = t.get<long long>();
  }
  if (r.contains("smoothing")) o.smoothing = number(r, "smoothing");
  if (r.contains("smoothing_mode")) {
    const json& m = r["smoothing_mode"];
    if (m == "uniform") o.smoothing_mode = Smoothing::kUniform;
    else if (m == "off-target") o.smoothing_mode = Smoothing::kOffTarget;
    else bad("smoothing_mode: expected \"uniform\" or \"off-target\"");
    if (!o.smoothing) bad("smoothing_mode needs smoothing");
  }
  e.compact = flag(r, "compact");
  o.compare_mse = flag(r, "compare_mse");
  o.double_softmax = flag(r, "double_softmax");
  if (r.contains("preset")) {
    if (!r["preset"].is_string()) bad("preset: expected a name");
    if (o.p || o.q || o.logits || o.target)
      bad("preset defines the case: it cannot be combined with p, q, logits or target");
    o.preset = r["preset"].get<std::string>();
    computed([&] { apply_preset(o); return json(); });
  }
  // The same combinations as `xent explain` accepts (cli/cmd_explain.cc).
  if (o.logits) {
    if (o.q) bad("q cannot be combined with logits (q is softmax(logits))");
    if (o.target && o.p) bad("give either target or p with logits, not both");
    if (!o.target && !o.p) bad("logits needs a target: target (an index) or p (a distribution)");
    if (o.p && o.p->size() != o.logits->size())
      bad(fmt::format("p has {} entries but logits has {}", o.p->size(), o.logits->size()));
  } else {
    if (o.target) bad("target needs logits");
    if (o.smoothing) bad("smoothing needs logits");
    if (!o.p || !o.q) bad("give p and q (two distributions), or logits with a target");
    if (o.compare_mse || o.double_softmax) bad("compare_mse and double_softmax need logits");
  }
  return e;
}

// The compact object from `xent explain --json`'s: the per-class "rows"
// objects repeat the arrays logits/probs/targets/grad; only the loss terms
// are new. At K = 1000 this halves the answer.
json compact_json(json j) {
  json terms = json::array();
  for (const json& w : j["rows"]) terms.push_back(w["loss_term"]);
  j.erase("rows");
  j["loss_terms"] = std::move(terms);
  return j;
}

// A double as JSON text the way `xent explain --json` means it (jnum in
// cli/explain_output.cc): the shortest digits that round-trip (so the page
// parses the very same double), 0 for ±0, the strings "inf"/"-inf".
void append_number(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "\"inf\"" : "\"-inf\"";
  } else if (std::isnan(v)) {
    out += "\"nan\"";
  } else if (v == 0) {
    out += '0';
  } else {
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    out.append(buf, end);
  }
}

template <class Get>
void append_column(std::string& out, const char* name, const std::vector<LogitsRow>& rows, Get get) {
  out += ",\"";
  out += name;
  out += "\":[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i) out += ',';
    append_number(out, get(rows[i]));
  }
  out += ']';
}

// The compact answer of a logits case as text, the same object as
// compact_json(render_json(r)) but written straight from the K rows: the
// slider loop of the page asks for it on every move, and building 5·K JSON
// values (and K row objects) and printing them took most of the server's
// ~2 ms at K = 1000. The other fields come from render_json itself (on the
// result without its rows), so the two can't drift apart.
std::string compact_text(LogitsResult r) {
  const std::vector<LogitsRow> rows = std::move(r.rows);
  r.rows.clear();
  json head = render_json(r);
  for (const char* f : {"k", "logits", "targets", "probs", "grad", "rows"}) head.erase(f);
  std::string out = to_text(head);
  out.pop_back();  // the closing brace; head is never empty ("case", "unit", ...)
  out.reserve(out.size() + rows.size() * 5 * 24 + 128);
  out += ",\"k\":" + std::to_string(rows.size());
  append_column(out, "logits", rows, [](const LogitsRow& w) { return w.logit; });
  append_column(out, "targets", rows, [](const LogitsRow& w) { return w.target; });
  append_column(out, "probs", rows, [](const LogitsRow& w) { return w.prob; });
  append_column(out, "grad", rows, [](const LogitsRow& w) { return w.grad; });
  append_column(out, "loss_terms", rows, [](const LogitsRow& w) { return w.loss_term; });
  out += '}';
  return out;
}

}  // namespace

std::string to_text(const json& j) {
  // Invalid UTF-8 (say, in a field name echoed in an error) is replaced
  // rather than thrown on.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

json explain_json(const ExplainRequest& e) {
  return computed([&] {
    if (!e.o.logits) return render_json(explain_discrete(*e.o.p, *e.o.q, e.o.unit));
    json j = render_json(explain_logits(e.o));
    return e.compact ? compact_json(std::move(j)) : j;
  });
}

}  // namespace

json explain(const json& r) { return explain_json(parse_explain(r)); }

std::string explain_text(const json& r) {
  const ExplainRequest e = parse_explain(r);
  if (!e.o.logits || !e.compact) return to_text(explain_json(e));
  LogitsResult result;
  computed([&] { result = explain_logits(e.o); return json(); });
  return compact_text(std::move(result));
}

std::string batch_text(const json& r) {
  check_fields(r, {"requests"}, "batch");
  if (!r.contains("requests") || !r["requests"].is_array()) bad("batch: expected \"requests\": [...]");
  const json& list = r["requests"];
  if (list.size() > kMaxBatch)
    bad(fmt::format("batch: {} requests; at most {} per batch", list.size(), kMaxBatch));
  const std::size_t total = request_classes(r);
  if (total > kMaxBatchClasses)
    bad(fmt::format("batch: {} classes in total; at most {} per batch", total, kMaxBatchClasses));
  std::string out = "{\"results\":[";
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (i) out += ',';
    try {
      out += explain_text(list[i]);
    } catch (const ApiError& e) {
      throw ApiError(e.status(), fmt::format("requests[{}]: {}", i, e.what()));
    }
  }
  return out + "]}";
}

json curve(const json& r) {
  check_fields(r, {"p", "unit", "samples"}, "curve");
  const Unit unit = unit_of(r);
  const double x = number(r, "p");
  if (!(x > 0 && x < 1)) bad(fmt::format("p: {} is outside (0, 1)", x));
  int n = 200;
  if (r.contains("samples")) {
    if (!r["samples"].is_number_integer()) bad("samples: expected an integer");
    const long long s = r["samples"].get<long long>();
    if (s < 2 || s > kMaxCurveSamples)
      bad(fmt::format("samples: {} is outside [2, {}]", s, kMaxCurveSamples));
    n = static_cast<int>(s);
  }
  return computed([&] {
    json pts = json::array();
    for (int i = 0; i < n; ++i) {
      // Midpoints of n equal cells of (0, 1): never 0 or 1, where −log is +inf.
      const double p = (i + 0.5) / n;
      pts.push_back({p, xent::binary_cross_entropy<double>(1.0, p, unit),
                     xent::binary_cross_entropy<double>(0.0, p, unit)});
    }
    // The derivative of −log p with respect to p is −1/p (of −log(1 − p):
    // 1/(1 − p)); in bits both are divided by ln 2. gradcheck confirms the
    // first against libxent's own values by finite differences.
    const double slope1 = to_unit(-1.0 / x, unit), slope0 = to_unit(1.0 / (1.0 - x), unit);
    const double xs[1] = {x}, gs[1] = {slope1};
    const GradcheckResult check = gradcheck(
        [unit](std::span<const double> v) { return xent::binary_cross_entropy<double>(1.0, v[0], unit); },
        std::span<const double>(xs), std::span<const double>(gs));
    const double z = std::log(x) - std::log1p(-x);  // the logit whose sigmoid is x
    return json{
        {"unit", unit == Unit::kBits ? "bits" : "nats"},
        {"columns", {"p", "bce_y1", "bce_y0"}},
        {"points", pts},
        {"at",
         {{"p", x},
          {"neg_log_p", xent::binary_cross_entropy<double>(1.0, x, unit)},
          {"neg_log_1mp", xent::binary_cross_entropy<double>(0.0, x, unit)},
          {"slope_y1", slope1},
          {"slope_y0", slope0},
          {"slope_fd_rel_error", check.max_rel_error},
          {"logit", z},
          {"logit_grad_y1", to_unit(xent::binary_cross_entropy_with_logits_grad<double>(1.0, z), unit)},
          {"logit_grad_y0", to_unit(xent::binary_cross_entropy_with_logits_grad<double>(0.0, z), unit)}}}};
  });
}

json presets() {
  json list = json::array();
  for (const Preset& p : cli::presets()) {
    ExplainOptions o;
    o.preset = p.name;
    apply_preset(o);
    json item = {{"name", p.name}, {"lesson", p.lesson}, {"logits", *o.logits}};
    if (o.target) item["target"] = *o.target;
    if (o.p) item["p"] = *o.p;
    list.push_back(item);
  }
  return {{"presets", list}};
}

}  // namespace xent::cli::serve
