"""Benchmark (not a test): synthetic dataset build, reader + preprocessing, input pipeline.

  python scripts/benchmark_data.py --ct=4 --mr=4 --size=128 --image_size=128 [--root=/data/CHAOS]

Prints the generation time of the synthetic CHAOS dataset (or uses --root),
the slices/s of reading + preparing every volume (DICOM decode, HU/normalise,
resize), and the slices/s of the tf.data and numpy pipelines delivering global
batches to the devices.
"""
import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from liverjax.configs import default  # noqa: E402
from liverjax import runtime  # noqa: E402
from liverjax.data import pipeline  # noqa: E402
from liverjax.data import dataset as dataset_lib  # noqa: E402
from liverjax.data import sources as sources_lib  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
  p.add_argument("--root", default=None, help="a CHAOS folder (default: synthetic)")
  p.add_argument("--ct", type=int, default=4)
  p.add_argument("--mr", type=int, default=4)
  p.add_argument("--size", type=int, default=128, help="synthetic image size")
  p.add_argument("--slices", type=int, default=24)
  p.add_argument("--image_size", type=int, default=128, help="training resolution")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--batches", type=int, default=200)
  args = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    config = default.get_config()
    config.data.root = args.root
    config.data.cache_dir = tmp
    config.data.synthetic.update(ct=args.ct, mr=args.mr, size=args.size, slices=args.slices)
    config.data.image_size = args.image_size
    t = time.perf_counter()
    root = sources_lib.resolve_root(config.data)
    print(f"dataset: {root} ready in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    data = dataset_lib.load_dataset(config.data)  # not cached yet: reads and prepares
    dt = time.perf_counter() - t
    n = sum(v.image.shape[0] for v in data.volumes)
    print(f"read + prepare: {len(data.volumes)} volumes, {n} slices in {dt:.2f} s "
          f"({n / dt:.0f} slices/s, to {args.image_size} px)")
    t = time.perf_counter()
    dataset_lib.load_dataset(config.data)
    print(f"cached reload: {time.perf_counter() - t:.2f} s")
    images, masks = dataset_lib.stack_slices(data.volumes)
    mesh = runtime.create_mesh()
    backends = [False] + ([True] if runtime.tensorflow_or_none() else [])
    for use_tf in backends:
      it = pipeline.train_batches(images, masks, global_batch_size=args.batch, mesh=mesh,
                                        seed=0, use_tf=use_tf)
      jax.block_until_ready(next(it))
      t = time.perf_counter()
      for _ in range(args.batches):
        batch = next(it)
      jax.block_until_ready(batch)
      dt = time.perf_counter() - t
      print(f"pipeline ({'tf.data' if use_tf else 'numpy'}): "
            f"{args.batches * args.batch / dt:.0f} slices/s to {jax.device_count()} device(s) "
            f"(batch {args.batch}, {args.image_size} px)")


if __name__ == "__main__":
  main()
