"""Synthetic printed digits ("glyphs"): the source of a shape-gap scenario, glyphs -> real MNIST handwriting.

Each sample is one digit drawn with PIL's ``ImageFont`` from a TrueType font, varied, then normalised the way
MNIST was (LeCun et al.: size-normalised to fit a 20x20 box keeping the aspect ratio, anti-aliased, then centred
by its centre of mass in a 28x28 field) and enlarged to 32x32 RGB exactly as ``datasets mnist`` enlarges MNIST
(:func:`sim2real.data.digits.grey_to_rgb`). White ink on black, like MNIST. The recipe, per sample:

1. font: uniform over the usable fonts (:func:`find_fonts`; by default the TrueType fonts matplotlib ships in
   ``mpl-data/fonts/ttf``, so the default depends on no system package); label ``index % 10`` (balanced);
2. drawn white on black at a random em size (:attr:`GlyphParams.size_px`) with a random PIL ``stroke_width``
   (a fraction of the size, :attr:`GlyphParams.stroke_frac`: bolder strokes);
3. one affine map about the glyph's centre: horizontal stretch (aspect), shear, rotation (bilinear);
4. cropped to its ink, resized (antialiased bilinear) so its longer side is a random fraction of MNIST's 20 px
   (:attr:`GlyphParams.box_px`: the scale), pasted into 28x28 with its centre of mass at pixel (14, 14) (where
   MNIST's lie: measured mean 14.00, std 0.29 over 10,000 training digits) plus a random translation of at most
   :attr:`GlyphParams.translate_px` (rounded to whole pixels as MNIST's centring; kept inside the field);
5. uint8 at 28x28, then 28 -> 32 bilinear, copied to three channels (as MNIST).

``mask`` is the ink: ``rgb > 0`` (the three channels are equal), so the image is exactly 0 off the mask, as a
render on black is off its z-buffer mask; the masked PMSE content loss (PixelDA Eq. 4) can use it.

Every sample depends only on ``(seed, split, index)``: its random numbers come from
``np.random.default_rng([seed, STREAM, split id, index])`` (:func:`sample_rng`), so a split can be built in any
order or in shards and sample ``i`` is the same. The pixels also depend on the FreeType that Pillow uses (recorded
in the provenance) and on the font files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sim2real.data import digits
from sim2real.errors import Sim2RealError

#: Split sizes: those of ``datasets mnist`` (PixelDA's MNIST-M proportions).
SPLIT_SIZES = dict(digits.SPLIT_SIZES)
#: The split's id in the per-sample seed (the same ids as MNIST-M's patch streams).
SPLIT_IDS = {"train": 1, "val": 2, "test": 3}
#: Marks the glyph generator's streams apart from any other ``[seed, ...]`` stream of the package.
STREAM = 0x676C79  # "gly"
#: MNIST's field and the pixel its centres of mass sit on (0-based, 28x28).
FIELD = 28
MNIST_COM = 14.0
#: English names of the digits: a digit's glyph name (the font's ``post`` table) starts with one of them.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FONT_SUFFIXES = (".ttf", ".otf")
#: The licences of matplotlib's fonts (matplotlib's LICENSE file and mpl-data/fonts/ttf/LICENSE_*).
LICENCE_NOTE = ("Glyphs are renderings of fonts; the font licences cover the font software and put no restriction "
                "on images drawn with it. matplotlib's fonts: DejaVu (Bitstream Vera licence, DejaVu changes public "
                "domain; LICENSE_DEJAVU), STIX (STIX Font License 2010, OFL-like; LICENSE_STIX), Computer Modern as "
                "BaKoMa TrueType (BaKoMa Fonts Licence, in matplotlib's LICENSE). Other fonts: see 'licence' per font.")


@dataclasses.dataclass(frozen=True)
class GlyphParams:
    """The random variations of one glyph (uniform over each range; recorded in every file's config)."""

    size_px: tuple[int, int] = (28, 64)
    """Font em size in pixels the glyph is drawn at, before size normalisation (integers, both ends included)."""
    stroke_frac: tuple[float, float] = (0.0, 0.03)
    """PIL ``stroke_width = round(frac * size)``: 0 is the font's own weight; more is bolder."""
    aspect: tuple[float, float] = (0.8, 1.25)
    """Horizontal stretch before normalisation (log-uniform): narrower or wider digits."""
    shear: float = 0.25
    """Horizontal shear ``x += shear * y`` in ``[-shear, shear]`` (0.25 is about 14 degrees of slant)."""
    rotation_deg: float = 12.0
    """Rotation in ``[-rotation_deg, rotation_deg]`` degrees."""
    box_px: tuple[float, float] = (17.0, 20.0)
    """The longer side of the normalised glyph in the 28x28 field, pixels (MNIST: 20)."""
    translate_px: float = 1.0
    """Offset of the centre of mass from pixel (14, 14) in ``[-t, t]`` per axis, 28x28 pixels, before rounding."""


@dataclasses.dataclass(frozen=True)
class Font:
    """A usable font: its file and what its ``name`` table says (for the provenance)."""

    path: Path
    name: str
    copyright: str
    licence: str

    def record(self) -> dict:
        """File name, SHA-1 of the file and the name-table strings (no absolute path: files made on two machines
        from the same fonts record the same provenance)."""
        import hashlib

        return {"file": self.path.name, "sha1": hashlib.sha1(self.path.read_bytes()).hexdigest(), "name": self.name,
                "copyright": self.copyright, "licence": self.licence}


def default_font_dir() -> Path:
    """matplotlib's bundled TrueType fonts (``mpl-data/fonts/ttf``): present wherever matplotlib is installed."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of sample ``index`` of ``split``: a function of ``(seed, split, index)`` only."""
    if split not in SPLIT_IDS:
        raise Sim2RealError(f"--split {split}: expected one of {', '.join(SPLIT_IDS)}")
    return np.random.default_rng([int(seed), STREAM, SPLIT_IDS[split], int(index)])


# ----------------------------------------------------------------------------------------------------------
# Fonts
# ----------------------------------------------------------------------------------------------------------


def _name(table, ids: Sequence[int], limit: int = 160) -> str:
    for i in ids:
        s = table.getDebugName(i)
        if s:
            s = " ".join(s.split())
            return s if len(s) <= limit else s[:limit - 3] + "..."
    return ""


def _is_digit_glyph_name(name: str, d: int) -> bool:
    """Whether a glyph name may be digit ``d``: ``zero``, ``zerooldstyle``, ``zero.tf``, ``uni0030``, ``u0030``,
    or an unnamed glyph (``glyph00012``, ``cid00017``: then only the drawing check decides)."""
    n = name.lower()
    return (n.startswith(DIGIT_NAMES[d]) or n in (f"uni{0x30 + d:04x}", f"u{0x30 + d:04x}")
            or re.fullmatch(r"(glyph|cid)\d+", n) is not None)


def check_font(path: str | Path) -> tuple[Font | None, str | None]:
    """Whether a font can draw the ten digits: ``(Font, None)``, or ``(None, why not)``.

    A font is usable when its cmap maps U+0030..U+0039 to ten distinct glyphs, none ``.notdef`` (matplotlib's
    LastResort maps every code point to a few placeholders), whose names are digit names (BaKoMa's cmex10 and
    cmsy10 map those code points to symbols: ``parenlefttp``, ``prime``), and PIL draws each with ink, ten
    different drawings.
    """
    from fontTools.ttLib import TTFont
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    try:
        tt = TTFont(path, lazy=True)
        cmap = tt.getBestCmap() or {}
        table = tt["name"] if "name" in tt else None
    except Exception:  # fontTools raises TTLibError, struct.error, KeyError, AssertionError... on bad files
        return None, "not a readable TrueType/OpenType font"
    missing = [str(d) for d in range(10) if 0x30 + d not in cmap]
    if missing:
        return None, f"no glyph for {', '.join(missing)} in its cmap" if len(missing) < 10 else "no digits in its cmap"
    names = [cmap[0x30 + d] for d in range(10)]
    if len(set(names)) < 10 or ".notdef" in names:
        return None, f"the ten digits map to {len(set(names) - {'.notdef'})} placeholder glyph(s) ({names[0]})"
    wrong = [f"{d}->{n}" for d, n in enumerate(names) if not _is_digit_glyph_name(n, d)]
    if wrong:
        return None, f"its cmap maps the digits to other glyphs ({', '.join(wrong[:3])}: a symbol encoding)"
    try:
        pil = ImageFont.truetype(str(path), 48)
        drawings = []
        for d in range(10):
            img = Image.new("L", (144, 144), 0)
            ImageDraw.Draw(img).text((72, 72), str(d), fill=255, font=pil, anchor="mm")
            drawings.append(img.tobytes())
    except OSError:
        return None, "PIL cannot draw with it"
    empty = [str(d) for d, b in enumerate(drawings) if not any(b)]
    if empty:
        return None, f"draws no ink for {', '.join(empty)}"
    if len(set(drawings)) < 10:
        return None, "draws two digits alike"
    name = _name(table, (4, 1)) if table is not None else ""
    cr = _name(table, (0,)) if table is not None else ""
    lic = _name(table, (14, 13)) if table is not None else ""
    return Font(path, name or path.stem, cr, lic), None


def font_files(spec: Sequence[str | Path] | None) -> list[Path]:
    """The font files a ``--fonts`` value names: folders (searched recursively for .ttf / .otf) and files; None
    means matplotlib's fonts. Sorted by file name, then path (the order fixes which font an index draws).

    Raises:
        Sim2RealError: a path that does not exist, or a folder without font files.
    """
    items = [default_font_dir()] if not spec else [Path(s) for s in spec]
    out: set[Path] = set()
    for p in items:
        if p.is_dir():
            found = [q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in FONT_SUFFIXES]
            if not found:
                raise Sim2RealError(f"{p}: no .ttf / .otf font files in this folder")
            out.update(q.resolve() for q in found)
        elif p.is_file():
            out.add(p.resolve())
        else:
            raise Sim2RealError(f"{p}: font file or folder not found")
    return sorted(out, key=lambda q: (q.name, str(q)))


def find_fonts(spec: Sequence[str | Path] | None = None) -> tuple[list[Font], dict[str, str]]:
    """The usable fonts of ``spec`` (see :func:`font_files`) and ``{file name: why excluded}`` for the others.

    Raises:
        Sim2RealError: no usable font.
    """
    fonts, excluded = [], {}
    for p in font_files(spec):
        font, why = check_font(p)
        if font is None:
            excluded[p.name] = why
        else:
            fonts.append(font)
    if not fonts:
        where = ", ".join(str(s) for s in spec) if spec else str(default_font_dir())
        raise Sim2RealError(f"{where}: no font that draws all ten digits ({len(excluded)} checked)")
    return fonts, excluded


# ----------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------


class GlyphRenderer:
    """Draws normalised 28x28 glyphs from a fixed font list (caches the PIL fonts per size; stateless otherwise)."""

    def __init__(self, fonts: Sequence[Font], params: GlyphParams = GlyphParams()):
        if not fonts:
            raise ValueError("GlyphRenderer: needs at least one font")
        self.fonts = list(fonts)
        self.params = params
        self._cache: dict[tuple[int, int], object] = {}

    def _font(self, k: int, size: int):
        from PIL import ImageFont

        key = (k, size)
        if key not in self._cache:
            self._cache[key] = ImageFont.truetype(str(self.fonts[k].path), size)
        return self._cache[key]

    def draw(self, label: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """One glyph of digit ``label``: ``(grey (28, 28) uint8, font index)``.

        Every random number is drawn up front in a fixed order, so the draw is a function of the stream alone.
        """
        from PIL import Image, ImageDraw

        p = self.params
        k = int(rng.integers(len(self.fonts)))
        size = int(rng.integers(p.size_px[0], p.size_px[1] + 1))
        stroke = int(round(rng.uniform(*p.stroke_frac) * size))
        aspect = float(np.exp(rng.uniform(np.log(p.aspect[0]), np.log(p.aspect[1]))))
        shear = float(rng.uniform(-p.shear, p.shear))
        angle = np.deg2rad(rng.uniform(-p.rotation_deg, p.rotation_deg))
        box = float(rng.uniform(*p.box_px))
        shift = rng.uniform(-p.translate_px, p.translate_px, size=2)  # (dy, dx)

        side = 2 * size + 2 * stroke  # room for any glyph (old-style figures descend) and its stroke
        img = Image.new("L", (side, side), 0)
        ImageDraw.Draw(img).text((side / 2, side / 2), str(int(label)), fill=255, font=self._font(k, size),
                                 anchor="mm", stroke_width=stroke, stroke_fill=255)
        bbox = img.getbbox()
        if bbox is None:  # fonts are checked to draw every digit: only a degenerate parameter set gets here
            raise Sim2RealError(f"{self.fonts[k].path}: digit {label} drew no ink at size {size}")
        img = img.crop((bbox[0] - 1, bbox[1] - 1, bbox[2] + 1, bbox[3] + 1))  # ink plus a black border
        # Forward map (x right, y down) about the crop's centre: rotation . shear . stretch. The output canvas
        # holds the mapped crop; PIL's AFFINE takes the inverse map, output pixel -> input pixel.
        cos, sin = np.cos(angle), np.sin(angle)
        fwd = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1.0])
        w, h = img.size
        corners = fwd @ (np.array([[0, w, 0, w], [0, 0, h, h]], np.float64) - [[w / 2], [h / 2]])
        ow, oh = (int(np.ceil(e)) + 2 for e in np.ptp(corners, axis=1))
        inv = np.linalg.inv(fwd)
        off = np.array([w / 2, h / 2]) - inv @ np.array([ow / 2, oh / 2])
        img = img.transform((ow, oh), Image.Transform.AFFINE,
                            data=(inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                            resample=Image.Resampling.BILINEAR)
        img = img.crop(img.getbbox())  # the bilinear map keeps ink: bbox exists
        w, h = img.size
        f = box / max(w, h)
        img = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BOX)
        g = np.asarray(img, dtype=np.uint8)
        gh, gw = g.shape
        wts = g.astype(np.float64)
        total = wts.sum()
        cy = (wts.sum(axis=1) @ np.arange(gh)) / total
        cx = (wts.sum(axis=0) @ np.arange(gw)) / total
        y0 = int(np.clip(np.rint(MNIST_COM + shift[0] - cy), 0, FIELD - gh))
        x0 = int(np.clip(np.rint(MNIST_COM + shift[1] - cx), 0, FIELD - gw))
        out = np.zeros((FIELD, FIELD), np.uint8)
        out[y0:y0 + gh, x0:x0 + gw] = g
        return out, k


def label_of(index: int) -> int:
    """Sample ``index``'s digit: ``index % 10`` (every split is balanced, and so is every run of 10 samples)."""
    return int(index) % 10


def build_glyphs(split: str, seed: int = 0, fonts: Sequence[Font] | None = None,
                 indices: Iterable[int] | None = None, params: GlyphParams = GlyphParams(),
                 excluded: dict[str, str] | None = None) -> digits.Digits:
    """A glyph split (or the samples ``indices`` of it) as 32x32 RGB with the ink mask.

    Args:
        split: train | val | test (sizes :data:`SPLIT_SIZES`).
        seed: with the split and the index, fixes every sample (:func:`sample_rng`).
        fonts: the fonts to draw with (default: :func:`find_fonts` of matplotlib's fonts).
        indices: which samples (default: all ``SPLIT_SIZES[split]``); sample ``i`` is the same in any subset.
        params: the variations (:class:`GlyphParams`).
        excluded: fonts left out and why, for the provenance (with ``fonts=None`` found here).

    Returns:
        :class:`~sim2real.data.digits.Digits` with ``rgb`` (N, 32, 32, 3) uint8 (grey in 3 channels),
        ``label`` (N,) int64 = index % 10, ``mask`` (N, 32, 32) bool = ``rgb[..., 0] > 0``.
    """
    from PIL import __version__ as pil_version
    from PIL import features

    from sim2real.utils import progress

    if split not in SPLIT_SIZES:
        raise Sim2RealError(f"--split {split}: expected one of {', '.join(SPLIT_SIZES)}")
    if fonts is None:
        fonts, excluded = find_fonts(None)
    idx = np.arange(SPLIT_SIZES[split]) if indices is None else np.asarray(list(indices), dtype=np.int64)
    renderer = GlyphRenderer(fonts, params)
    grey = np.empty((len(idx), FIELD, FIELD), np.uint8)
    font_of = np.empty(len(idx), np.int64)
    for j in progress(range(len(idx)), total=len(idx), desc=f"glyphs {split}", unit="img"):
        i = int(idx[j])
        grey[j], font_of[j] = renderer.draw(label_of(i), sample_rng(seed, split, i))
    rgb = np.concatenate([digits.grey_to_rgb(grey[i:i + digits.CHUNK]) for i in range(0, len(grey), digits.CHUNK)]) \
        if len(grey) else np.empty((0, digits.SIZE, digits.SIZE, 3), np.uint8)
    labels = np.array([label_of(i) for i in idx], dtype=np.int64)
    counts = np.bincount(font_of, minlength=len(fonts))
    prov = {"source": "synthetic: digits drawn with PIL ImageFont (sim2real.data.glyphs)",
            "recipe": "font, size, stroke width, stretch, shear, rotation -> crop to ink -> longer side box_px, "
                      "centre of mass at (14, 14) + translation in 28x28 (MNIST's normalisation) -> 28->32 bilinear",
            "fonts": [dict(f.record(), samples=int(n)) for f, n in zip(fonts, counts)],
            "excluded_fonts": excluded or {}, "licence": LICENCE_NOTE, "params": dataclasses.asdict(params),
            "label": "index % 10", "rng": f"np.random.default_rng([seed, {STREAM}, split id {SPLIT_IDS[split]}, index])",
            "mask": "rgb > 0 (the ink)", "pillow": pil_version, "freetype": features.version("freetype2")}
    return digits.Digits(rgb, labels, split, prov, mask=rgb[..., 0] > 0)
