"""A trained U-Net on new scans: `python -m liverjax.predict --workdir=W --input=PATH --out=DIR`.

The package, imports flowing down this list:
  errors.py    `PredictError`: bad input, named in one line
  model.py     `load_model` (a checkpoint and its saved preprocessing), `prepare_input`,
               `predict_logits`, `predict_volume` (one scan, on its own grid)
  scans.py     `find_scans`, `read_scan`: DICOM series, NIfTI, CHAOS; the input's grid kept
  outputs.py   `write_outputs`: NIfTI mask (the input's affine), DICOM-SEG, CHAOS PNGs,
               overlay; `field_of_view_edge_problem`
  checks.py    `plausibility_problems`: warnings (liver volume, side, an MR sequence the
               checkpoint has not seen)
  run.py       `predict_paths`: every scan read, predicted, checked, written atomically
               (a bad scan reported, the rest go on; `failures`); predictions.json last
  __main__.py  the command line (its flags are defined only when run as a program)

Python API (notebooks): `model = predict.load_model(path)`, then
`predict.predict_volume(model, volume) -> mask` on a `liverjax.data.chaos.Volume`;
every name below is importable from `liverjax.predict`.
"""
from liverjax.predict.checks import plausibility_problems
from liverjax.predict.errors import PredictError
from liverjax.predict.model import BACKGROUND_LOGIT
from liverjax.predict.model import Model
from liverjax.predict.model import adapts_batch_norm
from liverjax.predict.model import config_from_saved
from liverjax.predict.model import load_model
from liverjax.predict.model import matches_histogram
from liverjax.predict.model import predict_logits
from liverjax.predict.model import predict_volume
from liverjax.predict.model import prepare
from liverjax.predict.model import prepare_input
from liverjax.predict.outputs import field_of_view_edge_problem
from liverjax.predict.outputs import liver_ml
from liverjax.predict.outputs import native_mask
from liverjax.predict.outputs import write_outputs
from liverjax.predict.run import failures
from liverjax.predict.run import predict_paths
from liverjax.predict.scans import Scan
from liverjax.predict.scans import ScanRef
from liverjax.predict.scans import find_scans
from liverjax.predict.scans import read_scan

__all__ = [
    "BACKGROUND_LOGIT", "Model", "PredictError", "Scan", "ScanRef", "adapts_batch_norm",
    "config_from_saved", "failures", "field_of_view_edge_problem", "find_scans", "liver_ml",
    "load_model", "matches_histogram", "native_mask", "plausibility_problems",
    "predict_logits", "predict_paths", "predict_volume", "prepare", "prepare_input",
    "read_scan", "write_outputs",
]
