#!/usr/bin/env python3
"""Build the bundled object assets of sim2real from Debian's ``sweethome3d-furniture``.

Reproducible: the same inputs (the ``.sh3f`` catalogues shipped by the Debian package,
``/usr/share/sweethome3d/furniture``) give the same ``assets/`` tree.

For every chosen model the script

1. extracts the OBJ/MTL/texture files of the model from its ``.sh3f`` zip,
2. loads it with trimesh (one sub-mesh per material, textures kept),
3. scales it uniformly to metres: the factor maps the largest mesh extent onto the largest
   catalogue dimension (catalogue width/depth/height are in cm along the model's X/Z/Y axes,
   SweetHome3D models are Y-up; the orientation is kept as it is),
4. recentres it so that the origin is the centre of its axis-aligned bounding box,
5. re-computes vertex normals ("auto smooth": edges sharper than 40 degrees stay hard),
6. decimates it when it has more than ``--max-faces`` triangles (flat-coloured parts are
   simplified with ``fast-simplification`` keeping their material; textured parts, only if they
   alone exceed the budget, are baked to vertex colours, simplified, and re-coloured from the
   nearest original vertex),
7. downscales textures to at most ``--max-texture`` pixels per side (JPEG),
8. writes one binary glTF ``<out>/objects/<name>.glb`` and verifies it by reloading it.

It then writes ``<out>/objects.yaml`` (manifest) and ``<out>/README.md`` (attribution).

Usage::

    python tools/build_assets.py [--furniture-dir /usr/share/sweethome3d/furniture] [--out assets/]

Needs: trimesh, numpy, scipy, pillow, fast-simplification (``pip install fast-simplification``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

# ----------------------------------------------------------------------------------------------
# The chosen models. ``model`` is the model path inside the catalogue (``model#N`` in
# PluginFurnitureCatalog.properties); name/size/creator are read from the catalogue itself.
# ----------------------------------------------------------------------------------------------
CHOSEN = [
    # name,          catalogue file,         model path inside the .sh3f
    ("cat",          "Scopia.sh3f",          "scopia/cat/cat.obj"),
    ("drill",        "Scopia.sh3f",          "scopia/perceuse-electrique/perceuse-electrique.obj"),
    ("desk_lamp",    "BlendSwap-CC-0.sh3f",  "blendswap-cc-0/desklamp/desklamp.obj"),
    ("phone",        "BlendSwap-CC-BY.sh3f",
     "blendswap-cc-by/wirelessOfficePhone3/wirelessOfficePhone3.obj"),
    ("camera",       "Scopia.sh3f",          "scopia/basic_camera/basic_camera.obj"),
    ("chicken",      "BlendSwap-CC-0.sh3f",  "blendswap-cc-0/chicken/chicken.obj"),
    ("coffee_mug",   "KatorLegaz.sh3f",      "katorlegaz/coffee-mug/coffee-mug.obj"),
    ("hammer",       "Scopia.sh3f",          "scopia/marteau/marteau.obj"),
    ("scissors",     "BlendSwap-CC-0.sh3f",  "blendswap-cc-0/cissors_swap/cissors_swap.obj"),
    ("milk_carton",  "BlendSwap-CC-0.sh3f",  "blendswap-cc-0/tetrapak/tetrapak.obj"),
    ("spray_bottle", "KatorLegaz.sh3f",      "katorlegaz/spray-bottle/spray-bottle.obj"),
    ("toaster",      "Scopia.sh3f",          "scopia/toaster/toaster.obj"),
]

CC_BY = ("CC-BY 3.0", "https://creativecommons.org/licenses/by/3.0/")
CC0 = ("CC0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/")
# Licence of each catalogue (see the "license=" line of each PluginFurnitureCatalog.properties
# and the LICENSE.TXT inside each .sh3f).
CATALOGUE_LICENCE = {
    "BlendSwap-CC-0.sh3f": CC0,
    "BlendSwap-CC-BY.sh3f": CC_BY,
    "KatorLegaz.sh3f": CC_BY,
    "Reallusion.sh3f": CC_BY,
    "Scopia.sh3f": CC_BY,
}

DEFAULT_RGBA = np.array([204, 204, 204, 255], dtype=np.uint8)  # parts without any material
SMOOTH_ANGLE_DEG = 40.0


@dataclass
class Built:
    name: str
    catalogue: str
    model: str
    title: str
    creator: str
    licence: tuple
    dims_cm: tuple  # width, depth, height
    faces_in: int
    faces_out: int = 0
    extents: np.ndarray | None = None
    scale: float = 1.0
    axis_mismatch: float = 0.0
    texture_sizes: list = field(default_factory=list)  # (orig, new)
    baked: bool = False
    decimated: bool = False
    n_parts: int = 0
    appearance: str = ""
    size_bytes: int = 0
    coloured: bool = False
    upstream: dict = field(default_factory=dict)  # from the model's own licence file


# ----------------------------------------------------------------------------------------------
# catalogue helpers
# ----------------------------------------------------------------------------------------------
def read_properties(zf: zipfile.ZipFile) -> dict:
    text = zf.read("PluginFurnitureCatalog.properties").decode("latin-1")
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        props[key.strip()] = value.strip()
    return props


def catalogue_entry(props: dict, model_path: str) -> dict:
    for key, value in props.items():
        m = re.fullmatch(r"model#(\d+)", key)
        if m and value.lstrip("/") == model_path:
            n = m.group(1)
            entry = {k.split("#")[0]: v for k, v in props.items() if k.endswith("#" + n)}
            entry["index"] = int(n)
            return entry
    raise KeyError(f"model {model_path} not found in catalogue")


# ----------------------------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------------------------
def autosmooth_normals(vertices, faces, uv=None, colors=None, angle_deg=SMOOTH_ANGLE_DEG):
    """Per-corner normals: average (angle-weighted) of the normals of the faces around the
    corner's position whose normal is within ``angle_deg`` of the corner's face normal.
    Returns new (vertices, faces, normals, uv, colors) with vertices split where needed."""
    faces = np.asarray(faces, dtype=np.int64)
    tri = vertices[faces]  # (F,3,3)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn_len = np.linalg.norm(fn, axis=1)
    fn = fn / np.maximum(fn_len, 1e-30)[:, None]
    # interior angle at each corner
    ang = np.zeros(faces.shape)
    for k in range(3):
        a = tri[:, (k + 1) % 3] - tri[:, k]
        b = tri[:, (k + 2) % 3] - tri[:, k]
        cosang = np.einsum("ij,ij->i", a, b) / np.maximum(
            np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
        ang[:, k] = np.arccos(np.clip(cosang, -1, 1))
    ang[fn_len < 1e-30] = 0.0
    # group corners by position (UV seams share a position)
    scale = max(np.ptp(vertices, axis=0).max(), 1e-12)
    key = np.round(vertices / scale * 1e6).astype(np.int64)
    _, pos_id = np.unique(key, axis=0, return_inverse=True)
    pos_id = pos_id.reshape(-1)
    corner_pos = pos_id[faces].reshape(-1)  # (3F,)
    corner_face = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(corner_pos, kind="stable")
    sorted_pos = corner_pos[order]
    starts = np.flatnonzero(np.r_[True, sorted_pos[1:] != sorted_pos[:-1]])
    ends = np.r_[starts[1:], len(order)]
    cos_t = np.cos(np.radians(angle_deg))
    normals = np.zeros((len(order), 3))
    w_all = ang.reshape(-1)
    for s, e in zip(starts, ends):
        cs = order[s:e]
        fcs = corner_face[cs]
        nf = fn[fcs]  # (k,3)
        ok = (nf @ nf.T) >= cos_t  # (k,k)
        acc = (ok * w_all[cs][None, :]) @ nf
        normals[cs] = acc
    bad = np.linalg.norm(normals, axis=1) < 1e-20
    normals[bad] = fn[corner_face[bad]]
    normals /= np.maximum(np.linalg.norm(normals, axis=1), 1e-30)[:, None]
    # build unique vertices from (original vertex, quantised normal)
    corner_vid = faces.reshape(-1)
    qn = np.round(normals * 1e4).astype(np.int64)
    comb = np.column_stack([corner_vid, qn])
    _, first, inverse = np.unique(comb, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    new_vid = corner_vid[first]
    out_normals = normals[first]
    out_uv = None if uv is None else uv[new_vid]
    out_col = None if colors is None else colors[new_vid]
    return vertices[new_vid], inverse.reshape(-1, 3), out_normals, out_uv, out_col


def decimate(vertices, faces, target_faces):
    import fast_simplification

    m = trimesh.Trimesh(vertices, faces, process=False)
    m.merge_vertices(merge_tex=True, merge_norm=True)
    if len(m.faces) <= target_faces:
        return np.asarray(m.vertices), np.asarray(m.faces)
    v, f = m.vertices, m.faces
    reduction = 1.0 - target_faces / len(f)
    for _ in range(6):
        v2, f2 = fast_simplification.simplify(np.asarray(v, dtype=np.float64),
                                              np.asarray(f, dtype=np.int64),
                                              target_reduction=float(min(reduction, 0.99)))
        if len(f2) <= target_faces:
            break
        reduction = 1.0 - (1.0 - reduction) * target_faces / len(f2) * 0.99
    clean = trimesh.Trimesh(v2, f2, process=True)
    clean.update_faces(clean.nondegenerate_faces())
    clean.remove_unreferenced_vertices()
    return np.asarray(clean.vertices), np.asarray(clean.faces)


def downscale(img: Image.Image, max_side: int) -> Image.Image:
    img = img.convert("RGB")
    w, h = img.size
    s = min(1.0, max_side / max(w, h))
    if s < 1.0:
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88, optimize=True)
    buf.seek(0)
    return Image.open(buf)  # .format == "JPEG" -> trimesh stores it as JPEG in the .glb


def material_of(geom):
    vis = geom.visual
    mat = getattr(vis, "material", None)
    if mat is None:
        return None, None, DEFAULT_RGBA.copy(), 1.0
    if isinstance(mat, trimesh.visual.material.PBRMaterial):
        img = mat.baseColorTexture
        rgba = np.asarray(mat.baseColorFactor if mat.baseColorFactor is not None
                          else DEFAULT_RGBA, dtype=np.uint8)
        rough = mat.roughnessFactor if mat.roughnessFactor is not None else 0.8
        return mat.name, img, rgba, rough
    img = getattr(mat, "image", None)
    rgba = np.asarray(mat.diffuse, dtype=np.uint8)
    gloss = float(getattr(mat, "glossiness", None) or 10.0)
    rough = float((2.0 / (gloss + 2.0)) ** 0.25)
    return mat.name, img, rgba, rough


def upstream_info(work_dir: str, members: list) -> dict:
    """Original title/author/URL/licence from the model's own licence file, if it has one
    (Blend Swap models ship ``BLENDSWAP_LICENSE.txt`` or ``<id> - LICENSE.html``)."""
    info = {}
    for n in members:
        if "license" not in os.path.basename(n).lower():
            continue
        text = open(os.path.join(work_dir, n), encoding="utf-8", errors="replace").read()
        info["file"] = n
        if n.lower().endswith(".html"):
            text = re.sub(r"<style.*?</style>", " ", text, flags=re.S)
            text = re.sub(r"<[^>]+>", "\n", text)
            m = re.search(r"\d+ - (.+?) - Downloaded from Blend Swap", text)
            if m:
                info["title"] = m.group(1).strip()
        m = re.search(r'Thank you for downloading "(.+?)" by (.+)', text)
        if m:
            info["title"], info["author"] = m.group(1).strip(), m.group(2).strip()
        m = re.search(r"Released under\s+(Creative Commons[^\n<]*)", text)
        if m:
            info["licence"] = re.sub(r"\s+", " ", m.group(1)).strip()
        m = re.search(r"https?://www\.blendswap\.com/blends/view/\d+", text)
        if m:
            info["url"] = m.group(0)
    return info


# ----------------------------------------------------------------------------------------------
def build_one(spec, furniture_dir, out_dir, max_faces, max_tex, tmp_root) -> Built:
    name, cat_file, model_path = spec
    zpath = os.path.join(furniture_dir, cat_file)
    with zipfile.ZipFile(zpath) as zf:
        entry = catalogue_entry(read_properties(zf), model_path)
        mdir = os.path.dirname(model_path) + "/"
        members = [n for n in zf.namelist() if n.startswith(mdir) and not n.endswith("/")]
        work = os.path.join(tmp_root, name)
        for n in members:
            zf.extract(n, work)
    if "modelRotation" in entry:
        raise ValueError(f"{name}: catalogue has a modelRotation; not supported")
    dims_cm = tuple(float(entry[k]) for k in ("width", "depth", "height"))
    b = Built(name=name, catalogue=cat_file, model=model_path, title=entry.get("name", name),
              creator=entry.get("creator", "unknown"), licence=CATALOGUE_LICENCE[cat_file],
              dims_cm=dims_cm, faces_in=0)

    b.upstream = upstream_info(work, members)
    up_lic = b.upstream.get("licence", "")
    if up_lic:  # the model's own licence file must agree with the catalogue's licence
        want = "Zero" if b.licence is CC0 else "Attribution"
        if want not in up_lic:
            raise ValueError(f"{name}: licence file says {up_lic!r}, catalogue {b.licence[0]}")

    scene = trimesh.load(os.path.join(work, model_path), force="scene")
    geoms = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    b.faces_in = sum(len(g.faces) for g in geoms)

    # ---- uniform scale to metres + recentre ---------------------------------------------
    allv = np.vstack([g.vertices for g in geoms])
    lo, hi = allv.min(0), allv.max(0)
    ext = hi - lo
    cat_xyz = np.array([dims_cm[0], dims_cm[2], dims_cm[1]]) / 100.0  # X=width Y=height Z=depth
    s = cat_xyz.max() / ext.max()
    b.scale = float(s)
    b.axis_mismatch = float(np.max(np.abs(ext * s - cat_xyz) / cat_xyz))
    centre = (lo + hi) / 2.0

    # ---- parts ------------------------------------------------------------------------------
    parts = []
    for i, g in enumerate(geoms):
        mname, img, rgba, rough = material_of(g)
        uv = getattr(g.visual, "uv", None)
        has_tex = img is not None and uv is not None and len(uv) == len(g.vertices)
        parts.append(dict(v=(np.asarray(g.vertices) - centre) * s, f=np.asarray(g.faces),
                          uv=np.asarray(uv) if has_tex else None, img=img if has_tex else None,
                          rgba=rgba, rough=rough, name=mname or f"part{i}", colors=None))

    # ---- decimation -------------------------------------------------------------------------
    def n_faces(ps):
        return sum(len(p["f"]) for p in ps)

    min_part = 64  # tiny parts (buttons, screws) are left alone unless really needed
    for attempt in range(8):
        total = n_faces(parts)
        if total <= max_faces:
            break
        b.decimated = True
        textured = [p for p in parts if p["img"] is not None]
        if n_faces(textured) > 0.8 * max_faces:
            # textured parts alone are over budget: bake texture to vertex colours
            b.baked = True
            for p in textured:
                tv = trimesh.visual.TextureVisuals(uv=p["uv"], image=p["img"])
                p["colors"] = np.asarray(tv.to_color().vertex_colors, dtype=np.uint8)
                p["img"], p["uv"] = None, None
                p["rgba"] = np.array([255, 255, 255, 255], dtype=np.uint8)
        flex = [p for p in parts if p["img"] is None and len(p["f"]) > min_part]
        fixed = total - n_faces(flex)
        if not flex or fixed > 0.9 * max_faces:
            min_part //= 4
            continue
        ratio = min(1.0, (max_faces - fixed) / n_faces(flex)) * 0.99 ** attempt
        for p in flex:
            target = max(min(32, len(p["f"])), int(len(p["f"]) * ratio))
            if target >= len(p["f"]):
                continue
            v0, c0 = p["v"], p["colors"]
            v, f = decimate(p["v"], p["f"], target)
            if c0 is not None:
                _, idx = cKDTree(v0).query(v)
                p["colors"] = c0[idx]
            p["v"], p["f"] = v, f
    if n_faces(parts) > max_faces:
        raise RuntimeError(f"{name}: could not decimate to {max_faces} faces")

    # ---- exact recentring (decimation can move the bounding box slightly) -------------------
    allv = np.vstack([p["v"] for p in parts])
    c2 = (allv.min(0) + allv.max(0)) / 2.0
    for p in parts:
        p["v"] = p["v"] - c2

    # ---- normals, materials, scene ---------------------------------------------------------
    out_scene = trimesh.Scene()
    appearance = set()
    tex_cache = {}
    for p in parts:
        v, f, n, uv, col = autosmooth_normals(p["v"], p["f"], p["uv"], p["colors"])
        rgba = np.asarray(p["rgba"], dtype=np.uint8).copy()
        tex = None
        if p["img"] is not None:
            orig = p["img"].size
            key = hashlib.sha1(p["img"].convert("RGB").tobytes()).hexdigest()
            if key not in tex_cache:  # one shared image per distinct source texture
                tex_cache[key] = downscale(p["img"], max_tex)
                b.texture_sizes.append((orig, tex_cache[key].size))
            tex = tex_cache[key]
            rgba = np.array([255, 255, 255, rgba[3]], dtype=np.uint8)  # texture gives colour
            appearance.add("texture")
        mat = trimesh.visual.material.PBRMaterial(
            name=p["name"], baseColorFactor=rgba, baseColorTexture=tex,
            metallicFactor=0.0, roughnessFactor=float(np.clip(p["rough"], 0.3, 1.0)),
            doubleSided=False)
        if col is not None:
            visual = trimesh.visual.ColorVisuals(vertex_colors=col)
            appearance.add("vertex colours")
        elif tex is not None:
            visual = trimesh.visual.TextureVisuals(uv=uv, material=mat)
        else:
            visual = trimesh.visual.TextureVisuals(material=mat)
            appearance.add("material colours")
        mesh = trimesh.Trimesh(vertices=v, faces=f, vertex_normals=n, visual=visual,
                               process=False)
        out_scene.add_geometry(mesh, geom_name=f"{name}_{p['name']}")
    b.n_parts = len(parts)
    b.appearance = " + ".join(sorted(appearance))

    os.makedirs(os.path.join(out_dir, "objects"), exist_ok=True)
    path = os.path.join(out_dir, "objects", f"{name}.glb")
    data = out_scene.export(file_type="glb")
    with open(path, "wb") as fh:
        fh.write(data)
    b.size_bytes = len(data)
    verify(path, b, max_faces)
    return b


def verify(path, b: Built, max_faces):
    obj = trimesh.load(path)
    geoms = obj.dump() if isinstance(obj, trimesh.Scene) else [obj]
    allv = np.vstack([g.vertices for g in geoms])
    lo, hi = allv.min(0), allv.max(0)
    centre, ext = (lo + hi) / 2, hi - lo
    faces = sum(len(g.faces) for g in geoms)
    assert np.all(np.abs(centre) < 1e-4), f"{b.name}: not centred {centre}"
    assert 0.01 < ext.max() < 1.0, f"{b.name}: implausible size {ext}"
    assert faces <= max_faces, f"{b.name}: {faces} faces"
    coloured = False
    base_colours = set()
    for g in geoms:
        vis = g.visual
        if vis.kind == "texture" and getattr(vis.material, "baseColorTexture", None) is not None:
            coloured = True
        elif vis.kind == "vertex":
            vc = np.asarray(vis.vertex_colors)[:, :3].astype(int)
            if np.ptp(vc, axis=0).max() > 8 or np.ptp(vc[:, :3], axis=1).max() > 8:
                coloured = True
        elif vis.kind == "texture" and vis.material is not None:
            bc = np.asarray(vis.material.baseColorFactor, dtype=int)[:3]
            base_colours.add(tuple(bc // 16))
            if np.ptp(bc) > 8:  # a non-grey colour
                coloured = True
    if len(base_colours) > 1:  # several distinct material colours
        coloured = True
    b.faces_out, b.extents = faces, ext
    b.coloured = coloured


# ----------------------------------------------------------------------------------------------
def _kept_symmetries(out_dir):
    """``{name: symmetry value}`` of an existing manifest: hand-confirmed annotations survive a rebuild."""
    import yaml

    path = os.path.join(out_dir, "objects.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        old = yaml.safe_load(fh) or {}
    return {o["name"]: o["symmetry"] for o in old.get("objects") or [] if isinstance(o, dict) and "symmetry" in o}


def write_manifest(out_dir, built):
    import yaml

    kept = _kept_symmetries(out_dir)
    lines = [
        "# sim2real object-set manifest. Units: metres; origin at the bounding-box centre.",
        "# Generated by tools/build_assets.py; see README.md for sources and licences.",
        "version: 1",
        "units: m",
        "objects:",
    ]
    for i, b in enumerate(built):
        lines += [
            f"  - id: {i}",
            f"    name: {b.name}",
            f"    file: objects/{b.name}.glb",
        ]
        if b.name in kept:  # see README.md "Symmetries" and tools/propose_symmetries.py
            sym = kept[b.name]
            lines.append("    symmetry: " + ("none" if sym in (None, "none") else
                                              yaml.safe_dump(sym, default_flow_style=True, width=1000).strip()))
    with open(os.path.join(out_dir, "objects.yaml"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def write_readme(out_dir, built, max_faces, max_tex):
    rows = []
    for i, b in enumerate(built):
        lic = f"[{b.licence[0]}]({b.licence[1]})"
        mods = [f"rescaled to metres (x{b.scale:.4g}, uniform)", "recentred on bbox centre",
                "normals recomputed (auto-smooth 40°)"]
        if b.decimated:
            mods.append(f"decimated from {b.faces_in} to {b.faces_out} faces"
                        + (" (texture baked to vertex colours)" if b.baked else ""))
        else:
            mods.append(f"{b.faces_out} faces (not decimated)")
        for orig, new in b.texture_sizes:
            if orig != new:
                mods.append(f"texture downscaled {orig[0]}x{orig[1]} -> {new[0]}x{new[1]}")
        if b.texture_sizes:
            mods.append("textured materials use the texture colour (OBJ Kd tint dropped)")
        mods.append("converted OBJ/MTL -> glTF 2.0 (.glb)")
        e = b.extents
        rows.append(
            f"| {i} | `{b.name}` | `objects/{b.name}.glb` | {e[0]:.3f} × {e[1]:.3f} × {e[2]:.3f} "
            f"| \"{b.title}\" — Debian package `sweethome3d-furniture`, "
            f"`/usr/share/sweethome3d/furniture/{b.catalogue}`, model `{b.model}`"
            + (f"; originally \"{b.upstream['title']}\"" if "title" in b.upstream else "")
            + (f" by {b.upstream['author']}" if "author" in b.upstream else "")
            + (f", <{b.upstream['url']}>" if "url" in b.upstream else "")
            + (f" ({b.upstream['licence']})" if "licence" in b.upstream else "") + " "
            f"| {b.creator} | {lic} | {'; '.join(mods)} |")
    text = f"""# sim2real bundled object assets

{len(built)} everyday rigid objects (LineMod-like) for synthetic data generation.
The object set is described by [`objects.yaml`](objects.yaml) (class ids, names, files, symmetries).

* Format: one binary glTF 2.0 file per object (`objects/<name>.glb`), possibly with several
  sub-meshes/materials. Load with `trimesh.load(path)`; for a `trimesh.Scene` use
  `scene.dump()` (geometry with transforms applied), e.g. for `pyrender.Mesh.from_trimesh`.
* Units: metres. Origin: centre of the axis-aligned bounding box. Orientation: as in the source
  (SweetHome3D convention, **Y up**; the object's front usually faces +Z).
* Each object has at most {max_faces} triangles; textures are at most {max_tex}x{max_tex} JPEG.
* Size: real-world size from the SweetHome3D catalogue (width/depth/height in cm), applied as
  one uniform scale factor (largest catalogue dimension ↔ largest mesh extent).

## Objects

| id | name | file | extents x × y × z (m) | source | author | licence | modifications |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

All sources are from the Debian package `sweethome3d-furniture` (the SweetHome3D "additional
furniture" libraries, `.sh3f` zip catalogues; each catalogue's `PluginFurnitureCatalog.properties`
gives the model's name, size and `creator#N`, its `LICENSE.TXT` the licence). Models of the
*Blend Swap CC-0* catalogue are public domain (CC0); models of the *Blend Swap CC-BY*, *Scopia*
and *Kator Legaz* catalogues are licensed under the Creative Commons Attribution 3.0 licence
(<https://creativecommons.org/licenses/by/3.0/>); Scopia catalogue © Emmanuel Puybaret / eTeks
and Scopia Visual Interfaces Systems, Kator Legaz catalogue © 2003-2008 Andrew Kator & Jennifer
Legaz. The files here are modified versions (see the table). If you redistribute them or images
rendered from them, keep this attribution.

## Rebuild

```bash
sudo apt-get install sweethome3d-furniture          # provides /usr/share/sweethome3d/furniture/*.sh3f
pip install trimesh "numpy<2" scipy pillow fast-simplification
python tools/build_assets.py                        # --furniture-dir ... --out assets/
```
"""
    old_path = os.path.join(out_dir, "README.md")
    if os.path.isfile(old_path):  # the hand-written symmetry section survives a rebuild
        with open(old_path) as fh:
            old = fh.read()
        if "\n## Symmetries\n" in old:
            section = old.split("\n## Symmetries\n", 1)[1].split("\n## ", 1)[0]
            text = text.replace("\n## Rebuild\n", "\n## Symmetries\n" + section.rstrip() + "\n\n## Rebuild\n", 1)
    with open(old_path, "w") as fh:
        fh.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--furniture-dir", default="/usr/share/sweethome3d/furniture",
                    help="directory with the SweetHome3D .sh3f catalogues")
    ap.add_argument("--out", default="assets/", help="output assets directory")
    ap.add_argument("--max-faces", type=int, default=5000)
    ap.add_argument("--max-texture", type=int, default=256)
    args = ap.parse_args(argv)

    out_dir = args.out
    obj_dir = os.path.join(out_dir, "objects")
    if os.path.isdir(obj_dir):  # remove stale .glb files of a previous build
        for fn in os.listdir(obj_dir):
            if fn.endswith(".glb"):
                os.remove(os.path.join(obj_dir, fn))
    names = [c[0] for c in CHOSEN]
    assert len(set(names)) == len(names) and all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)

    built = []
    tmp_root = tempfile.mkdtemp(prefix="sim2real_assets_")
    try:
        for spec in CHOSEN:
            b = build_one(spec, args.furniture_dir, out_dir, args.max_faces, args.max_texture,
                          tmp_root)
            built.append(b)
            e = b.extents
            print(f"{len(built) - 1:2d} {b.name:13s} faces {b.faces_in:6d} -> {b.faces_out:5d}  "
                  f"extents {e[0]:.3f} x {e[1]:.3f} x {e[2]:.3f} m  "
                  f"axis mismatch {100 * b.axis_mismatch:4.1f}%  {b.appearance:30s} "
                  f"{b.size_bytes / 1024:6.0f} KiB  {b.licence[0]}"
                  + ("" if b.coloured else "  (single plain colour)"))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    write_manifest(out_dir, built)
    write_readme(out_dir, built, args.max_faces, args.max_texture)
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(out_dir) for f in fs)
    print(f"wrote {len(built)} objects, {total / 1e6:.2f} MB in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
