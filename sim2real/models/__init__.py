"""PixelDA networks: generator G, discriminator D, task network T (class + quaternion).

* :class:`~sim2real.models.generator.Generator` -- G(x, z): residual image-to-image network, resolution preserved.
* :class:`~sim2real.models.discriminator.Discriminator` -- D(x): one real/adapted logit per image.
* :class:`~sim2real.models.task.TaskNet` -- T(x, domain): class logits + unit quaternion (w, x, y, z).
"""

from sim2real.models.discriminator import Discriminator
from sim2real.models.generator import Generator, init_normal_
from sim2real.models.task import TaskNet

__all__ = ["Discriminator", "Generator", "TaskNet", "init_normal_"]
