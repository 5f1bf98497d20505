"""The tooling of the demo, the notebooks and the benchmarks: training runs, timers, statistics, input pipeline.

This is not what a user of stochastic depth calls (that is the layers,
schedules, callbacks, model surgery, the builders, `sdt.datasets`, and
`sdt.recipes` for a recipe's settings, learning-rate schedule and
optimizer); it is what the experiments the documentation reports were run
with:

- `stochastic_depth_tf.experiments.pipeline`: a recipe's augmentation and
  its `tf.data` input pipeline;
- `stochastic_depth_tf.experiments.training`: `Trainer` (one compiled step
  for many runs of one architecture), `train`, and the BatchNormalization
  set-up a recipe asks for;
- `stochastic_depth_tf.experiments.timing`: `Timer`, the wall-clock seconds
  of each epoch or step of `fit`;
- `stochastic_depth_tf.experiments.statistics`: Student-t intervals over
  seeds and the sentence the demo concludes with.

Earlier releases defined these names in `sdt.recipes`, which still lends
them out, importing them on first use (`sdt.recipes.Trainer` is
`stochastic_depth_tf.experiments.training.Trainer`); the library itself
imports nothing from here.
"""
