"""The class vocabularies of the five benchmarks with semantic classes, packaged with tarvis-fast.

`vocabularies.json` beside this module lists, per dataset, its classes in class-index order (0-based, the order
of the network's semantic queries): name, whether it is a thing, and for the panoptic datasets the colour that
their category tables give it. Its `_provenance` entry says where each list comes from.

    class_names("YOUTUBE_VIS")[0]          # 'airplane'; a VIS results file calls it category_id 1
    vocabulary("vipseg").thing_classes     # the 58 thing class indices
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from tarvis_fast.formats.panoptic import Category

VOCABULARY_FILE = "vocabularies.json"


@dataclass(frozen=True)
class Vocabulary:
    dataset: str                                        # upper-case dataset name, e.g. "KITTI_STEP"
    names: tuple[str, ...]                              # class index -> name
    is_thing: tuple[bool, ...]                          # class index -> thing (True) or stuff
    colours: tuple[tuple[int, int, int], ...] | None    # class index -> RGB; None where the dataset has none

    @property
    def thing_classes(self) -> tuple[int, ...]:
        """0-based indices of the thing classes."""
        return tuple(i for i, thing in enumerate(self.is_thing) if thing)

    def categories(self) -> dict[int, Category]:
        """The vocabulary as panoptic categories (id = class index), what `formats.panoptic` writers take."""
        if self.colours is None:
            raise ValueError(f"the {self.dataset} vocabulary has no colours, so it cannot give panoptic categories")
        return {i: Category(i, name, thing, colour)
                for i, (name, thing, colour) in enumerate(zip(self.names, self.is_thing, self.colours))}


@cache
def _load() -> dict[str, Vocabulary]:
    content = json.loads(resources.files(__package__).joinpath(VOCABULARY_FILE).read_text(encoding="utf-8"))
    vocabularies = {}
    for dataset, classes in content.items():
        if dataset.startswith("_"):
            continue
        colours = [c.get("color") for c in classes]
        vocabularies[dataset] = Vocabulary(
            dataset=dataset,
            names=tuple(c["name"] for c in classes),
            is_thing=tuple(bool(c["isthing"]) for c in classes),
            colours=None if None in colours else tuple(tuple(int(v) for v in c) for c in colours),
        )
    return vocabularies


def vocabulary(dataset: str) -> Vocabulary:
    """The vocabulary of `dataset`: YOUTUBE_VIS, OVIS, KITTI_STEP, CITYSCAPES_VPS or VIPSEG (any case)."""
    vocabularies = _load()
    key = dataset.upper()
    if key not in vocabularies:
        raise ValueError(f"no class vocabulary for {dataset!r}; known: {', '.join(k.lower() for k in vocabularies)}")
    return vocabularies[key]


def class_names(dataset: str) -> list[str]:
    """Class names of `dataset` by 0-based class index (the overlay legend's text)."""
    return list(vocabulary(dataset).names)
