"""echocare: pretrain and adapt ultrasound foundation models.

Public contract (see docs/architecture.md)::

    onto = echocare.load_ontology()
    model = echocare.create_model("echocare_swin_tiny", ontology=onto)
    out = model(images, mask, targets)
    probs = echocare.coherent_probs(out["logits"], onto)
    backbone = echocare.load_backbone("encoder.safetensors")

Importing echocare registers its encoders with timm's model registry, so
``timm.create_model("echocare_swin_base")`` works afterwards.
"""

from echocare import losses
from echocare.models import coherent_probs, create_model, list_models, load_backbone
from echocare.ontology import Ontology, load_ontology

__version__ = "0.1.0"

__all__ = [
    "Ontology",
    "__version__",
    "coherent_probs",
    "create_model",
    "list_models",
    "load_backbone",
    "load_ontology",
    "losses",
]
