// cli/serve/api.h — the JSON API of `xent serve`, as plain functions.
//
// Every number the explorer page shows comes from here, and every number
// here comes from libxent or from the functions behind `xent explain`
// (explain_discrete, explain_logits): the page only draws. The handlers are
// free of HTTP so they can be tested and reused; cli/serve/server.cc maps
// them to routes and ApiError to HTTP status codes.
//
// Limits (why: a local server must stay small and responsive whatever a
// page or a script sends it):
//   * kMaxClasses entries per vector (K); more is a 400 naming the field.
//   * kMaxJsonValues JSON values per request body, enforced while parsing,
//     so a huge array is refused before it is held in memory.
//   * a batch holds at most kMaxBatch requests and kMaxBatchClasses classes
//     in total.
//   * request_classes() is the cost the server budgets (server.cc): about
//     1.3 kB of memory per class while the answer is built.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace xent::cli::serve {

inline constexpr std::size_t kMaxClasses = 100000;
inline constexpr std::size_t kMaxJsonValues = 300000;  // p and q at the cap, with room
inline constexpr std::size_t kMaxBatch = 512;
inline constexpr std::size_t kMaxBatchClasses = kMaxClasses;
inline constexpr int kMaxCurveSamples = 2001;

// A request the client can fix: bad JSON, a missing or unknown field, a value
// out of range, or invalid input rejected by libxent. `status` is the HTTP
// status to answer with (400, 413, ...).
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// Parses a request body as one JSON object, refusing more than
// kMaxJsonValues values (ApiError 413) and anything that is not an object
// (ApiError 400, with nlohmann's position of the syntax error).
nlohmann::json parse_body(std::string_view body);

// The classes a parsed request asks for (for a batch: over all its
// requests); what the server's work budget counts.
std::size_t request_classes(const nlohmann::json& request);

// POST /api/explain. The fields mirror `xent explain`'s options:
//   {"p": [...], "q": [...]}                          the discrete case
//   {"logits": [...], "target": t | "p": [...],       the logits case
//    "smoothing": ε, "smoothing_mode": "uniform" | "off-target",
//    "compare_mse": bool, "double_softmax": bool}
//   {"preset": "overconfident-wrong", ...}            a named logits case
// plus "unit": "nats" | "bits" (default nats). Numbers may be JSON numbers or
// the strings "-inf" / "inf" (how the output writes them). The answer is
// exactly `xent explain ... --json`'s object for the same case; with
// "compact": true (logits case) its "rows" objects are replaced by the one
// column they add, "loss_terms" (the page's slider loop uses this).
nlohmann::json explain(const nlohmann::json& request);
// The same answer as JSON text, what the server sends. A compact logits
// answer is written straight from the rows (the page's slider loop: at
// K = 1000 the server's whole work went from ~1.8 ms to ~0.4 ms); the numbers
// are the same doubles, printed with the shortest digits that round-trip.
std::string explain_text(const nlohmann::json& request);

// POST /api/batch: {"requests": [explain request, ...]} → {"results": [...]},
// as JSON text. One slider move of a panel is one round trip, whatever it draws.
std::string batch_text(const nlohmann::json& request);

// JSON text of a value, invalid UTF-8 replaced (never thrown on).
std::string to_text(const nlohmann::json& j);

// POST /api/curve: {"p": x in (0, 1), "unit", "samples": n} → the curves
// −log p and −log(1 − p) (binary cross-entropy for y = 1 and y = 0) at n
// points, and at x: both values, their derivatives −1/x and 1/(1 − x), the
// finite-difference check of the first (xent::gradcheck), and the gradient
// with respect to the logit, σ(z) − y, from libxent.
nlohmann::json curve(const nlohmann::json& request);

// GET /api/presets: the named logits cases of `xent explain --preset`, with
// the logits each resolves to.
nlohmann::json presets();

}  // namespace xent::cli::serve
