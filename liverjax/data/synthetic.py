"""Synthetic CHAOS: a CT/MR abdominal phantom written in the exact CHAOS layout.

The real CHAOS data cannot be downloaded everywhere, so this module is the
project's embedded default dataset. Each synthetic patient is a 3D phantom
(body outline, subcutaneous fat, abdominal wall and paraspinal muscles,
vertebra and ribs, liver, spleen, kidneys, aorta and IVC, stomach, gallbladder,
bowel loops with gas and fluid) whose organs vary per patient and smoothly
along the slices. It is rendered per modality:

- CT in Hounsfield units (unenhanced-looking: liver ~55 HU, spleen ~45 HU),
  additive noise of 10-20 HU, stored as uint16 with RescaleIntercept -1000
  like the real CHAOS sample.
- MR T1-DUAL in-phase / out-of-phase from a two-compartment water/fat model
  (in = W + F, out = |W - F|, so voxels mixing fat and water go dark: the
  "India ink" rims and the signal drop of fatty marrow) and T2-SPIR (fat
  suppressed; fluid and spleen bright, liver dark). A smooth multiplicative
  bias field (shared by in/out phase, which are one acquisition), Rician
  noise, and arbitrary uint16 intensity units.

Geometry follows radiological convention (patient's right on the image left,
anterior at the top), DICOM LPS with ImageOrientationPatient [1,0,0,0,1,0].
The phantom's anatomy spans the slices whatever their count, so the header
spacings (CT 2-3 mm, MR 5.5-9 mm) are plausible values, not a physical
extent the anatomy was built in.

Layout written under `<out_dir>/Train_Sets` (as in the CHAOS release):

  CT/<id>/DICOM_anon/i0000,0000b.dcm ...   z decreases as the index goes up
  CT/<id>/Ground/liver_GT_000.png ...      0/255, pairs with file index NNN
  MR/<id>/T1DUAL/DICOM_anon/InPhase/IMG-<series>-<even>.dcm
  MR/<id>/T1DUAL/DICOM_anon/OutPhase/IMG-<series>-<even - 1>.dcm
  MR/<id>/T1DUAL/Ground/IMG-<series>-<even>.png
  MR/<id>/T2SPIR/DICOM_anon/IMG-<series>-<n>.dcm
  MR/<id>/T2SPIR/Ground/IMG-<series>-<n>.png
  MR masks: liver 63, right kidney 126, left kidney 189, spleen 252.

CLI: python -m liverjax.data.synthetic --out=DIR --ct=4 --mr=4 [--size=128
--slices=24 --seed=0]
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time

import cv2
import numpy as np
import pydicom
from absl import flags
from pydicom.dataset import FileMetaDataset
from pydicom import uid as dcm_uid
from scipy import ndimage

from liverjax.data import filelock

GENERATOR_VERSION = 1
MARKER_NAME = "synthetic_chaos.json"

# CHAOS training patient ids (CT and MR are different people in CHAOS, and so
# here: the same id in both modalities is two unrelated phantoms).
_CHAOS_CT_IDS = (1, 2, 5, 6, 8, 10, 14, 16, 18, 19, 21, 22, 23, 24, 25, 26, 27,
                 28, 29, 30)
_CHAOS_MR_IDS = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36,
                 37, 38, 39)

# Organ labels of the phantom, and the CHAOS mask values they are written as.
LIVER, RIGHT_KIDNEY, LEFT_KIDNEY, SPLEEN = 1, 2, 3, 4
MR_MASK_VALUES = np.array([0, 63, 126, 189, 252], np.uint8)
CT_MASK_VALUES = np.array([0, 255, 0, 0, 0], np.uint8)  # liver only

# Tissues of the phantom.
(AIR, FAT, MUSCLE, CORTICAL, MARROW, LIVER_T, SPLEEN_T, KCORTEX, KMEDULLA,
 FLUID, BLOOD, BOWEL, DISC, TABLE, HVESSEL) = range(15)
_N_TISSUES = 15

# ------------------------------------------------------------ contrast tables
# Index = tissue. CT: mean HU and texture amplitude (HU per unit of the
# smooth random field).
_CT_HU = np.array([-1000, -100, 50, 900, 250, 55, 45, 140, 38, 10, 40, 35, 80,
                   150, 38], np.float32)
_CT_TEX = np.array([0, 8, 5, 120, 40, 5, 4, 10, 6, 3, 3, 8, 5, 20, 3],
                   np.float32)
# MR T1 water and fat signal (a.u. before gain), T2-SPIR signal, and relative
# texture amplitude. Liver fat is per patient (mild steatosis 0-8 %).
_T1_WATER = np.array([0, 40, 330, 20, 240, 580, 370, 430, 320, 110, 200, 330,
                      300, 0, 250], np.float32)
_T1_FAT = np.array([0, 900, 15, 10, 380, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0],
                   np.float32)
_T2 = np.array([0, 70, 120, 15, 110, 190, 470, 430, 560, 1000, 60, 260, 450,
                0, 80], np.float32)
_MR_TEX = np.array([0, 0.05, 0.05, 0.2, 0.1, 0.06, 0.05, 0.05, 0.06, 0.03,
                    0.05, 0.1, 0.05, 0, 0.05], np.float32)

# Echo / repetition times (ms) at 1.5 T, as in CHAOS (Philips Achieva).
T1_OUT_TE, T1_IN_TE, T1_TR = 2.3, 4.6, 150.0
T2_TE, T2_TR = 80.0, 1600.0


@dataclasses.dataclass
class Phantom:
  """One synthetic patient's anatomy on the slice grid.

  tissue: uint8 [Z,H,W] tissue class per voxel (the module's tissue codes).
  organs: uint8 [Z,H,W] 0 background, 1 liver, 2 right kidney, 3 left kidney,
    4 spleen.
  texture: float32 [Z,H,W] smooth zero-mean unit-std random field.
  liver_fat: liver fat fraction (0..0.08).
  """
  tissue: np.ndarray
  organs: np.ndarray
  texture: np.ndarray
  liver_fat: float


# ------------------------------------------------------------ shape helpers
def _noise_field(rng: np.random.Generator, shape, sigma_z: float,
                 sigma_xy: float) -> np.ndarray:
  """Smooth Gaussian random field, float32 [Z,H,W], zero mean, unit std.

  Large in-plane sigmas are generated on a coarser grid and upsampled.
  """
  z, h, w = shape
  f = max(1, int(sigma_xy // 3))
  small = (z, -(-h // f) + 2, -(-w // f) + 2)
  n = rng.standard_normal(small, dtype=np.float32)
  n = ndimage.gaussian_filter(n, (sigma_z, sigma_xy / f, sigma_xy / f),
                              mode="reflect")
  if f > 1:
    n = ndimage.zoom(n, (1, f, f), order=1, prefilter=False)
  n = n[:, f:f + h, f:f + w]
  n -= n.mean()
  n /= n.std() + 1e-8
  return np.ascontiguousarray(n, np.float32)


def _ellipse(x, y, cx, cy, ax, ay, angle=0.0, p=2.0):
  """Normalised superellipse radius (<1 inside) of points (x, y); broadcasts."""
  dx, dy = x - cx, y - cy
  if angle:
    c, s = float(np.cos(angle)), float(np.sin(angle))
    dx, dy = c * dx + s * dy, -s * dx + c * dy
  u, v = dx / ax, dy / ay
  if p == 2.0:
    return np.sqrt(u * u + v * v)
  return (np.abs(u) ** p + np.abs(v) ** p) ** (1.0 / p)


def _profile(t, top, bottom, peak=0.5, power=0.5):
  """Cross-section scale in [0,1] of an organ spanning slices t in [top, bottom].

  0 outside, a rounded rise from `top`, maximum at fraction `peak` of the span.
  """
  s = (t - top) / (bottom - top)
  inside = (s > 0) & (s < 1)
  s = np.clip(s, 1e-6, 1 - 1e-6)
  g = float(np.log(0.5) / np.log(peak))
  return np.where(inside, np.sin(np.pi * s ** g) ** power, 0.0).astype(np.float32)


def _blob(x, y, t, cx, cy, ax, ay, top, bottom, *, peak=0.5, angle=0.0, p=2.0,
          wobble=None, wobble_amp=0.0):
  """Radius field (<1 inside), float32 [Z,H,W], of a 3D organ spanning slices
  t in [top, bottom] whose section shrinks to its ends (inf on other slices)."""
  prof = _profile(t, top, bottom, peak)
  z = t.shape[0]
  shape = (z, y.shape[1], x.shape[2])
  on = np.nonzero(prof.reshape(-1) > 1e-3)[0]
  r = np.full(shape, np.inf, np.float32)
  if on.size == 0:
    return r
  lo, hi = on[0], on[-1] + 1
  pick = lambda a: a[lo:hi] if np.ndim(a) == 3 and np.shape(a)[0] == z else a
  pr = prof[lo:hi]
  rr = _ellipse(x, y, pick(cx), pick(cy), ax * pr + 1e-6, ay * pr + 1e-6,
                angle, p)
  if wobble is not None:
    rr = rr + wobble_amp * wobble[lo:hi]
  r[lo:hi] = rr
  return r


# ------------------------------------------------------------ the phantom
def make_phantom(rng: np.random.Generator, size: int, slices: int,
                 fov_mm: float) -> Phantom:
  """Builds one random patient on a [slices, size, size] grid.

  Args:
    rng: the patient's generator (everything random is drawn from it).
    size: in-plane pixels (rows = columns).
    slices: number of axial slices, index 0 superior.
    fov_mm: field of view in mm (size * pixel spacing): sets the body's and the
      organs' size in pixels.
  Returns:
    A Phantom (tissue codes, organ labels, texture field, liver fat fraction).
  """
  shape = (slices, size, size)
  x = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1)[None, None, :]
  y = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1)[None, :, None]
  t = ((np.arange(slices, dtype=np.float32) + 0.5) / slices)[:, None, None]
  k = 2.0 / fov_mm  # normalised image units per mm
  sc = rng.uniform(0.88, 1.12)  # organ size factor

  coarse = _noise_field(rng, shape, 0.08 * slices, size / 10)
  texture = _noise_field(rng, shape, 0.03 * slices, max(1.0, size / 64))
  vessel_f = _noise_field(rng, shape, 0.04 * slices, size / 36)
  bubbles = _noise_field(rng, shape, 0.02 * slices, max(0.8, size / 90))

  tissue = np.full(shape, AIR, np.uint8)
  organs = np.zeros(shape, np.uint8)

  # Body: a superellipse with angular bumps, slowly varying along z.
  bcx = rng.normal(0, 0.015)
  bcy = rng.uniform(-0.02, 0.05)
  half_w = rng.uniform(140, 180) * k
  half_h = half_w * rng.uniform(0.66, 0.8)
  grow = rng.uniform(-0.06, 0.06)
  bax = np.minimum(half_w * (1 + grow * (t - 0.5)), 0.93)
  bay = np.minimum(half_h * (1 + 0.5 * grow * (t - 0.5)), 0.8)
  theta = np.arctan2(y - bcy, x - bcx)
  bump = sum(rng.uniform(-0.025, 0.025) * np.cos(j * theta + rng.uniform(0, 6.3))
             for j in range(2, 6))
  r_body = _ellipse(x, y, bcx, bcy, bax, bay, p=2.4) / (1 + bump)
  ft0 = rng.uniform(0.05, 0.14)  # subcutaneous fat, fraction of the radius
  mt = rng.uniform(0.035, 0.055)  # abdominal wall muscle
  ft = ft0 * (1 + 0.35 * np.cos(2 * theta + rng.uniform(0, 6.3)))
  body = r_body < 1
  cavity = r_body < 1 - ft - mt
  tissue[body] = FAT
  tissue[r_body < 1 - ft] = MUSCLE
  tissue[cavity] = FAT  # visceral fat
  # CT table under the patient (rendered as air in MR).
  table_y = bcy + bay.max() + rng.uniform(0.03, 0.06)
  table = (np.abs(y - table_y - 0.15 * x * x) < 0.012) & (np.abs(x) < 0.95)
  tissue[np.broadcast_to(table & ~body, shape)] = TABLE

  cax = bax * (1 - ft0 - mt)
  cay = bay * (1 - ft0 - mt)

  def pos(u, v):
    return bcx + u * cax, bcy + v * cay

  # Spine landmark: vertebral body centre.
  yv = bcy + bay * (1 - ft0) - 70 * k
  xv = bcx + rng.normal(0, 3) * k

  # Retroperitoneum around the spine and aorta: no liver or spleen there.
  retro = _ellipse(x, y, xv, yv + 5 * k, 50 * k, 52 * k) < 1
  peritoneal = cavity & ~retro

  # Paraspinal and psoas muscles.
  for side in (-1, 1):
    r = _ellipse(x, y, xv + side * 38 * k, yv + 40 * k, 30 * k, 24 * k)
    tissue[(r < 1) & body] = MUSCLE
    r = _blob(x, y, t, xv + side * 42 * k, yv - 4 * k, 22 * k * sc, 18 * k * sc,
              rng.uniform(0.3, 0.45), 1.6, peak=0.5)
    tissue[r < 1] = MUSCLE

  # Bowel loops (lower abdomen), walls of soft tissue around gas/fluid/feces.
  for _ in range(int(rng.integers(18, 28))):
    u, v = rng.uniform(-0.6, 0.65), rng.uniform(-0.8, 0.35)
    tc, th = rng.uniform(0.15, 1.05), rng.uniform(0.08, 0.22)
    rad = rng.uniform(12, 28) * k
    cx, cy = pos(u, v)
    r = _blob(x, y, t, cx, cy, rad, rad * rng.uniform(0.7, 1.3), tc - th,
              tc + th, wobble=coarse, wobble_amp=0.08)
    wall = (r < 1) & cavity
    tissue[wall] = BOWEL
    lumen = (r < 0.8) & cavity
    kind = rng.choice(3, p=(0.4, 0.3, 0.3))
    if kind == 0:
      tissue[lumen] = AIR
    elif kind == 1:
      tissue[lumen] = FLUID
    else:
      tissue[lumen & (bubbles > 1.0)] = AIR

  # Stomach (patient's left, anterior, upper): fluid with an air cap anteriorly.
  cx, cy = pos(rng.uniform(0.25, 0.45), rng.uniform(-0.45, -0.2))
  ax, ay = rng.uniform(45, 65) * k * sc, rng.uniform(30, 45) * k * sc
  top = rng.uniform(-0.05, 0.12)
  bottom = top + rng.uniform(0.3, 0.45)
  prof = _profile(t, top, bottom, 0.4)
  r = _blob(x, y, t, cx, cy, ax, ay, top, bottom, peak=0.4,
            angle=rng.uniform(-0.5, 0.2), wobble=coarse, wobble_amp=0.06)
  stomach = (r < 1) & cavity
  tissue[stomach] = BOWEL
  lumen = (r < 0.85) & cavity
  tissue[lumen] = FLUID
  air_level = cy - ay * prof * rng.uniform(0.1, 0.6)
  tissue[lumen & (y < air_level)] = AIR

  # Spleen (patient's left = image right, posterolateral).
  cx, cy = pos(rng.uniform(0.55, 0.68), rng.uniform(0.2, 0.45))
  top = rng.uniform(-0.08, 0.15)
  bottom = rng.uniform(0.42, 0.62)
  r = _blob(x, y, t, cx, cy, rng.uniform(30, 40) * k * sc,
            rng.uniform(50, 68) * k * sc, top, bottom, peak=0.45,
            angle=rng.uniform(-0.9, -0.4), p=2.2, wobble=coarse,
            wobble_amp=0.1)
  spleen = (r < 1) & peritoneal
  tissue[spleen] = SPLEEN_T
  organs[spleen] = SPLEEN

  # Liver: right lobe (image left) plus a left lobe reaching across the midline
  # anteriorly in the upper slices; lobulated by the coarse field.
  top = rng.uniform(-0.1, 0.1)
  bottom = rng.uniform(0.62, 0.88)
  s = np.clip((t - top) / (bottom - top), 0, 1)
  u0, v0 = rng.uniform(-0.5, -0.4), rng.uniform(-0.15, 0.0)
  cx, cy = pos(u0 - 0.1 * s, v0 + 0.1 * s)
  r_right = _blob(x, y, t, cx, cy, rng.uniform(82, 98) * k * sc,
                  rng.uniform(88, 105) * k * sc, top, bottom,
                  peak=rng.uniform(0.3, 0.45), p=2.4, angle=rng.uniform(-0.2, 0.2))
  l_bottom = top + (bottom - top) * rng.uniform(0.35, 0.6)
  cx, cy = pos(rng.uniform(-0.05, 0.15), rng.uniform(-0.55, -0.35))
  r_left = _blob(x, y, t, cx, cy, rng.uniform(65, 90) * k * sc,
                 rng.uniform(30, 42) * k * sc, top + 0.02, l_bottom, peak=0.4,
                 angle=rng.uniform(-0.35, 0.05))
  r_liver = np.minimum(r_right, r_left) + 0.1 * coarse
  liver = (r_liver < 1) & peritoneal
  tissue[liver] = LIVER_T
  organs[liver] = LIVER
  vessels = liver & (np.abs(vessel_f) < 0.1) & (r_liver < 0.9)
  tissue[vessels] = HVESSEL

  # Kidneys (lower slices): cortex, medulla, renal sinus fat at the hilum.
  for label, side in ((RIGHT_KIDNEY, -1), (LEFT_KIDNEY, 1)):
    cx = xv + side * rng.uniform(55, 70) * k
    cy = yv + rng.uniform(-10, 5) * k
    top = rng.uniform(0.42, 0.55) - (0.06 if side > 0 else 0.0)
    bottom = top + rng.uniform(0.45, 0.6)
    ang = side * rng.uniform(0.35, 0.7)
    ax, ay = rng.uniform(26, 34) * k * sc, rng.uniform(36, 46) * k * sc
    r = _blob(x, y, t, cx, cy, ax, ay, top, bottom, peak=0.5, angle=ang,
              wobble=coarse, wobble_amp=0.04)
    kid = (r < 1) & cavity
    tissue[kid] = KCORTEX
    tissue[kid & (r < 0.7)] = KMEDULLA
    organs[kid] = label
    hx, hy = cx - side * 0.45 * ax, cy - 0.3 * ay
    sinus = _blob(x, y, t, hx, hy, 0.35 * ax, 0.3 * ay, top, bottom, peak=0.5)
    tissue[kid & (sinus < 1)] = FAT

  # Gallbladder: fluid pear at the inferior, anterior edge of the liver.
  cx, cy = pos(rng.uniform(-0.3, -0.1), rng.uniform(-0.4, -0.15))
  top = rng.uniform(0.4, 0.55)
  r = _blob(x, y, t, cx, cy, rng.uniform(12, 18) * k * sc,
            rng.uniform(16, 26) * k * sc, top, top + rng.uniform(0.15, 0.3),
            peak=0.6, angle=rng.uniform(-0.6, 0.6))
  gb = (r < 1) & cavity
  tissue[gb] = FLUID
  organs[gb] = 0

  # Aorta and IVC anterior to the spine.
  r = _ellipse(x, y, xv + rng.uniform(8, 16) * k, yv - 30 * k,
               rng.uniform(10, 13) * k, rng.uniform(10, 13) * k)
  tissue[np.broadcast_to(r < 1, shape)] = BLOOD
  organs[np.broadcast_to(r < 1, shape)] = 0
  r = _ellipse(x, y, xv - rng.uniform(18, 26) * k, yv - 28 * k + 4 * k * t,
               rng.uniform(12, 16) * k, rng.uniform(8, 11) * k)
  tissue[r < 1] = BLOOD
  organs[r < 1] = 0

  # Vertebra: body (cortex + marrow, discs at some levels), arch, processes,
  # spinal canal with CSF.
  disc = np.cos(2 * np.pi * (t * rng.uniform(3.5, 5) + rng.uniform(0, 1))) > 0.82
  bone = np.zeros(shape, bool)
  r = _ellipse(x, y, xv, yv, 21 * k, 17 * k)
  rv = np.broadcast_to(r, shape)
  bone |= rv < 1
  arch = _ellipse(x, y, xv, yv + 30 * k, 17 * k, 14 * k)
  spinous = _ellipse(x, y, xv, yv + 50 * k, 5 * k, 15 * k)
  transverse = np.minimum(_ellipse(x, y, xv - 24 * k, yv + 24 * k, 14 * k, 5 * k),
                          _ellipse(x, y, xv + 24 * k, yv + 24 * k, 14 * k, 5 * k))
  post = np.broadcast_to(np.minimum(np.minimum(arch, spinous), transverse),
                         shape)
  bone_any = (rv < 1) | (post < 1)
  tissue[bone_any] = CORTICAL
  tissue[(rv < 0.8) | ((post < 0.55) & (arch > 0.6))] = MARROW
  disc_mask = np.broadcast_to(disc, shape) & (rv < 1)
  tissue[disc_mask] = DISC
  canal = np.broadcast_to(_ellipse(x, y, xv, yv + 28 * k, 10 * k, 9 * k) < 1,
                          shape)
  tissue[canal] = FLUID
  organs[bone_any] = 0

  # Ribs in the upper slices, in the abdominal wall, appearing obliquely cut.
  rib_bottom = rng.uniform(0.45, 0.7)
  for j, ang in enumerate(np.deg2rad([-155, -130, -50, -25, 0, 20, 160, 180,
                                      200, 215, 35, 145])):
    ang = ang + rng.normal(0, 0.06)
    on = (np.cos(2 * np.pi * (t * 2.6 + 0.29 * j + rng.uniform(0, 1))) > 0.1)
    on &= t < rib_bottom + (0.15 if abs(np.cos(ang)) > 0.8 else 0.0)
    rr = 1 - ft0 - 0.5 * mt
    rx = bcx + rr * bax * np.cos(ang)
    ry = bcy + rr * bay * np.sin(ang)
    r = _ellipse(x, y, rx, ry, 7 * k, 5 * k, angle=float(ang))
    rib = (r < 1) & on
    tissue[rib] = CORTICAL
    tissue[(r < 0.55) & on] = MARROW
    organs[rib] = 0

  return Phantom(tissue=tissue, organs=organs, texture=texture,
                 liver_fat=float(rng.uniform(0.0, 0.08)))


# ------------------------------------------------------------ rendering
def render_ct(ph: Phantom, rng: np.random.Generator, size: int) -> np.ndarray:
  """CT image in HU, float32 [Z,H,W]: tissue HU + texture, blur, 10-20 HU noise."""
  mean = _CT_HU.copy()
  mean[LIVER_T] = rng.uniform(48, 62)
  mean[SPLEEN_T] = rng.uniform(40, 50)
  mean[MUSCLE] = rng.uniform(42, 58)
  mean[FAT] = rng.uniform(-115, -85)
  hu = mean[ph.tissue] + _CT_TEX[ph.tissue] * ph.texture
  sigma = 0.5 * size / 128 + 0.2
  hu = ndimage.gaussian_filter(hu, (0, sigma, sigma))
  noise = ndimage.gaussian_filter(
      rng.standard_normal(hu.shape, dtype=np.float32), (0, 0.6, 0.6))
  noise /= noise.std() + 1e-8
  hu += rng.uniform(10, 20) * noise
  return hu.astype(np.float32)


def _bias_field(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
  """Smooth multiplicative field, float32 [Z,H,W], ~0.6..1.5."""
  z, h, w = shape
  x = np.linspace(-1, 1, w, dtype=np.float32)[None, None, :]
  y = np.linspace(-1, 1, h, dtype=np.float32)[None, :, None]
  t = np.linspace(-1, 1, z, dtype=np.float32)[:, None, None]
  c = rng.normal(0, strength, 7)
  log_b = (c[0] * x + c[1] * y + c[2] * x * y + c[3] * x * x + c[4] * y * y
           + 0.3 * c[5] * t + 0.5 * c[6] * x * t)
  return np.exp(log_b).astype(np.float32)


def _rician(rng: np.random.Generator, s: np.ndarray, sigma: float) -> np.ndarray:
  """|s + n1 + i n2|: magnitude of the signal plus complex Gaussian noise."""
  n1 = rng.standard_normal(s.shape, dtype=np.float32) * sigma
  n2 = rng.standard_normal(s.shape, dtype=np.float32) * sigma
  return np.sqrt((s + n1) ** 2 + n2 ** 2)


def render_mr(ph: Phantom, rng: np.random.Generator, size: int):
  """MR T1 in-phase, T1 out-of-phase and T2-SPIR, float32 [Z,H,W] each, >= 0.

  T1: water W and fat F signal maps (texture, per-patient jitter), blurred
  separately (partial volume) then in = W + F, out = |W - F|; one bias field
  for both echoes. T2-SPIR: its own table and bias field. Rician noise.
  """
  jit = rng.uniform(0.94, 1.06, _N_TISSUES).astype(np.float32)
  mod = 1 + _MR_TEX[ph.tissue] * ph.texture
  water = (_T1_WATER * jit)[ph.tissue] * mod
  fat_tab = _T1_FAT * jit
  fat = fat_tab[ph.tissue] * mod
  fat += np.where(ph.tissue == LIVER_T, ph.liver_fat * _T1_WATER[LIVER_T], 0)
  water -= np.where(ph.tissue == LIVER_T, ph.liver_fat * _T1_WATER[LIVER_T], 0)
  sigma = 0.8 * size / 128 + 0.3  # MR is blurrier than CT
  water = ndimage.gaussian_filter(water, (0, sigma, sigma))
  fat = ndimage.gaussian_filter(fat, (0, sigma, sigma))
  bias1 = _bias_field(rng, ph.tissue.shape, 0.12)
  g1 = rng.uniform(0.8, 1.4)
  t1_in = (water + fat) * bias1 * g1 * 0.96  # slight extra T2* decay at 4.6 ms
  t1_out = np.abs(water - fat) * bias1 * g1
  n1 = rng.uniform(0.015, 0.035) * 500 * g1
  t1_in = _rician(rng, t1_in, n1)
  t1_out = _rician(rng, t1_out, n1)

  jit2 = rng.uniform(0.94, 1.06, _N_TISSUES).astype(np.float32)
  t2 = (_T2 * jit2)[ph.tissue] * mod
  t2 = ndimage.gaussian_filter(t2, (0, sigma, sigma))
  g2 = rng.uniform(0.7, 1.3)
  t2 = t2 * _bias_field(rng, ph.tissue.shape, 0.15) * g2
  t2 = _rician(rng, t2, rng.uniform(0.02, 0.04) * 400 * g2)
  return t1_in.astype(np.float32), t1_out.astype(np.float32), t2.astype(
      np.float32)


# ------------------------------------------------------------ DICOM / PNG
def _uid(*parts) -> str:
  return dcm_uid.generate_uid(entropy_srcs=["liverjax-synthetic"] +
                              [str(p) for p in parts])


def _series_dataset(fields: dict, rows: int, cols: int) -> pydicom.Dataset:
  """A DICOM image dataset (explicit VR little endian, uint16 MONOCHROME2)
  holding the series-wide `fields`; slices fill in the rest (_write_slice)."""
  sop_class = (dcm_uid.CTImageStorage if fields["Modality"] == "CT" else
               dcm_uid.MRImageStorage)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = sop_class
  meta.MediaStorageSOPInstanceUID = "1.2"
  meta.TransferSyntaxUID = dcm_uid.ExplicitVRLittleEndian
  meta.ImplementationClassUID = dcm_uid.PYDICOM_IMPLEMENTATION_UID
  meta.ImplementationVersionName = "LIVERJAX_SYN1"
  ds = pydicom.Dataset()
  ds.file_meta = meta
  ds.SpecificCharacterSet = "ISO_IR 100"
  ds.SOPClassUID = sop_class
  for key, value in fields.items():
    setattr(ds, key, value)
  ds.Rows, ds.Columns = rows, cols
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated = 16
  ds.BitsStored = 16
  ds.HighBit = 15
  ds.PixelRepresentation = 0
  return ds


def _write_slice(ds: pydicom.Dataset, path: pathlib.Path, pixels: np.ndarray,
                 fields: dict) -> None:
  """Sets the per-slice `fields` and uint16 `pixels` [H,W] on the series
  dataset `ds` (mutated) and writes it to `path`."""
  for key, value in fields.items():
    setattr(ds, key, value)
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  ds.PixelData = np.ascontiguousarray(pixels, "<u2").tobytes()
  ds.save_as(path, enforce_file_format=True)


def _ds(v: float) -> str:
  """A DS string (at most 16 characters)."""
  return f"{v:.6g}"


def _write_png(path: pathlib.Path, mask: np.ndarray) -> None:
  if not cv2.imwrite(str(path), mask):
    raise OSError(f"{path}: could not write PNG")


def _common_fields(pid: str, modality: str, seed: int) -> dict:
  return dict(
      Modality=modality,
      Manufacturer="liverjax synthetic",
      PatientName=f"CHAOS^{modality}_SYN_{pid}",
      PatientID=pid,
      PatientSex="O",
      BodyPartExamined="ABDOMEN",
      StudyInstanceUID=_uid(seed, modality, pid, "study"),
      FrameOfReferenceUID=_uid(seed, modality, pid, "frame"),
      StudyID=pid,
      ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
  )


def _positions(rng, size, spacing, slices, dz):
  """Per-slice ImagePositionPatient (first pixel centre), z decreasing."""
  x0 = -(size / 2 - 0.5) * spacing
  y0 = -(size / 2 - 0.5) * spacing + rng.uniform(-20, 20)
  z0 = round(rng.uniform(-200, 200) * 2) / 2
  return [(x0, y0, z0 - i * dz) for i in range(slices)]


def _write_ct_patient(patient_dir: pathlib.Path, pid: str, seed: int,
                      rng: np.random.Generator, size: int, slices: int) -> None:
  spacing = rng.uniform(0.68, 0.9) * 512 / size
  dz = float(rng.choice([2.0, 2.5, 3.0]))
  ph = make_phantom(rng, size, slices, size * spacing)
  hu = render_ct(ph, rng, size)
  stored = np.clip(np.rint(hu + 1000), 0, 65535).astype(np.uint16)
  masks = CT_MASK_VALUES[ph.organs]
  dcm_dir = patient_dir / "DICOM_anon"
  gt_dir = patient_dir / "Ground"
  dcm_dir.mkdir(parents=True)
  gt_dir.mkdir(parents=True)
  fields = _common_fields(pid, "CT", seed)
  fields.update(
      ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
      SeriesInstanceUID=_uid(seed, "CT", pid, "series"),
      SeriesNumber=4, SeriesDescription="ABDOMEN 2.0 B30f",
      KVP="120", ConvolutionKernel="B", PatientPosition="FFS",
      PixelSpacing=[_ds(spacing), _ds(spacing)], SliceThickness=_ds(dz),
      RescaleIntercept="-1000", RescaleSlope="1", RescaleType="HU",
      WindowCenter="50", WindowWidth="400")
  positions = _positions(rng, size, spacing, slices, dz)
  loc0 = round(rng.uniform(0, 100))
  ds = _series_dataset(fields, size, size)
  for i in range(slices):
    f = dict(
        SOPInstanceUID=_uid(seed, "CT", pid, "sop", i),
        InstanceNumber=i + 1,
        ImagePositionPatient=[_ds(v) for v in positions[i]],
        # As in the real sample: SliceLocation grows as z decreases.
        SliceLocation=_ds(loc0 + i * dz))
    _write_slice(ds, dcm_dir / f"i{i:04d},0000b.dcm", stored[i], f)
    _write_png(gt_dir / f"liver_GT_{i:03d}.png", masks[i])


def _window(img: np.ndarray):
  lo, hi = np.percentile(img, [1, 99.5])
  return _ds(round((lo + hi) / 2)), _ds(max(1, round(hi - lo)))


def _write_mr_patient(patient_dir: pathlib.Path, pid: str, seed: int,
                      rng: np.random.Generator, size: int, slices: int) -> None:
  spacing = rng.uniform(1.4, 1.75) * 256 / size
  ph = make_phantom(rng, size, slices, size * spacing)
  t1_in, t1_out, t2 = render_mr(ph, rng, size)
  masks = MR_MASK_VALUES[ph.organs]
  s_t2 = int(rng.integers(2, 4))
  s_t1 = int(rng.integers(4, 8))
  common = _common_fields(pid, "MR", seed)
  common.update(MagneticFieldStrength="1.5", PatientPosition="HFS",
                PixelSpacing=[_ds(spacing), _ds(spacing)])
  dz1 = round(rng.uniform(5.5, 9.0), 1)
  dz2 = round(rng.uniform(5.5, 9.0), 1)

  t1_dir = patient_dir / "T1DUAL"
  in_dir = t1_dir / "DICOM_anon" / "InPhase"
  out_dir = t1_dir / "DICOM_anon" / "OutPhase"
  t1_gt = t1_dir / "Ground"
  t2_dir = patient_dir / "T2SPIR"
  t2_dcm = t2_dir / "DICOM_anon"
  t2_gt = t2_dir / "Ground"
  for d in (in_dir, out_dir, t1_gt, t2_dcm, t2_gt):
    d.mkdir(parents=True)

  # T1-DUAL: one dual-echo series, out-of-phase odd, in-phase even numbers.
  t1 = dict(common)
  t1.update(SeriesInstanceUID=_uid(seed, "MR", pid, "t1"), SeriesNumber=s_t1,
            SeriesDescription="T1_FFE_DUAL", ProtocolName="T1DUAL",
            ScanningSequence="GR", SequenceVariant="SP", RepetitionTime=_ds(T1_TR),
            FlipAngle="80", SliceThickness=_ds(dz1),
            SpacingBetweenSlices=_ds(dz1))
  pos = _positions(rng, size, spacing, slices, dz1)
  w_in, w_out = _window(t1_in), _window(t1_out)
  st_in = np.clip(np.rint(t1_in), 0, 65535).astype(np.uint16)
  st_out = np.clip(np.rint(t1_out), 0, 65535).astype(np.uint16)
  t1.update(RescaleIntercept="0", RescaleSlope="1",
            ImageType=["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"])
  ds_in = _series_dataset(dict(t1, EchoTime=_ds(T1_IN_TE), EchoNumbers=2,
                               WindowCenter=w_in[0], WindowWidth=w_in[1]),
                          size, size)
  ds_out = _series_dataset(dict(t1, EchoTime=_ds(T1_OUT_TE), EchoNumbers=1,
                                WindowCenter=w_out[0], WindowWidth=w_out[1]),
                           size, size)
  for i in range(slices):
    where = dict(ImagePositionPatient=[_ds(v) for v in pos[i]],
                 SliceLocation=_ds(pos[i][2]))
    n_in, n_out = 2 * i + 2, 2 * i + 1
    stem = f"IMG-{s_t1:04d}-{n_in:05d}"
    _write_slice(ds_in, in_dir / f"{stem}.dcm", st_in[i],
                 dict(where, SOPInstanceUID=_uid(seed, "MR", pid, "t1in", i),
                      InstanceNumber=n_in))
    _write_png(t1_gt / f"{stem}.png", masks[i])
    _write_slice(ds_out, out_dir / f"IMG-{s_t1:04d}-{n_out:05d}.dcm",
                 st_out[i],
                 dict(where, SOPInstanceUID=_uid(seed, "MR", pid, "t1out", i),
                      InstanceNumber=n_out))

  # T2-SPIR: its own series and slice positions, same anatomy.
  t2f = dict(common)
  w2 = _window(t2)
  t2f.update(SeriesInstanceUID=_uid(seed, "MR", pid, "t2"), SeriesNumber=s_t2,
             SeriesDescription="T2_SPIR", ProtocolName="T2SPIR",
             ScanningSequence="SE", SequenceVariant="SK", EchoTime=_ds(T2_TE),
             EchoNumbers=1, RepetitionTime=_ds(T2_TR), FlipAngle="90",
             SliceThickness=_ds(dz2), SpacingBetweenSlices=_ds(dz2),
             ImageType=["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
             RescaleIntercept="0", RescaleSlope="1", WindowCenter=w2[0],
             WindowWidth=w2[1])
  pos = _positions(rng, size, spacing, slices, dz2)
  st2 = np.clip(np.rint(t2), 0, 65535).astype(np.uint16)
  ds = _series_dataset(t2f, size, size)
  for i in range(slices):
    f = dict(SOPInstanceUID=_uid(seed, "MR", pid, "t2", i),
             InstanceNumber=i + 1,
             ImagePositionPatient=[_ds(v) for v in pos[i]],
             SliceLocation=_ds(pos[i][2]))
    stem = f"IMG-{s_t2:04d}-{i + 1:05d}"
    _write_slice(ds, t2_dcm / f"{stem}.dcm", st2[i], f)
    _write_png(t2_gt / f"{stem}.png", masks[i])


# ------------------------------------------------------------ public API
def patient_ids(modality: str, n: int) -> list[str]:
  """The ids of the first `n` synthetic patients of "CT" or "MR" (CHAOS ids)."""
  ids = list(_CHAOS_CT_IDS if modality == "CT" else _CHAOS_MR_IDS)
  while len(ids) < n:
    ids.append(ids[-1] + 1)
  return [str(i) for i in ids[:n]]


def _params(n_ct, n_mr, size, slices, seed) -> dict:
  return dict(generator="liverjax.data.synthetic", version=GENERATOR_VERSION,
              n_ct=n_ct, n_mr=n_mr, size=size, slices=slices, seed=seed)


LOCK_NAME = ".synthetic_chaos.lock"


def generate_chaos(out_dir, *, n_ct: int = 4, n_mr: int = 4, size: int = 128,
                   slices: int = 24, seed: int = 0) -> pathlib.Path:
  """Writes a synthetic CHAOS training set and returns `out_dir/Train_Sets`.

  Args:
    out_dir: folder to write into (created). An existing `Train_Sets` there is
      replaced only if it was written by this generator (the marker file
      `synthetic_chaos.json` next to it); otherwise FileExistsError.
    n_ct, n_mr: number of CT and MR patients (different synthetic people).
    size: image rows = columns (>= 32).
    slices: slices per volume (>= 4), index 0 superior.
    seed: everything is a deterministic function of (seed, modality, patient
      index, size, slices): the same arguments give byte-identical files.
  Returns:
    The `Train_Sets` path holding `CT/<id>/...` and `MR/<id>/...`.

  The set is written into a temporary folder next to the target and renamed
  into place, under the lock file `out_dir/.synthetic_chaos.lock` (see
  `cached_chaos`), so no reader that takes the lock sees a partial set.
  """
  _check_args(n_ct, n_mr, size, slices)
  out_dir = pathlib.Path(out_dir).expanduser()
  with filelock.locked(out_dir / LOCK_NAME):
    return _generate_locked(out_dir, n_ct, n_mr, size, slices, seed)


def _check_args(n_ct, n_mr, size, slices) -> None:
  if size < 32 or slices < 4:
    raise ValueError(f"size {size} must be >= 32 and slices {slices} >= 4")
  if n_ct < 0 or n_mr < 0:
    raise ValueError(f"patient counts must be >= 0, got {n_ct}, {n_mr}")


def _generate_locked(out_dir: pathlib.Path, n_ct, n_mr, size, slices, seed) -> pathlib.Path:
  """generate_chaos's body; the caller holds the lock of `out_dir`."""
  root = out_dir / "Train_Sets"
  marker = out_dir / MARKER_NAME
  if root.exists() and not marker.exists():
    raise FileExistsError(
        f"{root}: exists and was not written by the synthetic generator; "
        "refusing to overwrite it")
  out_dir.mkdir(parents=True, exist_ok=True)
  tmp = out_dir / f".Train_Sets.partial-{os.getpid()}"
  if tmp.exists():
    shutil.rmtree(tmp)
  try:
    for modality, n, write in (("CT", n_ct, _write_ct_patient),
                               ("MR", n_mr, _write_mr_patient)):
      (tmp / modality).mkdir(parents=True)
      for idx, pid in enumerate(patient_ids(modality, n)):
        rng = np.random.default_rng([seed, 0 if modality == "CT" else 1, idx])
        write(tmp / modality / pid, pid, seed, rng, size, slices)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if marker.exists():
    marker.unlink()
  # Swap the new set in with renames; the old one is removed only afterwards.
  old = out_dir / f".Train_Sets.old-{os.getpid()}"
  if root.exists():
    os.rename(root, old)
  os.rename(tmp, root)
  if old.exists():
    shutil.rmtree(old)
  params = _params(n_ct, n_mr, size, slices, seed)
  params["patients"] = {"CT": patient_ids("CT", n_ct),
                        "MR": patient_ids("MR", n_mr)}
  marker_tmp = out_dir / f".{MARKER_NAME}.tmp-{os.getpid()}"
  marker_tmp.write_text(json.dumps(params, indent=1))
  os.replace(marker_tmp, marker)
  return root


def cached_chaos(out_dir, *, n_ct: int = 4, n_mr: int = 4, size: int = 128,
                 slices: int = 24, seed: int = 0) -> pathlib.Path:
  """Like generate_chaos, but reuses `out_dir` when it already holds a complete
  set generated with the same arguments (per its marker file).

  The check and the generation run under the lock file
  `out_dir/.synthetic_chaos.lock`: a second process asking for the same set
  while the first generates it waits, then finds it finished and reuses it.
  """
  _check_args(n_ct, n_mr, size, slices)
  out_dir = pathlib.Path(out_dir).expanduser()
  with filelock.locked(out_dir / LOCK_NAME):
    marker = out_dir / MARKER_NAME
    root = out_dir / "Train_Sets"
    if marker.exists() and root.is_dir():
      try:
        old = json.loads(marker.read_text())
      except (OSError, ValueError):
        old = {}
      old.pop("patients", None)
      if old == _params(n_ct, n_mr, size, slices, seed):
        return root
    return _generate_locked(out_dir, n_ct, n_mr, size, slices, seed)


def main(argv):
  del argv
  fl = flags.FLAGS
  start = time.perf_counter()
  root = generate_chaos(fl.out, n_ct=fl.ct, n_mr=fl.mr, size=fl.size,
                        slices=fl.slices, seed=fl.seed)
  elapsed = time.perf_counter() - start
  for modality in ("CT", "MR"):
    for pdir in sorted((root / modality).iterdir(), key=lambda p: int(p.name)):
      n_dcm = sum(1 for _ in pdir.rglob("*.dcm"))
      n_png = sum(1 for _ in pdir.rglob("*.png"))
      print(f"{modality}/{pdir.name}: {n_dcm} DICOM, {n_png} PNG masks")
  print(f"wrote {fl.ct} CT + {fl.mr} MR synthetic patients "
        f"({fl.size}x{fl.size}, {fl.slices} slices, seed {fl.seed}) to {root} "
        f"in {elapsed:.2f} s")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("out", None, "Output folder (Train_Sets is made in it).")
  flags.DEFINE_integer("ct", 4, "Number of CT patients.")
  flags.DEFINE_integer("mr", 4, "Number of MR patients.")
  flags.DEFINE_integer("size", 128, "Image size (rows = columns).")
  flags.DEFINE_integer("slices", 24, "Slices per volume.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.mark_flag_as_required("out")
  app.run(main)
