"""Which checkpoint becomes ``best.pt``: the ``select`` config section of every adaptation method (torch-free, so
configs load without torch). The validators themselves are in :mod:`sim2real.engine.validators`."""

from __future__ import annotations

import dataclasses

from sim2real.engine.run import RESUMABLE
from sim2real.errors import Sim2RealError

#: name -> the val keys it selects by, ``(key, higher_is_better)`` in order (ties broken by later keys).
VALIDATORS: dict[str, tuple[tuple[str, bool], ...]] = {
    "src_val": (("v/src_acc30_sym", True), ("v/src_acc", True)),
    "entropy": (("v/entropy", False),),
    "im": (("v/im", True),),
    "dev": (("v/dev", False),),
    "disc": (("v/disc", False),),
}
SELECT_CHOICES = ("oracle",) + tuple(VALIDATORS)


@dataclasses.dataclass
class SelectConfig:
    """Which checkpoint becomes ``best.pt``, and the label-free validators (:mod:`sim2real.engine.validators`)."""

    by: str = "oracle"
    """``oracle``: the labelled target ``--val`` split (the method's own order: acc@30 sym, then mean angle);
    or a label-free validator: ``src_val``, ``entropy``, ``im``, ``dev``, ``disc`` (``adapt --select NAME``)."""
    log_validators: bool = dataclasses.field(default=False, metadata=RESUMABLE)
    """Also compute and log every available validator at each validation (with ``--val``: to compare them with
    the oracle, ``selection.json``). On whenever ``by`` is a validator."""
    target_n: int = 1000
    """Target images (a fixed draw from the unlabelled target set) the entropy / IM / DEV / disc scores use."""
    source_val_n: int = 0
    """Labelled renders withheld from training for ``src_val`` and ``dev`` (a fixed draw; 0: none, and those two
    validators are unavailable). Changes what the method trains on, so it cannot change on resume."""

    def validate(self) -> None:
        if self.by not in SELECT_CHOICES:
            raise Sim2RealError(f"select.by: expected one of {', '.join(SELECT_CHOICES)}, got {self.by!r}")
        if self.target_n < 2:
            raise Sim2RealError(f"select.target_n: expected an integer >= 2, got {self.target_n}")
        if self.source_val_n < 0:
            raise Sim2RealError(f"select.source_val_n: expected an integer >= 0, got {self.source_val_n}")
        if self.by in ("src_val", "dev") and self.source_val_n < 2:
            raise Sim2RealError(f"select.by {self.by}: needs held-out labelled renders: set select.source_val_n "
                                "(e.g. --set select.source_val_n=500)")

    @property
    def active(self) -> bool:
        return self.by != "oracle" or self.log_validators
