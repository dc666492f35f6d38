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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tarvis_fast.model.decoder import DecoderPrediction, MaskedAttentionDecoder
from tarvis_fast.model.neck import WINDOW_PIXELS, TemporalNeck
from tarvis_fast.model.object_encoder import EncodedObjects, ObjectEncoder, ObjectReferences
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction, Task, TarvisOutput
from tarvis_fast.model.queries import QueryEmbeddings, QuerySet

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 scale (ResNet and Swin alike)
PIXEL_STD = (58.395, 57.12, 57.375)
PAD_VALUE = 128.0  # grey, before normalisation


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


class TarViS(nn.Module):
    """The network.

    Args:
        backbone: maps normalised images (N, 3, H, W) to {"res2": (N, C2, H/4, W/4), ..., "res5": (..., H/32, W/32)}
            and has an `out_channels` dict (see `tarvis_fast.model.backbones.build_backbone`).
        semantic_classes: semantic classes of each VIS/VPS dataset the model knows (its semantic query slices).
        num_instance_queries: 128 in the released models.
        num_background_queries: VIS/VPS background queries (1).
        queries_per_mask_object: queries per VOS mask object in training (4); eval mode uses twice as many.
        dim, num_heads: width and heads of the neck, decoder and object encoder (256, 8).
        decoder_layers, decoder_ffn_dim: 9, 2048 (the object encoder's FFNs are as wide).
        neck_layers, neck_ffn_dim: 6, 1024.
        object_encoder_layers: 4.
        bg_grid_size: (rows, cols) of the VOS background queries, (4, 4).
        kernel_backend: "auto", "triton" or "torch" for the deformable and masked attention ops.
    """

    def __init__(self, backbone: nn.Module, *, semantic_classes: Mapping[str, int], num_instance_queries: int = 128,
                 num_background_queries: int = 1, queries_per_mask_object: int = 4, dim: int = 256,
                 num_heads: int = 8, decoder_layers: int = 9, decoder_ffn_dim: int = 2048, neck_layers: int = 6,
                 neck_ffn_dim: int = 1024, object_encoder_layers: int = 4, bg_grid_size: tuple[int, int] = (4, 4),
                 kernel_backend: str = "auto") -> None:
        super().__init__()
        if queries_per_mask_object < 1:
            raise ValueError(f"queries_per_mask_object must be >= 1, got {queries_per_mask_object}")
        self.queries_per_mask_object = queries_per_mask_object
        neck = TemporalNeck(backbone.out_channels, dim, num_heads, neck_ffn_dim, neck_layers, kernel_backend)
        self.backbone = BackboneWithNeck(backbone, neck)
        self.embedding_container = QueryEmbeddings(dim, semantic_classes, num_instance_queries, num_background_queries)
        self.decoder = MaskedAttentionDecoder(dim, num_heads, decoder_ffn_dim, decoder_layers, backend=kernel_backend)
        self.vos_query_extractor = ObjectEncoder(dim, num_heads, object_encoder_layers, decoder_ffn_dim, bg_grid_size)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD))

    @property
    def datasets(self) -> list[str]:
        """The VIS/VPS datasets the model has semantic queries for."""
        return self.embedding_container.datasets

    def forward(self, images: Tensor, task: Task | str, *, dataset: str | None = None,
                objects: ObjectReferences | None = None, all_layers: bool = True) -> TarvisOutput:
        """
        images:     (B, T, 3, H, W) RGB, 0..255, float
        task:       Task.VIS / Task.VPS (with `dataset`) or Task.VOS (with `objects`)
        dataset:    the VIS/VPS dataset whose semantic queries (classes) to use, e.g. "YOUTUBE_VIS"
        objects:    the VOS/PET objects (masks and/or points)
        all_layers: return the prediction of every decoder layer (training); False keeps only the final one
        """
        task = Task(task)
        if not images.is_floating_point() or images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be a float (B, T, 3, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        batch, frames, _, height, width = images.shape
        size = padded_size(height, width)
        if task is Task.VOS:
            if objects is None:
                raise ValueError("Task.VOS needs `objects` (ObjectReferences with masks and/or points)")
            objects.validate(batch, frames, (height, width), size)
        elif objects is not None:
            raise ValueError(f"{task} takes no `objects`; they are for Task.VOS")

        padded = F.pad(images, (0, size[1] - width, 0, size[0] - height), value=PAD_VALUE)
        normalised = (padded - self.pixel_mean[:, None, None]) / self.pixel_std[:, None, None]
        pyramid = self.backbone(normalised)

        if task is Task.VOS:
            encoded = self._encode_objects(pyramid, objects, (height, width), size)
            queries = self._object_queries(encoded)
        else:
            queries = self._class_queries(dataset, batch)
        predictions = self.decoder(pyramid[:3], pyramid[3], queries, all_layers=all_layers)
        if task is Task.VOS:
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
