"""Test helpers that are not part of the serving library: the checkpoint factory and the demo trainer.

`testkit.checkpoint` writes tiny (or full-size) random checkpoints in OpenBMB's exact file layout,
and trains the demo model that `minicpm_core/demo_data/model/` ships. Tests, benchmarks and the demo
regeneration command use it; the runtime (`minicpm_core`, the app) never imports it.
"""
