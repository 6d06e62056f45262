"""Preprocessing of CHAOS volumes: intensity normalisation, mask binarisation, resizing.

numpy + cv2 only. All functions are pure (inputs are not modified).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from liverjax.data import chaos

# MR Ground gray levels (CHAOS): liver 63 (55..70), right kidney 126, left kidney 189, spleen 252.
MR_LIVER_RANGE = (55, 70)
CT_MASK_THRESHOLD = 127
# cv2.INTER_NEAREST samples at floor(x * scale), half a pixel off the centre-aligned grid
# that INTER_LINEAR / INTER_AREA use; INTER_NEAREST_EXACT is centre-aligned, so mask
# and image stay registered after resizing.
_MASK_INTERP = getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)


def window_ct(hu: np.ndarray, center: float = 40.0, width: float = 400.0) -> np.ndarray:
  """Maps HU through a display window.

  Args:
    hu: CT values in HU, any shape.
    center, width: the window (HU); width > 0.

  Returns:
    float32, same shape, (hu - (center - width/2)) / width clipped to [0, 1].
  """
  if width <= 0:
    raise ValueError(f"window width must be > 0, got {width}")
  lo = center - width / 2.0
  out = (np.asarray(hu, dtype=np.float32) - np.float32(lo)) / np.float32(width)
  return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def normalize_mr(image: np.ndarray, percentiles=(0.5, 99.5)) -> np.ndarray:
  """Robust min/max normalisation of one MR volume.

  Args:
    image: raw MR intensities, any shape (a whole volume: the percentiles are per call).
    percentiles: (low, high) percentiles taken as 0 and 1.

  Returns:
    float32, same shape, in [0, 1]; all zeros for a constant image.
  """
  x = np.asarray(image, dtype=np.float32)
  lo, hi = np.percentile(x, percentiles)
  if not hi > lo:
    return np.zeros_like(x)
  out = (x - np.float32(lo)) / np.float32(hi - lo)
  return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
  hist, edges = np.histogram(values, bins=bins)
  centers = (edges[:-1] + edges[1:]) / 2.0
  w0 = np.cumsum(hist).astype(np.float64)
  w1 = w0[-1] - w0
  s0 = np.cumsum(hist * centers)
  m0 = s0 / np.maximum(w0, 1)
  m1 = (s0[-1] - s0) / np.maximum(w1, 1)
  between = w0 * w1 * (m0 - m1) ** 2
  return float(centers[int(np.argmax(between[:-1]))]) if bins > 1 else float(centers[0])


def body_mask(image: np.ndarray) -> np.ndarray:
  """Foreground (body) voxels of a volume: above an Otsu threshold.

  Args:
    image: float volume (CT in HU or raw MR), any shape.

  Returns:
    bool array, same shape. Otsu is computed on the volume clipped to its
    0.5..99.5 percentiles so that padding values and metal do not dominate.
  """
  x = np.asarray(image, dtype=np.float32)
  lo, hi = np.percentile(x, (0.5, 99.5))
  if not hi > lo:
    return np.ones(x.shape, dtype=bool)
  t = _otsu_threshold(np.clip(x, lo, hi).ravel())
  return x > t


def standardize_volume(image: np.ndarray, clip: float = 3.0) -> np.ndarray:
  """Z-score over the body voxels, clipped to +-clip std, mapped to [0, 1].

  Args:
    image: one volume (CT in HU or raw MR), any shape.
    clip: number of standard deviations kept (> 0).

  Returns:
    float32, same shape, in [0, 1]: (clip(z, -clip, clip) + clip) / (2 clip),
    with mean/std of the voxels in `body_mask` (all voxels if the body is
    under 1% of the volume); 0.5 everywhere for a constant image.
  """
  if clip <= 0:
    raise ValueError(f"clip must be > 0, got {clip}")
  x = np.asarray(image, dtype=np.float32)
  body = body_mask(x)
  vals = x[body] if body.sum() >= max(1, 0.01 * x.size) else x.ravel()
  mean, std = float(vals.mean()), float(vals.std())
  if std <= 1e-8:
    return np.full(x.shape, 0.5, dtype=np.float32)
  z = (x - np.float32(mean)) / np.float32(std)
  out = (np.clip(z, -clip, clip) + clip) / (2.0 * clip)
  return out.astype(np.float32, copy=False)


def binarize_mask(mask_gray: np.ndarray, modality: str) -> np.ndarray:
  """Liver mask from CHAOS Ground gray values.

  Args:
    mask_gray: uint8 gray values, any shape.
    modality: "CT" (liver where > 127) or "MR" (liver where 55 <= v <= 70;
      kidneys 126/189 and spleen 252 are background). Case-insensitive.
      A mask whose values are all 0/1 is already binary (the NIfTI reader's
      liver mask) and is returned as it is, for either modality.

  Returns:
    uint8 0/1, same shape.
  """
  m = np.asarray(mask_gray)
  mod = str(modality).upper()
  if mod in ("CT", "MR") and m.size and m.max() <= 1:
    return m.astype(np.uint8)
  if mod == "CT":
    return (m > CT_MASK_THRESHOLD).astype(np.uint8)
  if mod == "MR":
    lo, hi = MR_LIVER_RANGE
    return ((m >= lo) & (m <= hi)).astype(np.uint8)
  raise ValueError(f"modality must be 'CT' or 'MR', got {modality!r}")


def _resize_slice(img: np.ndarray, sh: int, sw: int) -> np.ndarray:
  """One slice to sh rows x sw columns."""
  h, w = img.shape
  if h == sh and w == sw:
    return img.copy()
  if h >= sh and w >= sw:
    return cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
  if h <= sh and w <= sw:
    return cv2.resize(img, (sw, sh), interpolation=cv2.INTER_LINEAR)
  # Shrinking along one axis, enlarging along the other: one axis at a time.
  img = cv2.resize(img, (sw, h),
                   interpolation=cv2.INTER_AREA if w > sw else cv2.INTER_LINEAR)
  return cv2.resize(img, (sw, sh),
                    interpolation=cv2.INTER_AREA if h > sh else cv2.INTER_LINEAR)


def resize_volume(image: np.ndarray, mask: np.ndarray | None,
                  size) -> tuple[np.ndarray, np.ndarray | None]:
  """Resizes every slice to size x size (or to (height, width) when `size` is a pair).

  Args:
    image: [Z,H,W] float (any real dtype).
    mask: [Z,H,W] integer labels (kept as they are), or None.
    size: output height and width (int), or a (height, width) pair.

  Returns:
    (image float32 [Z,h,w], mask uint8 [Z,h,w] or None), (h, w) from `size`. Image:
    INTER_AREA when shrinking, bilinear when enlarging (per axis when mixed).
    Mask: nearest neighbour (centre-aligned INTER_NEAREST_EXACT), so its set of
    values never grows: a binary mask stays binary.
  """
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f"image must be [Z,H,W], got shape {image.shape}")
  if mask is not None and np.shape(mask) != image.shape:
    raise ValueError(f"mask shape {np.shape(mask)} != image shape {image.shape}")
  sh, sw = _size_hw(size)
  img = image.astype(np.float32, copy=False)
  out_img = np.empty((img.shape[0], sh, sw), np.float32)
  for z in range(img.shape[0]):
    out_img[z] = _resize_slice(img[z], sh, sw)
  if mask is None:
    return out_img, None
  return out_img, resize_labels(mask, (sh, sw))


def _size_hw(size) -> tuple[int, int]:
  sh, sw = (size, size) if np.isscalar(size) else size
  sh, sw = int(sh), int(sw)
  if sh <= 0 or sw <= 0:
    raise ValueError(f"size must be > 0, got {size}")
  return sh, sw


def resize_labels(labels: np.ndarray, size) -> np.ndarray:
  """Resizes every slice of a label map [Z,H,W] (values 0..255) to uint8 [Z,size,size]
  (or [Z,height,width] when `size` is a (height, width) pair).

  Nearest neighbour, centre-aligned (INTER_NEAREST_EXACT, registered with the
  image resize of `resize_volume`): the set of values never grows.
  """
  m = np.asarray(labels).astype(np.uint8, copy=False)
  if m.ndim != 3:
    raise ValueError(f"labels must be [Z,H,W], got shape {m.shape}")
  sh, sw = _size_hw(size)
  out = np.empty((m.shape[0], sh, sw), np.uint8)
  for z in range(m.shape[0]):
    out[z] = cv2.resize(m[z], (sw, sh), interpolation=_MASK_INTERP)
  return out


def field_of_view_shape(shape_hw, spacing_yx, size: int, field_of_view: float) -> tuple[int, int]:
  """The in-plane size (rows, columns) a slice is resized to before `crop_or_pad`, so that its
  pixels are `field_of_view / size` mm.

  Args:
    shape_hw: the native slice shape (H, W).
    spacing_yx: its native pixel size (row, column) in mm.
    size: the output slice size S.
    field_of_view: the output's side in mm (> 0).

  Returns:
    (round(H * spacing_y * S / fov), round(W * spacing_x * S / fov)), each at least 1.
  """
  if not field_of_view > 0:
    raise ValueError(f"field_of_view must be > 0 mm, got {field_of_view}")
  (h, w), (sy, sx) = shape_hw, spacing_yx
  if not (sy > 0 and sx > 0):
    raise ValueError(f"pixel spacing must be > 0 mm, got {spacing_yx}")
  scale = size / float(field_of_view)
  return max(1, int(round(h * sy * scale))), max(1, int(round(w * sx * scale)))


def field_of_view_window(shape_hw, spacing_yx, size: int, field_of_view: float):
  """Where the field-of-view crop of `crop_or_pad` falls on a native slice.

  Args: as `field_of_view_shape`.

  Returns:
    (rows, columns): for each axis, None where the slice was padded (the model sees all of
    it), else (start, stop) of the part the model sees, in native pixels (floats; the edge of
    native pixel i is at i).
  """
  grid = field_of_view_shape(shape_hw, spacing_yx, size, field_of_view)
  kept, _ = _centred_overlap(grid[0], grid[1], size)
  return tuple(None if g <= size else (k.start * n / g, k.stop * n / g)
               for n, g, k in zip(shape_hw, grid, kept))


def _centred_overlap(h: int, w: int, size: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
  """(rows, columns) of an h x w slice and of a size x size grid centred on each other, where
  the two overlap: (the h x w side's slices, the grid's slices)."""
  def starts(n):  # (start on the n side, start on the grid side)
    return max(0, (n - size) // 2), max(0, (size - n) // 2)
  (iy, oy), (ix, ox) = starts(h), starts(w)
  ny, nx = min(h, size), min(w, size)
  return ((slice(iy, iy + ny), slice(ix, ix + nx)), (slice(oy, oy + ny), slice(ox, ox + nx)))


def crop_or_pad(volume: np.ndarray, size: int) -> np.ndarray:
  """Centres [Z, h, w] on a [Z, size, size] grid: crops what lies outside, pads with zeros.

  The same dtype; the centre of the input lands on the centre of the output (to within half a
  pixel when h - size or w - size is odd). `uncrop_or_pad` is its inverse on the overlap.
  """
  v = np.asarray(volume)
  z, h, w = v.shape
  (sy, sx), (gy, gx) = _centred_overlap(h, w, size)
  out = np.zeros((z, size, size), v.dtype)
  out[:, gy, gx] = v[:, sy, sx]
  return out


def uncrop_or_pad(volume: np.ndarray, shape_hw, fill) -> np.ndarray:
  """The inverse of `crop_or_pad`: [Z, S, S] back to [Z, h, w], `fill` where the crop cut.

  Args:
    volume: [Z, S, S] (e.g. logits on the model's grid).
    shape_hw: (h, w) that `crop_or_pad` received.
    fill: the value for the parts of (h, w) that were cropped away (e.g. a background logit).
  """
  v = np.asarray(volume)
  z, size, _ = v.shape
  h, w = shape_hw
  (sy, sx), (gy, gx) = _centred_overlap(h, w, size)
  out = np.full((z, h, w), fill, v.dtype)
  out[:, sy, sx] = v[:, gy, gx]
  return out


@dataclasses.dataclass
class PreparedVolume:
  """A volume ready for training: normalised image, binary liver mask, optional organ map."""
  patient_id: str
  modality: str
  sequence: str
  image: np.ndarray  # float32 [Z,S,S] in [0,1]
  mask: np.ndarray  # uint8 [Z,S,S] 0/1
  spacing: tuple[float, float, float]  # (z, y, x) mm, in-plane scaled for the resize
  # uint8 [Z,S,S] organ labels numbered by `nifti.ORGANS` (0 background, 1 liver, ...),
  # resized like the mask; None where the reader gave none (CHAOS DICOM + PNG).
  organs: np.ndarray | None = None
  # The fraction of the (resized) liver mask that the `field_of_view` crop cut away: 0.0 without
  # a crop or where the liver lies inside it. The evaluation scores what is left.
  liver_cut: float = 0.0
  # False for a target scan read without labels (`data.<m>.adapt_root`): its mask is all
  # zeros and means nothing; it is never trained on with that mask nor tested.
  labelled: bool = True


def prepare_volume(volume: chaos.Volume, *, image_size: int, normalization: str = "window",
                   ct_window=(40.0, 400.0), ct_window_from_dicom: bool = False,
                   mr_percentiles=(0.5, 99.5),
                   field_of_view: float | None = None) -> PreparedVolume:
  """Normalises, binarises and resizes one volume.

  Args:
    volume: from `chaos.read_series` / `chaos.load_volumes`.
    image_size: output slice size S.
    field_of_view: None: the whole slice is resized to S x S (its pixel size then depends on
      the scan's field of view). A side in mm: every slice is resized to pixels of
      field_of_view / S mm (`field_of_view_shape`, from the scan's pixel spacing), then
      centred on the S x S grid (`crop_or_pad`: cropped where the scan is wider, zero-padded
      where it is narrower), so a liver has the same size in pixels whatever the scanner's
      field of view.
    normalization: "window" (CT: `window_ct` with `ct_window` = (center,
      width), or the DICOM window when `ct_window_from_dicom` and present; MR:
      `normalize_mr` with `mr_percentiles`) or "zscore" (`standardize_volume`
      for both modalities). Normalisation is computed at the native resolution.
    ct_window, ct_window_from_dicom, mr_percentiles: see above.

  Returns:
    PreparedVolume: image float32 [Z,S,S] in [0,1], mask uint8 [Z,S,S] 0/1
    (liver only), spacing (z, y*H/h, x*W/w) with (h, w) the resized slice before centring
    ((S, S) without `field_of_view`), organs uint8 [Z,S,S] (the
    volume's `organs` label map, nearest-resized like the mask) or None when
    the volume has none, liver_cut (the fraction of the liver the crop cut, in [0, 1]).
  """
  modality = volume.modality.upper()
  if normalization == "window":
    if modality == "CT":
      center, width = ct_window
      if ct_window_from_dicom and volume.window is not None and volume.window[1] > 0:
        center, width = volume.window
      image = window_ct(volume.image, center, width)
    elif modality == "MR":
      image = normalize_mr(volume.image, mr_percentiles)
    else:
      raise ValueError(f"modality must be 'CT' or 'MR', got {volume.modality!r}")
  elif normalization == "zscore":
    image = standardize_volume(volume.image)
  else:
    raise ValueError(f"normalization must be 'window' or 'zscore', got {normalization!r}")
  mask = binarize_mask(volume.mask, modality)
  h, w = volume.image.shape[1:]
  z, y, x = volume.spacing
  grid = ((image_size, image_size) if field_of_view is None
          else field_of_view_shape((h, w), (y, x), image_size, field_of_view))
  image, mask = resize_volume(image, mask, grid)
  image = np.clip(image, 0.0, 1.0)
  organs = getattr(volume, "organs", None)
  if organs is not None:
    if np.shape(organs) != volume.image.shape:
      raise ValueError(f"{volume.patient_id}: organ map shape {np.shape(organs)} != image "
                       f"shape {volume.image.shape}")
    organs = resize_labels(organs, grid)
  liver_cut = 0.0
  if field_of_view is not None:
    liver = int(np.count_nonzero(mask))
    image, mask = crop_or_pad(image, image_size), crop_or_pad(mask, image_size)
    organs = None if organs is None else crop_or_pad(organs, image_size)
    liver_cut = 1.0 - np.count_nonzero(mask) / liver if liver else 0.0
  return PreparedVolume(
      patient_id=volume.patient_id, modality=volume.modality, sequence=volume.sequence,
      image=image, mask=mask, organs=organs,
      spacing=(float(z), float(y) * h / grid[0], float(x) * w / grid[1]),
      liver_cut=float(liver_cut))
