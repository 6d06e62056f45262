"""Benchmark (not a test): what the persistent compilation cache saves a run of `liverjax.main`.

  python scripts/benchmark_compile_cache.py                      # the README's first command
  python scripts/benchmark_compile_cache.py --config=configs/real/ct_to_mr.py --runs=3

Runs `python -m liverjax.main --config=<config> --workdir=<fresh folder>` `--runs` times, one
after the other, each a new process and a new workdir, all with one compilation cache that
is empty before the first run (LIVERJAX_COMPILATION_CACHE=<temporary folder>, or `--cache`).
Per run it prints the wall time, the seconds of XLA compilation (JAX's compile events: an XLA
compile, or a load from the persistent cache), how many programs and cache hits, the
seconds of tracing and lowering to MLIR (which the cache does not save), and the moment
the train step was compiled (its first step runs right after), from the process's start.
Extra `liverjax.main` flags go after `--`, e.g. `-- --config.train.steps=50`.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

# The run itself: liverjax.main, with listeners on JAX's compile events that write them
# (name, what, seconds, end time from the process start) to LIVERJAX_BENCHMARK_EVENTS at exit.
DRIVER = """
import atexit, json, os, runpy, sys, time
start = time.time()
import jax
records, hits = [], []
def on_duration(event, duration, **kwargs):
  if event.startswith("/jax/core/compile/"):
    records.append((kwargs.get("fun_name", ""), event.rsplit("/", 1)[1], duration,
                    time.time() - start))
def on_event(event, **kwargs):
  if event == "/jax/compilation_cache/cache_hits":
    hits.append(time.time() - start)
jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
def write():
  with open(os.environ["LIVERJAX_BENCHMARK_EVENTS"], "w") as f:
    json.dump({"records": records, "hits": len(hits), "end": time.time() - start}, f)
atexit.register(write)
sys.argv = ["liverjax.main"] + sys.argv[1:]
runpy.run_module("liverjax.main", run_name="__main__", alter_sys=True)
"""


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/mri_to_ct.py")
  p.add_argument("--runs", type=int, default=2)
  p.add_argument("--cache", default=None,
                 help="the compilation cache folder (default: a new temporary one)")
  p.add_argument("main_flags", nargs="*", help="more liverjax.main flags, after --")
  return p.parse_args()


def summarize(events: dict) -> dict:
  """Seconds of compilation, tracing and lowering; program count; train step ready time."""
  records = events["records"]
  compiles = [r for r in records if r[1] == "backend_compile_duration"]
  step = [r[3] for r in compiles if "train_step" in r[0]]
  return {"compile_s": sum(r[2] for r in compiles), "programs": len(compiles),
          "hits": events["hits"],
          "trace_lower_s": sum(r[2] for r in records if r[1] != "backend_compile_duration"),
          "train_step_ready_s": step[0] if step else float("nan")}


def main():
  args = parse_args()
  with tempfile.TemporaryDirectory(prefix="liverjax-benchmark-cache-") as tmp:
    cache = args.cache or os.path.join(tmp, "jax_compilation_cache")
    print(f"liverjax.main --config={args.config} {' '.join(args.main_flags)}; compilation "
          f"cache {cache}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for k in range(args.runs):
      events = os.path.join(tmp, f"events{k}.json")
      env = dict(os.environ, LIVERJAX_COMPILATION_CACHE=cache, LIVERJAX_BENCHMARK_EVENTS=events,
                 PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
      command = [sys.executable, "-c", DRIVER, f"--config={args.config}",
                 f"--workdir={os.path.join(tmp, f'workdir{k}')}", *args.main_flags]
      start = time.perf_counter()
      run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           check=False)
      wall = time.perf_counter() - start
      if run.returncode != 0:
        sys.exit(f"run {k + 1} exited {run.returncode}:\n{run.stderr[-3000:]}")
      with open(events) as f:
        s = summarize(json.load(f))
      print(f"run {k + 1}: {wall:.1f} s wall; XLA compilation {s['compile_s']:.1f} s over "
            f"{s['programs']} programs ({s['hits']} from the cache); tracing + lowering "
            f"{s['trace_lower_s']:.1f} s; train step compiled at {s['train_step_ready_s']:.1f} s",
            flush=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
