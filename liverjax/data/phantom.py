"""The synthetic CHAOS phantom: a CT/MR abdominal anatomy and its rendering per modality.

Each synthetic patient is a 3D phantom (body outline, subcutaneous fat, abdominal
wall and paraspinal muscles, vertebra and ribs, liver, spleen, kidneys, aorta and
IVC, stomach, gallbladder, bowel loops with gas and fluid) whose organs vary per
patient and smoothly along the slices. It is rendered per modality:

- CT in Hounsfield units (unenhanced-looking: liver ~55 HU, spleen ~45 HU),
  additive noise of 10-20 HU (`render_ct`).
- MR T1-DUAL in-phase / out-of-phase from a two-compartment water/fat model
  (in = W + F, out = |W - F|, so voxels mixing fat and water go dark: the
  "India ink" rims and the signal drop of fatty marrow) and T2-SPIR (fat
  suppressed; fluid and spleen bright, liver dark). A smooth multiplicative
  bias field (shared by in/out phase, which are one acquisition), Rician
  noise, and arbitrary intensity units (`render_mr`).

Geometry follows radiological convention: the patient's right on the image left,
anterior at the top. The anatomy spans the slices whatever their count (index 0
superior). `liverjax.data.synthetic` writes the rendered patients as DICOM and PNG
in the CHAOS layout.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

# Organ labels of the phantom (`Phantom.organs`).
LIVER, RIGHT_KIDNEY, LEFT_KIDNEY, SPLEEN = 1, 2, 3, 4

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
