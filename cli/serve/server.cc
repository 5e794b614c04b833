// `xent serve`: routes, limits and error replies around the JSON API
// (api.cc) and the embedded page (web/, via assets.h).
//
// Robustness, by construction rather than by hope:
//   * every reply to a bad request is JSON {"error": "..."} with a 4xx code;
//     a handler can't take the process down (exceptions become 500s);
//   * memory is bounded: JSON bodies are capped (kMaxJsonBody, checked on
//     Content-Length before the body is read), JSON values counted while
//     parsing (api.cc), uploads streamed to disk, one evaluation at a time,
//     and httplib's fixed thread pool bounds the requests in flight.
#include "server.h"

#include <malloc.h>
#include <signal.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "api.h"
#include "assets.h"
#include "common.h"
#include "eval.h"
#include "npy.h"
#include "xent/error.h"
#include "xent/version.h"

extern char** environ;

namespace xent::cli::serve {
namespace {

using json = nlohmann::json;

// With a charset parameter, httplib does not compress the reply: its Brotli
// runs at quality 11 and took ~600 ms on a 150 kB answer (K = 1000), far
// beyond a frame; on the loopback interface compression buys nothing.
constexpr const char* kJson = "application/json; charset=utf-8";

std::string dump(const json& j) { return to_text(j); }

void reply_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(dump(json{{"error", message}, {"status", status}}), kJson);
}

const char* status_text(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 403: return "forbidden";
    case 411: return "length required";
    case 413: return "request body too large";
    case 414: return "URI too long";
    case 503: return "busy";
    default: return "error";
  }
}

bool is_upload_route(const std::string& path) { return path == "/api/eval"; }

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}

// "localhost:8321" → "localhost", "[::1]:8321" → "::1".
std::string host_name(const std::string& host_header) {
  if (!host_header.empty() && host_header[0] == '[') {
    const auto end = host_header.find(']');
    return end == std::string::npos ? host_header : host_header.substr(1, end - 1);
  }
  return host_header.substr(0, host_header.find(':'));
}

// The classes being computed at once, over all threads: a request waits
// until its classes fit, so however many clients send K = 100000 at the same
// time, at most two such answers (~150 MB each) are built together.
class WorkBudget {
 public:
  class Lease {
   public:
    Lease(WorkBudget& b, std::size_t n) : b_(b), n_(n) {
      std::unique_lock lock(b_.m_);
      b_.cv_.wait(lock, [&] { return b_.free_ >= n_; });
      b_.free_ -= n_;
    }
    ~Lease() {
      {
        std::lock_guard lock(b_.m_);
        b_.free_ += n_;
      }
      b_.cv_.notify_all();
    }

   private:
    WorkBudget& b_;
    std::size_t n_;
  };

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::size_t free_ = 2 * kMaxClasses;
};
WorkBudget g_budget;

// One POST route of the JSON API; fn answers with the JSON text.
template <class F>
httplib::Server::Handler json_route(F fn) {
  return [fn](const httplib::Request& req, httplib::Response& res) {
    try {
      const auto t0 = std::chrono::steady_clock::now();
      const json request = parse_body(req.body);
      // Oversized requests are refused by fn without computing; clamp so
      // they never wait for more than the whole budget.
      const std::size_t classes = std::min(request_classes(request), kMaxClasses);
      {
        const WorkBudget::Lease lease(g_budget, classes);
        res.set_content(fn(request), kJson);
      }
      // glibc keeps freed memory in per-thread arenas; after a large answer
      // hand it back, or each of httplib's threads holds its own peak.
      if (classes >= 10000) malloc_trim(0);
      // Parse + libxent + JSON, for the browser's timing breakdown.
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      res.set_header("Server-Timing", fmt::format("xent;dur={:.3f}", ms));
    } catch (const ApiError& e) {
      reply_error(res, e.status(), e.what());
    } catch (const std::bad_alloc&) {
      reply_error(res, 503, "out of memory for this request");
    }
  };
}

// A temporary directory removed with everything in it when it goes out of
// scope, whatever happens in between.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "xent-serve-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::mutex g_eval_mutex;  // one evaluation at a time: bounded disk and memory

// POST /api/eval, multipart/form-data: files "logits" (or "probs") and
// "targets" (.npy or .csv, as `xent eval` takes them), optional fields
// "bins", "top", "label_smoothing". Answers `xent eval --format json`'s
// object, with the uploaded file names in place of the temporary paths.
void eval_route(const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader& reader) {
  if (!req.is_multipart_form_data())
    return reply_error(res, 400, "eval: send multipart/form-data with files 'logits' and 'targets'");
  std::unique_lock lock(g_eval_mutex, std::try_to_lock);
  if (!lock.owns_lock()) return reply_error(res, 503, "eval: another evaluation is running; retry");
  std::map<std::string, std::string> fields, names, paths;
  // Messages of the .npy reader name the temporary file; say which upload.
  auto uploaded = [&](std::string message) {
    for (const auto& [part, path] : paths)
      for (std::size_t at; (at = message.find(path)) != std::string::npos;)
        message.replace(at, path.size(), names[part]);
    return message;
  };
  try {
    TempDir dir;
    std::ofstream out;
    std::string current;  // the part being received
    std::string problem;
    std::size_t total = 0;
    const bool ok = reader(
        [&](const httplib::MultipartFormData& part) {
          current = part.name;
          if (out.is_open()) out.close();
          if (part.name == "logits" || part.name == "probs" || part.name == "targets") {
            if (paths.count(part.name)) return problem = "eval: '" + part.name + "' sent twice", false;
            const bool csv = part.filename.size() >= 4 &&
                             part.filename.compare(part.filename.size() - 4, 4, ".csv") == 0;
            const auto path = dir.path() / (part.name + (csv ? ".csv" : ".npy"));
            out.open(path, std::ios::binary);
            if (!out) return problem = "eval: cannot write a temporary file", false;
            paths[part.name] = path.string();
            names[part.name] = part.filename.empty() ? part.name : part.filename;
          } else if (part.name != "bins" && part.name != "top" && part.name != "label_smoothing") {
            return problem = "eval: unknown field '" + part.name + "'", false;
          }
          return true;
        },
        [&](const char* data, std::size_t n) {
          total += n;
          if (total > kMaxUpload)
            return problem = fmt::format("eval: upload larger than {} MiB", kMaxUpload >> 20), false;
          if (out.is_open()) {
            out.write(data, static_cast<std::streamsize>(n));
            return static_cast<bool>(out);
          }
          std::string& f = fields[current];
          if (f.size() + n > 32) return problem = "eval: field '" + current + "' is too long", false;
          f.append(data, n);
          return true;
        });
    if (out.is_open()) out.close();
    if (!problem.empty()) return reply_error(res, problem.find("larger") != std::string::npos ? 413 : 400, problem);
    if (!ok) return reply_error(res, 400, "eval: the upload was cut short or is not valid multipart data");
    if (!paths.count("targets") || (paths.count("logits") == paths.count("probs")))
      return reply_error(res, 400, "eval: send a 'targets' file and one of 'logits' or 'probs'");

    EvalOptions o;
    o.logits = paths.count("logits") ? paths["logits"] : "";
    o.probs = paths.count("probs") ? paths["probs"] : "";
    o.targets = paths["targets"];
    o.json = true;
    o.progress = false;
    auto integer = [&](const char* name, int lo, int hi, int& into) {
      if (!fields.count(name)) return;
      const long long v = parse_index(fields[name], name);
      if (v < lo || v > hi) throw UsageError(fmt::format("{}: {} is outside [{}, {}]", name, v, lo, hi));
      into = static_cast<int>(v);
    };
    integer("bins", 1, 1000, o.bins);
    integer("top", 0, 1000, o.top_rows);
    if (fields.count("label_smoothing"))
      o.label_smoothing = parse_number(fields["label_smoothing"], "label_smoothing");
    json result = evaluate(o);
    // The page shows what was uploaded, not where it was put.
    json& in = result["inputs"];
    for (const char* k : {"logits", "probs", "targets"})
      if (in.contains(k) && names.count(k)) in[k] = names[k];
    res.set_content(dump(result), kJson);
  } catch (const NpyError& e) {
    reply_error(res, 400, uploaded(e.what()));
  } catch (const UsageError& e) {
    reply_error(res, 400, uploaded(e.what()));
  } catch (const xent::Error& e) {
    reply_error(res, 400, uploaded(e.what()));
  }
}

void open_browser(const std::string& url) {
  const char* argv[] = {"xdg-open", url.c_str(), nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "xdg-open", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
    std::fprintf(stderr, "xent serve: could not start xdg-open; open %s yourself\n", url.c_str());
}

}  // namespace

int run_server(const ServeOptions& opt) {
  // Two malloc arenas for all threads: memory freed by one request is reused
  // by the next, whatever thread serves it (bounded resident memory).
  mallopt(M_ARENA_MAX, 2);
  httplib::Server svr;
  svr.set_payload_max_length(kMaxUpload);
  svr.set_read_timeout(10);
  svr.set_write_timeout(10);
  svr.set_keep_alive_timeout(5);
  svr.set_keep_alive_max_count(1000);  // a slider sends many small requests
  svr.set_tcp_nodelay(true);  // small replies: don't wait for Nagle
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // second `xent serve` on a busy port would silently share it.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  svr.set_default_headers({{"Cache-Control", "no-store"},
                           {"X-Content-Type-Options", "nosniff"},
                           // Everything comes from this binary: no CDN, no inline script.
                           {"Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                            "script-src 'self'; connect-src 'self'"}});

  // Refuse big or unsized bodies before they are read. And, when listening
  // on loopback only, refuse requests for any other host name: a web page
  // elsewhere could otherwise reach this server through DNS rebinding.
  const bool loopback = is_loopback(opt.host);
  svr.set_pre_routing_handler([loopback](const httplib::Request& req, httplib::Response& res) {
    if (loopback && !is_loopback(host_name(req.get_header_value("Host")))) {
      reply_error(res, 403, "this server answers requests for 127.0.0.1 / localhost only");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method != "POST" || is_upload_route(req.path))
      return httplib::Server::HandlerResponse::Unhandled;
    if (!req.has_header("Content-Length")) {
      reply_error(res, 411, "send the request body with a Content-Length");
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string len = req.get_header_value("Content-Length");
    const unsigned long long n = std::strtoull(len.c_str(), nullptr, 10);
    if (len.size() > 12 || n > kMaxJsonBody) {
      reply_error(res, 413,
                  fmt::format("request body of {} bytes; the JSON API takes at most {} MiB", len,
                              kMaxJsonBody >> 20));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  svr.Post("/api/explain", json_route([](const json& r) { return explain_text(r); }));
  svr.Post("/api/batch", json_route([](const json& r) { return batch_text(r); }));
  svr.Post("/api/curve", json_route([](const json& r) { return to_text(curve(r)); }));
  svr.Post("/api/eval", eval_route);
  svr.Get("/api/presets", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump(presets()), kJson);
  });
  svr.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump(json{{"version", XENT_VERSION_STRING},
                              {"max_classes", kMaxClasses},
                              {"max_json_body", kMaxJsonBody},
                              {"max_upload", kMaxUpload}}),
                    kJson);
  });
  svr.Get("/.*", [](const httplib::Request& req, httplib::Response& res) {
    const std::string path = req.path == "/" ? "/index.html" : req.path;
    for (const Asset& a : web_assets())
      if (a.path == path) {
        res.set_content(a.data.data(), a.data.size(), std::string(a.content_type).c_str());
        return;
      }
    reply_error(res, 404, "not found: " + req.path);
  });

  // Errors httplib produces itself (unknown route, 413 on a chunked upload,
  // a malformed request line) also get a JSON body.
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int s = res.status;
    reply_error(res, s, fmt::format("{}: {} {}", status_text(s), req.method, req.path));
  });
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        reply_error(res, 500, "internal error: " + what);
      });

  int port = opt.port;
  if (port == 0) {
    port = svr.bind_to_any_port(opt.host);
    if (port < 0) port = 0;
  } else if (!svr.bind_to_port(opt.host, port)) {
    port = 0;
  }
  if (port == 0)
    throw UsageError(fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)",
                                 opt.host, opt.port));

  // SIGINT/SIGTERM stop the server from a normal thread (stop() is not
  // async-signal-safe, so no signal handler): block them here, before
  // httplib starts its threads, and wait for them in one thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::thread([&svr, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    svr.stop();
  }).detach();

  const std::string shown = opt.host.find(':') != std::string::npos ? "[" + opt.host + "]" : opt.host;
  const std::string url = fmt::format("http://{}:{}/", shown, port);
  std::printf("xent serve: listening on %s (Ctrl-C stops)\n", url.c_str());
  if (!loopback)
    std::fprintf(stderr, "xent serve: note: %s is reachable from other machines\n", opt.host.c_str());
  std::fflush(stdout);
  if (opt.open) open_browser(url);
  svr.listen_after_bind();
  std::puts("xent serve: stopped");
  return 0;
}

}  // namespace xent::cli::serve
