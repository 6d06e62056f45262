"""A prediction run: every scan of the input paths read, predicted, checked and written.

`<out>/predictions.json` lists every scan (liver mL, slices, seconds, problems: e.g.
a predicted liver that reaches the edge of the checkpoint's field-of-view crop).
"""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import logging

import liverjax
from liverjax import metric_writer
from liverjax.predict import model as model_lib
from liverjax.predict import outputs as outputs_lib
from liverjax.predict import scans
from liverjax.predict.errors import PredictError
from liverjax.segmentation import postprocess


def predict_paths(model: model_lib.Model, inputs, out: str | pathlib.Path, *,
                  keep_largest: bool = True, save_probabilities: bool = False,
                  dicom_seg_output: bool = True, chaos_format: str = "ground_truth",
                  modality: str | None = None, batch_size: int | None = None,
                  adapt_bn: str = "auto", intensity: str = "auto") -> list[dict]:
  """Predicts every scan of `inputs` and writes its outputs under `out`.

  Args:
    model: from `model.load_model`.
    inputs: paths (see `scans.find_scans`).
    out: the output folder; one subfolder per scan (its name made unique).
    keep_largest, batch_size, adapt_bn, intensity: see `model.predict_volume`.
    save_probabilities: also write the probability map.
    dicom_seg_output: write a DICOM-SEG for DICOM input.
    chaos_format: see `outputs.write_outputs`.
    modality: see `scans.read_scan`.

  Returns:
    One record per scan: name, input, modality, slices, liver_ml, seconds,
    outputs, problems. Also written to `out/predictions.json`; one summary line
    per scan and an ETA are logged.

  Raises:
    PredictError / chaos.ChaosError: naming the file, on the first bad input.
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
  progress = metric_writer.Progress(0, len(refs))
  records = []
  for i, ref in enumerate(refs):
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
    if edge:
      logging.warning("%s", edge)
      problems.append(edge)
    probabilities = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32) if (
        save_probabilities) else None
    outputs = outputs_lib.write_outputs(scan, mask, out / ref.name,
                                        probabilities=probabilities,
                                        dicom_seg_output=dicom_seg_output,
                                        chaos_format=chaos_format,
                                        model_version=f"checkpoint step {model.step}")
    seconds = time.time() - start
    record = dict(name=ref.name, input=str(ref.path), modality=scan.volume.modality,
                  adapted_batch_norm=model_lib.adapts_batch_norm(model, scan.volume, adapt_bn),
                  histogram_matched=model_lib.matches_histogram(model, scan.volume, intensity),
                  sequence=scan.volume.sequence, slices=int(mask.shape[0]),
                  liver_ml=round(outputs_lib.liver_ml(mask, scan.volume.spacing), 2),
                  seconds=round(seconds, 2), outputs=outputs, problems=problems)
    records.append(record)
    progress.append({"seconds": seconds})
    _, _, eta = progress.summarize(i + 1)
    test_time = [name for name, on in (("histogram-matched", record["histogram_matched"]),
                                       ("AdaBN", record["adapted_batch_norm"])) if on]
    logging.info("[%d/%d] %s: %s%s, liver %.1f mL, %d slices, %.1fs (ETA %s) -> %s", i + 1,
                 len(refs), ref.name, scan.volume.modality,
                 f" ({', '.join(test_time)})" if test_time else "", record["liver_ml"],
                 record["slices"], seconds, eta, out / ref.name)
  out.mkdir(parents=True, exist_ok=True)
  (out / "predictions.json").write_text(json.dumps(
      dict(liverjax_version=liverjax.__version__, checkpoint=model.checkpoint, step=model.step,
           scans=records), indent=1))
  return records
