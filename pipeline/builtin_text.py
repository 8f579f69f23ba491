"""The builtin model's text encoder: words -> a tag vector over a fixed vocabulary, with synonyms."""

from __future__ import annotations

import difflib
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

COLOUR_TAGS: tuple[str, ...] = (
    "red", "orange", "yellow", "gold", "green", "cyan", "blue", "purple", "pink", "white", "black",
)
LIGHT_TAGS: tuple[str, ...] = ("dark", "bright")
SHAPE_TAGS: tuple[str, ...] = (
    "gradient", "rings", "stripes", "blobs", "plasma", "grid", "stars", "waves", "tunnel", "spiral", "rays",
    "checker", "flower", "cells", "dots", "kaleidoscope", "lines", "space", "water", "mandala", "horizon",
)
PALETTE_TAGS: tuple[str, ...] = (
    "fire", "lava", "ocean", "ice", "forest", "acid", "neon", "synthwave", "sunset", "mono", "pastel", "rainbow",
    "twilight", "blood", "candy", "midnight",
)
MOOD_TAGS: tuple[str, ...] = (
    "warm", "cool", "calm", "energetic", "psychedelic", "dreamy", "retro", "minimal", "hypnotic", "organic",
    "cosmic", "geometric", "soft", "electric", "mystic", "natural", "toxic", "sweet", "deep", "luxurious", "glow",
)

# The builtin vocabulary: one embedding dimension per tag, in this order.
BUILTIN_TAGS: tuple[str, ...] = COLOUR_TAGS + LIGHT_TAGS + SHAPE_TAGS + PALETTE_TAGS + MOOD_TAGS

# word -> tag (a word may also name a tag directly; plurals are tried without their "s"/"es").
SYNONYMS: dict[str, str] = {
    # colours
    "crimson": "red", "scarlet": "red", "ruby": "red", "cherry": "red", "maroon": "red", "vermilion": "red",
    "amber": "orange", "tangerine": "orange", "coral": "orange", "copper": "orange", "rust": "orange",
    "lemon": "yellow", "mustard": "yellow", "canary": "yellow",
    "golden": "gold", "gilded": "gold", "brass": "gold",
    "lime": "green", "emerald": "green", "jade": "green", "olive": "green", "mint": "green", "verdant": "green",
    "teal": "cyan", "turquoise": "cyan", "aqua": "cyan", "aquamarine": "cyan",
    "azure": "blue", "navy": "blue", "cobalt": "blue", "sapphire": "blue", "indigo": "blue", "cerulean": "blue",
    "violet": "purple", "lavender": "purple", "lilac": "purple", "amethyst": "purple", "plum": "purple",
    "magenta": "pink", "fuchsia": "pink", "rose": "pink", "salmon": "pink",
    "ivory": "white", "snow": "white", "pearl": "white",
    "ebony": "black", "noir": "black", "jet": "black",
    "grey": "mono", "gray": "mono", "silver": "mono", "monochrome": "mono", "bw": "mono",
    "colorful": "rainbow", "colourful": "rainbow", "multicolor": "rainbow", "prism": "rainbow",
    # light
    "night": "dark", "shadow": "dark", "gloomy": "dark", "moody": "dark", "gothic": "dark",
    "light": "bright", "luminous": "bright", "radiant": "bright", "sunny": "bright",
    "glowing": "glow", "shine": "glow", "shiny": "glow", "shining": "glow",
    # shapes
    "circle": "rings", "ring": "rings", "concentric": "rings", "halo": "rings", "target": "rings", "ripple": "rings",
    "stripe": "stripes", "striped": "stripes", "stripy": "stripes", "band": "stripes", "bar": "stripes",
    "line": "lines", "linear": "lines",
    "blob": "blobs", "bubble": "blobs", "metaball": "blobs", "metaballs": "blobs", "ball": "blobs", "lamp": "blobs",
    "liquid": "blobs", "goo": "blobs",
    "fluid": "plasma", "demoscene": "plasma",
    "lattice": "grid", "mesh": "grid", "net": "grid", "tron": "grid", "matrix": "grid",
    "star": "stars", "starfield": "stars", "starry": "stars", "sparkle": "stars", "sparkles": "stars",
    "galaxy": "space", "cosmos": "space", "universe": "space", "nebula": "space", "astral": "cosmic",
    "wave": "waves", "wavy": "waves", "sine": "waves", "sea": "water", "aquatic": "water", "underwater": "water",
    "wormhole": "tunnel", "vortex": "tunnel", "corridor": "tunnel",
    "swirl": "spiral", "twist": "spiral", "whirl": "spiral",
    "ray": "rays", "sunburst": "rays", "beam": "rays", "beams": "rays", "burst": "rays", "explosion": "rays",
    "checkerboard": "checker", "checkered": "checker", "chess": "checker", "tiles": "checker", "tile": "checker",
    "petal": "flower", "petals": "flower", "floral": "flower", "bloom": "flower", "blossom": "flower",
    "cell": "cells", "cellular": "cells", "voronoi": "cells", "honeycomb": "cells", "cracks": "cells",
    "dot": "dots", "polka": "dots", "halftone": "dots", "spots": "dots", "dotted": "dots",
    "kaleidoscopic": "kaleidoscope", "symmetry": "kaleidoscope", "symmetric": "kaleidoscope",
    "fade": "gradient", "smooth": "gradient", "ombre": "gradient",
    "landscape": "horizon", "outrun": "synthwave", "vaporwave": "synthwave", "eighties": "retro", "vintage": "retro",
    # palettes and moods
    "flame": "fire", "flames": "fire", "inferno": "fire", "burning": "fire", "hot": "warm", "heat": "warm",
    "magma": "lava", "volcano": "lava", "volcanic": "lava",
    "frozen": "ice", "icy": "ice", "winter": "ice", "cold": "cool", "chilly": "cool", "frost": "ice",
    "jungle": "forest", "woods": "forest", "nature": "natural", "leaf": "forest", "leaves": "forest",
    "laser": "neon", "lasers": "neon", "cyber": "neon", "cyberpunk": "neon", "club": "neon",
    "dusk": "sunset", "sundown": "sunset", "evening": "twilight", "sunrise": "sunset", "dawn": "sunset",
    "pale": "pastel", "gentle": "soft", "tender": "soft",
    "bloody": "blood", "horror": "blood", "sweets": "candy", "sugar": "candy", "bubblegum": "candy",
    "chill": "calm", "relaxed": "calm", "peaceful": "calm", "serene": "calm", "quiet": "calm", "ambient": "calm",
    "intense": "energetic", "wild": "energetic", "party": "energetic", "rave": "energetic", "techno": "energetic",
    "aggressive": "energetic", "dance": "energetic", "hype": "energetic",
    "trippy": "psychedelic", "lsd": "psychedelic", "surreal": "psychedelic",
    "dream": "dreamy", "ethereal": "dreamy", "hazy": "dreamy",
    "simple": "minimal", "clean": "minimal", "minimalist": "minimal",
    "trance": "hypnotic", "mesmerizing": "hypnotic", "mesmerising": "hypnotic", "infinite": "hypnotic",
    "alive": "organic", "biological": "organic",
    "geometry": "geometric", "sacred": "mandala",
    "electricity": "electric", "lightning": "electric", "mystical": "mystic", "magic": "mystic", "magical": "mystic",
    "poison": "toxic", "radioactive": "toxic", "sweetness": "sweet", "cute": "sweet", "abyss": "deep",
    "luxury": "luxurious", "rich": "luxurious", "royal": "luxurious",
}

# Words that carry no visual tag; they are skipped without a warning.
FILLER_WORDS: frozenset[str] = frozenset(
    "a an the of and with in on at to for by from some lots many very more much high quality detailed detail "
    "beautiful image picture photo art artwork style background abstract pattern visual visuals hd uhd k "
    "render rendering digital epic amazing".split()
)

_WORD = re.compile(r"[a-z]+")
WARNED_WORDS_CAP = 1024  # unknown words remembered (oldest forgotten first): memory stays bounded
WARNINGS_PER_WINDOW = 5  # unknown-word warnings allowed per window; the rest are counted and summed up later
WARNING_WINDOW_S = 10.0


class TagEncoder:
    """Words -> a unit tag vector: each known word (or synonym) adds one to its tag; unknown words warn once."""

    def __init__(self, tags: Sequence[str], synonyms: Mapping[str, str] | None = None, name: str = "builtin",
                 hint: str = "prompt with colours, shapes and moods",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if len(set(tags)) != len(tags) or not tags:
            raise ValueError("tags must be a non-empty sequence of distinct words")
        self.tags: tuple[str, ...] = tuple(tags)
        self.name = name
        self.hint = hint
        self.index: dict[str, int] = {tag: i for i, tag in enumerate(self.tags)}
        source = SYNONYMS if synonyms is None else synonyms
        self.synonyms: dict[str, str] = {w: t for w, t in source.items() if t in self.index}
        self._warned: OrderedDict[str, None] = OrderedDict()  # LRU of words already reported, capped
        self._clock = clock
        self._window_start = float("-inf")
        self._window_count = 0
        self.suppressed = 0  # unknown-word warnings held back by the rate limit (summed up in the next one)
        self._known = sorted(set(self.tags) | set(self.synonyms))

    @property
    def dim(self) -> int:
        """Embedding width: the number of tags."""
        return len(self.tags)

    def lookup(self, word: str) -> str | None:
        """The tag a word names (directly, as a synonym, or as a singular or plural of one), or None."""
        forms = (word, word[:-1] if word.endswith("s") else "", word[:-2] if word.endswith("es") else "", word + "s")
        for form in forms:
            if not form:
                continue
            if form in self.index:
                return form
            if form in self.synonyms:
                return self.synonyms[form]
        return None

    def tags_of(self, text: str) -> list[str]:
        """The tags a prompt names, in order (unknown words are warned about once and skipped)."""
        found: list[str] = []
        for word in _WORD.findall(text.lower()):
            tag = self.lookup(word)
            if tag is not None:
                found.append(tag)
            elif word not in FILLER_WORDS:
                self._warn_unknown(word)
        return found

    def encode(self, text: str) -> torch.Tensor:
        """(dim,) float32 tag vector of a prompt, unit length; zeros for "" or a prompt without known words."""
        vec = self.multi_hot(self.tags_of(text))
        norm = vec.norm()
        return vec / norm if norm > 0 else vec

    def multi_hot(self, tags: Iterable[str]) -> torch.Tensor:
        """(dim,) float32 counts of the given tags (each must be in the vocabulary)."""
        vec = torch.zeros(self.dim, dtype=torch.float32)
        for tag in tags:
            if tag not in self.index:
                raise ValueError(f"{tag!r} is not a tag of the {self.name} model; known tags: {', '.join(self.tags)}")
            vec[self.index[tag]] += 1.0
        return vec

    def nearest(self, word: str, n: int = 3) -> list[str]:
        """Up to n known words (tags or synonyms) spelled most like `word`."""
        return difflib.get_close_matches(word, self._known, n=n, cutoff=0.6)

    def _warn_unknown(self, word: str) -> None:
        if word in self._warned:
            self._warned.move_to_end(word)
            return
        self._warned[word] = None
        if len(self._warned) > WARNED_WORDS_CAP:
            self._warned.popitem(last=False)
        now = self._clock()
        if now - self._window_start >= WARNING_WINDOW_S:
            self._window_start, self._window_count = now, 0
        if self._window_count >= WARNINGS_PER_WINDOW:
            self.suppressed += 1
            return
        self._window_count += 1
        near = self.nearest(word)
        if near:
            advice = f"did you mean {', '.join(near)}?"
        else:
            step = max(1, len(self.tags) // 12)
            advice = f"known words include: {', '.join(self.tags[::step][:12])}, ...; {self.hint}"
        held = f" ({self.suppressed} more unknown words were not reported)" if self.suppressed else ""
        self.suppressed = 0
        warnings.warn(f"the {self.name} model does not know the word {word!r}; it is ignored ({advice}){held}",
                      UserWarning, stacklevel=4)


def builtin_encoder() -> TagEncoder:
    """The builtin model's encoder over BUILTIN_TAGS with the standard synonyms."""
    return TagEncoder(BUILTIN_TAGS)
