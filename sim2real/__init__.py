"""sim2real: CAD models to a pose estimator that works on real images.

Stages: ``render`` (CAD -> HDF5), ``adapt`` (PixelDA), ``train-pose`` / ``evaluate``.
Conventions are stated once in :mod:`sim2real.conventions`; the HDF5 contract in
:mod:`sim2real.data.schema` and ``docs/schema.md``.

Importing this package is cheap: it imports neither torch nor OpenGL.
"""

__version__ = "0.1.0"

from sim2real.errors import Sim2RealError  # noqa: E402

__all__ = ["Sim2RealError", "__version__"]
