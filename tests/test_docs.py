"""The README and the guides name only what exists: programs, flags, config fields, configs.

Checked in every Markdown file of the README and `docs/` (except `docs/history.md`, the dated
log, whose commands are as they were run then):
- every command, in a fenced `bash` block or an inline code span (`python -m liverjax...`,
  `python scripts/...`, `bash scripts/...`, the console scripts `liverjax-train` ... of
  `liverjax/console.py`, checked as the module each runs, `--version` besides): the module is a
  file of the repository (a module
  file, or a package's `__main__.py`, so `liverjax/predict.py` and `liverjax/predict/` both
  work) or an installed module, the script exists, and every `--flag` it passes is defined by
  that program: absl `DEFINE_*` calls and argparse `add_argument` calls, read from the program's
  source and from the repository modules it imports (the flags those define when imported);
  where a flag lists its values (`DEFINE_enum`, `choices=`), the value given is one of them;
- `--config=...` and its `--config.x.y=v` overrides, loaded and parsed as the program would
  (ml_collections' own flag parser): the file exists, `file.py:preset` loads, and each
  overridden field exists and takes the value;
- inline `--config.x.y=v` spans in the prose (for `python -m liverjax.main`, whose default config
  is `configs/default.py`), and inline field names such as `eval.adapt_bn`: the field exists;
- every `configs/...` name (a file, a `file.py:preset`, `{a,b}` / `<a|b>` alternatives, `*`
  patterns): the file exists and, where it is a config, loads;
- `pip install -e ".[extra]"`: the extra is declared by the packaging.

Placeholders (`<name>`, `...`) are not values: a command that holds one is checked for its
program and flag names only.
"""
import ast
import functools
import glob
import importlib.util
import itertools
import pathlib
import re
import shlex
import subprocess
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from liverjax import configs
from liverjax import console
from liverjax.configs import study as study_configs
from tests.conftest import REPO

# The dated log keeps commands as they were run then; every other page must run today.
EXCLUDED = ("docs/history.md",)
# The programs whose default config is not `configs/default.py`: liverjax.study starts from
# `configs/study.py:<--size>` (`liverjax/study.py` DEFAULT_CONFIG).
DEFAULT_CONFIG = {"liverjax.study": "study.py:{size}"}
FIELD_SECTIONS = ("data", "model", "train", "augment", "eval", "translate", "cyclegan", "study")
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.")
# ml_collections loads config files through importlib's deprecated load_module.
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def doc_files() -> list[pathlib.Path]:
  """README.md and every docs/*.md page except EXCLUDED."""
  pages = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
  return [p for p in pages if str(p.relative_to(REPO)) not in EXCLUDED]


# ----------------------------------------------------------------------------- reading the docs


def fenced_commands(text: str) -> list[str]:
  """The logical lines (continuations joined, comments dropped) of ```bash / sh blocks."""
  lines = []
  for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.M | re.S):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.strip()
      if line and not line.startswith("#"):
        lines.append(line)
  return lines


def inline_spans(text: str) -> list[str]:
  """The contents of the inline code spans outside fenced blocks (a span may wrap a line)."""
  prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
  return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


CONSOLE_SCRIPT = re.compile(r"liverjax-[a-z]+")


def is_command(span: str) -> bool:
  """True when an inline span runs a program of the repository (a console script too)."""
  return bool(re.search(r"\bpython3? (-m \S+|scripts/)|\bbash scripts/", span)
              or CONSOLE_SCRIPT.match(span))


def segments(line: str) -> list[list[str]]:
  """A shell line as the token lists of its simple commands (split at &&, ||, ;, |)."""
  try:
    tokens = shlex.split(line, comments=True)
  except ValueError as e:
    raise AssertionError(f"{line!r}: does not parse as a shell line ({e})") from e
  out, current = [], []
  for token in tokens:
    if token in ("&&", "||", ";", "|"):
      out.append(current)
      current = []
    else:
      current.append(token)
  return [c for c in out + [current] if c]


# ----------------------------------------------------------------------------- the programs


def module_file(name: str, root: pathlib.Path = REPO) -> pathlib.Path | None:
  """The file `python -m name` runs from `root`, or None when it is not a file there."""
  base = root.joinpath(*name.split("."))
  for candidate in (base.with_suffix(".py"), base / "__main__.py"):
    if candidate.is_file():
      return candidate
  return None


def repository_module(name: str, root: pathlib.Path = REPO) -> pathlib.Path | None:
  """The file of module `name` under `root` (a module file or a package's __init__.py)."""
  base = root.joinpath(*name.split("."))
  for candidate in (base.with_suffix(".py"), base / "__init__.py"):
    if candidate.is_file():
      return candidate
  return None


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = path.relative_to(root).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] in ("__init__", "__main__") else parts)


def _imports(tree: ast.Module, path: pathlib.Path, root: pathlib.Path) -> set[pathlib.Path]:
  """The modules under `root` that a file imports (absolute and relative)."""
  package = _module_name(path, root)
  if path.name not in ("__init__.py", "__main__.py"):
    package = package.rpartition(".")[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parent = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
        base = f"{parent}.{base}" if base else parent
      names = [base] + [f"{base}.{a.name}" for a in node.names]
    else:
      continue
    for name in names:
      file = repository_module(name, root) if name.startswith(("liverjax", "scripts")) else None
      if file:
        found.add(file)
  return found


def _is_main_guard(node: ast.AST) -> bool:
  """True for `if __name__ == "__main__":`."""
  return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
          and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _calls(tree: ast.AST, skip_main_guard: bool):
  """Every call in `tree`, leaving out `if __name__ == "__main__":` blocks if asked."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if skip_main_guard and _is_main_guard(node):
      continue
    if isinstance(node, ast.Call):
      yield node
    stack.extend(ast.iter_child_nodes(node))


def _literal(node: ast.AST | None):
  try:
    return ast.literal_eval(node) if node is not None else None
  except ValueError:
    return None


class Program:
  """What a program accepts: flag names, the boolean ones, the values of enum flags."""

  def __init__(self):
    self.flags: set[str] = set()
    self.booleans: set[str] = set()
    self.choices: dict[str, list[str]] = {}
    self.has_config = False
    self.absl = False


def _aliases(tree: ast.Module) -> dict[str, str]:
  """Local name -> repository module, from a file's absolute imports."""
  out = {}
  for node in tree.body:
    if isinstance(node, ast.Import):
      out.update({a.asname or a.name: a.name for a in node.names if a.asname})
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      out.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
  return out


def _constant(tree: ast.Module, name: str):
  """The literal value a module assigns to `name` at its top level, or None."""
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
      return _literal(node.value)
  return None


def _values(node: ast.AST | None, tree: ast.Module, root: pathlib.Path):
  """The values an enum flag lists: a literal, `list(X)` / `tuple(X)`, or a module constant
  (`experiment.MODES`) of this file or of a repository module it imports; None if unknown."""
  value = _literal(node)
  if value is not None:
    return value
  if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("list", "tuple", "sorted"):
    return _values(node.args[0], tree, root) if node.args else None
  if isinstance(node, ast.Name):
    return _constant(tree, node.id)
  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
    file = repository_module(_aliases(tree).get(node.value.id, ""), root)
    return _constant(ast.parse(file.read_text()), node.attr) if file else None
  return None


def _read_flags(program: Program, tree: ast.Module, skip_main_guard: bool,
                root: pathlib.Path) -> None:
  for call in _calls(tree, skip_main_guard):
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    args = call.args
    keywords = {k.arg: k.value for k in call.keywords}
    if name.startswith("DEFINE_"):
      flag = _literal(args[0] if args else keywords.get("name"))
      if not isinstance(flag, str):
        continue
      program.absl = True
      program.flags.add(flag)
      if name in ("DEFINE_bool", "DEFINE_boolean"):
        program.booleans.add(flag)
      if name.startswith("DEFINE_config"):
        program.has_config = True
      if name == "DEFINE_enum":
        values = _values(args[2] if len(args) > 2 else keywords.get("enum_values"), tree, root)
        if isinstance(values, (list, tuple, dict)):
          program.choices[flag] = [str(v) for v in values]
    elif name == "add_argument":
      options = [a for a in map(_literal, args) if isinstance(a, str) and a.startswith("-")]
      choices = _values(keywords.get("choices"), tree, root)
      for option in options:
        flag = option.lstrip("-")
        program.flags.add(flag)
        if isinstance(choices, (list, tuple, dict)):
          program.choices[flag] = [str(v) for v in choices]


@functools.cache
def absl_builtin_flags() -> frozenset[str]:
  """The flags every absl program has (absl.app's and absl.logging's), from a clean process."""
  out = subprocess.run(
      [sys.executable, "-c",
       "from absl import app, flags, logging; app.define_help_flags(); print(*flags.FLAGS)"],
      capture_output=True, text=True, check=True).stdout
  return frozenset(out.split())


@functools.cache
def read_program(path: pathlib.Path, root: pathlib.Path = REPO) -> Program:
  """The flags of the program in `path`: its own definitions (all of them) and those of the
  modules under `root` it imports, transitively (not their `__main__` blocks)."""
  program = Program()
  seen, todo = set(), [(path, False)]
  while todo:
    file, skip_main_guard = todo.pop()
    if file in seen:
      continue
    seen.add(file)
    tree = ast.parse(file.read_text(), str(file))
    _read_flags(program, tree, skip_main_guard, root)
    todo.extend((f, True) for f in _imports(tree, file, root))
  if program.absl:
    program.flags |= absl_builtin_flags()
  else:
    program.flags |= {"h", "help"}
  return program


# ----------------------------------------------------------------------------- configs


def one_line(error: Exception) -> str:
  """An error's first line, and its last (the exception of an embedded traceback)."""
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else repr(error)


def _is_placeholder(text: str) -> bool:
  return bool(PLACEHOLDER.search(text))


def parse_config(config: str, overrides: list[str], monkeypatch) -> ml_collections.ConfigDict:
  """Loads `--config=config` with its `--config.x=v` overrides through ml_collections' flag
  parser, as `liverjax.main` does (`liverjax.cli.prepare_argv`: the config first, names
  resolved from the repository root). Raises on a missing file or field, or a bad value."""
  monkeypatch.chdir(REPO)
  path = pathlib.Path(configs.resolve(config).partition(":")[0])
  if not path.is_file():
    raise AssertionError(f"--config={config}: no such config file")
  argv = ["program", f"--config={configs.resolve(config)}"] + overrides
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", str(configs.DIRECTORY / "default.py"),
                                  flag_values=values)
  monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads the overrides from sys.argv
  values(argv)
  loaded = values["config"].value
  if not isinstance(loaded, ml_collections.ConfigDict):
    raise AssertionError(f"--config={config}: get_config returned {type(loaded).__name__}")
  return loaded


def has_field(config: ml_collections.ConfigDict, dotted: str) -> bool:
  """True when `config` has the field `a.b.c`."""
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def expand(name: str) -> list[str]:
  """`a_{b,c}.py` and `a_<b|c>.py` as their alternatives (cartesian over several groups)."""
  parts = re.split(r"(\{[^}]*\}|<[^>]*\|[^>]*>)", name)
  options = [p[1:-1].replace("|", ",").split(",") if p[:1] in "{<" and p else [p]
             for p in parts]
  return ["".join(c) for c in itertools.product(*options)]


def config_problems(reference: str, monkeypatch) -> list[str]:
  """Problems with a `configs/...` name cited in the docs (file[:preset], alternatives, glob)."""
  problems = []
  for name in expand(reference):
    if _is_placeholder(name):
      continue
    path, _, preset = name.partition(":")
    files = sorted(glob.glob(str(REPO / path))) if "*" in path else [str(REPO / path)]
    if not files:
      problems.append(f"{reference}: no file matches {path}")
    for file in files:
      if not pathlib.Path(file).exists():
        problems.append(f"{reference}: {path} does not exist")
      elif file.endswith(".py") and "def get_config" in pathlib.Path(file).read_text():
        try:
          parse_config(file + (f":{preset}" if preset else ""), [], monkeypatch)
        except Exception as e:  # pylint: disable=broad-except
          problems.append(f"{reference}: does not load ({type(e).__name__}: {one_line(e)})")
  return problems


# ----------------------------------------------------------------------------- one command


def command_problems(tokens: list[str], monkeypatch) -> list[str]:
  """Problems with one simple command (its tokens); [] when it is sound or not ours."""
  if "pip" in tokens and "install" in tokens:
    return _extras_problems(tokens)
  if "bash" in tokens[:3]:
    scripts = [t for t in tokens if t.endswith(".sh")]
    return [f"{t}: no such script" for t in scripts if not (REPO / t).is_file()]
  scripts = [i for i, t in enumerate(tokens) if CONSOLE_SCRIPT.fullmatch(t)]
  if scripts:
    name, args = tokens[scripts[0]], tokens[scripts[0] + 1:]
    if name not in console.PROGRAMS:
      return [f"{name}: no such console script (liverjax/console.py PROGRAMS)"]
    module = console.PROGRAMS[name]
    program = read_program(module_file(module))
    args = [a for a in args if a != "--version"]  # every console script prints the version
    return _flag_problems(module, program, args, monkeypatch)
  starts = [i for i, t in enumerate(tokens) if re.fullmatch(r"(\S*/)?python3?", t)]
  if not starts:
    return []
  i = starts[0]
  rest = tokens[i + 1:]
  if rest[:1] == ["-m"] and len(rest) > 1:
    module, args = rest[1], rest[2:]
    path = module_file(module)
    if path is None:
      if module.split(".")[0] in ("liverjax", "scripts"):
        return [f"python -m {module}: no module file in the repository"]
      return [] if importlib.util.find_spec(module) else [f"python -m {module}: not installed"]
  elif rest and rest[0].endswith(".py"):
    module, args = rest[0], rest[1:]
    path = REPO / module
    if not path.is_file():
      return [f"python {module}: no such script"]
  else:
    return []
  return _flag_problems(module, read_program(path), args, monkeypatch)


def _flag_problems(module: str, program: Program, args: list[str], monkeypatch) -> list[str]:
  """Each `--flag` of `args` against the program's flags; `--config` and its overrides loaded."""
  problems, overrides, config = [], [], None
  size = "smoke"
  for arg in args:
    if arg == "--":  # what follows is passed on (benchmark_compile_cache.py -- <main flags>)
      break
    if not arg.startswith("--"):
      continue
    name, has_value, value = arg[2:].partition("=")
    if name.startswith("config."):
      overrides.append(arg)
      continue
    base = name[2:] if name.startswith("no") and name[2:] in program.booleans else name
    if base not in program.flags:
      problems.append(f"{module}: no flag --{name}")
      continue
    if has_value and base in program.choices and not _is_placeholder(value):
      if value not in program.choices[base]:
        problems.append(f"{module}: --{name}={value} is not one of {program.choices[base]}")
    if name == "config":
      config = value
    if name == "size":
      size = value
  if overrides and not program.has_config:
    problems.append(f"{module}: takes no --config overrides ({overrides[0]})")
  elif program.has_config and (config or overrides):
    default = DEFAULT_CONFIG.get(module, "default.py").format(size=size)
    problems += _config_flag_problems(module, config or default, overrides, monkeypatch)
  return problems


def _config_flag_problems(module, config, overrides, monkeypatch) -> list[str]:
  """Loads the config with its overrides; fields given placeholder values are only looked up."""
  if _is_placeholder(config):
    config = "default.py"
  concrete = [o for o in overrides if not _is_placeholder(o.partition("=")[2])]
  try:
    loaded = parse_config(config, concrete, monkeypatch)
  except Exception as e:  # pylint: disable=broad-except
    return [f"--config={config} {' '.join(concrete)}: {type(e).__name__}: {one_line(e)}"]
  fields = [o[len("--config."):].partition("=")[0] for o in overrides]
  return [f"{module}: the config has no field {f!r}" for f in fields if not has_field(loaded, f)]


def _extras_problems(tokens: list[str]) -> list[str]:
  """`pip install -e ".[x,y]"`: each extra declared in setup.py or pyproject.toml."""
  packaging = "".join((REPO / f).read_text() for f in ("setup.py", "pyproject.toml")
                      if (REPO / f).is_file())
  problems = []
  for token in tokens:
    match = re.fullmatch(r"\.\[([\w,-]+)\]", token)
    for extra in match.group(1).split(",") if match else []:
      if not re.search(rf"""["']?{re.escape(extra)}["']?\s*[:=]""", packaging):
        problems.append(f"pip install {token}: no extra {extra!r} in the packaging")
  return problems


# ----------------------------------------------------------------------------- one page


def page_problems(text: str, monkeypatch) -> list[str]:
  """Every problem of one Markdown page's commands, config names and config fields."""
  problems = []
  spans = inline_spans(text)
  for line in fenced_commands(text) + [s for s in spans if is_command(s)]:
    for tokens in segments(line):
      problems += [f"`{line}`: {p}" for p in command_problems(tokens, monkeypatch)]
  for span in spans:
    if span.startswith("--config.") and not is_command(span):
      problems += [f"`{span}`: {p}" for p in _inline_override_problems(span, monkeypatch)]
    field = re.fullmatch(rf"(?:config\.)?((?:{'|'.join(FIELD_SECTIONS)})(?:\.\w+)+)", span)
    if field and not re.search(r"\.(py|md|json|jsonl|png|sh|gz|dcm)$", span) and not has_field(every_field(), field.group(1)):
      problems.append(f"`{span}`: no such config field")
  for reference in sorted(set(re.findall(r"(?<![\w/])configs/[\w./{},<>|*+-]*\w(?::[\w,+]+)?",
                                         text))):
    problems += config_problems(reference, monkeypatch)
  return problems


def _inline_override_problems(span: str, monkeypatch) -> list[str]:
  """An override in the prose, for `liverjax.main` (configs/default.py; study.py for study.*)."""
  tokens = shlex.split(span)
  config = "study.py" if tokens[0].startswith("--config.study.") else "default.py"
  return _config_flag_problems("liverjax.main", config, tokens[:1], monkeypatch)


@functools.cache
def every_field() -> ml_collections.ConfigDict:
  """A config with every field: default.py's sections plus the study's."""
  return study_configs.get_config("smoke")


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_flag_and_config_in_the_docs_exists(page, monkeypatch):
  problems = page_problems(page.read_text(), monkeypatch)
  assert not problems, "\n".join(problems)


def test_the_readme_links_a_guide_per_task_and_stays_short():
  text = (REPO / "README.md").read_text()
  assert len(text.splitlines()) <= 150
  for guide in ("data", "training", "predict", "study", "benchmarks", "architecture"):
    assert f"docs/{guide}.md" in text, guide
    assert (REPO / "docs" / f"{guide}.md").is_file(), guide
  for link in re.findall(r"\]\(([^)#\s]+)", text):
    if not link.startswith("http"):
      assert (REPO / link).exists(), link


BROKEN = (
    ("python -m liverjax.mian --config=configs/mri_to_ct.py", "no module file"),
    ("python -m liverjax.main --config=configs/mri_to_ctt.py", "no such config file"),
    ("python -m liverjax.main --config=configs/mri_to_ct.py --wrkdir=x", "no flag --wrkdir"),
    ("python -m liverjax.main --config.train.stepz=10", "stepz"),
    ("python -m liverjax.main --config.train.steps=many", "IllegalFlagValueError"),
    ("python -m liverjax.main --config=configs/cyclegan.py:gpu", "cyclegan preset 'gpu'"),
    ("python -m liverjax.main --mode=predict", "not one of"),
    ("python -m liverjax.study --size=full --config.study.seedz=3", "seedz"),
    # liverjax.augment.preview defines --rows only when run itself; the study imports it.
    ("python -m liverjax.study --rows=3", "no flag --rows"),
    ("python -m liverjax.augment.preview --rows=3 --outt=p.png", "no flag --outt"),
    ("python -m liverjax.predict --workdir=w --input=x --out=o --adapt_bn=yes", "not one of"),
    ("python -m liverjax.predict --workdir=w --input=x --outdir=o", "no flag --outdir"),
    ("python -m liverjax.data.verify --root=x --sequence=t2", "no flag --sequence"),
    ("python -m liverjax.compare --arm=a=w --modalty=CT", "no flag --modalty"),
    ("liverjax-compare --arm=a=w --metric=hd95", "not one of"),
    ("liverjax-trian --config=configs/mri_to_ct.py", "no such console script"),
    ("liverjax-predict --workdir=w --input=x --outdir=o", "no flag --outdir"),
    ("liverjax-train --config=configs/mri_to_ctt.py", "no such config file"),
    ("liverjax-study --size=huge", "not one of"),
    ("python scripts/benchmark_train.py --size=64 --recipe=ginn", "not one of"),
    ("python scripts/benchmark_trian.py --size=64", "no such script"),
    ("nice -n 15 python scripts/benchmark_vs_monai.py --monai=0", "no flag --monai"),
    ("pip install -e '.[tests]'", "no extra 'tests'"),
    ("bash scripts/gpu_benchmark.sh", "no such script"),
)


@pytest.mark.parametrize("line, expected", BROKEN, ids=[b[0][:48] for b in BROKEN])
def test_the_checker_catches_a_broken_command(line, expected, monkeypatch):
  problems = page_problems(f"```bash\n{line}\n```\n", monkeypatch)
  assert any(expected in p for p in problems), problems


def test_the_checker_passes_sound_commands_and_catches_broken_names_in_prose(monkeypatch):
  sound = ("```bash\npython -m liverjax.main --config=unet.py:ct_to_mr,augmix "
           "--config.data.mr_sequences=\"('t2',)\" --workdir=w --nodistributed\n"
           "python -m liverjax.study --workdir=s --size=full --seeds=3\n"
           "liverjax-train --config=mri_to_ct --config.train.steps=10 && liverjax-train --version\n"
           "liverjax-verify --root=/data/CHAOS_Train_Sets\n"
           "python scripts/benchmark_compile_cache.py --runs=2 -- --config.train.steps=100\n```\n"
           "`configs/real/{ct_to_mr,mr_to_ct}_histmatch.py`, `eval.adapt_bn`, "
           "`configs/cyclegan.py:cpu`, `--config.data.field_of_view=320`\n")
  assert page_problems(sound, monkeypatch) == []
  broken = ("`configs/real/{ct_to_mr,mr_to_cc}_histmatch.py`, `eval.adapt_bm`, "
            "`--config.data.field_of_veiw=320`, `configs/*_nosuch.py`")
  problems = page_problems(broken, monkeypatch)
  for expected in ("mr_to_cc_histmatch.py does not exist", "eval.adapt_bm",
                   "field_of_veiw", "no file matches"):
    assert any(expected in p for p in problems), (expected, problems)


def test_flags_are_found_in_a_package_entry_point_and_the_modules_it_imports(tmp_path):
  # `liverjax/predict.py` may become a package: its __main__ defining flags through a helper of
  # another module of the package, as `python -m liverjax.predict` would run it.
  package = tmp_path / "liverjax" / "predict"
  package.mkdir(parents=True)
  (tmp_path / "liverjax" / "__init__.py").write_text("")
  (package / "__init__.py").write_text("from liverjax.predict.io import read\n")
  (package / "io.py").write_text("from absl import flags\n"
                                 "flags.DEFINE_string('cache', None, 'imported: defined')\n"
                                 "if __name__ == '__main__':\n"
                                 "  flags.DEFINE_string('only_as_program', None, '')\n")
  (package / "cli.py").write_text("from absl import flags\n"
                                  "def define_flags():\n"
                                  "  flags.DEFINE_string('workdir', None, '')\n"
                                  "  flags.DEFINE_enum('adapt_bn', 'auto', ['auto', 'on'], '')\n"
                                  "  flags.DEFINE_bool('dicom_seg', True, '')\n")
  (package / "__main__.py").write_text("from absl import app\n"
                                       "from . import cli\n"
                                       "from liverjax import predict\n"
                                       "cli.define_flags()\n")
  entry = module_file("liverjax.predict", tmp_path)
  assert entry == package / "__main__.py"
  program = read_program(entry, tmp_path)
  assert {"workdir", "adapt_bn", "dicom_seg", "cache", "help"} <= program.flags
  assert "only_as_program" not in program.flags
  assert program.choices["adapt_bn"] == ["auto", "on"]
  assert "dicom_seg" in program.booleans
