"""Phrases like the competition's: addresses, phone numbers, URLs, names, e-mail addresses, ...

Each kind has templates whose placeholders are filled with English words, names, made-up words and
digits (`make_phrase`); a small fraction use the rare punctuation (`RARE_PUNCTUATION`). A data set's
pool of phrases is patched so that it contains all 59 characters (`_cover_all_characters`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from aslfr.data import layout
from aslfr.data.synthetic.hand import _frozen

_FIRST_NAMES = (
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "daniel",
    "nancy",
    "matthew",
    "lisa",
    "anthony",
    "betty",
    "mark",
    "sandra",
    "paul",
    "ashley",
    "steven",
    "emily",
    "andrew",
    "donna",
    "joshua",
    "michelle",
    "kevin",
    "amanda",
    "brian",
    "melissa",
    "george",
    "deborah",
    "ryan",
    "laura",
    "jacob",
    "amy",
    "gary",
    "angela",
    "eric",
    "anna",
    "jonathan",
    "brenda",
    "justin",
    "nicole",
    "scott",
    "helen",
    "frank",
    "rachel",
    "xavier",
    "zoe",
    "quinn",
    "yusuf",
    "jacques",
    "maximilian",
    "ximena",
    "zachary",
    "jaqueline",
    "beatrix",
    "oksana",
    "kwame",
    "ingrid",
    "dmitri",
    "priya",
)
_LAST_NAMES = (
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "lanier",
    "kowalski",
    "okafor",
    "yamamoto",
    "ivanov",
    "quigley",
    "fitzgerald",
    "vazquez",
    "oxley",
    "dubois",
    "schwartz",
    "kuhaylah",
    "zhang",
    "jablonski",
    "becker",
)
_WORDS = (
    "creek",
    "house",
    "oak",
    "maple",
    "pine",
    "cedar",
    "elm",
    "lake",
    "hill",
    "park",
    "river",
    "sunset",
    "valley",
    "meadow",
    "forest",
    "spring",
    "ridge",
    "highland",
    "willow",
    "cherry",
    "church",
    "mill",
    "washington",
    "lincoln",
    "jefferson",
    "franklin",
    "madison",
    "main",
    "market",
    "broadway",
    "harbor",
    "bay",
    "canyon",
    "prairie",
    "quarry",
    "fox",
    "birch",
    "juniper",
    "aspen",
    "sycamore",
    "magnolia",
    "orchard",
    "stone",
    "wood",
    "brook",
    "glen",
    "summit",
    "vista",
    "plaza",
    "kingston",
    "oxford",
    "zephyr",
    "quail",
    "jasper",
    "liberty",
    "union",
    "central",
    "lakeview",
    "fairway",
    "garden",
    "bridge",
    "station",
    "crystal",
    "golden",
    "silver",
    "eagle",
    "hawk",
    "bear",
    "wolf",
    "deer",
    "buffalo",
    "pioneer",
    "heritage",
    "village",
    "country",
    "mountain",
    "ocean",
    "island",
    "beach",
    "harvest",
    "autumn",
    "winter",
    "summer",
    "rose",
    "lily",
    "ivy",
    "hazel",
    "laurel",
    "academy",
    "college",
    "school",
    "library",
    "museum",
    "hotel",
    "cafe",
    "bakery",
    "studio",
    "market",
    "shop",
    "travel",
    "photo",
    "music",
    "news",
    "blog",
    "store",
    "home",
    "world",
    "city",
    "life",
    "green",
    "blue",
    "black",
    "white",
    "red",
    "sky",
    "star",
    "moon",
    "sun",
    "king",
    "queen",
)
_DIRECTIONS = (
    "north",
    "south",
    "east",
    "west",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
    "n",
    "s",
    "e",
    "w",
)
_SUFFIXES = (
    "road",
    "street",
    "avenue",
    "drive",
    "lane",
    "way",
    "court",
    "place",
    "boulevard",
    "circle",
    "trail",
    "parkway",
    "terrace",
    "highway",
    "loop",
    "square",
    "crossing",
    "pike",
    "run",
    "rd",
    "st",
    "ave",
    "dr",
    "ln",
    "blvd",
    "ct",
    "pl",
    "hwy",
)
_TLDS = (
    "com",
    "com",
    "com",
    "org",
    "net",
    "net",
    "edu",
    "gov",
    "io",
    "co",
    "uk",
    "de",
    "jp",
    "fr",
    "it",
    "es",
    "nl",
    "ru",
    "br",
    "au",
    "ca",
    "in",
    "kr",
    "ne.jp",
    "co.uk",
    "com.au",
    "or.jp",
    "ac.uk",
    "is",
    "ly",
    "me",
    "tv",
    "us",
    "info",
    "biz",
    "xyz",
    "co.jp",
    "org.uk",
)
_ONSETS = (
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "j",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "y",
    "z",
    "ch",
    "sh",
    "th",
    "qu",
    "x",
    "br",
    "cr",
    "dr",
    "fr",
    "gr",
    "kr",
    "pr",
    "tr",
    "st",
    "sp",
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ai", "ea", "oo", "ou", "ee", "ia", "y")
_CODAS = ("",) * 6 + ("n", "r", "s", "l", "t", "k", "m", "x", "z", "ng")

# Phrase templates by kind. Placeholders: {w} made-up word, {W} English word, {f} first name,
# {l} last name, {n} house number, {d2} two digits, {3}/{4} three/four digits, {c} country code,
# {g} a group of 2-4 digits, {t} top-level domain, {dir} direction, {suf} street suffix, {ord} ordinal.
_TEMPLATES = {
    "address": (
        "{n} {dir} {ord} {suf}",
        "{n} {W}{W}",
        "{n} {W} {suf}",
        "{n} {f} {l}",
        "{n} {dir} {W} {suf}",
        "{n} {W} {W} {suf}",
        "{n} {w} {suf}",
        "{n} {w}",
        "{n} {ord} {suf}",
        "{n} {W} {suf} {dir}",
        "{n} {dir} {w} {suf}",
        "{n} {l} {suf}",
    ),
    "phone": (
        "+{c}-{g}-{g}-{g}",
        "{3}-{3}-{4}",
        "+{c} {g} {g} {g}",
        "{3}.{3}.{4}",
        "+{c}-{g}-{g}-{g}-{g}",
        "+{c}-{3}-{3}-{4}",
        "{g}-{g}-{g}-{g}",
        "+{c}-{4}-{3}-{g}",
    ),
    "url": (
        "www.{w}.{t}",
        "https://{w}.{t}/{w}",
        "http://www.{w}.{t}",
        "{w}.{t}",
        "https://www.{W}{w}.{t}",
        "{w}.{t}/{w}",
        "http://{w}.{t}/{w}/{d2}",
        "https://{w}-{W}.{t}",
        "www.{W}-{w}.{t}",
        "{W}{W}.{t}",
        "https://{W}.{t}/{w}-{w}",
    ),
    "name": (
        "{f} {l}",
        "{w}/{w}",
        "{f} {f} {l}",
        "{f} {l}-{l}",
        "{l}/{f}",
        "{f} {w}",
        "dr. {f} {l}",
        "{f} {l} jr.",
        "{l}, {f}",
        "{w} {w}",
    ),
    "email": (
        "{f}.{l}@{w}.{t}",
        "{f}{d2}@{W}.{t}",
        "{w}-{w}@{w}.{t}",
        "{f}@{w}.{t}",
        "{w}{d2}@{W}mail.com",
        "{f}{l}@{W}.{t}",
    ),
    "other": (
        "{W} {W} {W}",
        "{d2}/{d2}/{4}",
        "{W} at {d2}:{d2}",
        "{W} {W} {n}",
        "{n}+{n} {W}",
        "{W}, {W} {n}",
        "{W}.{W}.{t}",
        "{w} {W} {W}",
        "{n}-{n} {W} {suf}",
    ),
    "short": ("{n}", "{a}", "{d2}", "{ws}", "{a}{a}"),
}
_KINDS = ("address", "phone", "url", "name", "email", "other", "rare", "short")
_KIND_WEIGHTS = _frozen([0.27, 0.13, 0.18, 0.15, 0.10, 0.08, 0.065, 0.015])
RARE_PUNCTUATION = "!#$%&'()*;=?[_~"
# Templates that use each rare punctuation character (']' is not one of the 59 characters).
_RARE_TEMPLATES = {
    "!": ("{W} {W}!", "{f} {l}!", "{w}!{w}.{t}"),
    "#": ("#{W}{d2} {W}", "{n} {W} {suf} #{d2}", "{n} {w} apt #{n}"),
    "$": ("${n}.{d2} {W}", "{W} {W} ${n}", "{W} ${d2}.{d2}"),
    "%": ("{d2}% {W} {W}", "{w}.{t}/{w}%20{w}", "{W} {d2}.{3}%"),
    "&": ("{l} & {l}", "{w}.{t}/?a={d2}&b={d2}", "{W}&{W} {W}"),
    "'": ("{f}'s {W} {W}", "{f} o'{l}", "{n} {W}'s {suf}"),
    "(": ("({3}) {3}-{4}", "{W} ({W} {W})", "+{c} ({3}) {3}-{4}"),
    ")": ("({3}) {3}-{4}", "{f} {l} ({W})", "{d2}) {W} {W}"),
    "*": ("*{n} {W} {W}", "{w}*{w}.{t}", "{f} {l} *{d2}"),
    ";": ("{W} {W}; {W}", "{l}; {l}; {l}", "{w};{d2}@{w}.{t}"),
    "=": ("{w}.{t}/?id={n}", "{w}.{t}?{w}={w}", "{w}.{t}?{w}={d2}"),
    "?": ("{w}.{t}/{w}?{w}={d2}", "{W} {W} {w}?", "{f}, {W} {W}?"),
    "[": ("[{W} {W}", "{w}.{t}/{w}[{d2}", "{W} {W} [{n}"),
    "_": ("{w}_{w}@{w}.{t}", "{w}_{n}@{W}.{t}", "{f}_{l}"),
    "~": ("{w}.{t}/~{w}", "~{W} {W}", "{w}.{t}/~{f}"),
}


def _made_up_word(rng: np.random.Generator, max_syllables: int = 3) -> str:
    """A pronounceable made-up word like 'kuhaylah', 'freem' or 'jsi'."""
    n = int(rng.integers(1, max_syllables + 1))
    parts = [_pick(rng, _ONSETS) + _pick(rng, _VOWELS) + _pick(rng, _CODAS) for _ in range(n)]
    return "".join(parts)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    first = str(int(rng.integers(1, 10)))
    return first + "".join(str(d) for d in rng.integers(0, 10, n - 1))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _placeholder(name: str, rng: np.random.Generator) -> str:
    """The text for one template placeholder."""
    if name == "w":
        return _made_up_word(rng)
    if name == "ws":
        return _made_up_word(rng, 1)
    if name == "W":
        return _pick(rng, _WORDS)
    if name == "f":
        return _pick(rng, _FIRST_NAMES)
    if name == "l":
        return _pick(rng, _LAST_NAMES)
    if name == "n":
        return _digits(rng, int(rng.choice([1, 2, 3, 4, 5], p=[0.15, 0.15, 0.25, 0.35, 0.10])))
    if name == "d2":
        return "".join(str(d) for d in rng.integers(0, 10, 2))
    if name in ("3", "4"):
        return "".join(str(d) for d in rng.integers(0, 10, int(name)))
    if name == "c":
        return _digits(rng, int(rng.integers(1, 4)))
    if name == "g":
        return "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 5))))
    if name == "t":
        return _pick(rng, _TLDS)
    if name == "dir":
        return _pick(rng, _DIRECTIONS)
    if name == "suf":
        return _pick(rng, _SUFFIXES)
    if name == "ord":
        return _ordinal(int(rng.integers(1, 1000)))
    if name == "a":
        return layout.CHARACTERS[int(rng.integers(32, 58))]
    raise KeyError(name)


def _fill(template: str, rng: np.random.Generator) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _placeholder(m.group(1), rng), template)


def _phrase_from(templates: Sequence[str], rng: np.random.Generator) -> str:
    """A phrase from one of `templates`, drawn again until it is 1-31 characters long."""
    for _ in range(100):
        phrase = _fill(_pick(rng, templates), rng)
        if 1 <= len(phrase) <= 31:
            return phrase
    return phrase[:31]


def make_phrase(rng: np.random.Generator) -> str:
    """One phrase like the competition's: an address, phone number, URL, name, e-mail address, ...

    Lower case, 1-31 characters (mean about 18), only characters of `layout.CHARACTERS`. A small
    fraction use the rare punctuation ``!#$%&'()*;=?[_~``.
    """
    kind = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_WEIGHTS / _KIND_WEIGHTS.sum()))]
    if kind == "rare":
        return _phrase_with(RARE_PUNCTUATION[int(rng.integers(len(RARE_PUNCTUATION)))], rng)
    return _phrase_from(_TEMPLATES[kind], rng)


def _phrase_with(char: str, rng: np.random.Generator) -> str:
    """A realistic phrase that contains `char`."""
    if char in _RARE_TEMPLATES:
        return _phrase_from(_RARE_TEMPLATES[char], rng)
    for _ in range(1000):
        phrase = make_phrase(rng)
        if char in phrase:
            return phrase
    return char


def _cover_all_characters(pool: list[str], rng: np.random.Generator) -> list[str]:
    """Replace phrases of `pool` so that together they contain every one of the 59 characters.

    A phrase is only replaced if every character it has also occurs in another phrase of the pool.
    """
    pool = list(pool)
    counts = Counter(c for phrase in pool for c in set(phrase))
    for char in layout.CHARACTERS:
        if counts[char]:
            continue
        for j in rng.permutation(len(pool)):
            if all(counts[c] >= 2 for c in set(pool[j])):
                counts.subtract(set(pool[j]))
                pool[j] = _phrase_with(char, rng)
                counts.update(set(pool[j]))
                break
    return pool
