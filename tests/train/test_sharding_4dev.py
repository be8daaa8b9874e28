"""Data parallel: one step on 4 CPU devices equals the 1-device step (in a subprocess, because the
device count is fixed when JAX starts)."""

import os
import pathlib
import subprocess
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
  import jax, numpy as np
  import train_standins as si
  from jaxdet.train import optimizers, sharding, state as state_lib, step as step_lib
  assert jax.device_count() == 4, jax.devices()
  config = si.tiny_config()
  tx, schedule = optimizers.build_optimizer(config.optimizer, total_steps=10)
  model = si.TinyDetector()
  step = step_lib.make_train_step(model=model, loss_fn=si.tiny_loss, tx=tx, schedule=schedule,
                                  ema_decay=0.9)
  batch = step_lib.train_batch(si.make_batch(0, batch_size=8))
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh(devices)
    state = state_lib.create_train_state(model, tx, rng=jax.random.PRNGKey(0),
                                         image_size=si.IMAGE_SIZE)
    state = sharding.replicate(state, mesh)
    fn = sharding.jit_step(step, mesh)
    sharded = sharding.shard_batch(batch, mesh)
    assert len(sharded["image"].sharding.device_set) == len(devices)
    for _ in range(3):
      state, metrics = fn(state, sharded, sharding.replicate(jax.random.PRNGKey(1), mesh))
    kernel_sharding = state.params["cls_head"]["kernel"].sharding
    assert len(kernel_sharding.device_set) == len(devices) and kernel_sharding.is_fully_replicated
    results.append(jax.device_get((state, metrics)))
  (s1, m1), (s4, m4) = results
  np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s4)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  try:
    sharding.check_batch_size(6, sharding.make_mesh())
    raise AssertionError("6 examples over 4 devices must be rejected")
  except ValueError as e:
    assert "not divisible by the 4 devices" in str(e)
  print("OK", float(m1["loss"]), float(m4["loss"]))
""")


def test_four_device_step_equals_one_device_step():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "OK" in proc.stdout
