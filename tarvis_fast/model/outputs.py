"""Typed outputs of the TarViS network, one per task family.

Every spatial logit map is at 1/4 of the *padded* input resolution (H/4, W/4); removing the padding and
resizing to the video's resolution is the caller's job (inference), never the model's.
"""
from __future__ import annotations

from dataclasses import dataclass
from torch import Tensor

from tarvis_fast.tasks import Task


@dataclass
class InstancePrediction:
    """One decoder layer's prediction for VIS / VPS.

    mask_logits:     (B, Q_inst, T, H/4, W/4) instance mask logits
    class_logits:    (B, Q_inst, 1 + C) with index 0 the background / no-object logit
    semantic_logits: VIS: (B, 1 + C, T, H/4, W/4) = [max over background queries, C semantic queries];
                     VPS: (B, C, T, H/4, W/4), semantic queries only
    """

    mask_logits: Tensor
    class_logits: Tensor
    semantic_logits: Tensor


@dataclass
class ObjectPrediction:
    """One decoder layer's prediction for VOS / PET.

    object_logits:     (B, N_obj, T, H/4, W/4): per object, the max over that object's queries; objects in
                       the order of the call's ObjectReferences: mask objects first, then point objects
    background_logits: (B, 1, T, H/4, W/4): the max over the background queries (unused at inference)
    """

    object_logits: Tensor
    background_logits: Tensor


@dataclass
class TarvisOutput:
    """All decoder predictions of a forward call: layers[0] from the initial queries, layers[-1] the final.

    Training supervises every entry (10 with the default 9-layer decoder); inference uses `final` (and may ask
    the model for the final layer only). image_size is the (H, W) of the input before padding: the logits
    cover the padded size, the top-left (H/4, W/4) of them the image.
    """

    task: Task
    layers: list[InstancePrediction] | list[ObjectPrediction]
    image_size: tuple[int, int] | None = None

    @property
    def final(self) -> InstancePrediction | ObjectPrediction:
        return self.layers[-1]
