"""TarViS: one network for VIS, VPS, VOS and PET; the task of a call selects its queries (SPEC §2).

    model = tarvis_fast.load_model("checkpoints/swin-tiny_finetune/090000.pth").eval()
    out = model(images, Task.VIS, dataset="YOUTUBE_VIS")                      # out.final.class_logits ...
    out = model(images, Task.VOS, objects=ObjectReferences(masks=masks, mask_frames=torch.tensor([0])))

images are (B, T, 3, H, W) RGB in 0..255. The model pads them right and bottom to a multiple of 64 (value 128),
normalises them, runs the backbone per frame and the temporal neck over the clip, builds the query set of the
task and decodes it. Every logit map is at 1/4 of the padded size; removing the padding and resizing is the
caller's job.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tarvis_fast.model.decoder import DecoderPrediction, MaskedAttentionDecoder
from tarvis_fast.model.grad_checkpointing import GradCheckpointing
from tarvis_fast.model.neck import WINDOW_PIXELS, TemporalNeck
from tarvis_fast.model.object_encoder import (
    EncodedObjects,
    ObjectEncoder,
    ObjectReferences,
)
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction, TarvisOutput
from tarvis_fast.model.queries import QueryEmbeddings, QuerySet
from tarvis_fast.tasks import Task

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 scale (ResNet and Swin alike)
PIXEL_STD = (58.395, 57.12, 57.375)
PAD_VALUE = 128.0  # grey, before normalisation
BACKBONE_PREFIX = "backbone.backbone."  # the per-frame backbone's parameters, trained at a lower learning rate
# Layers whose parameters the original trains without weight decay: norms with affine parameters, embedding tables.
_NO_WEIGHT_DECAY_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Embedding)


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The (H, W) the model pads an image to: the next multiples of 64."""
    return math.ceil(height / WINDOW_PIXELS) * WINDOW_PIXELS, math.ceil(width / WINDOW_PIXELS) * WINDOW_PIXELS


class BackboneWithNeck(nn.Module):
    """The per-frame backbone (`backbone.backbone.*`) and the temporal neck (`backbone.fpn.*`)."""

    def __init__(self, backbone: nn.Module, neck: TemporalNeck) -> None:
        super().__init__()
        self.backbone = backbone
        self.fpn = neck

    def forward(self, images: Tensor) -> list[Tensor]:
        """images (B, T, 3, H, W) normalised -> [F32, F16, F8, M4], each (B, C, T, h, w)"""
        return self.fpn(self.backbone(images.flatten(0, 1)), batch=images.shape[0])


class TarViS(GradCheckpointing, nn.Module):
    """The network: a per-frame backbone, the temporal neck, the query tables, the decoder and the VOS/PET
    object encoder. Sub-modules not given are built in the released models' sizes (width 256, 8 heads, 6 neck
    and 9 decoder layers); `build_tarvis` builds them in other sizes, `build_model` from a config.

    For training: `param_groups(lr, weight_decay)` gives the original's optimiser groups and
    `set_grad_checkpointing()` recomputes the activations of the backbone blocks, neck layers and decoder layers
    in the backward pass instead of keeping them.

    Args:
        backbone: maps normalised images (N, 3, H, W) to {"res2": (N, C2, H/4, W/4), ..., "res5": (N, C5, H/32,
            W/32)} and has an `out_channels` dict (see `tarvis_fast.model.backbones.build_backbone`).
        neck: the temporal neck over the backbone's maps; by default a `TemporalNeck` on `backbone.out_channels`.
        queries: the learned query tables; by default `QueryEmbeddings(semantic_classes)`.
        decoder: the masked-attention decoder; by default `MaskedAttentionDecoder()`.
        object_encoder: the VOS/PET object encoder; by default `ObjectEncoder()`.
        semantic_classes: semantic classes of each VIS/VPS dataset the default `queries` hold (give this or
            `queries`).
        queries_per_mask_object: queries per VOS mask object in training (4); eval mode uses twice as many.
        kernel_backend: "auto", "triton" or "torch": the deformable and masked attention ops of the default neck
            and decoder.
    """

    def __init__(self, backbone: nn.Module, neck: TemporalNeck | None = None, queries: QueryEmbeddings | None = None,
                 decoder: MaskedAttentionDecoder | None = None, object_encoder: ObjectEncoder | None = None, *,
                 semantic_classes: Mapping[str, int] | None = None, queries_per_mask_object: int = 4,
                 kernel_backend: str = "auto") -> None:
        super().__init__()
        if queries_per_mask_object < 1:
            raise ValueError(f"queries_per_mask_object must be >= 1, got {queries_per_mask_object}")
        if (queries is None) == (semantic_classes is None):
            raise ValueError("TarViS: give either `semantic_classes` (for the default query tables) or `queries`")
        self.queries_per_mask_object = queries_per_mask_object
        # In build_tarvis's order, so that a seed gives the same weights either way.
        if neck is None:
            neck = TemporalNeck(backbone.out_channels, backend=kernel_backend)
        if queries is None:
            queries = QueryEmbeddings(semantic_classes)
        if decoder is None:
            decoder = MaskedAttentionDecoder(backend=kernel_backend)
        if object_encoder is None:
            object_encoder = ObjectEncoder()
        # Attribute names are the original's checkpoint prefixes (SPEC §8).
        self.backbone = BackboneWithNeck(backbone, neck)
        self.embedding_container = queries
        self.decoder = decoder
        self.vos_query_extractor = object_encoder
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD))

    @property
    def datasets(self) -> list[str]:
        """The VIS/VPS datasets the model has semantic queries for."""
        return self.embedding_container.datasets

    # -- training ----------------------------------------------------------------------------------------------

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters the original trains without weight decay (SPEC §5.4): those of norm layers
        (batch, group, layer, instance norm) and `nn.Embedding`s (the decoder's `scale_embed`), and those each
        sub-module names in its own `no_weight_decay()`: the query tables (`embedding_container.*`), the object
        encoder's three query embeddings, the neck's `level_embed` and `level_embed_3d`. Swin's
        `relative_position_bias_table`s keep their weight decay, as in the original."""
        names: set[str] = set()
        for prefix, module in self.named_modules():
            if module is self:
                continue
            if isinstance(module, _NO_WEIGHT_DECAY_MODULES):
                names.update(f"{prefix}.{name}" for name, _ in module.named_parameters(recurse=False))
            if hasattr(module, "no_weight_decay"):
                names.update(f"{prefix}.{name}" for name in module.no_weight_decay())
        return names

    def param_groups(self, lr: float, weight_decay: float, backbone_lr_factor: float = 0.1) -> list[dict[str, Any]]:
        """The original's optimiser parameter groups (SPEC §5.4):

            optimizer = torch.optim.AdamW(model.param_groups(lr=1e-4, weight_decay=0.05))

        The per-frame backbone (`backbone.backbone.*`) trains at `lr * backbone_lr_factor`, everything else at
        `lr`; the parameters of `no_weight_decay()` have weight decay 0, the others `weight_decay`. Returns the
        non-empty ones of four groups, each a dict with "name" ("backbone", "backbone_no_decay", "head",
        "head_no_decay"), "params", "lr" and "weight_decay". Frozen parameters (requires_grad False) are left out.
        """
        no_decay = self.no_weight_decay()
        settings = {
            "backbone": (lr * backbone_lr_factor, weight_decay),
            "backbone_no_decay": (lr * backbone_lr_factor, 0.0),
            "head": (lr, weight_decay),
            "head_no_decay": (lr, 0.0),
        }
        params: dict[str, list[nn.Parameter]] = {name: [] for name in settings}
        for name, param in self.named_parameters():
            if param.requires_grad:
                group = "backbone" if name.startswith(BACKBONE_PREFIX) else "head"
                params[group + ("_no_decay" if name in no_decay else "")].append(param)
        return [
            {"name": group, "params": params[group], "lr": group_lr, "weight_decay": group_decay}
            for group, (group_lr, group_decay) in settings.items()
            if params[group]
        ]

    # -- forward ---------------------------------------------------------------------------------------------

    def forward(self, images: Tensor, task: Task | str, *, dataset: str | None = None,
                objects: ObjectReferences | None = None, all_layers: bool = True) -> TarvisOutput:
        """
        images:     (B, T, 3, H, W) RGB, 0..255, float
        task:       Task.VIS / Task.VPS (with `dataset`) or Task.VOS / Task.PET (with `objects`: PET is VOS whose
                    objects are points; the network has one object-guided mode); a Task or its name
        dataset:    the VIS/VPS dataset whose semantic queries (classes) to use, e.g. "YOUTUBE_VIS"
        objects:    the VOS/PET objects (masks and/or points)
        all_layers: return the prediction of every decoder layer (training); False keeps only the final one
        """
        task = Task.parse(task)
        if not images.is_floating_point() or images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be a float (B, T, 3, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        batch, frames, _, height, width = images.shape
        size = padded_size(height, width)
        if task.guided_by_objects:
            if objects is None:
                raise ValueError(f"{task} needs `objects` (ObjectReferences with masks and/or points)")
            objects.validate(batch, frames, (height, width), size)
        elif objects is not None:
            raise ValueError(f"{task} takes no `objects`; they are for Task.VOS and Task.PET")

        padded = F.pad(images, (0, size[1] - width, 0, size[0] - height), value=PAD_VALUE)
        normalised = (padded - self.pixel_mean[:, None, None]) / self.pixel_std[:, None, None]
        pyramid = self.backbone(normalised)

        if task.guided_by_objects:
            encoded = self._encode_objects(pyramid, objects, (height, width), size)
            queries = self._object_queries(encoded)
        else:
            queries = self._class_queries(dataset, batch)
        predictions = self.decoder(pyramid[:3], pyramid[3], queries, all_layers=all_layers)
        if task.guided_by_objects:
            layers = [self._object_prediction(p, encoded) for p in predictions]
        else:
            layers = [self._instance_prediction(p, queries, task) for p in predictions]
        return TarvisOutput(task=task, layers=layers, image_size=(height, width))

    # -- query sets ------------------------------------------------------------------------------------------

    def _class_queries(self, dataset: str | None, batch: int) -> QuerySet:
        """VIS/VPS: [instance (128), background (1), semantic (the dataset's classes)]."""
        if dataset is None:
            raise ValueError(f"VIS/VPS need `dataset`, one of {self.datasets}")
        container = self.embedding_container
        return QuerySet.concat([
            ("instance", *container.instance(batch)),
            ("background", *container.background(batch)),
            ("semantic", *container.semantic(dataset, batch)),
        ])

    def _encode_objects(self, pyramid: list[Tensor], objects: ObjectReferences, image_size: tuple[int, int],
                        size: tuple[int, int]) -> EncodedObjects:
        """Run the object encoder on references brought to the padded image (and the model's device)."""
        device = pyramid[0].device
        masks, points, point_frames = objects.masks, objects.points, objects.point_frames
        if masks is not None:
            masks = masks.to(device)
            if tuple(masks.shape[-2:]) != size:
                masks = F.pad(masks, (0, size[1] - image_size[1], 0, size[0] - image_size[0]))
            mask_frames = objects.mask_frames.to(device)
        else:  # the background queries come from the frames of the points
            mask_frames = point_frames.to(device).unique()
        if points is not None:
            scale = torch.tensor([image_size[0] / size[0], image_size[1] / size[1]], device=device)
            points = points.to(device) * scale.to(points.dtype)
            point_frames = point_frames.to(device)
        queries_per_mask_object = objects.queries_per_mask_object
        if queries_per_mask_object is None:
            queries_per_mask_object = self.queries_per_mask_object * (1 if self.training else 2)
        return self.vos_query_extractor(
            pyramid, mask_frames=mask_frames, masks=masks, points=points, point_frames=point_frames,
            queries_per_mask_object=queries_per_mask_object, generator=objects.generator,
        )

    def _object_queries(self, encoded: EncodedObjects) -> QuerySet:
        """VOS/PET: [background_vos (16 grid queries), vos (the objects' queries)], with the shared embeds."""
        container = self.embedding_container
        background, objects = encoded.background, encoded.objects
        return QuerySet.concat([
            ("background_vos", background, container.background_vos_embed().expand_as(background)),
            ("vos", objects, container.vos_embed().expand_as(objects)),
        ])

    # -- outputs ---------------------------------------------------------------------------------------------

    @staticmethod
    def _instance_prediction(prediction: DecoderPrediction, queries: QuerySet, task: Task) -> InstancePrediction:
        instance, background, semantic = prediction.mask_logits.split(queries.counts, 1)
        if task is Task.VIS:  # the auxiliary semantic head also has a background channel
            semantic = torch.cat((background.amax(1, keepdim=True), semantic), 1)
        return InstancePrediction(mask_logits=instance, class_logits=prediction.class_logits,
                                  semantic_logits=semantic)

    @staticmethod
    def _object_prediction(prediction: DecoderPrediction, encoded: EncodedObjects) -> ObjectPrediction:
        """Each object's logits are the max over its queries; the background's the max over the grid queries."""
        num_background = encoded.background.shape[1]
        background, objects = prediction.mask_logits.split([num_background, encoded.objects.shape[1]], 1)
        per_object = [q.amax(1) for q in objects.split(encoded.queries_per_object, 1)]
        return ObjectPrediction(object_logits=torch.stack(per_object, 1),
                                background_logits=background.amax(1, keepdim=True))
