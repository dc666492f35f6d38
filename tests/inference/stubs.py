"""A stand-in for the network whose answers are known: it segments synthetic videos of flat grey squares.

Videos are H x W = 48 x 64 (padded to 64 x 64, logits 16 x 16). Each object is a 12 x 12 square of its own grey
level, placed on the 4-pixel grid of the logits and off the frame's border (where the upsample keeps corners);
the bottom-right pixel of frame t holds t + 1, so the stub knows which frames it was given. `StubTracker`
returns, for each object or query, +L on the logit cells its grey level covers in each frame and -L elsewhere; a
cell block of +L comes back at the video's resolution as the block minus its four corner pixels (derived and
checked in test_clips.py), which `square_mask` gives.

For VOS/PET it identifies each object by the grey level under its reference masks (which must be one level: a
mask off its square fails the test) or at its point, so the runner's propagation, new references and lost
objects are all visible in its answers and in what it records of each call. With `point_block`, an object given
by a point is answered with only the top-left `point_block` x `point_block` cells of its square, at +-POINT_LEVEL:
a point query group that answers unlike the object's mask group, and outbids it on every pixel of that block.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tarvis_fast.model.object_encoder import ObjectReferences
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction, TarvisOutput
from tarvis_fast.tasks import Task

HEIGHT, WIDTH = 48, 64
PADDED = 64
CELL = 4            # logit stride
SIDE = 3            # square side in cells
LEVEL = 10.0
POINT_LEVEL = 1000.0  # point answers with `point_block`: their smallest positive upsampled value is ~94 > LEVEL
PAD_VALUE = 128     # the model's image padding, not a grey of any square

Cell = tuple[int, int] | None   # top-left (row, column) of a square in cells, None where it is not in the frame


def make_video(squares: Mapping[int, Sequence[Cell]]) -> list[np.ndarray]:
    """grey level -> its square's cell per frame  ->  frames (H, W, 3) uint8, frame marker included."""
    num_frames = len(next(iter(squares.values())))
    frames = []
    for t in range(num_frames):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        for grey, cells in squares.items():
            if cells[t] is not None:
                r, c = cells[t]
                frame[CELL * r:CELL * (r + SIDE), CELL * c:CELL * (c + SIDE)] = grey
        frame[-1, -1] = t + 1
        frames.append(frame)
    return frames


def square(cell: Cell, side: int = SIDE) -> np.ndarray:
    """(H, W) bool: the square itself (a reference mask), or its top-left `side` x `side` cells."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    if cell is not None:
        r, c = cell
        mask[CELL * r:CELL * (r + side), CELL * c:CELL * (c + side)] = True
    return mask


def square_mask(cell: Cell, side: int = SIDE) -> np.ndarray:
    """(H, W) bool: what the stub's logits for a square (or its top-left `side` x `side` cells) become at the
    video's resolution."""
    mask = square(cell, side)
    if cell is not None:
        r, c = cell
        rows, cols = (CELL * r, CELL * (r + side) - 1), (CELL * c, CELL * (c + side) - 1)
        for y in rows:
            for x in cols:
                mask[y, x] = False
    return mask


def centre(cell: Cell) -> tuple[float, float]:
    """(y, x) pixel at the centre of a square."""
    r, c = cell
    return CELL * r + CELL * SIDE / 2, CELL * c + CELL * SIDE / 2


@dataclass
class Call:
    """What one forward call was given."""

    frames: list[int]                  # video frames of the clip
    mask_objects: list[int]            # grey level of each mask object, in order
    mask_frames: list[int]             # video frames of the mask references
    point_objects: list[int]           # grey level of each point object, in order
    point_frames: list[int]


class StubTracker(nn.Module):
    """VOS/PET: one logit map per object, found by grey level (point objects: see `point_block` in the module
    docstring). VIS/VPS: `queries` lists (grey level, class index, confidence) triples, one instance query each,
    whose class logits are +confidence at 1 + class index and -confidence elsewhere; `stuff` maps a grey level
    to the semantic class its pixels take (VPS; class 0 elsewhere)."""

    def __init__(self, queries: Sequence[tuple[int, int, float]] = (), num_classes: int = 20,
                 stuff: Mapping[int, int] | None = None, point_block: int | None = None) -> None:
        super().__init__()
        self.queries, self.num_classes, self.stuff = list(queries), num_classes, dict(stuff or {})
        self.point_block = point_block
        self.calls: list[Call] = []
        self.eval()

    def forward(self, images: Tensor, task: Task, *, dataset: str | None = None,
                objects: ObjectReferences | None = None, all_layers: bool = True) -> TarvisOutput:
        assert images.shape[0] == 1 and images.shape[-2:] == (HEIGHT, WIDTH), images.shape
        grey = F.pad(images[0, :, 0], (0, PADDED - WIDTH, 0, PADDED - HEIGHT), value=PAD_VALUE)  # (T, 64, 64)
        frames = [int(f[HEIGHT - 1, WIDTH - 1]) - 1 for f in grey]
        if task is Task.VOS:
            return self._objects(grey, frames, objects)
        mask_logits = torch.stack([self._segment(grey, level) for level, _, _ in self.queries])
        class_logits = torch.zeros(len(self.queries), 1 + self.num_classes)
        for q, (_, label, confidence) in enumerate(self.queries):
            class_logits[q] = -confidence
            class_logits[q, 1 + label] = confidence
        semantic = torch.full((self.num_classes, *mask_logits.shape[1:]), -LEVEL)
        semantic[0] = 0.0  # the stuff default: any class logit > 0 wins over it
        for level, label in self.stuff.items():
            semantic[label] = self._segment(grey, level)
        self.calls.append(Call(frames, [], [], [], []))
        return TarvisOutput(task, [InstancePrediction(mask_logits[None], class_logits[None], semantic[None])])

    def _objects(self, grey: Tensor, frames: list[int], objects: ObjectReferences) -> TarvisOutput:
        call = Call(frames, [], [], [], [])
        if objects.masks is not None:
            call.mask_frames = [frames[t] for t in objects.mask_frames.tolist()]
            for masks in objects.masks[0]:  # (T_ref, 64, 64)
                values = grey[objects.mask_frames][masks].unique().tolist()
                assert len(values) == 1, f"a reference mask covers grey levels {values}"
                call.mask_objects.append(int(values[0]))
        if objects.points is not None:
            call.point_frames = [frames[t] for t in objects.point_frames[0].tolist()]
            for (y, x), t in zip(objects.points[0].tolist(), objects.point_frames[0].tolist()):
                row, col = round(y * HEIGHT - 0.5), round(x * WIDTH - 0.5)
                call.point_objects.append(int(grey[t, row, col]))
        self.calls.append(call)
        answers = [self._segment(grey, level) for level in call.mask_objects]
        answers += [self._segment(grey, level, self.point_block) for level in call.point_objects]
        logits = torch.stack(answers)
        return TarvisOutput(Task.VOS, [ObjectPrediction(logits[None], torch.zeros_like(logits[None, :1]))])

    @staticmethod
    def _segment(grey: Tensor, level: int, block: int | None = None) -> Tensor:
        """(T, 64, 64) grey frames -> (T, 16, 16): +L on cells of that grey level, -L elsewhere; with `block`,
        +-POINT_LEVEL on the top-left block x block of those cells."""
        cells = F.max_pool2d((grey == level).float()[:, None], CELL)[:, 0] > 0
        if block is None:
            return torch.where(cells, LEVEL, -LEVEL)
        kept = torch.zeros_like(cells)
        for t, frame_cells in enumerate(cells):
            rows, cols = frame_cells.nonzero(as_tuple=True)
            if rows.numel():
                r0, c0 = int(rows.min()), int(cols.min())
                kept[t, r0:r0 + block, c0:c0 + block] = frame_cells[r0:r0 + block, c0:c0 + block]
        return torch.where(kept, POINT_LEVEL, -POINT_LEVEL)
