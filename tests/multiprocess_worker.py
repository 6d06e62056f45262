"""One process of the multi-process training check in tests/test_multiprocess.py (not a test).

  python tests/multiprocess_worker.py --process_id=0 --num_processes=2 --port=12345 --out=a.json

Starts `jax.distributed` on a loopback coordinator with `--local_devices` CPU devices and gloo
collectives, trains `STEPS` steps of a tiny U-Net on fixed global batches (each process feeds
its `pipeline.process_shard` of every batch through `make_array_from_process_local_data`)
and writes the per-step losses as JSON (process 0 only).
"""
import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 3
GLOBAL_BATCH = 16
SIZE = 16


def tiny_config():
  """The default config with a depth-2, 4-channel U-Net and a global batch of 16."""
  from liverjax.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.depth, config.model.base_features = 2, 4
  config.train.batch_size = GLOBAL_BATCH
  return config


def global_batches(steps: int = STEPS) -> list[dict]:
  """`steps` fixed global batches {"image", "mask"}: f32[16,16,16,1], the same in every process."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = rng.random((steps, GLOBAL_BATCH, SIZE, SIZE, 1), dtype=np.float32)
  return [{"image": im, "mask": (im > 0.5).astype(np.float32)} for im in images]


def train_losses(steps: int = STEPS) -> list[float]:
  """Trains `steps` steps on the mesh of all devices of all processes; returns the losses."""
  import jax  # pylint: disable=g-import-not-at-top
  from liverjax import runtime  # pylint: disable=g-import-not-at-top
  from liverjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from liverjax.segmentation import state as train  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  mesh = runtime.create_mesh()
  graphdef, state, tx = train.create_train_state(config, mesh, runtime.prng_key(config, 0))
  step_fn = train.make_train_step(config, graphdef, tx, mesh)
  sharding = runtime.batch_sharding(mesh)
  losses = []
  for i, batch in enumerate(global_batches(steps)):
    local = pipeline.process_shard(batch)
    state, metrics = step_fn(state, pipeline.to_global(local, sharding),
                             runtime.prng_key(config, i))
    losses.append(float(metrics["total"]))
  return losses


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--process_id", type=int, required=True)
  p.add_argument("--num_processes", type=int, required=True)
  p.add_argument("--port", type=int, required=True)
  p.add_argument("--local_devices", type=int, default=4)
  p.add_argument("--out", required=True)
  args = p.parse_args()
  sys.path.insert(0, str(REPO))
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", args.local_devices)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                             num_processes=args.num_processes, process_id=args.process_id,
                             local_device_ids=list(range(args.local_devices)))
  assert jax.device_count() == args.local_devices * args.num_processes, jax.devices()
  losses = train_losses()
  if args.process_id == 0:
    pathlib.Path(args.out).write_text(json.dumps({"losses": losses,
                                                  "devices": jax.device_count()}))
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()
