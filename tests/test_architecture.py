"""The package's shape: every module imports, module-level imports form no cycle, the layers
import one way, and imports inside functions are only of optional dependencies."""
import ast
import pathlib
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "liverjax"
# Imported inside functions on purpose: optional (absent on GPU hosts or headless).
OPTIONAL = ("tensorflow", "tensorboard", "tensorboardX", "matplotlib")
# Modules that define absl flags when imported (two of them cannot share a process);
# liverjax.predict.__main__ defines its flags only when run as a program.
ENTRY_POINTS = ("liverjax.main", "liverjax.study")
# One responsibility per module: no module of liverjax/ is longer (CONVENTIONS.md).
MAX_LINES = 600
# Layers, lowest first: a module may import its own layer or lower ones, never higher.
# The package itself (`liverjax/__init__.py`: `__version__`, no imports) is in layer 0.
LAYERS = (
    ("liverjax.runtime", "liverjax.configs", "liverjax.progress"),
    ("liverjax.data",),
    ("liverjax.augment",),
    ("liverjax.models",),
    ("liverjax.checkpointing", "liverjax.metric_writer", "liverjax.training"),
    ("liverjax.segmentation", "liverjax.cyclegan"),
    ("liverjax.reporting",),
    ("liverjax.experiment", "liverjax.config_check"),
    ("liverjax.main", "liverjax.study", "liverjax.predict", "liverjax.compare", "liverjax.cli",
     "liverjax.console"),
)
PACKAGE_NAME = "liverjax"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _module_level_statements(body):
  """Statements run at import: the module body and its top-level if/try blocks."""
  for node in body:
    yield node
    if isinstance(node, ast.If):
      yield from _module_level_statements(node.body)
      yield from _module_level_statements(node.orelse)
    elif isinstance(node, ast.Try):
      for block in (node.body, node.orelse, node.finalbody,
                    *[h.body for h in node.handlers]):
        yield from _module_level_statements(block)


def _imported(node, modules) -> set[str]:
  """The liverjax modules an import statement names."""
  names = set()
  if isinstance(node, ast.Import):
    names = {a.name for a in node.names}
  elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
    for a in node.names:
      full = f"{node.module}.{a.name}"
      names.add(full if full in modules else node.module)
  return {n for n in names if n in modules}


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    tree = ast.parse(path.read_text(), filename=str(path))
    edges = set()
    for node in _module_level_statements(tree.body):
      edges |= _imported(node, modules)
    graph[name] = edges - {name}
  return graph


def _layer(module: str) -> int:
  if module == PACKAGE_NAME:
    return 0
  for i, prefixes in enumerate(LAYERS):
    if any(module == p or module.startswith(p + ".") for p in prefixes):
      return i
  raise AssertionError(f"{module} is in no layer of tests/test_architecture.py")


def test_every_module_imports_in_a_fresh_interpreter():
  """All library modules in one interpreter; each entry point (absl flags at import) alone."""
  library = [n for n in _modules() if n not in ENTRY_POINTS]
  code = "import importlib, sys\nfor n in sys.argv[1:]:\n  importlib.import_module(n)\n"
  for names in [library, *[[e] for e in ENTRY_POINTS]]:
    result = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_module_graph_is_acyclic():
  graph = _graph()
  state = {}  # module -> "visiting" | "done"

  def visit(module, path):
    if state.get(module) == "done":
      return
    if state.get(module) == "visiting":
      cycle = path[path.index(module):] + [module]
      raise AssertionError("import cycle: " + " -> ".join(cycle))
    state[module] = "visiting"
    for dep in sorted(graph[module]):
      visit(dep, path + [module])
    state[module] = "done"

  for module in sorted(graph):
    visit(module, [])


def test_imports_flow_down_the_layers():
  upward = [f"{m} imports {d}" for m, deps in _graph().items() for d in deps
            if _layer(d) > _layer(m)]
  assert not upward, upward


def test_no_function_level_imports_except_optional_dependencies():
  bad = []
  for name, path in _modules().items():
    tree = ast.parse(path.read_text(), filename=str(path))
    for fn in ast.walk(tree):
      if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      for node in ast.walk(fn):
        if isinstance(node, ast.Import):
          roots = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
          roots = {(node.module or "").split(".")[0]}
        else:
          continue
        if not roots <= set(OPTIONAL):
          bad.append(f"{path.relative_to(REPO)}:{node.lineno} ({fn.name})")
  assert not bad, bad


def test_the_checker_sees_a_cycle_and_a_function_level_import(tmp_path):
  """The AST helpers on a toy: a function-level import is not an edge; a top-level one is."""
  code = "import liverjax.b\nif True:\n  from liverjax import c\ndef f():\n  import liverjax.d\n"
  tree = ast.parse(code)
  modules = {"liverjax.b": None, "liverjax.c": None, "liverjax.d": None}
  edges = set()
  for node in _module_level_statements(tree.body):
    edges |= _imported(node, modules)
  assert edges == {"liverjax.b", "liverjax.c"}


def test_no_module_is_longer_than_the_limit():
  lengths = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
  assert lengths, "no module found"
  long = {name: n for name, n in lengths.items() if n > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_orbax_only_in_checkpointing():
  users = []
  for name, path in _modules().items():
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
      mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
              [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      if any(m.split(".")[0] == "orbax" for m in mods):
        users.append(name)
  assert set(users) == {"liverjax.checkpointing"}, users
