"""A prediction run: every scan of the input paths read, predicted, checked and written.

The output folder is fenced and each scan's outputs are atomic:
  * `out` must be empty or new, unless `overwrite`: then only what this run writes there is
    cleared first (the folders of its scans, `predictions.json`, and the temporary folders
    a killed run left), and everything else is left alone (`prepare_out`);
  * each scan is written into a temporary folder `<out>/.<name>.partial-<pid>` and renamed
    to `<out>/<name>` when complete, so a kill leaves no partial scan folder under a scan's
    name;
  * `<out>/predictions.json` is written last (a temporary file renamed), listing this run's
    scans only: liver mL, slices, seconds, problems (the reader's notes, the field-of-view
    edge, the plausibility warnings of `checks`, an extra output not written), and for a
    scan that failed its `error`.
A scan that cannot be read or predicted is reported (its record holds the `error`) and the
run goes on with the rest; the caller ends with the list (`failures`).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

import numpy as np
from absl import logging

import liverjax
from liverjax import metric_writer
from liverjax.data import chaos
from liverjax.predict import checks
from liverjax.predict import model as model_lib
from liverjax.predict import outputs as outputs_lib
from liverjax.predict import scans
from liverjax.predict.errors import PredictError
from liverjax.segmentation import postprocess

RECORD_FILE = "predictions.json"
_PARTIAL = ".{name}.partial-{pid}"


def check_out(out: str | pathlib.Path, overwrite: bool = False) -> None:
  """Refuses an output folder that holds anything, unless `overwrite`.

  Raises:
    PredictError: naming `out`: not a folder, or not empty without `overwrite`.
  """
  out = pathlib.Path(out)
  if out.exists() and not out.is_dir():
    raise PredictError(f"{out}: exists and is not a folder (--out must be a folder)")
  if overwrite or not out.is_dir():
    return
  entries = sorted(p.name for p in out.iterdir())
  if entries:
    raise PredictError(f"{out}: not empty ({len(entries)} entries, e.g. {entries[0]}); give "
                       "a new or empty folder, or --overwrite to replace what this run writes "
                       f"there (its scan folders and {RECORD_FILE}; nothing else is touched)")


def prepare_out(out: str | pathlib.Path, names, overwrite: bool = False) -> None:
  """Makes `out` ready for a run writing the scans `names` (`check_out` first).

  With `overwrite`, clears what this run would write: `<out>/<name>` for each name,
  `<out>/predictions.json`, and the temporary scan folders a killed run left (`.*.partial-*`);
  every other entry stays.

  Raises:
    PredictError: see `check_out`. OSError: `out` cannot be made or cleared (read-only).
  """
  out = pathlib.Path(out)
  check_out(out, overwrite)
  out.mkdir(parents=True, exist_ok=True)
  if not overwrite:
    return
  for path in [*(out / n for n in names), out / RECORD_FILE, *out.glob(".*.partial-*")]:
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
      path.unlink()


def failures(records: list[dict]) -> list[dict]:
  """The records of the scans that failed (those with an `error`)."""
  return [r for r in records if r.get("error")]


def _one_line(scan_input, error: BaseException) -> str:
  """An error as one line naming the input (bad input: its own message; else its type)."""
  text = " ".join(str(error).split())
  if isinstance(error, (PredictError, chaos.ChaosError)):
    return text
  if isinstance(error, OSError) and error.filename is not None and error.strerror:
    return f"{error.filename}: {error.strerror}"
  return f"{scan_input}: {type(error).__name__}: {text}"


def _predict_one(model: model_lib.Model, ref: scans.ScanRef, out: pathlib.Path, *,
                 keep_largest: bool, save_probabilities: bool, dicom_seg_output: bool,
                 chaos_format: str, modality: str | None, batch_size: int | None,
                 adapt_bn: str, intensity: str) -> dict:
  """Reads, predicts, checks and writes one scan (atomically, see the module docstring)."""
  start = time.time()
  scan = scans.read_scan(ref, modality)
  for p in scan.problems:
    logging.warning("%s", p)
  logits = model_lib.predict_logits(model, scan.volume, batch_size, adapt_bn, intensity)
  mask = (logits > 0).astype(np.uint8)
  if keep_largest:
    mask = postprocess.largest_component(mask)
  problems = list(scan.problems)
  edge = outputs_lib.field_of_view_edge_problem(mask, scan.volume.spacing[1:],
                                                model.config.data.get("field_of_view"),
                                                int(model.config.data.image_size), ref.name)
  for line in ([edge] if edge else []) + checks.plausibility_problems(model, scan, mask):
    logging.warning("%s", line)
    problems.append(line)
  probabilities = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32) if (
      save_probabilities) else None
  final = out / ref.name
  partial = out / _PARTIAL.format(name=ref.name, pid=os.getpid())
  try:
    written = outputs_lib.write_outputs(scan, mask, partial, probabilities=probabilities,
                                        dicom_seg_output=dicom_seg_output,
                                        chaos_format=chaos_format,
                                        model_version=f"checkpoint step {model.step}",
                                        problems=problems)
    os.rename(partial, final)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  written = {k: str(final / pathlib.Path(v).relative_to(partial)) for k, v in written.items()}
  return dict(name=ref.name, input=str(ref.path), modality=scan.volume.modality,
              adapted_batch_norm=model_lib.adapts_batch_norm(model, scan.volume, adapt_bn),
              histogram_matched=model_lib.matches_histogram(model, scan.volume, intensity),
              sequence=scan.volume.sequence, slices=int(mask.shape[0]),
              liver_ml=round(outputs_lib.liver_ml(mask, scan.volume.spacing), 2),
              seconds=round(time.time() - start, 2), outputs=written, problems=problems)


def _write_record(out: pathlib.Path, model: model_lib.Model, records: list[dict]) -> None:
  """`<out>/predictions.json`, written to a temporary file and renamed into place."""
  tmp = out / f".{RECORD_FILE}.tmp-{os.getpid()}"
  tmp.write_text(json.dumps(dict(liverjax_version=liverjax.__version__,
                                 checkpoint=model.checkpoint, step=model.step, scans=records,
                                 failed=[r["name"] for r in failures(records)]), indent=1))
  os.replace(tmp, out / RECORD_FILE)


def predict_paths(model: model_lib.Model, inputs, out: str | pathlib.Path, *,
                  keep_largest: bool = True, save_probabilities: bool = False,
                  dicom_seg_output: bool = True, chaos_format: str = "ground_truth",
                  modality: str | None = None, batch_size: int | None = None,
                  adapt_bn: str = "auto", intensity: str = "auto",
                  overwrite: bool = False) -> list[dict]:
  """Predicts every scan of `inputs` and writes its outputs under `out`.

  Args:
    model: from `model.load_model`.
    inputs: paths (see `scans.find_scans`), each taken whole (no splitting on commas).
    out: the output folder, new or empty unless `overwrite` (`prepare_out`); one subfolder
      per scan (its name made unique).
    keep_largest, batch_size, adapt_bn, intensity: see `model.predict_volume`.
    save_probabilities: also write the probability map.
    dicom_seg_output: write a DICOM-SEG for DICOM input.
    chaos_format: see `outputs.write_outputs`.
    modality: see `scans.read_scan`.
    overwrite: replace what this run writes in a non-empty `out`.

  Returns:
    One record per scan: name, input, modality, slices, liver_ml, seconds, outputs,
    problems; a scan that could not be read, predicted or written has instead `error` (one
    line naming its file) and no outputs (`failures` lists them). Also written to
    `out/predictions.json`, last; one summary line per scan and an ETA are logged.

  Raises:
    PredictError: naming the path: an input that does not exist or holds no scan, a
      non-empty `out` without `overwrite`, DICOM-SEG asked for without highdicom.
    OSError: `out` cannot be made or cleared.
  """
  out = pathlib.Path(out)
  refs = [r for path in inputs for r in scans.find_scans(path)]
  if not refs:
    raise PredictError(f"{', '.join(map(str, inputs))}: no scan found")
  if (dicom_seg_output and outputs_lib.dicom_seg is None
      and any(r.kind != "nifti" for r in refs)):
    raise PredictError(f"{refs[0].path}: {outputs_lib.DICOM_SEG_MISSING} (or --nodicom_seg)")
  names = set()
  for r in refs:
    base, k = r.name, 2
    while r.name in names:
      r.name, k = f"{base}_{k}", k + 1
    names.add(r.name)
  prepare_out(out, [r.name for r in refs], overwrite)
  progress = metric_writer.Progress(0, len(refs))
  records = []
  for i, ref in enumerate(refs):
    start = time.time()
    try:
      record = _predict_one(model, ref, out, keep_largest=keep_largest,
                            save_probabilities=save_probabilities,
                            dicom_seg_output=dicom_seg_output, chaos_format=chaos_format,
                            modality=modality, batch_size=batch_size, adapt_bn=adapt_bn,
                            intensity=intensity)
    except (ValueError, OSError, MemoryError, EOFError) as e:  # this scan; the rest go on
      line = _one_line(ref.path, e)
      # The traceback too with LIVERJAX_TRACEBACK=1 (`liverjax.cli.TRACEBACK_ENV`).
      logging.error("[%d/%d] %s failed: %s", i + 1, len(refs), ref.name, line,
                    exc_info=os.environ.get("LIVERJAX_TRACEBACK", "") not in ("", "0"))
      records.append(dict(name=ref.name, input=str(ref.path), error=line, problems=[line],
                          seconds=round(time.time() - start, 2)))
      progress.append({"seconds": time.time() - start})
      continue
    records.append(record)
    progress.append({"seconds": record["seconds"]})
    _, _, eta = progress.summarize(i + 1)
    test_time = [name for name, on in (("histogram-matched", record["histogram_matched"]),
                                       ("AdaBN", record["adapted_batch_norm"])) if on]
    logging.info("[%d/%d] %s: %s%s, liver %.1f mL, %d slices, %.1fs (ETA %s) -> %s", i + 1,
                 len(refs), ref.name, record["modality"],
                 f" ({', '.join(test_time)})" if test_time else "", record["liver_ml"],
                 record["slices"], record["seconds"], eta, out / ref.name)
  _write_record(out, model, records)
  return records
