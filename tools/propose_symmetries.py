#!/usr/bin/env python3
"""Print geometric symmetry proposals for the objects of a manifest (or a folder of meshes), for a person to confirm.

For every object, :func:`sim2real.symmetry_proposal.propose_symmetry` scores candidate rotations (n-fold about the
model and principal axes, continuous sweeps, 180 degree flips) by the symmetric Chamfer distance of surface samples,
relative to the object's diameter, and proposes what passes ``--tol``. The proposal ignores texture and
colour: check renders before writing a ``symmetry:`` entry into the manifest (see assets/README.md).

Usage::

    python tools/propose_symmetries.py [assets/objects.yaml | MESH_FOLDER | bundled] [--tol 0.01] [--yaml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from sim2real.errors import Sim2RealError
    from sim2real.render.assets import load_parts, resolve_entries
    from sim2real.symmetry_proposal import propose_symmetry

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("objects", nargs="?", default="bundled", help="manifest .yaml, mesh folder or 'bundled'")
    ap.add_argument("--mesh-units", default="m", help="units of a mesh folder (m, cm, mm)")
    ap.add_argument("--tol", type=float, default=0.01, help="acceptance: Chamfer / diameter below this (default 0.01)")
    ap.add_argument("--hausdorff-tol", type=float, default=0.05,
                    help="acceptance: 99th-percentile distance / diameter below this (default 0.05)")
    ap.add_argument("--points", type=int, default=20000, help="surface samples per sampling (default 20000)")
    ap.add_argument("--sweep-step", type=float, default=15.0, help="continuous sweep step, degrees (default 15)")
    ap.add_argument("--all-scores", action="store_true", help="print every candidate's score")
    ap.add_argument("--yaml", action="store_true", help="print the proposals as manifest 'symmetry:' entries")
    args = ap.parse_args(argv)
    try:
        entries = resolve_entries(args.objects, args.mesh_units)
        for e in entries:
            parts = load_parts(e.file, e.scale)
            p = propose_symmetry(parts, tol=args.tol, hausdorff_tol=args.hausdorff_tol, n_points=args.points, sweep_step_deg=args.sweep_step)
            best = sorted(((v, k) for k, v in p.scores.items() if k != "identity"))[:3]
            print(f"{e.id:3d} {e.name:16s} diameter {p.diameter * 100:6.1f} cm  floor {p.floor * 100:.2f}% "
                  f"(p99 {p.hausdorff['identity'] * 100:.1f}%)  proposal: {p.summary():28s} best Chamfer (p99): "
                  + ", ".join(f"{k} {v * 100:.2f}% ({p.hausdorff[k] * 100:.1f}%)" for v, k in best))
            if args.all_scores:
                for k, v in p.scores.items():
                    print(f"      {k:22s} Chamfer {v * 100:7.2f}%  p99 {p.hausdorff[k] * 100:7.2f}%")
            if args.yaml:
                import yaml

                if p.symmetry is None:
                    text = "symmetry: none"
                else:
                    d = {k: v for k, v in p.symmetry.to_dict().items() if v}
                    text = yaml.safe_dump({"symmetry": d}, default_flow_style=None, sort_keys=False).strip()
                print("    " + text.replace("\n", "\n    "))
    except Sim2RealError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
