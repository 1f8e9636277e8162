"""The renderer seam and the only module that imports pyrender / OpenGL.

:func:`create_renderer` makes a renderer by kind (as bop_toolkit's ``create_renderer``), importing its backend
lazily: ``"pyrender"`` (the default everywhere: :class:`Renderer`, pyrender + EGL/OSMesa) or ``"fake"`` (a
GL-free **test double**, :class:`sim2real.render.fake.FakeRenderer`, for testing the render job; never for data).

:func:`select_platform` sets ``PYOPENGL_PLATFORM`` (it must happen before OpenGL is imported): an explicit
environment value wins; otherwise EGL (the GPU when there is one, Mesa llvmpipe on the CPU), with
OSMesa as the fallback the render job switches to when an EGL context cannot be made.

:class:`Renderer` keeps one pyrender scene per process (renderers do not work across threads or
processes) with every class's mesh uploaded once and toggled visible per frame.
"""

from __future__ import annotations

import os

import numpy as np

from sim2real.conventions import OPENCV_TO_OPENGL, opencv_to_opengl_pose, pyrender_intrinsics


def select_platform_name(backend: str) -> str:
    """The PyOpenGL platform for ``backend`` (auto/egl/osmesa); an explicit ``PYOPENGL_PLATFORM`` wins."""
    explicit = os.environ.get("PYOPENGL_PLATFORM")
    if explicit:
        return explicit
    return "egl" if backend in ("auto", "egl") else backend


def select_platform(backend: str) -> str:
    """Export ``PYOPENGL_PLATFORM`` for this process (before OpenGL is imported); returns the platform."""
    platform = select_platform_name(backend)
    os.environ["PYOPENGL_PLATFORM"] = platform
    return platform


_MSAA_SAMPLES = 0
_PATCHED = False


def _patch_msaa() -> None:
    """Let :class:`Renderer` choose pyrender's multisample count (pyrender hard-codes 4).

    pyrender allocates its offscreen buffers with ``glRenderbufferStorageMultisample(..., 4, ...)``; a sample
    count of 0 gives ordinary single-sample storage, so every pixel is shaded and depth-tested at its centre.
    """
    global _PATCHED
    if _PATCHED:
        return
    import pyrender.renderer as prr

    original = prr.glRenderbufferStorageMultisample

    def storage(target, samples, fmt, width, height):
        return original(target, _MSAA_SAMPLES, fmt, width, height)

    prr.glRenderbufferStorageMultisample = storage
    _PATCHED = True


def _ordered_scene_class(pyrender):
    """A pyrender.Scene whose lights are shaded in a fixed order.

    pyrender keeps light nodes in sets, whose iteration order follows object ids and so differs between
    processes; the shader sums the lights in that order, and float addition is not associative, so a pixel
    could differ in its last bit between two workers. Sorting by node name makes the sum, and the pixels,
    depend only on the sample.
    """

    class OrderedLightScene(pyrender.Scene):
        @property
        def light_nodes(self):
            return sorted(super().light_nodes, key=lambda n: n.name or "")

    return OrderedLightScene


def _light_pose(direction_cv: np.ndarray) -> np.ndarray:
    """Node pose (OpenGL world = camera frame) of a directional light travelling along ``direction_cv``.

    pyrender's directional light shines along its node's -z axis.
    """
    d = OPENCV_TO_OPENGL @ (np.asarray(direction_cv, float) / np.linalg.norm(direction_cv))
    z = -d
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    return T


class Renderer:
    """Offscreen renderer of object-centred crops.

    Args:
        classes: :class:`~sim2real.render.assets.ObjectClass` list (meshes in the model frame, metres).
        K: (3, 3) OpenCV intrinsics.
        size: (H, W) in pixels.
        znear, zfar: clipping planes, metres.
        max_lights: most directional lights a sample may use.
        antialias: 4x multisampling. Off by default: then colour, depth and mask all sample the pixel centre
            (an exact z-buffer mask). With it on, colour is averaged over 4 samples while depth keeps one, so the
            mask is that sample's coverage; colour outside the mask is zeroed either way.
    """

    def __init__(self, classes: list, K: np.ndarray, size: tuple[int, int], znear: float = 0.01, zfar: float = 20.0,
                 max_lights: int = 8, antialias: bool = False):
        import pyrender

        self._pyrender = pyrender
        h, w = size
        self.size = (h, w)
        self.scene = _ordered_scene_class(pyrender)(bg_color=np.zeros(4), ambient_light=np.zeros(3))
        fx, fy, cx, cy = pyrender_intrinsics(K)
        cam = pyrender.IntrinsicsCamera(fx=fx, fy=fy, cx=cx, cy=cy, znear=znear, zfar=zfar)
        self.scene.add(cam, pose=np.eye(4))  # camera at the identity: world frame == OpenGL camera frame
        self.nodes = []
        self.base_colours = []
        for c in classes:
            mesh = pyrender.Mesh.from_trimesh(c.parts, smooth=False)
            mesh.is_visible = False
            self.nodes.append(self.scene.add(mesh, pose=np.eye(4)))
            self.base_colours.append([np.array(p.material.baseColorFactor, dtype=np.float64) for p in mesh.primitives])
        # Light nodes are created once and only the ones a sample uses are in the scene: pyrender binds
        # every light's uniforms for every primitive, so idle lights would cost time.
        self.lights = [pyrender.Node(name=f"light_{k:02d}", light=pyrender.DirectionalLight(color=np.ones(3), intensity=0.0),
                                     matrix=np.eye(4)) for k in range(max_lights)]
        self._active_lights = 0
        global _MSAA_SAMPLES
        _MSAA_SAMPLES = 4 if antialias else 0
        _patch_msaa()
        self.renderer = pyrender.OffscreenRenderer(viewport_width=w, viewport_height=h)
        self._visible = None

    def render(self, params) -> tuple[np.ndarray, np.ndarray]:
        """Render one :class:`~sim2real.render.sampling.SceneParams`.

        Returns:
            rgb: (H, W, 3) uint8 on black, colour zeroed outside the z-buffer mask (no anti-aliasing halo).
            depth: (H, W) float32 z-depth in metres, 0 = background.
        """
        pr = self._pyrender
        label = params.label
        if self._visible is not None and self._visible != label:
            self.nodes[self._visible].mesh.is_visible = False
        node = self.nodes[label]
        node.mesh.is_visible = True
        self._visible = label
        self.scene.set_pose(node, opencv_to_opengl_pose(params.R_m2c, params.t_m2c))
        for prim, base in zip(node.mesh.primitives, self.base_colours[label]):
            col = base.copy()
            col[:3] = np.clip(col[:3] * params.material_scale, 0.0, 1.0)
            prim.material.baseColorFactor = col
        self.scene.ambient_light = np.full(3, params.ambient)
        n = len(params.light_intensity)
        if n > len(self.lights):
            raise ValueError(f"at most {len(self.lights)} lights, got {n}")
        while self._active_lights < n:
            self.scene.add_node(self.lights[self._active_lights])
            self._active_lights += 1
        while self._active_lights > n:
            self._active_lights -= 1
            self.scene.remove_node(self.lights[self._active_lights])
        for k in range(n):
            ln = self.lights[k]
            ln.light.intensity = float(params.light_intensity[k])
            ln.light.color = np.asarray(params.light_colours[k], dtype=np.float64)
            self.scene.set_pose(ln, _light_pose(params.light_dirs[k]))
        colour, depth = self.renderer.render(self.scene, flags=pr.RenderFlags.NONE)
        depth = np.ascontiguousarray(depth, dtype=np.float32)
        rgb = np.ascontiguousarray(colour[..., :3])
        rgb[depth <= 0] = 0  # EGL multisampling blends a 1-px halo outside the z-buffer silhouette: drop it
        return rgb, depth

    def close(self) -> None:
        self.renderer.delete()


#: Renderer kinds :func:`create_renderer` knows; the first is the default.
RENDERER_KINDS = ("pyrender", "fake")
DEFAULT_RENDERER = RENDERER_KINDS[0]


def create_renderer(kind: str, classes: list, K: np.ndarray, size: tuple[int, int], znear: float = 0.01,
                    zfar: float = 20.0, max_lights: int = 8, antialias: bool = False):
    """A renderer of ``kind`` with the :class:`Renderer` interface (``render(params) -> (rgb, depth)``, ``close()``).

    Args:
        kind: ``"pyrender"`` (the real renderer, pyrender + EGL/OSMesa; the platform must be selected first) or
            ``"fake"`` (:class:`~sim2real.render.fake.FakeRenderer`: a pure-numpy test double, no GL).
        classes, K, size, znear, zfar, max_lights, antialias: as :class:`Renderer`.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind == "pyrender":
        return Renderer(classes, K, size, znear, zfar, max_lights=max_lights, antialias=antialias)
    if kind == "fake":
        from sim2real.render.fake import FakeRenderer

        return FakeRenderer(classes, K, size, znear, zfar, max_lights=max_lights, antialias=antialias)
    raise ValueError(f"unknown renderer kind {kind!r}; expected one of {', '.join(RENDERER_KINDS)}")
