// xent — the command line of libxent.
//
// Errors: every user mistake (bad option, bad value, xent::Error from the
// library) is one line `xent: error: ...` on stderr and exit code 2; anything
// unexpected is exit code 1. See docs/cli.md.
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "cmd_bench.h"
#include "cmd_demo.h"
#include "cmd_eval.h"
#include "cmd_explain.h"
#include "cmd_gradcheck.h"
#include "serve/cmd_serve.h"
#include "common.h"
#include "xent/error.h"
#include "xent/version.h"

namespace {

constexpr const char* kFooter = R"(Examples:
  xent demo                                     the main job: train on digits, CE vs MSE vs smoothing
  xent eval --logits L.npy --targets T.npy      loss, perplexity, accuracy, calibration of a model
  xent explain                                  built-in examples
  xent gradcheck                                every gradient against finite differences
  xent bench                                    kernel GB/s against this machine's bandwidth
  xent explain --p 0.6,0.3,0.1 --q 0.5,0.3,0.2  H(p), H(p,q), KL term by term
  xent explain --logits 2,1.2,0.3 --target 0    softmax, loss, gradient
  xent explain --help                           all options of explain

Exit codes: 0 success, 2 bad option or bad value (one line on stderr,
'xent: error: ...'), 1 unexpected failure.)";

int fail(const std::string& message, int code) {
  std::string line = message;
  for (char& c : line)  // one line, whatever the source of the message
    if (c == '\n' || c == '\r') c = ' ';
  std::fprintf(stderr, "xent: error: %s\n", line.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace xent::cli;
  CLI::App app{"xent " XENT_VERSION_STRING " - cross-entropy, exact, term by term", "xent"};
  app.set_version_flag("--version", std::string("xent ") + XENT_VERSION_STRING,
                       "print the version and exit");
  app.require_subcommand(0, 1);
  app.footer(kFooter);
  ExplainArgs explain_args;
  CLI::App* explain = add_explain_command(app, explain_args);
  xent::demo::DemoOptions demo_options;
  CLI::App* demo = add_demo_command(app, demo_options);
  EvalArgs eval_args;
  CLI::App* eval = add_eval_command(app, eval_args);
  GradcheckArgs gradcheck_args;
  CLI::App* gradcheck = add_gradcheck_command(app, gradcheck_args);
  BenchArgs bench_args;
  CLI::App* bench = add_bench_command(app, bench_args);
  ServeArgs serve_args;
  CLI::App* serve = add_serve_command(app, serve_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Point at the help of the subcommand being parsed, if any.
    std::string help = "xent --help";
    for (const CLI::App* sub : app.get_subcommands())
      help = "xent " + sub->get_name() + " --help";
    return fail(std::string(e.what()) + " (see '" + help + "')", kExitUsage);
  }

  try {
    if (explain->parsed()) return run_explain(to_options(*explain, explain_args));
    if (demo->parsed()) return run_demo_command(demo_options);
    if (eval->parsed()) return run_eval_command(eval_args);
    if (gradcheck->parsed()) return run_gradcheck(gradcheck_args);
    if (bench->parsed()) return run_bench(bench_args);
    if (serve->parsed()) return run_serve_command(serve_args);
    std::fputs(app.help().c_str(), stdout);
    return kExitOk;
  } catch (const UsageError& e) {
    return fail(e.what(), kExitUsage);
  } catch (const xent::Error& e) {
    return fail(e.what(), kExitUsage);
  } catch (const std::exception& e) {
    return fail(std::string("unexpected failure: ") + e.what(), kExitRuntime);
  }
}
