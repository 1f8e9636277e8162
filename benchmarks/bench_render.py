"""Render throughput: `sim2real render` end to end (HDF5 writes included) against a bare pyrender loop.

Both run in fresh processes on the same meshes (the bundled objects) at the same image size, one after the other
in this one run, so the printed ratios compare like with like on a noisy machine. The bare loop is what a user
would hand-write: one scene, every mesh uploaded once, a random pose per frame, colour and depth read back,
arrays kept in memory (no files).

Usage: python benchmarks/bench_render.py [--samples 4000] [--size 64] [--repeats 1]
Target (issue #2): end-to-end with 1 worker >= 0.85 x the bare loop; 2 workers >= 1.8 x 1 worker on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE = textwrap.dedent("""
    import os, sys, time
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    t0 = time.perf_counter()
    import numpy as np, pyrender
    from sim2real.render.assets import load_objects
    from sim2real.conventions import intrinsics_from_fov, opencv_to_opengl_pose, canonical_quat, matrix_from_quat
    n, size = int(sys.argv[1]), int(sys.argv[2])
    objs = load_objects("bundled")
    K = intrinsics_from_fov(20.0, size, size)
    scene = pyrender.Scene(bg_color=np.zeros(4), ambient_light=np.full(3, 0.3))
    scene.add(pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, 0.01, 20.0))
    nodes = []
    for o in objs:
        m = pyrender.Mesh.from_trimesh(o.parts)
        m.is_visible = False
        nodes.append(scene.add(m))
    for k in range(2):
        scene.add(pyrender.DirectionalLight(intensity=3.0), pose=np.eye(4))
    r = pyrender.OffscreenRenderer(size, size)
    rng = np.random.default_rng(0)
    rgb = np.zeros((n, size, size, 3), np.uint8)
    depth = np.zeros((n, size, size), np.float32)
    for i in range(n):
        node = nodes[i % len(nodes)]
        node.mesh.is_visible = True
        d = K[0, 0] * objs[i % len(nodes)].diameter / (0.8 * size)
        scene.set_pose(node, opencv_to_opengl_pose(matrix_from_quat(canonical_quat(rng.normal(size=4))), [0, 0, d]))
        c, z = r.render(scene)
        rgb[i], depth[i] = c, z
        node.mesh.is_visible = False
    print(time.perf_counter() - t0)
""")


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="alternate the runs this many times; the best time of each counts")
    args = ap.parse_args()
    env = dict(os.environ, SIM2REAL_PROGRESS="0", LP_NUM_THREADS="1")
    py = sys.executable
    best = {"bare": 1e9, "w1": 1e9, "w2": 1e9}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            best["bare"] = min(best["bare"], timed([py, "-c", BARE, str(args.samples), str(args.size)], env))
            for w in (1, 2):
                out = Path(tmp) / f"w{w}.h5"
                cmd = [py, "-m", "sim2real", "render", "render-default", "-o", str(out), "--overwrite", "--workers", str(w),
                       "--set", f"n_samples={args.samples}", "--set", f"image_size={args.size}"]
                best[f"w{w}"] = min(best[f"w{w}"], timed(cmd, env))
    rate = {k: args.samples / v for k, v in best.items()}
    print(f"bench_render: {args.samples} samples of {args.size}x{args.size}, bundled objects, wall time of whole processes")
    print(f"  bare pyrender loop (in memory)       {best['bare']:7.2f} s  {rate['bare']:7.1f} img/s")
    print(f"  sim2real render, 1 worker (HDF5)     {best['w1']:7.2f} s  {rate['w1']:7.1f} img/s")
    print(f"  sim2real render, 2 workers (HDF5)    {best['w2']:7.2f} s  {rate['w2']:7.1f} img/s")
    print(f"  ratio 1 worker / bare loop:   {rate['w1'] / rate['bare']:.2f}  (target >= 0.85)")
    print(f"  ratio 2 workers / 1 worker:   {rate['w2'] / rate['w1']:.2f}  (target >= 1.8 on 2 cores)")
    print(f"  ratio 2 workers / bare loop:  {rate['w2'] / rate['bare']:.2f}")


if __name__ == "__main__":
    main()
