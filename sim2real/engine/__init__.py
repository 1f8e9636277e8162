"""The training engine every trainer runs on (``sim2real adapt`` methods, ``sim2real train-pose``).

A *method* supplies its models, optimisers and a step made of named phases (one per optimiser update, each
returning named losses with a ``"total"``); :class:`~sim2real.engine.loop.Trainer` runs it:

* :mod:`~sim2real.engine.run` -- the run folder: create, resume, kind and data checks, config diff, ``--overwrite``;
* :mod:`~sim2real.engine.checkpoint` -- atomic checkpoints (last / best / step_N, retention, ``weights_only`` loads);
* :mod:`~sim2real.engine.metrics` -- one metrics log (``metrics.jsonl`` + TensorBoard, one schema, truncated on
  resume), the on-device meter and the NaN / divergence health check;
* :mod:`~sim2real.engine.interrupt` -- Ctrl-C / SIGTERM deferred to the end of the step in flight;
* :mod:`~sim2real.engine.amp` -- device speed settings (bf16 autocast, channels_last, fused kernels);
* :mod:`~sim2real.engine.sampler` -- batches as a pure function of the step (exact resume);
* :mod:`~sim2real.engine.schedule` -- learning-rate schedules as pure functions of the step;
* :mod:`~sim2real.engine.bank` -- datasets as compact uint8 tensors, the one [-1, 1] conversion per batch;
* :mod:`~sim2real.engine.validate` -- accuracy and rotation errors on a labelled split, and which is better;
* :mod:`~sim2real.engine.device` -- device, seeds and RNG states.

Nothing here knows a method: the engine imports no model, loss or config of a trainer.
"""
