"""The four tasks of TarViS, named once for the model, the config, training and inference.

    Task.VIS, Task.VPS        targets are classes: instance and semantic queries of a dataset's vocabulary
    Task.VOS, Task.PET        targets are objects given by references: first-frame masks (VOS) or points (PET)

A task's value is its name in the original's configs (`type: instance_seg`), so that config files read as they
always did; `Task.parse` also takes the short names users type (`vis`, `vps`, `vos`, `pet`). The network itself
has one object-guided mode: a PET call is a VOS call whose references are points (SPEC §2.5).
"""
from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    VIS = "instance_seg"    # video instance segmentation (YouTube-VIS, OVIS)
    VPS = "panoptic_seg"    # video panoptic segmentation (KITTI-STEP, Cityscapes-VPS, VIPSeg)
    VOS = "vos"             # video object segmentation from reference masks (DAVIS)
    PET = "pet"             # point-exemplar-guided tracking (BURST)

    @property
    def short_name(self) -> str:
        """"vis", "vps", "vos" or "pet": what the command lines and `VideoPredictor.segment` take."""
        return self.name.lower()

    @property
    def guided_by_objects(self) -> bool:
        """True for VOS and PET: the targets are given objects, not the classes of a vocabulary."""
        return self in (Task.VOS, Task.PET)

    @classmethod
    def parse(cls, name: str | Task) -> Task:
        """A Task from itself, its value ("instance_seg") or its short name ("vis"), in any case."""
        if isinstance(name, Task):
            return name
        text = str(name).lower()
        for task in cls:
            if text in (task.value, task.short_name):
                return task
        choices = ", ".join(t.short_name for t in cls)
        raise ValueError(f"unknown task {name!r}; choose from {choices}")
