"""Domain adaptation methods (``sim2real adapt --method NAME``), one folder each, run on the shared engine.

Layout::

    sim2real/adapt/
        __init__.py      the method registry (this file): name -> module, config class, default config
        data.py          loading and checking the source / target / val inputs every method reads
        samples.py       sample grids of a generator (PNG)
        export.py        ``sim2real export``: a trained generator applied to renders -> adapted HDF5
        pixelda/         PixelDA (Bousmalis et al., CVPR 2017)
            config.py    PixelDAConfig (model / loss / optim / train / perf)
            step.py      the D(+T) and G updates of one step
            train.py     the method the engine runs, and train_pixelda
        feature/         feature-level baselines: DANN, Deep CORAL, multi-kernel MMD (one config shape)
            config.py    FeatureDAConfig and DANNConfig / CORALConfig / MMDConfig (the class names the method)
            losses.py    gradient reversal, domain classifier, CORAL, multi-kernel MMD
            train.py     the method the engine runs, and train_feature_da
        dtn/             DTN (Taigman, Polyak & Wolf, ICLR 2017)
            config.py    DTNConfig (model / loss / optim / train / perf)
            models.py    f (context encoder), g (decoder), G = g o f (PixelDA's generator interface), ternary D
            losses.py    ternary GAN losses, L_CONST, L_TID, total variation
            train.py     the method the engine runs (pretrain f, then D, g, T), and train_dtn
        i2i/             I2I Adapt (Murez et al., CVPR 2018)
            config.py    I2IConfig (model / loss / optim / train / perf)
            models.py    shared encoder f, decoders g_x / g_y, classifier h, D_z, D_x / D_y; h o f and g_y o f views
            losses.py    LSGAN, WGAN-GP gradient penalty, L1
            train.py     the method the engine runs (D update, then f / g / h update), and train_i2i

A new method is a new folder with the same three pieces and an entry in :data:`METHODS`; the engine
(:mod:`sim2real.engine`) gives it run folders, resume, checkpoints, metrics, AMP and the health check.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Sequence

from sim2real.errors import Sim2RealError


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A registered adaptation method.

    Attributes:
        name: ``--method`` value.
        config: ``"module:Class"`` of its config dataclass (imported on use: the registry imports no torch).
        train: ``"module:function"`` of its trainer, ``train(cfg, source, target, run_dir, resume=, val=, log=,
            skip_bad=, overwrite=) -> {"run_dir", "step", "metrics", "best_val"}``.
        default_config: shipped config used when ``--config`` is not given.
        kind: the ``run.json`` / checkpoint kind of its runs.
        summary: one line for ``--help``.
    """

    name: str
    config: str
    train: str
    default_config: str
    kind: str
    summary: str
    target_labelled: bool = False
    """Whether the method can also train on a few labelled target images (``adapt --target-labelled``)."""

    def config_class(self) -> type:
        return _load(self.config)

    def trainer(self):
        return _load(self.train)


def _load(ref: str) -> Any:
    mod, attr = ref.split(":")
    return getattr(importlib.import_module(mod), attr)


#: name -> method
METHODS: dict[str, MethodSpec] = {
    "pixelda": MethodSpec("pixelda", "sim2real.adapt.pixelda.config:PixelDAConfig",
                          "sim2real.adapt.pixelda.train:train_pixelda", "pixelda-linemod", "pixelda",
                          "PixelDA: a GAN generator G(x, z) makes renders look like target images (CVPR 2017)",
                          target_labelled=True),
    "dann": MethodSpec("dann", "sim2real.adapt.feature.config:DANNConfig",
                       "sim2real.adapt.feature.train:train_feature_da", "dann-demo", "dann",
                       "DANN: T's features made domain-invariant by a domain classifier behind gradient reversal "
                       "(Ganin & Lempitsky, ICML 2015)"),
    "coral": MethodSpec("coral", "sim2real.adapt.feature.config:CORALConfig",
                        "sim2real.adapt.feature.train:train_feature_da", "coral-demo", "coral",
                        "Deep CORAL: T's source and target feature covariances matched (Sun & Saenko, 2016)"),
    "mmd": MethodSpec("mmd", "sim2real.adapt.feature.config:MMDConfig",
                      "sim2real.adapt.feature.train:train_feature_da", "mmd-demo", "mmd",
                      "MMD: multi-kernel Gaussian MMD between T's source and target features (DAN, Long et al., ICML 2015)"),
    "i2i": MethodSpec("i2i", "sim2real.adapt.i2i.config:I2IConfig", "sim2real.adapt.i2i.train:train_i2i", "i2i-demo",
                      "i2i", "I2I Adapt: shared encoder, per-domain decoders, latent classifier; latent LSGAN, WGAN-GP "
                             "translations, L1 identity / cycle (Murez et al., CVPR 2018)"),
    "dtn": MethodSpec("dtn", "sim2real.adapt.dtn.config:DTNConfig", "sim2real.adapt.dtn.train:train_dtn", "dtn-demo",
                      "dtn", "DTN: G = g(f(x)) with a pretrained, frozen f; ternary D, f-constancy and target identity "
                             "(Taigman et al., ICLR 2017)"),
}

DEFAULT_METHOD = "pixelda"


def get_method(name: str | None) -> MethodSpec:
    """The registered method ``name`` (None: the default); an unknown name is a one-line error listing the known."""
    name = name or DEFAULT_METHOD
    if name not in METHODS:
        raise Sim2RealError(f"--method {name}: unknown adaptation method (known: {', '.join(sorted(METHODS))})")
    return METHODS[name]


def method_of_kind(kind: str | None) -> MethodSpec | None:
    """The method whose runs have ``run.json`` kind ``kind`` (None if no method has it)."""
    return next((m for m in METHODS.values() if m.kind == kind), None)


def resolve_adapt_config(config: str | Path | None, sets: Sequence[str] | None, run_dir: str | Path, resume: bool,
                         method: str | None = None):
    """The config of a fresh run (``config`` or the method's default, plus ``--set``) or of a resumed one.

    On ``--resume`` the run's own ``config.yaml`` is the base; only keys marked resumable may differ
    (:func:`sim2real.engine.run.resolve_config`).
    """
    from sim2real.engine.run import resolve_config

    spec = get_method(method)
    return resolve_config(spec.config_class(), run_dir, config, sets, resume, default=spec.default_config)


def train_adapt(cfg, source: str | Path, target: str | Path, run_dir: str | Path, resume: bool = False,
                val: str | Path | None = None, log=print, skip_bad: bool = False, overwrite: bool = False,
                method: str | None = None, target_labelled: str | Path | None = None) -> dict[str, Any]:
    """Train adaptation method ``method`` (default PixelDA) with its resolved config ``cfg``; see its trainer.

    ``target_labelled``: a few labelled target images, for the methods that take them (``MethodSpec.target_labelled``).
    """
    spec = get_method(method)
    extra = {}
    if target_labelled is not None:
        if not spec.target_labelled:
            able = ", ".join(m.name for m in METHODS.values() if m.target_labelled)
            raise Sim2RealError(f"--target-labelled: --method {spec.name} does not train on labelled target images "
                                f"(methods that do: {able})")
        extra["target_labelled"] = target_labelled
    if not isinstance(cfg, spec.config_class()):
        raise Sim2RealError(f"--method {spec.name}: the config is a {type(cfg).__name__}, expected "
                            f"{spec.config_class().__name__}")
    return spec.trainer()(cfg, source, target, run_dir, resume=resume, val=val, log=log, skip_bad=skip_bad,
                          overwrite=overwrite, **extra)
