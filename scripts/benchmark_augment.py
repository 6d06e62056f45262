"""Throughput of the on-device augmentation ops, AugMix, the domain transform and the DG ops.

Each function is jit-compiled and vmapped over a batch of synthetic [size, size, 1] slices, warmed
up (compiled) once, then timed over --iters calls with block_until_ready. Prints slices/s on the
default JAX device.

  python scripts/benchmark_augment.py --size 128 --batch 32
  python scripts/benchmark_augment.py --size 64 --batch 16 --only gin,location_scale,saliency
"""
from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from liverjax.augment import augmix  # noqa: E402
from liverjax.augment import dg  # noqa: E402
from liverjax.augment import domain  # noqa: E402
from liverjax.augment import ops  # noqa: E402


def _slices(batch: int, size: int) -> tuple[jax.Array, jax.Array]:
  """A batch of smooth-plus-noise slices in [0, 1] with a bright blob, and the blob as mask."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:size, :size] / size
  imgs, masks = [], []
  for i in range(batch):
    base = 0.4 + 0.2 * np.sin(8 * xx + i) * np.cos(5 * yy) + 0.05 * rng.normal(size=(size, size))
    blob = (xx - 0.4) ** 2 + (yy - 0.5) ** 2 < 0.05
    imgs.append(np.clip(base + 0.3 * blob, 0, 1))
    masks.append(blob)
  return (jnp.asarray(np.stack(imgs)[..., None], jnp.float32),
          jnp.asarray(np.stack(masks)[..., None], jnp.float32))


def _time(fn, args, iters: int) -> tuple[float, float]:
  """(compile + first call seconds, mean seconds per call after warm-up)."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(iters):
    out = fn(*args)
  jax.block_until_ready(out)
  return first, (time.perf_counter() - t0) / iters


def _benchmarks(severity: int):
  """(name, f(key, images, masks) -> arrays) pairs, each to be jitted."""
  def per_slice(op):
    return lambda key, x, m: jax.vmap(op)(x)

  def keyed(op):
    return lambda key, x, m: jax.vmap(op)(jax.random.split(key, x.shape[0]), x)

  out = [
      ('salt_and_pepper(0.05)', keyed(lambda k, x: ops.salt_and_pepper(k, x, 0.05))),
      ('gaussian_blur(sigma=1.5)', per_slice(lambda x: ops.gaussian_blur(x, 1.5))),
      ('median_blur(3)', per_slice(lambda x: ops.median_blur(x, 3))),
      ('median_blur(5)', per_slice(lambda x: ops.median_blur(x, 5))),
      ('bilateral_filter(r=2)', per_slice(lambda x: ops.bilateral_filter(x, 0.1, 1.5, 2))),
      ('sharpness(1.5)', per_slice(lambda x: ops.sharpness(x, 1.5))),
      ('brightness(0.1)', per_slice(lambda x: ops.brightness(x, 0.1))),
      ('contrast(1.3)', per_slice(lambda x: ops.contrast(x, 1.3))),
      ('gamma(0.8)', per_slice(lambda x: ops.gamma(x, 0.8))),
      ('clahe(2.0, 8x8)', per_slice(lambda x: ops.clahe(x, 2.0))),
      ('equalize_histogram', per_slice(ops.equalize_histogram)),
      ('affine(image+mask)', lambda key, x, m: jax.vmap(
          lambda a, b: ops.affine(a, b, 12.0, (3.0, -2.0), True))(x, m)),
      (f'random_affine(sev={severity})', lambda key, x, m: jax.vmap(
          functools.partial(ops.random_affine, severity=severity))(
              jax.random.split(key, x.shape[0]), x, m)),
      ('random_spatial(15 deg, zoom 0.85-1.2, 8 %)', lambda key, x, m: jax.vmap(
          ops.random_spatial)(jax.random.split(key, x.shape[0]), x, m)),
  ]
  for name, fn in ops.RANDOM_PHOTOMETRIC_OPS:
    out.append((f'random_{name}(sev={severity})',
                keyed(functools.partial(fn, severity=severity))))
  out.append((f'augmix(w=3, d=1-3, sev={severity}, geometric)', lambda key, x, m: augmix.augmix_batch(
      key, x, m, width=3, depth=(1, 3), alpha=1.0, severity=severity, geometric=True)))
  out.append((f'augmix(w=3, d=1-3, sev={severity}, geometric, shared_ops)',
              lambda key, x, m: augmix.augmix_batch(key, x, m, width=3, depth=(1, 3), alpha=1.0,
                                                    severity=severity, shared_ops=True)))
  out.append((f'augmix(w=3, d=1-3, sev={severity}, photometric only)',
              lambda key, x, m: augmix.augmix_batch(key, x, m, width=3, depth=(1, 3), alpha=1.0,
                                                    severity=severity, geometric=False)))
  # Domain generalisation (augment/dg.py). Organ labels for the local location-scale: the mask
  # blob as organ 1 and the right half of the slice as organ 2 (3 label values with background).
  def organs(m):
    right = jnp.arange(m.shape[2]) >= m.shape[2] // 2
    return jnp.where(m[..., 0] > 0.5, 1, jnp.where(right[None, None, :], 2, 0)).astype(jnp.int32)

  out += [
      ('gin(4 layers, 2 ch, k 1/3)', lambda key, x, m: dg.gin(key, x)),
      ('gin(one net per batch)', lambda key, x, m: dg.gin(key, x, per_slice=False)),
      ('gin_ipa (two views)', lambda key, x, m: dg.gin_ipa(key, x)),
      ('location_scale(global)', lambda key, x, m: dg.location_scale(key, x)),
      ('location_scale(local, 3 labels)', lambda key, x, m: dg.location_scale(
          key, x, labels=organs(m), num_labels=3)),
      ('location_scale global+local+saliency_fuse', lambda key, x, m: dg.saliency_fuse(
          dg.location_scale(key, x), dg.location_scale(key, x, labels=organs(m), num_labels=3),
          jax.random.normal(key, x.shape))),
  ]
  for source in ('ct', 't1', 't2'):
    out.append((f'domain_transform_batch(source={source}, prob=1)',
                functools.partial(
                    lambda key, x, m, source: domain.domain_transform_batch(
                        key, x, source=source, prob=1.0), source=source)))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', type=int, default=128)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--iters', type=int, default=10)
  parser.add_argument('--severity', type=int, default=3)
  parser.add_argument('--only', default='', help='comma-separated substrings of names to run')
  args = parser.parse_args()

  images, masks = _slices(args.batch, args.size)
  key = jax.random.key(0)
  dev = jax.devices()[0]
  print(f'device: {dev.platform} ({dev.device_kind}), jax {jax.__version__}, '
        f'batch {args.batch} x {args.size}x{args.size}, {args.iters} timed calls after warm-up')
  print(f'{"op":55s} {"compile s":>10s} {"ms/batch":>10s} {"slices/s":>12s}')
  wanted = [s for s in args.only.split(',') if s]
  for name, fn in _benchmarks(args.severity):
    if wanted and not any(w in name for w in wanted):
      continue
    first, per_call = _time(jax.jit(fn), (key, images, masks), args.iters)
    print(f'{name:55s} {first:10.2f} {per_call * 1e3:10.2f} {args.batch / per_call:12.0f}',
          flush=True)


if __name__ == '__main__':
  main()
