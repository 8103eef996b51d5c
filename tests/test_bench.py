"""The benchmark's paired-step timer, added to a run through the callbacks config group."""

import json

import pytest

from shakegpt.tools.bench import bare_lightning_ratio
from tests.helpers import TINY, run_script


@pytest.mark.slow
def test_paired_steps_time_a_plain_step_before_each_training_step(tmp_path):
    paired = "+callbacks.paired={_target_: shakegpt.tools.bench.PairedPlainSteps, skip: 2}"
    result = run_script("train.py", "model=v6", f"hydra.run.dir={tmp_path}", *TINY, paired)
    assert result.returncode == 0, result.stderr
    times = json.loads((tmp_path / "paired_steps.json").read_text())
    # Steps 2..19 timed; shakegpt's step is timed up to the next step's start, so neither its
    # last step nor the one that ran into the evaluation after step 10 is counted.
    assert len(times["plain_s"]) == 18
    assert len(times["shakegpt_s"]) == 17
    assert all(t > 0 for t in times["plain_s"] + times["shakegpt_s"])


@pytest.mark.parametrize("manual", [False, True])
def test_bare_lightning_loop_is_paired_step_by_step(manual):
    ratio, compared = bare_lightning_ratio(["model=v6"], steps=12, skip=2, manual=manual)
    assert compared == 12
    # The same model and batches on both sides: a pairing that timed anything else (an
    # evaluation, setup) would land far outside this.
    assert 0.2 < ratio < 5
