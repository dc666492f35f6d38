"""Every dataset TarViS knows, one row each: its task, its classes, and for the benchmarks (the seven real ones and
the bundled demo's four) how their inference inputs are laid out, read, written and scored. Training, inference,
evaluation and the config all read this table, so adding a benchmark in a format the project already reads is one
row here.

    DATASETS["DAVIS"].task                      # Task.VOS
    DATASETS["KITTI_STEP"].benchmark.metric     # "kitti_step", a key of tarvis_fast.evaluation's EVALUATORS
    vocabulary("vipseg").thing_classes          # the 58 thing class indices
    class_names("YOUTUBE_VIS")[0]               # 'airplane'; a VIS results file calls it category_id 1

Class vocabularies: `vocabularies.json` beside this module lists, per dataset, its classes in class-index order
(0-based, the order of the network's semantic queries): name, whether it is a thing, and for the panoptic datasets
the colour their category tables give it. Its `_provenance` entry says where each list comes from. The image
datasets used for pre-training carry their categories in their own annotation files.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from tarvis_fast.formats.panoptic import Category
from tarvis_fast.tasks import Task

VOCABULARY_FILE = "vocabularies.json"
WORKSPACE_ENV = "TARVIS_WORKSPACE_DIR"  # the original's root of dataset images and annotations

_IMG, _ANN = "dataset_images/inference", "dataset_annotations/inference"
DEMO_DATA = "demo_data"  # the demo's generated videos, `<demo output folder>/demo_data/<task>/<split>/`


@dataclass(frozen=True)
class BenchmarkInfo:
    """How a benchmark's inference inputs are found and what reads, writes and scores them.

    layout: the key of its reader (`inference.readers`) and writer (`inference.writers`): "ytvis", "davis",
        "burst", "kitti_step", "cityscapes_vps" or "vipseg".
    metric: the key of its metric in `tarvis_fast.evaluation` (`python -m tarvis_fast.evaluation METRIC`).
    splits: the splits it can be run on; the first is the default.
    inputs: split -> {input key -> path relative to $TARVIS_WORKSPACE_DIR} (keys: `inference.readers.PATH_KEYS`).
    """

    layout: str
    metric: str
    splits: tuple[str, ...]
    inputs: Callable[[str], dict[str, str]]


@dataclass(frozen=True)
class DatasetInfo:
    name: str                           # upper case; also its key under `datasets:` in the config
    task: Task                          # VIS, VPS or VOS (BURST is VOS data; its point references make PET)
    num_classes: int = 0                # semantic classes; 0 for the class-agnostic VOS datasets
    benchmark: BenchmarkInfo | None = None  # None: a training-only dataset


DATASETS: dict[str, DatasetInfo] = {row.name: row for row in (
    # image datasets, pre-training only (as pseudo-videos)
    DatasetInfo("ADE20K", Task.VPS, 150),
    DatasetInfo("CITYSCAPES", Task.VPS, 34),
    DatasetInfo("COCO", Task.VPS, 133),
    DatasetInfo("MAPILLARY", Task.VPS, 65),
    # video datasets and their benchmarks
    DatasetInfo("YOUTUBE_VIS", Task.VIS, 40, BenchmarkInfo("ytvis", "ytvis", ("val",), lambda split: {
        "images": f"{_IMG}/youtube_vis_2021", "annotations": f"{_ANN}/youtube_vis/valid_2021.json"})),
    DatasetInfo("OVIS", Task.VIS, 25, BenchmarkInfo("ytvis", "ovis", ("val",), lambda split: {
        "images": f"{_IMG}/ovis", "annotations": f"{_ANN}/ovis/valid.json"})),
    DatasetInfo("DAVIS", Task.VOS, 0, BenchmarkInfo("davis", "davis", ("val", "testdev"), lambda split: {
        "images": f"{_IMG}/davis", "annotations": f"{_ANN}/davis/Annotations",
        "image_set": f"{_ANN}/davis/ImageSet_{split}.txt"})),
    DatasetInfo("BURST", Task.VOS, 0, BenchmarkInfo("burst", "burst", ("val", "test"), lambda split: {
        "images": f"{_IMG}/burst/{split}", "annotations": f"{_ANN}/burst/first_frame_annotations_{split}.json"})),
    DatasetInfo("KITTI_STEP", Task.VPS, 19, BenchmarkInfo("kitti_step", "kitti_step", ("val",), lambda split: {
        "images": f"{_IMG}/kitti_step_val"})),
    DatasetInfo("CITYSCAPES_VPS", Task.VPS, 19, BenchmarkInfo("cityscapes_vps", "cityscapes_vps", ("val",),
                                                              lambda split: {
        "images": f"{_IMG}/cityscapes_vps_val",
        "annotations": f"{_ANN}/cityscapes_vps/im_all_info_val_city_vps.json"})),
    DatasetInfo("VIPSEG", Task.VPS, 124, BenchmarkInfo("vipseg", "vipseg", ("val", "test"), lambda split: {
        "images": f"{_IMG}/vipseg" if split == "val" else f"{_IMG}/vipseg_test",
        "annotations": f"{_ANN}/vipseg/{split}.json"})),
    # The bundled demo's procedural videos (`tarvis_fast.data.synthetic`, `python -m tarvis_fast.demo`), written in
    # the real benchmarks' layouts and run, scored and trained on as they are; the demo's output folder is their
    # workspace. DEMO_PET is the BURST layout in point mode (PET).
    DatasetInfo("DEMO_VIS", Task.VIS, 3, BenchmarkInfo("ytvis", "ytvis", ("val",), lambda split: {
        "images": f"{DEMO_DATA}/vis/{split}/JPEGImages", "annotations": f"{DEMO_DATA}/vis/{split}/{split}.json"})),
    DatasetInfo("DEMO_VPS", Task.VPS, 6, BenchmarkInfo("vipseg", "vipseg", ("val",), lambda split: {
        "images": f"{DEMO_DATA}/vps/{split}/images", "annotations": f"{DEMO_DATA}/vps/{split}/{split}.json"})),
    DatasetInfo("DEMO_VOS", Task.VOS, 0, BenchmarkInfo("davis", "davis", ("val",), lambda split: {
        "images": f"{DEMO_DATA}/vos/{split}/JPEGImages/480p",
        "annotations": f"{DEMO_DATA}/vos/{split}/Annotations/480p",
        "image_set": f"{DEMO_DATA}/vos/{split}/ImageSets/2017/{split}.txt"})),
    DatasetInfo("DEMO_PET", Task.VOS, 0, BenchmarkInfo("burst", "burst", ("val",), lambda split: {
        "images": f"{DEMO_DATA}/pet/{split}/frames",
        "annotations": f"{DEMO_DATA}/pet/{split}/first_frame_annotations.json"})),
)}

BENCHMARKS: tuple[str, ...] = tuple(name for name, row in DATASETS.items() if row.benchmark is not None)


def dataset_info(name: str) -> DatasetInfo:
    """The row of `name` (any case); ValueError naming the known datasets otherwise."""
    key = name.upper()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


# ============================================================================================== vocabularies

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
def _load_vocabularies() -> dict[str, Vocabulary]:
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


def vocabularies(task: Task | None = None) -> list[str]:
    """Lower-case names of the packaged vocabularies (of `task`'s datasets only, when given), in table order."""
    packaged = _load_vocabularies()
    return [name.lower() for name, row in DATASETS.items()
            if name in packaged and (task is None or row.task is task)]


def vocabulary(dataset: str) -> Vocabulary:
    """The packaged vocabulary of `dataset` (any case): YOUTUBE_VIS, OVIS, KITTI_STEP, CITYSCAPES_VPS, VIPSEG,
    DEMO_VIS or DEMO_VPS."""
    packaged = _load_vocabularies()
    key = dataset.upper()
    if key not in packaged:
        raise ValueError(f"no class vocabulary for {dataset!r}; known: {', '.join(vocabularies())}")
    return packaged[key]


def class_names(dataset: str) -> list[str]:
    """Class names of `dataset` by 0-based class index (the overlay legend's text)."""
    return list(vocabulary(dataset).names)
