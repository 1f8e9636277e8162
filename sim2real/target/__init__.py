"""``make-target``: a camera-like stand-in for a user's real target images (synthetic, NOT real data).

Real target images (a user's camera pointed at the objects) cannot be shipped or downloaded here, so the demo
needs a stand-in that is *different* from the source renders in the ways real photos are: real photo
backgrounds, other lighting (colours, levels), other surface colours, and a camera's imaging pipeline
(:mod:`sim2real.target.effects`: exposure, blur, vignetting, sensor noise, white balance, gamma, JPEG).
The object geometry and the crop convention are those of ``sim2real render`` (same camera and ``fill``), so a
model trained on the source renders meets the same objects at the same scale, only imaged differently: the
gap PixelDA (Bousmalis et al. 2017) learns to close.

Output: a folder with three files following the schema (docs/schema.md), domain ``target``:

* ``train.h5``: unlabelled (``rgb``, ``depth``, ``K``) in a shuffled order: the images a user would have;
* ``val.h5``: a small labelled split for model selection (the paper's protocol uses ~1,000 labelled target
  images for it, never the test labels);
* ``test.h5``: the labelled test split (label, quat, trans, mask, depth, K and the per-class data).

Every file says what it is: ``description`` = :data:`DESCRIPTION`, ``provenance`` = ``{"stand_in": true, ...}``,
plus the resolved config and seed. Splits render with seeds derived from (seed, split) by hashing
(:func:`~sim2real.target.job.split_seed`), so no split shares a sample stream with another split or with a
``sim2real render`` job of a small seed (``render-default`` uses seed 0: a target train split rendered with seed 0
would repeat its poses one for one).

Resumable: each split is rendered into ``OUT/.work/SPLIT.h5`` by :func:`~sim2real.render.job.run_render`
(sharded, resumable), then camera effects are applied and ``OUT/SPLIT.h5`` is written atomically; an
interrupted run continues with ``resume=True`` and skips finished splits.

Modules::

    config.py     MakeTargetConfig (the job), CameraEffectsConfig (the camera model)
    effects.py    the camera effects on images and depth (pure numpy): sample_params, apply_camera_effects, ...
    job.py        run_make_target: render, camera, write per split; split seeds; resume
"""

from sim2real.target.config import CameraEffectsConfig, MakeTargetConfig, standin_render_config
from sim2real.target.effects import apply_camera_effects, apply_depth_noise
from sim2real.target.job import DESCRIPTION, SPLITS, SplitResult, run_make_target, split_render_config, split_seed

__all__ = [
    "DESCRIPTION", "SPLITS", "CameraEffectsConfig", "MakeTargetConfig", "SplitResult", "apply_camera_effects",
    "apply_depth_noise", "run_make_target", "split_render_config", "split_seed",
    "standin_render_config",
]
