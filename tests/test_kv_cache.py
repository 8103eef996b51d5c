"""Sampling with a KV cache gives the lecture loop's tokens, and leaves nothing on the model."""

import io

import pytest
import torch

from shakegpt.bookkeeping.checkpoints import load_model
from shakegpt.models.kv_cache import attention_layers
from shakegpt.models.v2 import V2
from shakegpt.models.v6 import V6
from shakegpt.models.v7 import V7
from shakegpt.models.v8 import V8
from shakegpt.models.v12 import V12
from shakegpt.models.v16 import V16
from shakegpt.sampling.generate import write_samples
from tests.helpers import ROOT

VOCAB = "".join(chr(c) for c in range(ord("a"), ord("a") + 20))
BLOCK = 8
# Each version's code path at a tiny size: learned positions (v2 one head of 16 over 32 wide; v6
# pre-LayerNorm blocks; v7 dropout, scaled by n_embd) and rotary ones (v8; v12 with SwiGLU,
# QK-norm, RMSNorm and the repository's head_size scaling; v16 with ReLU^2, soft-capped logits,
# the first layer's values mixed into the later layers' and U-net skips, over 4 blocks).
TINY = {
    V2: dict(n_embd=32, n_head=1, head_size=16),
    V6: dict(n_embd=16, n_head=4, n_layer=2),
    V7: dict(n_embd=16, n_head=4, n_layer=2, dropout=0.2),
    V8: dict(n_embd=16, n_head=2, n_layer=2, dropout=0.2, attention_scale="head_size", init="normal"),
    V12: dict(n_embd=24, n_head=2, n_layer=2, dropout=0.2, attention_scale="head_size", init="normal"),
    V16: dict(n_embd=24, n_head=2, n_layer=4, dropout=0.2, attention_scale="head_size", init="normal", logit_cap=3.0),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run on one thread, as sampling picks for them: on a busy machine two make them 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(cls):
    """A float64 model of cls at a tiny size, every weight random (v12's zero projections too)."""
    torch.manual_seed(0)
    model = cls(VOCAB, BLOCK, **TINY[cls]).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model


def sampled(model, prompt, new_tokens, kv_cache, **settings):
    generator = torch.Generator().manual_seed(7)
    return model.generate(prompt, new_tokens, generator=generator, kv_cache=kv_cache, **settings)


@pytest.mark.parametrize("cls", TINY, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("prompt_length", [1, 3, BLOCK, BLOCK + 5])
def test_cached_sampling_gives_the_lecture_loops_tokens(cls, prompt_length):
    """Prompts shorter than, as long as and longer than block_size, generating well past it, three
    samples in one batch, at temperature 1 and with top_k."""
    model = tiny(cls)
    prompt = torch.randint(len(VOCAB), (3, prompt_length), generator=torch.Generator().manual_seed(prompt_length))
    for settings in ({}, {"temperature": 0.7, "top_k": 5}):
        cached = sampled(model, prompt, 3 * BLOCK, kv_cache=True, **settings)
        assert torch.equal(cached, sampled(model, prompt, 3 * BLOCK, kv_cache=False, **settings))
        assert len(set(map(tuple, cached.tolist()))) == 3  # the rows differ: a real test of the batch


def test_each_cached_step_runs_one_position_until_the_window_slides():
    model = tiny(V7)
    lengths = []
    forward = model.forward
    model.forward = lambda idx, **kw: lengths.append(idx.shape[1]) or forward(idx, **kw)
    model.generate(torch.zeros((2, 3), dtype=torch.long), 10)
    # the prompt, then one position at a time up to block_size; past it the full window each time
    assert lengths == [3, 1, 1, 1, 1, 1] + [BLOCK] * 4


def test_the_cache_lives_only_while_a_stream_runs():
    model = tiny(V8)
    keys = model.state_dict().keys()
    before = {name: (p.data_ptr(), p.stride(), p.clone()) for name, p in model.named_parameters()}
    stream = model.stream(torch.zeros((1, 1), dtype=torch.long), 5)
    next(stream)
    assert all(layer.kv_cache is not None for layer in attention_layers(model)) and model.state_dict().keys() == keys
    # Meanwhile the widening weights (qkv, the feed-forward's first layer, the head: 16 -> 20) are
    # stored by columns.
    by_columns = {name for name, p in model.named_parameters() if not p.is_contiguous()}
    widening = {f"body.{i}.{layer}.weight" for i in range(2) for layer in ("sa.qkv", "ffwd.0")}
    assert by_columns == widening | {"lm_head.weight"}
    assert all(torch.equal(p, before[name][2]) for name, p in model.named_parameters())
    stream.close()  # a caller stopping early, as the training sample does on a signal
    assert len(attention_layers(model)) == 2 and all(layer.kv_cache is None for layer in attention_layers(model))
    assert {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()} == {
        name: was[:2] for name, was in before.items()
    }


def test_a_checkpoint_samples_the_same_text_with_and_without_the_cache_in_float32():
    """tests/data/h200_compiled_bf16.ckpt is a trained v7 with block_size 32: 100 characters
    run well past it."""
    model = load_model(ROOT / "tests" / "data" / "h200_compiled_bf16.ckpt")
    texts = []
    for kv_cache in (True, False):
        out = io.StringIO()
        write_samples(model, "ROMEO:", 100, num_samples=2, out=out, kv_cache=kv_cache)
        texts.append(out.getvalue())
    assert texts[0] == texts[1]


def test_the_evaluation_time_sample_uses_the_cache():
    from shakegpt.training.callbacks import sample_text

    model = tiny(V7)
    model.tokenizer.decode = lambda tokens: tokens  # the token ids themselves, to compare
    lengths = []
    forward = model.forward
    model.forward = lambda idx, **kw: lengths.append(idx.shape[1]) or forward(idx, **kw)
    tokens = sample_text(model, 2 * BLOCK, seed=5)
    assert lengths[:BLOCK] == [1] * BLOCK  # token 0, then one position at a time up to block_size
    start = torch.zeros((1, 1), dtype=torch.long)
    assert tokens == model.generate(start, 2 * BLOCK, generator=torch.Generator().manual_seed(5), kv_cache=False)[0, 1:].tolist()
