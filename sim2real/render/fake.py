"""A fake renderer: a TEST DOUBLE for :class:`~sim2real.render.backend.Renderer` that needs no OpenGL.

**Not for data.** It exists so that the render job's machinery (workers, shards, resume, atomic writes, errors)
can be tested on machines without an EGL/OSMesa context. It is never chosen silently: only
``create_renderer("fake")`` makes it, which ``run_render(..., renderer="fake")`` or ``SIM2REAL_RENDERER=fake``
on the ``render`` command ask for; the command then says so, and the file records ``renderer = "fake"``.

What it draws: each triangle of the class's meshes projected with the sample's pose (``R_m2c``, ``t_m2c``, metres)
and the camera's ``K`` (OpenCV, pixel centres at integer coordinates, :func:`~sim2real.conventions.camera_to_pixel`),
filled by a z-buffer that samples each pixel centre (perspective-correct depth), flat-shaded with the base colour,
the material factor, the ambient level and Lambert terms of the directional lights. Pure numpy and deterministic:
a sample's arrays depend only on its parameters, never on the process or worker count. It is no model of
pyrender's shading (colours differ from the real renderer's); shapes, dtypes, the black background, the
z-buffer mask (``depth > 0``) and the geometry are the same kind as the real ones.
"""

from __future__ import annotations

import numpy as np

from sim2real.conventions import camera_to_pixel

#: Grey (0-1 RGB) for meshes whose visual gives no colour.
_DEFAULT_COLOUR = (0.7, 0.7, 0.7)


def _base_colour(part) -> np.ndarray:
    """(3,) float64 RGB in [0, 1] of a trimesh mesh: its material's main colour, else its visual's, else grey."""
    vis = getattr(part, "visual", None)
    for get in (lambda: vis.material.main_color, lambda: vis.main_color):
        try:
            c = np.asarray(get(), dtype=np.float64).reshape(-1)
        except (AttributeError, TypeError, ValueError):
            continue
        if c.size >= 3:
            return c[:3] / 255.0
    return np.array(_DEFAULT_COLOUR)


class FakeRenderer:
    """Test double with :class:`~sim2real.render.backend.Renderer`'s interface (``render(params)``, ``close()``).

    Args:
        classes: objects with ``parts`` (trimesh meshes in the model frame, metres), one per class id.
        K: (3, 3) OpenCV intrinsics. size: (H, W) pixels. znear, zfar: clipping distances, metres (a triangle
            with a vertex nearer than ``znear`` is dropped; farther than ``zfar`` is background).
        max_lights: most directional lights a sample may use (as the real renderer, more raise ValueError).
        antialias: accepted for the same signature and ignored (every pixel samples its centre).
    """

    kind = "fake"

    def __init__(self, classes: list, K: np.ndarray, size: tuple[int, int], znear: float = 0.01, zfar: float = 20.0,
                 max_lights: int = 8, antialias: bool = False):
        self.K = np.asarray(K, dtype=np.float64)
        self.size = (int(size[0]), int(size[1]))
        self.znear, self.zfar, self.max_lights = float(znear), float(zfar), int(max_lights)
        self.meshes = []  # per class: vertices (V, 3) float64, faces (F, 3) int64, face colours (F, 3) in [0, 1]
        for c in classes:
            verts, faces, cols, offset = [], [], [], 0
            for p in c.parts:
                v = np.asarray(p.vertices, dtype=np.float64)
                f = np.asarray(p.faces, dtype=np.int64)
                verts.append(v)
                faces.append(f + offset)
                cols.append(np.broadcast_to(_base_colour(p), (len(f), 3)))
                offset += len(v)
            self.meshes.append((np.concatenate(verts), np.concatenate(faces), np.concatenate(cols)))

    def render(self, params) -> tuple[np.ndarray, np.ndarray]:
        """Draw one :class:`~sim2real.render.sampling.SceneParams`.

        Returns:
            rgb: (H, W, 3) uint8 on black, zero outside the mask.
            depth: (H, W) float32 z-depth in metres, 0 = background (the mask is ``depth > 0``).
        """
        n_lights = len(params.light_intensity)
        if n_lights > self.max_lights:
            raise ValueError(f"at most {self.max_lights} lights, got {n_lights}")
        h, w = self.size
        V, F, C = self.meshes[params.label]
        X = V @ np.asarray(params.R_m2c, dtype=np.float64).T + np.asarray(params.t_m2c, dtype=np.float64)
        tri = X[F]  # (F, 3 vertices, 3) camera frame
        z = tri[..., 2]
        front = (z > self.znear).all(axis=1)
        zs = np.where(front[:, None], z, 1.0)
        K = self.K
        u, v = camera_to_pixel(tri[..., 0], tri[..., 1], zs, K)  # (F, 3) pixels
        pix, dep, face = self._rasterise(u, v, zs, front)
        depth = np.zeros(h * w, dtype=np.float32)
        rgb = np.zeros((h * w, 3), dtype=np.uint8)
        if len(pix):
            # z-buffer: per pixel the nearest sample (ties: the lower face index), independent of input order
            order = np.lexsort((face, dep, pix))
            pix, dep, face = pix[order], dep[order], face[order]
            first = np.ones(len(pix), dtype=bool)
            first[1:] = pix[1:] != pix[:-1]
            pix, dep, face = pix[first], dep[first], face[first]
            keep = dep < self.zfar
            pix, dep, face = pix[keep], dep[keep], face[keep]
            depth[pix] = dep.astype(np.float32)
            rgb[pix] = self._shade(tri, C, params)[face]
        return rgb.reshape(h, w, 3), depth.reshape(h, w)

    def _rasterise(self, u: np.ndarray, v: np.ndarray, z: np.ndarray, front: np.ndarray):
        """Pixel-centre samples covered by each triangle: (flat pixel index, depth in metres, face index).

        Each triangle is tested only on the pixel centres of its bounding box; triangles are grouped by box
        size (powers of two) so that every test is one vectorised step.
        """
        h, w = self.size
        area = (u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (u[:, 2] - u[:, 0]) * (v[:, 1] - v[:, 0])
        j0 = np.clip(np.ceil(u.min(1)), 0, w).astype(np.int64)
        j1 = np.clip(np.floor(u.max(1)), -1, w - 1).astype(np.int64)
        i0 = np.clip(np.ceil(v.min(1)), 0, h).astype(np.int64)
        i1 = np.clip(np.floor(v.max(1)), -1, h - 1).astype(np.int64)
        side = np.maximum(j1 - j0 + 1, i1 - i0 + 1)
        ok = front & (np.abs(area) > 1e-12) & (j1 >= j0) & (i1 >= i0)
        out_pix, out_dep, out_face = [], [], []
        s = 1
        while ok.any() and s < 2 * max(h, w):
            sel = np.nonzero(ok & (side <= s) & (side > s // 2))[0]
            if len(sel):
                dj, di = np.meshgrid(np.arange(s), np.arange(s))
                pj = j0[sel, None] + dj.reshape(1, -1)  # (n, s*s) candidate pixel centres
                pi = i0[sel, None] + di.reshape(1, -1)
                inbox = (pj <= j1[sel, None]) & (pi <= i1[sel, None])
                uu, vv, zz, a = u[sel], v[sel], z[sel], area[sel, None]
                # screen-space barycentrics of the pixel centre (pj, pi)
                b0 = ((uu[:, 1:2] - pj) * (vv[:, 2:3] - pi) - (uu[:, 2:3] - pj) * (vv[:, 1:2] - pi)) / a
                b1 = ((uu[:, 2:3] - pj) * (vv[:, 0:1] - pi) - (uu[:, 0:1] - pj) * (vv[:, 2:3] - pi)) / a
                b2 = 1.0 - b0 - b1
                hit = inbox & (b0 >= 0) & (b1 >= 0) & (b2 >= 0)
                # 1/z is linear in screen space: perspective-correct depth of a planar triangle
                inv_z = b0 / zz[:, 0:1] + b1 / zz[:, 1:2] + b2 / zz[:, 2:3]
                rows, cols = np.nonzero(hit)
                out_pix.append(pi[rows, cols] * w + pj[rows, cols])
                out_dep.append(1.0 / inv_z[rows, cols])
                out_face.append(sel[rows])
            s *= 2
        if not out_pix:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        return np.concatenate(out_pix), np.concatenate(out_dep), np.concatenate(out_face)

    def _shade(self, tri: np.ndarray, colours: np.ndarray, params) -> np.ndarray:
        """(F, 3) uint8 flat colour per face: base x material x (ambient + sum of Lambert terms / pi)."""
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
        n = np.where(((n * tri[:, 0]).sum(1) > 0)[:, None], -n, n)  # two-sided: the normal faces the camera
        light = np.full((len(n), 3), float(params.ambient))
        for d, col, inten in zip(params.light_dirs, params.light_colours, params.light_intensity):
            d = np.asarray(d, dtype=np.float64) / np.linalg.norm(d)
            lambert = np.clip(-(n @ d), 0.0, None)  # d is the direction the light travels
            light += lambert[:, None] * (float(inten) / np.pi) * np.asarray(col, dtype=np.float64)
        base = np.clip(colours * np.asarray(params.material_scale, dtype=np.float64), 0.0, 1.0)
        return np.round(np.clip(base * light, 0.0, 1.0) * 255.0).astype(np.uint8)

    def close(self) -> None:
        """Nothing to release (no GL context)."""
