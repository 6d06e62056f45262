"""A trained U-Net on new scans: `python -m liverjax.predict --workdir=W --input=PATH --out=DIR`.

Flags:
  --workdir      a trained U-Net workdir (its best checkpoint by validation Dice)
  --checkpoint   or one `.../checkpoints/<step>` folder (instead of --workdir)
  --input        a DICOM series folder (CT or MR, modality from the header), a
                 NIfTI file, a CHAOS patient folder (`CT/<id>`, `MR/<id>`), a
                 CHAOS folder, or a NIfTI dataset folder (dataset.json, or NIfTI
                 files in it / imagesTr/ / imagesTs/ / images/); repeat the flag
                 for several (each value is one path, commas and all)
  --out          the output folder: one subfolder per scan; new or empty
  --overwrite    use a non-empty --out: what this run writes there (its scan
                 folders, predictions.json) is cleared first, nothing else
  --no_postprocess      keep every predicted voxel (default: the largest 3D component)
  --save_probabilities  also write the liver probability map (float32 NIfTI)
  --chaos_format ground_truth (default) | submission: how CHAOS input's PNGs are named
  --dicom_seg    write a DICOM-SEG for DICOM input (default on; needs highdicom)
  --modality     CT | MR for NIfTI files whose dataset.json does not say it
                 (default: CT when the image has values below -50, else MR)
  --batch_size   slices per device call (default: the checkpoint's eval.batch_size)
  --adapt_bn     auto (default) | on | off: batch-norm statistics of each scan's own slices
                 (auto: as the checkpoint was evaluated, for the modality it was not trained on)
  --intensity    auto (default) | histogram_match | none: match each scan's intensity histogram
                 to the training domain's (auto: as the checkpoint was evaluated,
                 `eval.intensity`, for the modality it was not trained on)

The preprocessing (normalisation, CT window, MR percentiles, image size) is the
one saved with the checkpoint, never a flag; so are the training domain's intensity
quantiles that histogram matching maps a scan to. Each scan is read in the display
orientation of `liverjax.data.orientation`, preprocessed as in training,
predicted slice by slice in batches on the device (channel 0 of the logits:
the liver), the logits resized back to the scan's native in-plane size
(bilinear) before the threshold (logit > 0, probability > 0.5), the largest 3D
connected component kept, and the mask mapped back to the input's own voxel
order. Per scan, in `<out>/<name>/`:
  mask.nii.gz           uint8 0/1 with exactly the input's affine and shape (for
                        DICOM input: the affine of the DICOM geometry, array
                        [column, row, slice] in the reader's slice order)
  probabilities.nii.gz  float32 liver probability (--save_probabilities)
  seg.dcm               DICOM-SEG referencing the source SOP instances (DICOM input)
  Results/*.png         CHAOS input: one PNG per slice named as the CHAOS ground
                        truth (CT liver_GT_NNN.png with NNN the slice's rank from
                        the head end, 0/255; MR <DICOM stem>.png, liver 63), or
                        with --chaos_format=submission as the submission sample
                        (results001.png.. in slice order, liver 63)
  overlay.png           a few slices with the mask
and `<out>/predictions.json`, written last, lists this run's scans (liver mL, slices,
seconds, problems: e.g. a predicted liver that reaches the edge of the checkpoint's
field-of-view crop, an implausible volume or side, an MR sequence the checkpoint has not
seen, a DICOM-SEG that could not be written). Each scan folder is written under a
temporary name and renamed when complete. A scan that cannot be read or predicted is
reported and the others go on; the run then ends with exit code 1 and one line listing
the failed scans. A bad input (no such file, a non-empty --out, a damaged checkpoint)
ends the run at once with one line naming the file, exit code 1 (`liverjax.cli`;
LIVERJAX_TRACEBACK=1 keeps the tracebacks).

The code: `liverjax.predict` (its package docstring maps the modules).
"""
from __future__ import annotations

import jax
from absl import flags
from absl import logging

from liverjax import cli
from liverjax import runtime
from liverjax.predict import model as model_lib
from liverjax.predict import run
from liverjax.predict.errors import PredictError


def _define_flags() -> None:
  """The command-line flags (defined only when run as a program: importing this
  module next to `liverjax.main` or `liverjax.study` defines none)."""
  flags.DEFINE_string("workdir", None, "A trained U-Net workdir (best checkpoint).")
  flags.DEFINE_string("checkpoint", None, "Or one .../checkpoints/<step> folder.")
  flags.DEFINE_multi_string("input", None, "Scan(s): DICOM series folder, NIfTI file, "
                            "CHAOS patient / dataset folder, NIfTI dataset folder; repeat "
                            "the flag for several (a value is never split).")
  flags.DEFINE_string("out", None, "Output folder (new or empty; see --overwrite).")
  flags.DEFINE_bool("overwrite", False, "Use a non-empty --out: clear what this run writes "
                    "there (its scan folders and predictions.json) first, nothing else.")
  flags.DEFINE_bool("no_postprocess", False, "Keep every predicted voxel (default: the "
                    "largest 3D connected component).")
  flags.DEFINE_bool("save_probabilities", False, "Also write probabilities.nii.gz.")
  flags.DEFINE_enum("adapt_bn", "auto", ["auto", "on", "off"], "Test-time batch-norm "
                    "adaptation on each scan; auto: as the checkpoint's eval.adapt_bn, for "
                    "scans of the modality it was not trained on.")
  flags.DEFINE_enum("intensity", "auto", ["auto", "histogram_match", "none"], "Test-time "
                    "histogram matching of each scan to the training domain's intensities; "
                    "auto: as the checkpoint's eval.intensity, for scans of the modality it "
                    "was not trained on.")
  flags.DEFINE_bool("dicom_seg", True, "Write a DICOM-SEG for DICOM input (highdicom).")
  flags.DEFINE_enum("chaos_format", "ground_truth", ["ground_truth", "submission"],
                    "CHAOS input's PNGs: named as the ground truth (CT liver_GT_NNN.png "
                    "0/255, MR <stem>.png liver 63) or as the submission sample "
                    "(results001.png.., liver 63).")
  flags.DEFINE_enum("modality", None, ["CT", "MR"], "Modality of NIfTI files without "
                    "dataset.json (default: guessed from the intensities).")
  flags.DEFINE_integer("batch_size", None, "Slices per device call (default: the "
                       "checkpoint's eval.batch_size).")


def main(argv) -> None:
  """The program: flags -> `load_model` -> `predict_paths`.

  Raises:
    cli.UsageError: stray arguments, a missing flag (exit code 2).
    PredictError: naming the file or the failed scans (exit code 1); so do the errors
      `cli.describe_error` knows (a damaged checkpoint, an unwritable --out).
  """
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if bool(f.workdir) == bool(f.checkpoint):
    raise cli.UsageError("give one of --workdir or --checkpoint")
  if not f.input or not f.out:
    raise cli.UsageError("--input and --out are required")
  run.check_out(f.out, f.overwrite)  # before the checkpoint is loaded: fail fast
  runtime.setup_process()
  model = model_lib.load_model(f.workdir or f.checkpoint)
  logging.info("checkpoint %s (step %d): image size %d, %s normalisation; %d devices (%s)",
               model.checkpoint, model.step, model.config.data.image_size,
               model.config.data.normalization, jax.device_count(),
               jax.devices()[0].platform)
  records = run.predict_paths(
      model, list(f.input), f.out, keep_largest=not f.no_postprocess,
      save_probabilities=f.save_probabilities, dicom_seg_output=f.dicom_seg,
      chaos_format=f.chaos_format, modality=f.modality, batch_size=f.batch_size,
      adapt_bn=f.adapt_bn, intensity=f.intensity, overwrite=f.overwrite)
  failed = run.failures(records)
  if failed:
    raise PredictError(f"{len(failed)} of {len(records)} scans failed (the others are written; "
                       f"all listed in {f.out}/{run.RECORD_FILE}): "
                       + " | ".join(r["error"] for r in failed))


if __name__ == "__main__":
  _define_flags()
  cli.run("liverjax.predict", main)
