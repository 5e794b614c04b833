#include "demo/report.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include <fmt/format.h>

namespace xent::demo {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};

struct Series {
  std::string name;
  std::string color;
  std::vector<double> x, y;
  bool dashed = false;
  std::vector<double> weight;  // optional: dot area proportional to it
};

struct Panel {
  double left, top, width, height;  // pixels of the plot area
  std::string title, xlabel, ylabel;
  double x0, x1, y0, y1;
  bool log_y = false;
  bool legend_bottom = false;  // legend in the lower right corner (else upper right)
};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

double map_y(const Panel& p, double y) {
  double t;
  if (p.log_y) t = (std::log10(y) - std::log10(p.y0)) / (std::log10(p.y1) - std::log10(p.y0));
  else t = (y - p.y0) / (p.y1 - p.y0);
  return p.top + p.height * (1 - t);
}
double map_x(const Panel& p, double x) { return p.left + p.width * (x - p.x0) / (p.x1 - p.x0); }

// "Nice" tick values covering [a, b].
std::vector<double> ticks(double a, double b, int target = 5) {
  const double span = b - a;
  const double raw = span / target;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) { step = m * mag; break; }
  std::vector<double> t;
  for (double v = std::ceil(a / step) * step; v <= b + step * 1e-9; v += step) t.push_back(v);
  return t;
}

void draw_panel(std::ostringstream& o, const Panel& p, const std::vector<Series>& series) {
  o << fmt::format("<rect x='{:.1f}' y='{:.1f}' width='{:.1f}' height='{:.1f}' fill='white' stroke='#333'/>\n",
                   p.left, p.top, p.width, p.height);
  o << fmt::format("<text x='{:.1f}' y='{:.1f}' text-anchor='middle' font-size='14' font-weight='bold'>{}</text>\n",
                   p.left + p.width / 2, p.top - 10, esc(p.title));
  // x ticks
  for (double t : ticks(p.x0, p.x1)) {
    const double x = map_x(p, t);
    o << fmt::format("<line x1='{0:.1f}' y1='{1:.1f}' x2='{0:.1f}' y2='{2:.1f}' stroke='#ddd'/>\n", x, p.top, p.top + p.height);
    o << fmt::format("<text x='{:.1f}' y='{:.1f}' text-anchor='middle' font-size='11'>{:g}</text>\n", x, p.top + p.height + 15, t);
  }
  // y ticks
  std::vector<double> yt;
  if (p.log_y) {
    for (double d = std::floor(std::log10(p.y0)); d <= std::ceil(std::log10(p.y1)); d += 1)
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10, d);
        if (v >= p.y0 && v <= p.y1) yt.push_back(v);
      }
  } else {
    yt = ticks(p.y0, p.y1);
  }
  for (double t : yt) {
    const double y = map_y(p, t);
    o << fmt::format("<line x1='{0:.1f}' y1='{1:.1f}' x2='{2:.1f}' y2='{1:.1f}' stroke='#ddd'/>\n", p.left, y, p.left + p.width);
    o << fmt::format("<text x='{:.1f}' y='{:.1f}' text-anchor='end' font-size='11'>{:g}</text>\n", p.left - 5, y + 4, t);
  }
  o << fmt::format("<text x='{:.1f}' y='{:.1f}' text-anchor='middle' font-size='12'>{}</text>\n",
                   p.left + p.width / 2, p.top + p.height + 34, esc(p.xlabel));
  o << fmt::format("<text transform='translate({:.1f},{:.1f}) rotate(-90)' text-anchor='middle' font-size='12'>{}</text>\n",
                   p.left - 42, p.top + p.height / 2, esc(p.ylabel));
  for (const auto& s : series) {
    std::string pts;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (p.log_y && s.y[i] <= 0)) continue;
      const double y = std::clamp(s.y[i], p.y0, p.y1);
      pts += fmt::format("{:.1f},{:.1f} ", map_x(p, s.x[i]), map_y(p, y));
    }
    o << fmt::format("<polyline fill='none' stroke='{}' stroke-width='{}'{} points='{}'/>\n", s.color,
                     s.dashed ? 1 : 2, s.dashed ? " stroke-dasharray='4 3'" : "", pts);
    double wmax = 0;
    for (double w : s.weight) wmax = std::max(wmax, w);
    if (s.x.size() <= 20)
      for (std::size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.y[i])) {
          const double r = wmax > 0 ? 1.5 + 6.0 * std::sqrt(s.weight[i] / wmax) : 3.0;
          o << fmt::format("<circle cx='{:.1f}' cy='{:.1f}' r='{:.1f}' fill='{}' fill-opacity='0.75'/>\n",
                           map_x(p, s.x[i]), map_y(p, std::clamp(s.y[i], p.y0, p.y1)), r, s.color);
        }
  }
  // legend, on a white box so lines under it stay readable
  std::size_t entries = 0, longest = 0;
  for (const auto& s : series)
    if (!s.name.empty()) ++entries, longest = std::max(longest, s.name.size());
  const double box_w = 34 + 6.2 * static_cast<double>(longest), box_h = 8 + 16 * static_cast<double>(entries);
  const double bx = p.left + p.width - box_w - 6;
  const double by = p.legend_bottom ? p.top + p.height - box_h - 6 : p.top + 6;
  o << fmt::format("<rect x='{:.1f}' y='{:.1f}' width='{:.1f}' height='{:.1f}' fill='white' fill-opacity='0.9' stroke='#bbb'/>\n",
                   bx, by, box_w, box_h);
  double ly = by + 12;
  for (const auto& s : series) {
    if (s.name.empty()) continue;
    o << fmt::format("<line x1='{:.1f}' y1='{:.1f}' x2='{:.1f}' y2='{:.1f}' stroke='{}' stroke-width='2'{}/>\n",
                     bx + 6, ly, bx + 26, ly, s.color, s.dashed ? " stroke-dasharray='4 3'" : "");
    o << fmt::format("<text x='{:.1f}' y='{:.1f}' font-size='11'>{}</text>\n", bx + 30, ly + 4, esc(s.name));
    ly += 16;
  }
}

// Moving average over `w` steps, so a minibatch objective is readable.
std::vector<double> smooth(const std::vector<double>& v, std::size_t w) {
  std::vector<double> o(v.size());
  double s = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    s += v[i];
    if (i >= w) s -= v[i - w];
    o[i] = s / static_cast<double>(std::min(i + 1, w));
  }
  return o;
}

}  // namespace

std::string render_report(const std::vector<RunResult>& runs, const std::string& title) {
  std::vector<Model> models;
  for (const auto& r : runs)
    if (std::find(models.begin(), models.end(), r.config.model) == models.end()) models.push_back(r.config.model);
  const double panel_w = 340, panel_h = 250, margin_l = 70, gap = 80, row_h = panel_h + 110;
  const double width = margin_l + 3 * panel_w + 2 * gap + 20;
  const double height = 60 + row_h * static_cast<double>(models.size());
  std::ostringstream o;
  o << fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{:.0f}' height='{:.0f}' "
                   "font-family='DejaVu Sans, Arial, sans-serif' role='img' aria-label='{}'>\n",
                   width, height, esc(title));
  o << fmt::format("<title>{}</title>\n<rect width='100%' height='100%' fill='#fafafa'/>\n", esc(title));
  o << fmt::format("<text x='{:.1f}' y='28' text-anchor='middle' font-size='18' font-weight='bold'>{}</text>\n",
                   width / 2, esc(title));
  for (std::size_t m = 0; m < models.size(); ++m) {
    std::vector<const RunResult*> rs;
    for (const auto& r : runs)
      if (r.config.model == models[m]) rs.push_back(&r);
    const double top = 70 + row_h * static_cast<double>(m);
    // Panel 1: training objective per step (moving average over one epoch).
    std::vector<Series> s1, s2, s3;
    double ymin = std::numeric_limits<double>::infinity(), ymax = 0, xmax = 1;
    for (std::size_t i = 0; i < rs.size(); ++i) {
      Series s{ObjectiveName(rs[i]->config.objective), kColors[i % 4], {}, {}};
      const std::size_t w = static_cast<std::size_t>(std::max<std::int64_t>(1, rs[i]->total_steps / std::max(1, rs[i]->config.epochs)));
      s.y = smooth(rs[i]->train_objective, w);
      for (std::size_t k = 0; k < s.y.size(); ++k) {
        s.x.push_back(static_cast<double>(k + 1));
        if (s.y[k] > 0) ymin = std::min(ymin, s.y[k]);
        ymax = std::max(ymax, s.y[k]);
      }
      xmax = std::max(xmax, static_cast<double>(s.y.size()));
      s1.push_back(std::move(s));
    }
    if (!(ymin < ymax)) ymin = ymax / 10;
    draw_panel(o, {margin_l, top, panel_w, panel_h,
                   std::string(ModelName(models[m])) + ": training objective",
                   "step (minibatch updates)", "objective on minibatch (nats; MSE: unitless)", 0, xmax,
                   std::pow(10, std::floor(std::log10(ymin))), std::pow(10, std::ceil(std::log10(ymax))), true},
               s1);
    // Panel 2: test cross-entropy per epoch.
    double nll_max = 0;
    for (std::size_t i = 0; i < rs.size(); ++i) {
      Series s{ObjectiveName(rs[i]->config.objective), kColors[i % 4], {}, {}};
      for (const auto& e : rs[i]->evals) {
        s.x.push_back(static_cast<double>(e.step));
        s.y.push_back(e.test_nll_nats);
        nll_max = std::max(nll_max, e.test_nll_nats);
      }
      s2.push_back(std::move(s));
    }
    draw_panel(o, {margin_l + panel_w + gap, top, panel_w, panel_h,
                   std::string(ModelName(models[m])) + ": held-out loss", "step (minibatch updates)",
                   "test cross-entropy (nats per example)", 0, xmax, 0, std::max(0.5, std::ceil(nll_max * 2) / 2), false},
               s2);
    // Panel 3: reliability diagram.
    s3.push_back({"perfect calibration", "#888", {0, 1}, {0, 1}, true});
    for (std::size_t i = 0; i < rs.size(); ++i) {
      Series s{fmt::format("{} (ECE {:.3f})", ObjectiveName(rs[i]->config.objective), rs[i]->ece), kColors[i % 4], {}, {}};
      const auto& c = rs[i]->calibration;
      for (int b = 0; b < c.bins(); ++b)
        if (c.count(b) > 0) {
          s.x.push_back(c.mean_confidence(b));
          s.y.push_back(c.accuracy(b));
          s.weight.push_back(static_cast<double>(c.count(b)));
        }
      s3.push_back(std::move(s));
    }
    draw_panel(o, {margin_l + 2 * (panel_w + gap), top, panel_w, panel_h,
                   std::string(ModelName(models[m])) + ": reliability (test)", "confidence (max probability)",
                   "accuracy in bin (dot area ~ rows)", 0, 1, 0, 1, false, true},
               s3);
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace xent::demo
