"""The TarViS network: `build_model(cfg)`, `build_tarvis(backbone, ...)`, `load_model(path)`, and the types a
forward call takes and returns."""
from tarvis_fast.model.build import build_model, build_tarvis, load_model, semantic_classes
from tarvis_fast.model.object_encoder import ObjectReferences
from tarvis_fast.model.outputs import InstancePrediction, ObjectPrediction, Task, TarvisOutput
from tarvis_fast.model.tarvis import TarViS, padded_size

__all__ = [
    "InstancePrediction", "ObjectPrediction", "ObjectReferences", "TarViS", "TarvisOutput", "Task", "build_model",
    "build_tarvis", "load_model", "padded_size", "semantic_classes",
]
