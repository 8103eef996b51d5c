"""What tools share about the lecture: its own losses (each model config's `lecture` key) and v7's
full GPU rows, which gpu_race records and reproduce's table reads."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from shakegpt.bookkeeping.status import read_json_object
from shakegpt.common.paths import CONFIG_DIR, PROJECT_ROOT


def lecture_losses(version: str) -> dict:
    """The lecture's own final losses for a version ({'val_loss': ..., maybe 'train_loss'}),
    as its model config records them; val_loss is None where the lecture shows none."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{version}.yaml").lecture)


# v7's full rows need a GPU: gpu_race writes each one's record here (metrics, curve, command,
# device, date), committed with the docs, so this command on a CPU can show them.
RECORDS = PROJECT_ROOT / "docs" / "records"
V7_MODES = {  # record name: how the row names it
    "v7": "v7, the video's code",
    "v7_repository": "v7, the repository's code (`model.attention_scale=head_size model.init=normal`)",
}


def gpu_v7_records(records: Path = RECORDS) -> dict[str, dict | None]:
    """{record name: v7's full GPU row as gpu_race recorded it, or None where none was measured}."""
    return {name: read_json_object(records / f"gpu_{name}.json") or None for name in V7_MODES}
