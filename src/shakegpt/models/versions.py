"""The closed set of model classes: what conf/model/*.yaml build, and the only classes a
checkpoint may name. A checkpoint records its class as a dotted path; that path is looked up
here, never imported, so a file cannot make a loader call anything else."""

from __future__ import annotations

from shakegpt.models import bigram, v2, v3_ff, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, v16
from shakegpt.models.base import LanguageModel

CLASSES: tuple[type[LanguageModel], ...] = (
    bigram.Bigram, v2.V2, v3_ff.V3FF, v4.V4, v5.V5, v6.V6, v7.V7, v8.V8, v9.V9, v10.V10, v11.V11, v12.V12,
    v13.V13, v14.V14, v15.V15, v16.V16,
)


def class_path(cls: type) -> str:
    """The dotted path a checkpoint records for cls: shakegpt.models.v7.V7."""
    return f"{cls.__module__}.{cls.__qualname__}"


BY_PATH: dict[str, type[LanguageModel]] = {class_path(cls): cls for cls in CLASSES}
