"""Checks a CHAOS or NIfTI dataset folder and prints what is usable and what is wrong.

  python -m liverjax.data.verify --root=PATH [--sequences=ct,t1_in,t1_out,t2]
  python -m liverjax.data.verify --root=PATH [--modality=CT|MR] [--liver_label=N]

Prints the patients / slices per modality and sequence, which series (CHAOS) or
cases (NIfTI) were kept (with how many slices) or skipped (with the reason),
then every problem with its path: missing or extra masks, size mismatches,
unreadable files, files of another series, slices without a position, duplicate
slices, CT mask pairings that had to be proven (or could not be: the patient is
refused), masks outside the CHAOS encoding or all empty, skipped series; for
NIfTI, what the training reader refuses or notes (a missing, truncated or
mis-shaped label, a label map without the liver or, in a folder without
dataset.json, with values other than 0/1 when `--liver_label` is not given,
non-finite voxels). A NIfTI folder is read as training reads it
(`liverjax.data.nifti`): `--modality` and `--liver_label` are what
`data.<m>.root` and `data.<m>.liver_label` say for a folder without dataset.json.

Exit status: 0 when every file was used; 1 when anything was dropped (a file,
a slice, a series) but the dataset is usable; 2 when it is unusable (no
usable series).
"""
from __future__ import annotations

import collections
import dataclasses
import sys

from absl import app
from absl import flags

from liverjax.data import chaos
from liverjax.data import nifti
from liverjax.data import preprocess

_CATEGORIES = (
    ("pairing", ("paired with their liver_GT", "cannot prove")),
    ("mask encoding", ("CHAOS CT encoding", "CHAOS MR encoding", "are empty (no liver")),
    ("other series", ("another series", "no SeriesInstanceUID", "one series per folder")),
    ("duplicate slice", ("duplicate of", "differ in their pixels")),
    ("no position", ("its place in the volume is unknown",)),
    ("missing mask", ("missing mask",)),
    ("extra mask", ("mask with no image slice", "unexpected file")),
    ("size mismatch", ("differs from",)),
    ("unreadable file", ("unreadable", "not a DICOM", "cannot decode", "not a readable PNG",
                         "cannot read mask", "colour mask", "single-frame",
                         "unsupported mask", "file missing", "declares", "affine")),
    ("labels", ("liver label", "liver_label", "canonical organ")),
    ("non-finite voxels", ("non-finite", "not finite")),
)


@dataclasses.dataclass
class SeriesReport:
  """The outcome of reading one series."""
  patient_id: str
  modality: str
  sequence: str
  image_dir: str
  slices: int  # usable (image + mask) slices; 0 when the series is unusable
  liver_slices: int  # usable slices whose mask contains liver
  problems: list[str]  # each names its file or folder
  error: str | None  # why the whole series is unusable, or None
  dropped: list[str] = dataclasses.field(default_factory=list)  # files not used


@dataclasses.dataclass
class DatasetReport:
  """The outcome of `check_dataset`."""
  root: str | None  # the folder holding CT/ and MR/ (or the NIfTI folder); None: not found
  series: list[SeriesReport]  # CHAOS series, or NIfTI cases
  problems: list[str]  # every problem, each naming its file or folder
  kind: str = "CHAOS"  # "CHAOS" | "NIfTI"

  @property
  def usable(self) -> bool:
    """True when at least one series has usable slices."""
    return any(s.slices > 0 for s in self.series)

  @property
  def dropped_anything(self) -> bool:
    """True when a series was skipped or a file of a kept series was not used."""
    return self.root is None or any(s.error or s.dropped for s in self.series)

  def exit_code(self) -> int:
    """0: everything used; 1: something dropped, dataset usable; 2: unusable."""
    if not self.usable:
      return 2
    return 1 if self.dropped_anything else 0

  def counts(self) -> dict[tuple[str, str], dict[str, int]]:
    """{(modality, sequence): {"patients", "series_skipped", "slices", "liver_slices"}}."""
    out = collections.OrderedDict()
    for s in self.series:
      c = out.setdefault((s.modality, s.sequence), dict(
          patients=0, series_skipped=0, slices=0, liver_slices=0))
      if s.slices:
        c["patients"] += 1
      else:
        c["series_skipped"] += 1
      c["slices"] += s.slices
      c["liver_slices"] += s.liver_slices
    return dict(out)

  def problem_counts(self) -> dict[str, int]:
    """Number of problems per category (missing mask, extra mask, size mismatch,
    unreadable file, series skipped, other)."""
    out = collections.Counter()
    for p in self.problems:
      out[categorize(p)] += 1
    return dict(out)


def categorize(problem: str) -> str:
  """The category of one problem message (see DatasetReport.problem_counts)."""
  if problem.startswith(("series skipped", "case skipped")):
    return problem.split(":", 1)[0]
  for name, needles in _CATEGORIES:
    if any(n in problem for n in needles):
      return name
  return "other"


def check_dataset(root, sequences=chaos.SEQUENCES, modality: str | None = None,
                  liver_label: int | None = None) -> DatasetReport:
  """Reads every series of a CHAOS folder, or every case of a NIfTI dataset folder, and
  collects counts and problems.

  Args:
    root: anything `chaos.find_root` accepts, or a NIfTI dataset folder
      (`nifti.is_nifti_dataset`).
    sequences: which of chaos.SEQUENCES to check (CHAOS).
    modality, liver_label: for a NIfTI folder, as `nifti.dataset_info` takes them
      (a folder without dataset.json needs `modality`).

  Returns:
    A DatasetReport; never raises for bad data (a bad root gives a report
    with one problem and no series).
  """
  try:
    refs = chaos.discover(root, sequences)
    found = str(chaos.find_root(root))
  except chaos.ChaosError as e:
    if nifti.is_nifti_dataset(root):
      return check_nifti_dataset(root, modality, liver_label)
    return DatasetReport(root=None, series=[], problems=[str(e)])
  series, problems = [], []
  if not refs:
    problems.append(f"{found}: no patient folders under CT/ or MR/")
  for ref in refs:
    try:
      vol = chaos.read_series(ref)
    except Exception as e:  # pylint: disable=broad-except
      msg = str(e) if isinstance(e, chaos.ChaosError) else (
          f"{ref.image_dir}: unexpected error ({type(e).__name__}: {e})")
      msg = f"series skipped: {msg}"
      before = list(getattr(e, "problems", [])) + [msg]
      series.append(SeriesReport(ref.patient_id, ref.modality, ref.sequence,
                                 str(ref.image_dir), 0, 0, before, msg))
      problems.extend(before)
      continue
    liver = preprocess.binarize_mask(vol.mask, vol.modality)
    series.append(SeriesReport(
        ref.patient_id, ref.modality, ref.sequence, str(ref.image_dir),
        slices=int(vol.image.shape[0]),
        liver_slices=int(liver.reshape(liver.shape[0], -1).any(axis=1).sum()),
        problems=list(vol.problems), error=None, dropped=list(vol.dropped_files)))
    problems.extend(vol.problems)
  return DatasetReport(root=found, series=series, problems=problems)


def check_nifti_dataset(root, modality: str | None = None,
                        liver_label: int | None = None) -> DatasetReport:
  """Reads every case of a NIfTI dataset folder as training reads it (`nifti.read_case`).

  Args:
    root: the folder (dataset.json, or plain image / label folders).
    modality, liver_label: see `nifti.dataset_info`.

  Returns:
    A DatasetReport of kind "NIfTI": one entry per case (kept with its slices, or skipped
    with the reason); a folder that cannot be read as a dataset gives one problem, no case.
  """
  try:
    info = nifti.dataset_info(root, modality, liver_label)
  except chaos.ChaosError as e:
    return DatasetReport(root=None, series=[], problems=[str(e)], kind="NIfTI")
  series, problems = [], []
  for case in info.cases:
    try:
      vol = nifti.read_case(case, info)
    except Exception as e:  # pylint: disable=broad-except  (reported, as training skips it)
      msg = str(e) if isinstance(e, chaos.ChaosError) else (
          f"{case.image}: unexpected error ({type(e).__name__}: {e})")
      msg = f"case skipped: {msg}"
      series.append(SeriesReport(case.case_id, info.modality, info.sequence, str(case.image),
                                 0, 0, [msg], msg))
      problems.append(msg)
      continue
    series.append(SeriesReport(
        case.case_id, info.modality, info.sequence, str(case.image),
        slices=int(vol.image.shape[0]),
        liver_slices=int(vol.mask.reshape(vol.mask.shape[0], -1).any(axis=1).sum()),
        problems=list(vol.problems), error=None))
    problems.extend(vol.problems)
  if not info.cases:
    problems.append(f"{info.root}: no case")
  return DatasetReport(root=str(info.root), series=series, problems=problems, kind="NIfTI")


def format_report(report: DatasetReport) -> str:
  """A human-readable summary: counts table, problem counts, each problem."""
  lines = [f"{report.kind} dataset: {report.root or '(not found)'}"]
  counts = report.counts()
  if counts:
    lines.append(f"{'modality':8s} {'sequence':8s} {'patients':>8s} {'skipped':>8s} "
                 f"{'slices':>8s} {'liver':>8s}")
    for (mod, seq), c in counts.items():
      lines.append(f"{mod:8s} {seq:8s} {c['patients']:8d} {c['series_skipped']:8d} "
                   f"{c['slices']:8d} {c['liver_slices']:8d}")
  if report.series:
    lines.append("series:")
  for s in report.series:
    name = f"  {s.modality}/{s.patient_id} {s.sequence}:"
    if s.error:
      lines.append(f"{name} SKIPPED")
    else:
      dropped = f", {len(s.dropped)} file(s) dropped" if s.dropped else ""
      lines.append(f"{name} kept, {s.slices} slices{dropped}")
  if report.problems:
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(report.problem_counts().items()))
    lines.append(f"{len(report.problems)} problem(s) ({summary}):")
    lines.extend(f"  {p}" for p in report.problems)
  else:
    lines.append("no problems found")
  if not report.usable:
    lines.append(f"DATASET UNUSABLE: no usable {'series' if report.kind == 'CHAOS' else 'case'}")
  elif report.dropped_anything:
    lines.append("dataset usable, but some files were dropped (listed above)")
  else:
    lines.append("dataset usable, every file used")
  return "\n".join(lines)


_ROOT = flags.DEFINE_string("root", None, "CHAOS folder (CHAOS_Train_Sets, Train_Sets, "
                            "or the folder holding CT/ and MR/), or a NIfTI dataset folder.")
_SEQUENCES = flags.DEFINE_list("sequences", list(chaos.SEQUENCES),
                               f"Sequences to check, among {chaos.SEQUENCES} (CHAOS).")
_MODALITY = flags.DEFINE_enum("modality", None, ["CT", "MR"], "NIfTI folder without "
                              "dataset.json: its modality (as data.ct.root / data.mr.root).")
_LIVER_LABEL = flags.DEFINE_integer("liver_label", None, "NIfTI: the liver's label value "
                                    "(data.<m>.liver_label); without dataset.json, label maps "
                                    "must otherwise be binary.")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  report = check_dataset(_ROOT.value, tuple(_SEQUENCES.value), _MODALITY.value,
                         _LIVER_LABEL.value)
  print(format_report(report))
  sys.stdout.flush()
  return report.exit_code()


if __name__ == "__main__":
  flags.mark_flag_as_required("root")
  app.run(main)
