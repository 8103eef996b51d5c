import contextlib
import io
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from shakegpt.common.errors import UserError
from shakegpt.data import CharTokenizer, read_corpus
from shakegpt.models.bigram import Bigram
from shakegpt.models.v2 import V2
from shakegpt.models.v3_ff import V3FF
from shakegpt.models.v4 import V4
from shakegpt.models.v5 import V5
from shakegpt.models.v6 import V6
from shakegpt.models.v7 import V7
from shakegpt.tools import model_diff as diff
from tests.helpers import ROOT, loss_before_and_after

VOCAB = CharTokenizer.from_text(read_corpus(None)).chars
# The lecture's implementation, 65 characters (v6 with its 3 blocks).
PARAMETERS = {
    "bigram": 4_225,
    "v2": 4_977,  # one head of size 16 (conf/model/v2.yaml; the lecture's code: one of 32)
    "v3": 7_553,
    "v3_ff": 8_609,
    "v4": 16_865,
    "v5": 41_921,
    "v6": 42_369,
    "v7": 10_788_929,
    # After the lecture, at v7's size.
    "v8": 10_690_625,
    "v9": 10_679_105,
    "v10": 10_679_873,
    "v11": 10_674_881,
    "v12": 10_674_881,
    "v13": 10_674_881,
    "v14": 10_674_881,
    "v15": 10_674_886,  # value_mix in 5 of the 6 layers
    "v16": 10_674_889,  # 3 skip weights
}
ATTENTION_VERSIONS = ["v2", "v3", "v3_ff", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16"]


def build(version: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={version}", *overrides])
    torch.manual_seed(0)
    return instantiate(cfg.model, vocab=VOCAB, _convert_="all"), cfg


@pytest.mark.parametrize("version", PARAMETERS)
def test_output_shape_and_parameter_count(version):
    model, cfg = build(version)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[version]
    idx = torch.randint(65, (2, cfg.data.block_size))
    assert model(idx).shape == (2, cfg.data.block_size, 65)


@pytest.mark.parametrize("version", ATTENTION_VERSIONS)
def test_causal_mask(version):
    """Changing a later token never changes the logits at earlier positions."""
    model, _ = build(version, "data.block_size=8")
    model.eval()
    idx = torch.randint(65, (3, 8), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 7) % 65
    with torch.no_grad():
        before, after = model(idx), model(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


@pytest.mark.parametrize("version", ["bigram", "v6"])
def test_a_few_steps_lower_the_loss(version):
    model, _ = build(version)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)  # the bigram table moves slowly at 1e-3
    initial, final = loss_before_and_after(model, optimizer, steps=30, batch=32, block=8)
    assert final < initial - 0.1


def test_generate_extends_and_respects_top_k():
    model, _ = build("v6")
    model.eval()
    out = model.generate(torch.zeros((2, 1), dtype=torch.long), 20, top_k=1)
    assert out.shape == (2, 21)
    assert torch.equal(out[0], out[1])  # top_k=1 is greedy: both rows agree


@pytest.mark.parametrize(
    "version, overrides, message",
    [
        ("v3_ff", ["+model.head_size=16"], "model.head_size=16 does not fit v3_ff: its heads join into the n_embd-wide stream, so head_size is n_embd / n_head = 8"),
        ("v4", ["+model.head_size=4"], "model.head_size=4 does not fit v4"),
        ("v6", ["+model.dropout=0.2"], "model.dropout=0.2, but v6 has no dropout (v7 adds it)"),
        ("v2", ["+model.dropout=0.1"], "model.dropout=0.1, but v2 has no dropout"),
    ],
)
def test_settings_a_version_would_ignore_are_refused(version, overrides, message):
    from shakegpt.common.errors import find_user_error

    with pytest.raises(Exception) as caught:  # Hydra's instantiate wraps it
        build(version, *overrides)
    assert str(find_user_error(caught.value)).startswith(message)


def test_settings_a_version_uses_are_accepted():
    assert build("v2")[0].head_size == 16  # v2's row: one head of 16 over a 32-wide embedding
    assert build("v3_ff", "+model.head_size=8")[0].head_size == 8
    assert build("v7", "model.dropout=0.1")[0].dropout == 0.1


# --- The progression: each version adds exactly its step of the lecture, and nothing else. ---
# Both sides of a step are built at the same small sizes, all different, so a wrong width shows:
# vocabulary 7, block 5, n_embd 12, 3 heads of 4, 2 layers, dropout 0.25. A model's layout is
# {submodule name: what print(model) says of it}; a step's changes are {name: (before, after)},
# None where a side has no such module, compared with the lecture's step written out by hand.
SMALL_VOCAB, T, C, H, HS, L, P = "abcdefg", 5, 12, 3, 4, 2, 0.25


def small(cls, **sizes):
    torch.manual_seed(0)
    return cls(SMALL_VOCAB, T, **sizes)


def step(before, after, moved: dict[str, str] | None = None) -> dict:
    """The changes from before to after; moved = {old name: new name} renames before's modules
    (and their children) first, for a step that moves layers into a new container."""
    old = {renamed(name, moved or {}): description for name, description in diff.layout(before).items()}
    return diff.changes(old, diff.layout(after))


def renamed(name: str, moved: dict[str, str]) -> str:
    for source, target in moved.items():
        if name == source or name.startswith(source + "."):
            return target + name[len(source) :]
    return name


def added_parameters(before, after) -> int:
    return sum(p.numel() for p in after.parameters()) - sum(p.numel() for p in before.parameters())


def linear(n_in: int, n_out: int, bias: bool = True) -> str:
    return f"Linear(in_features={n_in}, out_features={n_out}, bias={bias})"


def attention(n_head: int, dropout: float = 0.0) -> str:  # scaled as the video: by n_embd**-0.5
    return f"v2.CausalSelfAttention(n_head={n_head}, head_size={HS}, dropout={dropout}, scale={C**-0.5:.4g})"


def layer_norm(width: int = C) -> str:
    return diff.describe(nn.LayerNorm(width))  # its wording changes with the torch release


def per_block(changes: dict) -> dict:
    """{"body.#.ln1": x} -> {"body.0.ln1": x, "body.1.ln1": x}: the same change in every block."""
    return {name.replace("#", str(i)): change for i in range(L) for name, change in changes.items()}


def test_v2_adds_position_embeddings_attention_and_an_lm_head_over_the_bigram_table():
    bigram, v2 = small(Bigram), small(V2, n_embd=C, n_head=1, head_size=HS)
    assert step(bigram, v2) == {
        "token_embedding": ("Embedding(7, 7)", "Embedding(7, 12)"),  # the logit table becomes an embedding
        "position_embedding": (None, "Embedding(5, 12)"),
        "body": (None, attention(1)),
        "body.qkv": (None, linear(C, 3 * HS, bias=False)),
        "ln_f": (None, "Identity()"),  # v6 fills it
        "lm_head": (None, linear(HS, 7)),
    }
    assert added_parameters(bigram, v2) == (7 * C - 7 * 7) + T * C + C * 3 * HS + (HS * 7 + 7)


def test_v3_is_v2_with_more_heads():
    """Config only: the same class, and only the head count changes the shapes."""
    targets = [OmegaConf.load(ROOT / "conf" / "model" / f"{v}.yaml").model._target_ for v in ("v2", "v3")]
    assert targets == ["shakegpt.models.v2.V2"] * 2
    one_head = small(V2, n_embd=C, n_head=1, head_size=HS)
    three_heads = small(V2, n_embd=C, n_head=H, head_size=HS)
    assert step(one_head, three_heads) == {
        "body": (attention(1), attention(H)),
        "body.qkv": (linear(C, 3 * HS, bias=False), linear(C, 3 * H * HS, bias=False)),
        "lm_head": (linear(HS, 7), linear(H * HS, 7)),
    }


def test_v3_ff_adds_a_feed_forward_layer_after_the_attention():
    v3, v3_ff = small(V2, n_embd=C, n_head=H), small(V3FF, n_embd=C, n_head=H)
    assert step(v3, v3_ff, moved={"body": "body.0"}) == {
        "body": (None, "Sequential()"),  # v3's attention, now the first of the body's layers
        "body.1": (None, linear(C, C)),
        "body.2": (None, "ReLU()"),
    }
    assert added_parameters(v3, v3_ff) == C * C + C


def test_v4_stacks_v3_ff_s_layers_into_n_layer_blocks():
    v3_ff, v4 = small(V3FF, n_embd=C, n_head=H), small(V4, n_embd=C, n_head=H, n_layer=L)
    moved = {"body.0": "body.0.sa", "body.1": "body.0.ffwd.0", "body.2": "body.0.ffwd.1"}
    block = {
        "": "v4.Block()",
        ".sa": attention(H),
        ".sa.qkv": linear(C, 3 * C, bias=False),
        ".ffwd": "Sequential()",
        ".ffwd.0": linear(C, C),
        ".ffwd.1": "ReLU()",
    }
    assert step(v3_ff, v4, moved) == {
        "body.0": (None, "v4.Block()"),  # v3_ff's three layers, moved into the first block
        "body.0.ffwd": (None, "Sequential()"),
        **{f"body.{i}{name}": (None, d) for i in range(1, L) for name, d in block.items()},  # and L - 1 more
    }
    assert added_parameters(v3_ff, v4) == (L - 1) * (3 * C * C + C * C + C)


def test_v5_adds_the_projection_and_the_wider_feed_forward():
    v4, v5 = small(V4, n_embd=C, n_head=H, n_layer=L), small(V5, n_embd=C, n_head=H, n_layer=L)
    assert step(v4, v5) == per_block({
        "body.#": ("v4.Block()", "v5.Block()"),  # a new forward: the residual additions
        "body.#.ffwd.0": (linear(C, C), linear(C, 4 * C)),
        "body.#.ffwd.2": (None, linear(4 * C, C)),
        "body.#.proj": (None, linear(C, C)),
    })
    assert added_parameters(v4, v5) == L * ((4 * C * C + 4 * C) - (C * C + C) + (4 * C * C + C) + (C * C + C))


def test_v6_adds_ln1_and_ln2_per_block_and_ln_f_nothing_else():
    v5, v6 = small(V5, n_embd=C, n_head=H, n_layer=L), small(V6, n_embd=C, n_head=H, n_layer=L)
    assert step(v5, v6) == {
        **per_block({
            "body.#": ("v5.Block()", "v6.Block()"),  # a new forward: the LayerNorms before each sub-layer
            "body.#.ln1": (None, layer_norm()),
            "body.#.ln2": (None, layer_norm()),
        }),
        "ln_f": ("Identity()", layer_norm()),
    }
    assert added_parameters(v5, v6) == (2 * L + 1) * 2 * C


def test_v7_adds_dropout_at_the_lecture_s_places():
    """On the attention weights, after the projection, after the feed-forward; no weights added."""
    v6, v7 = small(V6, n_embd=C, n_head=H, n_layer=L), small(V7, n_embd=C, n_head=H, n_layer=L, dropout=P)
    dropout = f"Dropout(p={P}, inplace=False)"
    assert step(v6, v7) == per_block({
        "body.#": ("v6.Block()", "v7.Block()"),
        "body.#.sa": (attention(H), attention(H, dropout=P)),
        "body.#.proj_dropout": (None, dropout),
        "body.#.ffwd_dropout": (None, dropout),
    })
    assert added_parameters(v6, v7) == 0


def test_v7_keeps_the_checkpoint_names():
    assert list(small(V7, n_embd=C, n_head=H, n_layer=1).state_dict()) == [
        "token_embedding.weight",
        "position_embedding.weight",
        "body.0.sa.qkv.weight",
        "body.0.ffwd.0.weight",
        "body.0.ffwd.0.bias",
        "body.0.ffwd.2.weight",
        "body.0.ffwd.2.bias",
        "body.0.proj.weight",
        "body.0.proj.bias",
        "body.0.ln1.weight",
        "body.0.ln1.bias",
        "body.0.ln2.weight",
        "body.0.ln2.bias",
        "ln_f.weight",
        "ln_f.bias",
        "lm_head.weight",
        "lm_head.bias",
    ]


# The forward pass of each block as the lecture writes it, and of the whole model as v7's
# docstring lists it: the layout tests above see the layers, these see the order they run in.
def v4_block(b, x):
    return b.ffwd(b.sa(x))


def v5_block(b, x):
    x = x + b.proj(b.sa(x))
    return x + b.ffwd(x)


def v6_block(b, x):
    x = x + b.proj(b.sa(b.ln1(x)))
    return x + b.ffwd(b.ln2(x))


def v7_block(b, x):
    x = x + b.proj_dropout(b.proj(b.sa(b.ln1(x))))
    return x + b.ffwd_dropout(b.ffwd(b.ln2(x)))


@pytest.mark.parametrize(
    "version, block_forward, extra",
    [(V4, v4_block, {}), (V5, v5_block, {}), (V6, v6_block, {}), (V7, v7_block, {"dropout": P})],
    ids=["v4", "v5", "v6", "v7"],
)
def test_the_forward_pass_is_the_lecture_s(version, block_forward, extra):
    model = small(version, n_embd=C, n_head=H, n_layer=L, **extra)
    idx = torch.randint(7, (2, T), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)  # training mode: v7's dropout draws the same masks in the same order
    x = model.token_embedding(idx) + model.position_embedding(torch.arange(T))  # (B, T, C)
    for block in model.body:
        x = block_forward(block, x)
    written_out = model.lm_head(model.ln_f(x))  # (B, T, vocab)
    torch.manual_seed(1)
    assert torch.equal(model(idx), written_out)


def test_v7_s_dropout_is_off_in_evaluation_and_on_in_training():
    model = small(V7, n_embd=C, n_head=H, n_layer=L, dropout=P)
    idx = torch.randint(7, (2, T), generator=torch.Generator().manual_seed(0))
    model.eval()
    torch.testing.assert_close(model(idx), model(idx))
    model.train()
    assert not torch.allclose(model(idx), model(idx))


def run_diff(*args: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        diff.main(list(args))
    return out.getvalue().splitlines()


def test_the_diff_command_prints_v6_s_step_at_the_yaml_sizes():
    ln = layer_norm(32)
    assert run_diff("v5", "v6") == [
        "v5 41,921 -> v6 42,369 parameters, at the sizes of conf/model/v5.yaml, v6.yaml",
        "~ body.0-2               v5.Block() -> v6.Block()",
        f"+ body.0-2.ln1           {ln}",
        f"+ body.0-2.ln2           {ln}",
        f"~ ln_f                   Identity() -> {ln}",
    ]


def test_the_diff_command_shows_removed_modules_and_refuses_three_versions():
    lines = run_diff("v3", "v3_ff")
    assert lines[1] == "- body.qkv               Linear(in_features=32, out_features=96, bias=False)"
    with pytest.raises(SystemExit):
        run_diff("v2", "v3", "v4")


def test_the_guide_shows_what_the_diff_command_prints():
    """The guide's listings (v5 to v6, v7 in one view) are the command's output, not copies that drift."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    shown = re.findall(r"```\n\$ python -m shakegpt\.tools\.model_diff ([^\n]+)\n(.*?)```", guide, re.DOTALL)
    assert [args for args, _ in shown] == ["v5 v6", "v7"]
    for args, listing in shown:
        assert listing.splitlines() == run_diff(*args.split()), args


LECTURE_VERSIONS = ["v2", "v3", "v3_ff", "v4", "v5", "v6", "v7"]


@pytest.mark.parametrize("version", [*LECTURE_VERSIONS, "v8", "v9", "v10", "v11", "v12", "v16"])
def test_the_lecture_s_versions_run_the_video_s_code_and_later_ones_the_repository_s(version):
    """bigram..v7 as the video ran them: scores times n_embd**-0.5, PyTorch's initialisation;
    v8..v16 keep the repository's two fixes they were measured with (docs/beyond.md)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        model = compose("config", overrides=[f"model={version}"]).model
    video = version in LECTURE_VERSIONS
    assert (model.attention_scale, model.init) == (("n_embd", "pytorch") if video else ("head_size", "normal"))


def fresh(version_class, **settings):
    torch.manual_seed(0)
    return version_class(vocab="".join(map(chr, range(33, 33 + 96))), block_size=64, n_embd=128, n_head=4, n_layer=2, **settings)


@pytest.mark.parametrize("version_class", [V2, V5, V6, V7])
def test_the_video_s_weights_are_pytorch_s_defaults(version_class):
    """Embeddings normal(0, 1); each Linear uniform within 1/sqrt(fan_in), its bias too."""
    model = fresh(version_class)
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            assert 0.9 < module.weight.std() < 1.1 and abs(module.weight.mean()) < 0.05
        if isinstance(module, nn.Linear):
            bound = module.in_features**-0.5
            assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.9 * bound
            assert module.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)  # a uniform's sd
            if module.bias is not None:
                assert module.bias.abs().max() <= bound and module.bias.abs().max() > 0


@pytest.mark.parametrize("version_class", [V2, V6, V7])
def test_init_normal_is_the_repository_s_normal_0_02_with_zero_biases(version_class):
    model = fresh(version_class, init="normal")
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            assert module.weight.std().item() == pytest.approx(0.02, rel=0.1) and abs(module.weight.mean()) < 0.002
        if isinstance(module, nn.Linear) and module.bias is not None:
            assert module.bias.eq(0).all()


@pytest.mark.parametrize("setting, value", [("attention_scale", "head"), ("init", "xavier")])
def test_an_unknown_attention_scale_or_init_is_one_line(setting, value):
    with pytest.raises(UserError, match=f"model.{setting} must be one of .*, got {value}"):
        fresh(V6, **{setting: value})


def test_training_mixes_lightning_into_the_version_and_checkpoints_name_the_version():
    """A version is a plain torch module; trainable(version) adds Lightning's steps and nothing
    else, so its checkpoints load into the plain class."""
    import lightning as L

    from shakegpt.training.module import trainable

    sizes = dict(vocab="abc", block_size=8, n_embd=16, n_head=2, n_layer=1)
    plain, model = V7(**sizes), trainable(V7)(**sizes, optimizer={"lr": 0.1})
    assert not isinstance(plain, L.LightningModule) and isinstance(model, (V7, L.LightningModule))
    assert model.state_dict().keys() == plain.state_dict().keys()
    # every constructor setting, defaults included: what sampling rebuilds the model from
    assert dict(model.hparams) == sizes | {
        "head_size": None, "dropout": 0.0, "attention_scale": "n_embd", "init": "pytorch", "tokenizer": "char",
        "optimizer": {"lr": 0.1}, "scheduler": None,
    }
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["shakegpt"]["model_class"] == "shakegpt.models.v7.V7"
    with pytest.raises(TypeError, match=r"V7 takes no optimizer: those are training settings, taken by .*trainable\(V7\)"):
        V7(**sizes, optimizer={"lr": 0.1})
