import pytest
import torch

from shakegpt.common.errors import UserError
from shakegpt.training.schedules import check_schedule, make_scheduler


def learning_rates(max_steps: int, **schedule) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = make_scheduler(optimizer, max_steps, **schedule)
    rates = []
    for _ in range(max_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_constant():
    assert set(learning_rates(50, name="constant")) == {1e-3}


def test_step_decays_by_ten_at_the_chosen_fraction():
    rates = learning_rates(100, name="step", decay_at=0.8, decay_factor=0.1)
    assert rates[:80] == [1e-3] * 80
    assert rates[80:] == pytest.approx([1e-4] * 20)


def test_cosine_warms_up_then_decays_to_the_floor():
    rates = learning_rates(200, name="cosine", warmup_steps=20, min_lr_ratio=0.1)
    warmup = rates[:20]
    assert warmup == sorted(warmup) and warmup[0] < 1e-4 and warmup[-1] == pytest.approx(1e-3)
    decay = rates[20:]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert decay[-1] == pytest.approx(1e-4, rel=0.01)
    assert rates[110] == pytest.approx(0.55e-3, rel=0.02)  # halfway down the cosine


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(UserError, match="scheduler.name must be one of"):
        check_schedule("linear")
