"""The versions after the lecture (v8..v16): each adds exactly its one change over the one before,
keeps attention causal (test_models' causal-mask and parameter tests cover them too) and trains."""

import pytest
import torch
from torch import nn

from shakegpt.common.errors import UserError
from shakegpt.data import CharTokenizer, read_corpus
from shakegpt.models.v7 import V7
from shakegpt.models.v8 import V8, Rotary
from shakegpt.models.v9 import V9
from shakegpt.models.v10 import V10
from shakegpt.models.v11 import V11
from shakegpt.models.v12 import V12
from shakegpt.models.v13 import V13
from shakegpt.models.v14 import V14
from shakegpt.models.v15 import V15
from shakegpt.models.v16 import V16
from shakegpt.tools.model_diff import describe
from tests.helpers import loss_before_and_after
from tests.test_models import HS, C, H, L, P, T, added_parameters, layer_norm, per_block, small, step

# As their configs build them: the repository's attention scale and initialisation (v7 too, as beyond compares it)
SIZES = {"n_embd": C, "n_head": H, "n_layer": L, "dropout": P, "attention_scale": "head_size", "init": "normal"}
RMS = describe(nn.RMSNorm(C))  # its wording changes with the torch release


def attention(kind: str) -> str:
    return f"{kind}(n_head={H}, head_size={HS}, dropout={P}, scale={HS**-0.5:.4g})"


def test_v8_turns_the_position_table_into_a_rotation_of_q_and_k():
    v7, v8 = small(V7, **SIZES), small(V8, **SIZES)
    assert step(v7, v8) == {
        "position_embedding": (f"Embedding({T}, {C})", None),
        **per_block({
            "body.#.sa": (attention("v2.CausalSelfAttention"), attention("v8.RotaryAttention")),
            "body.#.sa.rotary": (None, f"v8.Rotary(head_size={HS}, base=10000)"),
        }),
    }
    assert added_parameters(v7, v8) == -T * C
    assert "position_embedding.weight" not in v8.state_dict()  # nor the rotation: it is computed


def test_the_rotation_makes_attention_scores_depend_on_the_distance_only():
    rotary = Rotary(head_size=8, block_size=16)
    q, k = torch.randn(8), torch.randn(8)
    at = torch.stack([q, k] * 8)[None, None]  # (1, 1, 16, 8): q at even positions, k at odd ones

    def score(t, s):
        rotated = rotary(at)[0, 0]
        return rotated[t] @ rotated[s]

    torch.testing.assert_close(score(2, 1), score(10, 9))  # both 1 apart
    torch.testing.assert_close(score(6, 3), score(14, 11))  # both 3 apart
    assert not torch.allclose(score(2, 1), score(6, 3))
    torch.testing.assert_close(rotary(at).norm(dim=-1), at.norm(dim=-1))  # a rotation keeps lengths


def test_v9_swaps_the_relu_feed_forward_for_swiglu():
    v8, v9 = small(V8, **SIZES), small(V9, **SIZES)
    hidden = 8 * C // 3
    assert step(v8, v9) == per_block({
        "body.#.ffwd": ("Sequential()", "v9.SwiGLU()"),
        "body.#.ffwd.0": (f"Linear(in_features={C}, out_features={4 * C}, bias=True)", None),
        "body.#.ffwd.1": ("ReLU()", None),
        "body.#.ffwd.2": (f"Linear(in_features={4 * C}, out_features={C}, bias=True)", None),
        "body.#.ffwd.gate": (None, f"Linear(in_features={C}, out_features={hidden}, bias=False)"),
        "body.#.ffwd.up": (None, f"Linear(in_features={C}, out_features={hidden}, bias=False)"),
        "body.#.ffwd.down": (None, f"Linear(in_features={hidden}, out_features={C}, bias=False)"),
    })
    assert added_parameters(v8, v9) == L * (3 * C * hidden - (8 * C * C + 5 * C))


def test_v10_adds_an_rmsnorm_on_each_head_s_queries_and_keys():
    v9, v10 = small(V9, **SIZES), small(V10, **SIZES)
    head_norm = describe(nn.RMSNorm(HS))
    assert step(v9, v10) == per_block({
        "body.#.sa": (attention("v8.RotaryAttention"), attention("v10.QKNormAttention")),
        "body.#.sa.q_norm": (None, head_norm),
        "body.#.sa.k_norm": (None, head_norm),
    })
    assert added_parameters(v9, v10) == L * 2 * HS


def test_v11_swaps_every_layernorm_for_rmsnorm():
    v10, v11 = small(V10, **SIZES), small(V11, **SIZES)
    assert step(v10, v11) == {
        **per_block({
            "body.#": ("v7.Block()", "v11.Block()"),
            "body.#.ln1": (layer_norm(), RMS),
            "body.#.ln2": (layer_norm(), RMS),
        }),
        "ln_f": (layer_norm(), RMS),
    }
    assert added_parameters(v10, v11) == -(2 * L + 1) * C  # the biases


def test_v12_only_zeroes_the_residual_branches_outputs_so_each_block_starts_as_the_identity():
    v11, v12 = small(V11, **SIZES), small(V12, **SIZES)
    assert step(v11, v12) == {}
    changed = {name for name, p in v12.named_parameters() if not torch.equal(p, v11.state_dict()[name])}
    assert changed == {f"body.{i}.{name}" for i in range(L) for name in ("proj.weight", "ffwd.down.weight")}
    assert all(v12.state_dict()[name].eq(0).all() for name in changed | {f"body.{i}.proj.bias" for i in range(L)})
    idx = torch.randint(7, (2, T), generator=torch.Generator().manual_seed(0))
    v12.eval()
    torch.testing.assert_close(v12(idx), v12.lm_head(v12.ln_f(v12.token_embedding(idx))))


def test_v11_s_forward_is_written_out():
    """Token embedding, then per block: normed q and k rotated, causal attention, SwiGLU."""
    model = small(V11, **SIZES).eval()
    idx = torch.randint(7, (2, T), generator=torch.Generator().manual_seed(0))
    x = model.token_embedding(idx)  # (B, T, C)
    mask = torch.ones(T, T).tril().bool()
    for b in model.body:
        q, k, v = b.sa.qkv(b.ln1(x)).view(2, T, 3, H, HS).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, HS)
        q, k = b.sa.rotary(b.sa.q_norm(q)), b.sa.rotary(b.sa.k_norm(k))
        weights = (q @ k.transpose(-2, -1) / HS**0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + b.proj((weights @ v).transpose(1, 2).reshape(2, T, C))
        h = b.ln2(x)
        x = x + b.ffwd.down(nn.functional.silu(b.ffwd.gate(h)) * b.ffwd.up(h))
    torch.testing.assert_close(model(idx), model.lm_head(model.ln_f(x)))


def random_weights(model):
    """Every weight random, the zero-initialised projections too, so that no branch hides."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


def same_weights(cls, source, **sizes):
    """A cls model holding source's weights (strict: any name in one only must be listed apart)."""
    model = small(cls, **SIZES, **sizes).eval()
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    assert not unexpected
    return model, set(missing)


IDX = torch.randint(7, (2, T), generator=torch.Generator().manual_seed(0))


def test_v13_swaps_swiglu_for_a_relu_squared_feed_forward_of_the_same_size():
    v12, v13 = small(V12, **SIZES), small(V13, **SIZES)
    hidden = 8 * C // 3
    assert step(v12, v13) == per_block({
        "body.#.ffwd.gate": (f"Linear(in_features={C}, out_features={hidden}, bias=False)", None),
        "body.#.ffwd": ("v9.SwiGLU()", "v13.ReLUSquared()"),
        "body.#.ffwd.up": (f"Linear(in_features={C}, out_features={hidden}, bias=False)",
                           f"Linear(in_features={C}, out_features={4 * C}, bias=False)"),
        "body.#.ffwd.down": (f"Linear(in_features={hidden}, out_features={C}, bias=False)",
                             f"Linear(in_features={4 * C}, out_features={C}, bias=False)"),
    })
    assert added_parameters(v12, v13) == 0  # 2 x 4C x C = 3 x 8C/3 x C
    assert all(block.ffwd.down.weight.eq(0).all() for block in v13.body)  # v12's zero start kept
    ffwd, x = random_weights(v13).body[0].ffwd, torch.randn(2, T, C)
    torch.testing.assert_close(ffwd(x), ffwd.down(torch.relu(ffwd.up(x)) ** 2))


def test_v14_only_caps_the_logits_of_v13():
    v13, v14 = small(V13, **SIZES), small(V14, **SIZES)
    assert step(v13, v14) == {} and added_parameters(v13, v14) == 0
    v13 = random_weights(v13)
    v14, _ = same_weights(V14, v13, logit_cap=2.0)
    torch.testing.assert_close(v14(IDX), 2.0 * torch.tanh(v13(IDX) / 2.0))
    with torch.no_grad():
        v14.lm_head.weight.mul_(1000)  # logits far past the cap stay inside it (tanh rounds to 1 there)
        uncapped, capped = V13.forward(v14, IDX), v14(IDX)
    assert uncapped.abs().max() > 100 and capped.abs().max() <= 2.0


def test_a_bad_logit_cap_is_one_line():
    with pytest.raises(UserError, match="model.logit_cap"):
        small(V14, **SIZES, logit_cap=0)


def test_v15_mixes_the_first_layer_s_values_into_every_later_layer_s():
    v14, v15 = small(V14, **SIZES), small(V15, **SIZES)
    attention_after = attention("v15.ValueResidualAttention")
    assert step(v14, v15) == {
        "body": ("Sequential()", "v15.ValueResidualStack()"),
        **per_block({"body.#": ("v11.Block()", "v15.Block()"), "body.#.sa": (attention("v10.QKNormAttention"), attention_after)}),
    }
    mixes = {name: p.item() for name, p in v15.named_parameters() if name not in v14.state_dict()}
    assert mixes == {f"body.{i}.sa.value_mix": 0.5 for i in range(1, L)}
    v14 = random_weights(v14)
    v15, missing = same_weights(V15, v14)
    assert missing == set(mixes)
    with torch.no_grad():
        for i in range(1, L):
            v15.body[i].sa.value_mix.zero_()  # nothing mixed in: v14
    torch.testing.assert_close(v15(IDX), v14(IDX))


def test_v16_adds_one_weighted_skip_per_pair_of_blocks():
    v15, v16 = small(V15, **SIZES), small(V16, **SIZES)
    assert step(v15, v16) == {"body": ("v15.ValueResidualStack()", "v16.UNetStack()")}
    assert added_parameters(v15, v16) == L // 2 and v16.body.skip_weights.eq(1).all()
    v15 = random_weights(v15)
    v16, missing = same_weights(V16, v15)
    assert missing == {"body.skip_weights"}
    with torch.no_grad():
        v16.body.skip_weights.zero_()  # no skips: v15
    torch.testing.assert_close(v16(IDX), v15(IDX))


def test_at_the_start_v16_is_still_the_embedding_and_the_head_alone():
    """Every block adds nothing at step 0 (v12), so each skip adds a copy of the embedding,
    which ln_f's RMSNorm scales away (up to its eps)."""
    v16 = small(V16, **SIZES).eval()
    expected = v16.logit_cap * torch.tanh(v16.lm_head(v16.ln_f(v16.token_embedding(IDX))) / v16.logit_cap)
    torch.testing.assert_close(v16(IDX), expected, atol=1e-4, rtol=1e-4)


def test_u_net_needs_an_even_number_of_blocks():
    with pytest.raises(UserError, match="model.n_layer=3 must be even"):
        small(V16, **SIZES | {"n_layer": 3})


def test_v16_s_forward_is_written_out():
    """v16.py's docstring, line by line, at 4 blocks: the skips pair block 1 with 2 and 0 with 3."""
    model = random_weights(small(V16, **SIZES | {"n_layer": 4}))
    x, skips, v_first = model.token_embedding(IDX), [], None
    mask = torch.ones(T, T).tril().bool()
    for i, b in enumerate(model.body):
        if i >= 2:
            x = x + model.body.skip_weights[i - 2] * skips.pop()
        q, k, v = b.sa.qkv(b.ln1(x)).view(2, T, 3, H, HS).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, HS)
        v_first = v if i == 0 else v_first
        v = v if i == 0 else (1 - b.sa.value_mix) * v + b.sa.value_mix * v_first
        q, k = b.sa.rotary(b.sa.q_norm(q)), b.sa.rotary(b.sa.k_norm(k))
        weights = (q @ k.transpose(-2, -1) / HS**0.5).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + b.proj((weights @ v).transpose(1, 2).reshape(2, T, C))
        x = x + b.ffwd.down(torch.relu(b.ffwd.up(b.ln2(x))) ** 2)
        if i < 2:
            skips.append(x)
    logits = model.lm_head(model.ln_f(x))
    torch.testing.assert_close(model(IDX), model.logit_cap * torch.tanh(logits / model.logit_cap))


def test_rotary_needs_an_even_head_size():
    with pytest.raises(UserError, match="head_size 3 must be even"):
        small(V8, n_embd=9, n_head=3, n_layer=1)


@pytest.mark.parametrize("version", [V8, V9, V10, V11, V12, V13, V14, V15, V16])
def test_a_few_steps_lower_the_loss(version):
    torch.manual_seed(0)
    model = version(CharTokenizer.from_text(read_corpus(None)).chars, 16, n_embd=32, n_head=4, n_layer=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    initial, final = loss_before_and_after(model, optimizer, steps=30, batch=16, block=16)
    assert final < initial - 0.1
