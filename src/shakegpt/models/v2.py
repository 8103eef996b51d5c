"""v2: tokens look back at earlier tokens. Position embeddings and causal self-attention.

v2 has one head of size 16 (conf/model/v2.yaml; the lecture's code builds its single head
n_embd = 32 wide), so the language-model head reads 16 features. v3 is this same model with 4
heads of size 8 (conf/model/v3.yaml): the heads are computed together, as the lecture's
MultiHeadAttention would concatenate them.

As the video ran it (January 2023), attention scores are scaled by C**-0.5 with C = n_embd, the
width of the head's input (its Head.forward reads B, T, C = x.shape), and every layer keeps
PyTorch's default initialisation. The lecture's repository fixed both afterwards; each fix is a
setting here, off for the lecture's versions (bigram..v7) and on from v8:
- attention_scale=head_size: scores times head_size**-0.5, as "Attention Is All You Need" has it
  (ng-video-lecture pull request #6, 2023-01-27, "We should scale attention by head size").
  Against the video, logits are sqrt(2)x sharper in v2, 2x in v3..v6, sqrt(6)x at v7's size.
- init=normal: every Linear and Embedding weight normal(0, 0.02), biases 0 (ng-video-lecture
  commit d38c865, 2023-02-06, added to gpt.py with a comment that the video did not cover it).
"""

import torch
import torch.nn.functional as F
from torch import nn

from shakegpt.common.config import check_fraction, check_positive_int
from shakegpt.common.errors import UserError
from shakegpt.models.base import LanguageModel
from shakegpt.models.kv_cache import KVCache


class CausalSelfAttention(nn.Module):
    """n_head heads of head_size: bias-free key/query/value projections, outputs concatenated.

    One (n_embd -> 3 * n_head * head_size) projection holds exactly the lecture's per-head
    key, query and value weights; scaled_dot_product_attention is its masked softmax.
    """

    def __init__(self, n_embd: int, n_head: int, head_size: int, dropout: float = 0.0, scale: float | None = None):
        super().__init__()
        self.n_head, self.head_size, self.dropout = n_head, head_size, dropout
        self.scale = head_size**-0.5 if scale is None else scale  # what q . k is multiplied by
        self.qkv = nn.Linear(n_embd, 3 * n_head * head_size, bias=False)
        # A list while shakegpt.attention records (its weights are appended there); None, the
        # default, runs the fused kernel alone and keeps nothing.
        self.recorded: list[torch.Tensor] | None = None
        # A KVCache while a stream samples with one (shakegpt.models.kv_cache); None in training.
        self.kv_cache: KVCache | None = None

    def extra_repr(self) -> str:  # print(model) shows the sizes and the dropout, which hold no weights
        return f"n_head={self.n_head}, head_size={self.head_size}, dropout={self.dropout}, scale={self.scale:.4g}"

    def forward(self, x):  # (B, T, n_embd) -> (B, T, n_head * head_size)
        return self.attend(*self.heads(x))

    def heads(self, x):  # (B, T, n_embd) -> q, k, v, each (B, nh, T, hs)
        B, T, _ = x.shape
        return self.qkv(x).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)

    def cached_length(self) -> int:
        """Positions whose keys and values the KV cache holds: where the next input starts."""
        return 0 if self.kv_cache is None else self.kv_cache.length

    def attend(self, q, k, v):  # (B, nh, T, hs) each -> (B, T, nh * hs)
        B, _, T, _ = q.shape
        if self.kv_cache is not None:
            k, v = self.kv_cache.add(k, v)  # (B, nh, positions so far, hs)
        if self.recorded is not None:
            out = self.attend_recorded(q, k, v)
        else:
            dropout = self.dropout if self.training else 0.0
            # Queries and keys of the same positions: causal. A cached step's one query is the
            # newest position and sees every key.
            causal = T == k.shape[2]
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout, scale=self.scale)  # (B, nh, T, hs)
        return out.transpose(1, 2).reshape(B, T, self.n_head * self.head_size)

    def attend_recorded(self, q, k, v):  # (B, nh, T, hs) each -> (B, nh, T, hs)
        """The same attention computed step by step, as the lecture writes it, keeping the weights:
        the output is made from exactly the weights recorded."""
        weights = causal_weights(q, k, self.scale)  # (B, nh, T, T)
        self.recorded.append(weights.detach())
        return F.dropout(weights, self.dropout, self.training) @ v


def causal_weights(q, k, scale: float):  # (B, nh, T, hs) each -> (B, nh, T, T), each row summing to 1
    """softmax(q k^T * scale) with each query's future keys masked out: what
    scaled_dot_product_attention(is_causal=True, scale=scale) weighs the values by."""
    T = q.shape[-2]
    scores = q @ k.transpose(-2, -1) * scale  # (B, nh, T, T): row = query, column = key
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


class V2(LanguageModel):
    # v2 and v3 hand the concatenated heads straight to lm_head, so the heads may be any size;
    # from v3_ff on they feed n_embd-wide layers and head_size is n_embd / n_head.
    FREE_HEAD_SIZE = True
    HAS_DROPOUT = False  # v7 adds it

    def __init__(
        self,
        vocab: str,
        block_size: int,
        n_embd: int = 32,
        n_head: int = 1,
        head_size: int | None = None,
        n_layer: int = 1,
        dropout: float = 0.0,
        attention_scale: str = "n_embd",
        init: str = "pytorch",
        **base_settings,  # LanguageModel's: tokenizer, optimizer, scheduler
    ):
        super().__init__(vocab, block_size, **base_settings)
        check_sizes(n_embd=n_embd, n_head=n_head, n_layer=n_layer, block_size=block_size)
        if head_size is None and n_embd % n_head:
            raise UserError(f"model.n_embd={n_embd} must be divisible by model.n_head={n_head}")
        check_fraction("model.dropout", dropout)
        check_used(type(self), n_embd, n_head, head_size, dropout)
        check_choice("model.attention_scale", attention_scale, ATTENTION_SCALES)
        check_choice("model.init", init, INITS)
        self.n_embd, self.n_head, self.n_layer, self.dropout = n_embd, n_head, n_layer, dropout
        self.head_size = head_size or n_embd // n_head
        # q . k times n_embd**-0.5 as in the video, or head_size**-0.5 as the repository later fixed it
        self.attention_scale = {"n_embd": n_embd, "head_size": self.head_size}[attention_scale] ** -0.5
        self.token_embedding = nn.Embedding(len(vocab), n_embd)
        self.position_embedding = nn.Embedding(block_size, n_embd)
        self.body = self.make_body()
        self.ln_f = self.make_final_norm()
        self.lm_head = nn.Linear(self.body_width(), len(vocab))
        if init == "normal":
            self.apply(init_weights)

    def make_body(self) -> nn.Module:  # (B, T, n_embd) -> (B, T, body_width)
        return self.make_attention()

    def make_attention(self) -> nn.Module:  # every later version's attention; v7 adds its dropout
        return CausalSelfAttention(self.n_embd, self.n_head, self.head_size, scale=self.attention_scale)

    def body_width(self) -> int:
        return self.n_head * self.head_size

    def make_final_norm(self) -> nn.Module:
        return nn.Identity()

    def forward(self, idx, start: int = 0):  # (B, T) -> (B, T, vocab); start: LanguageModel.forward's
        positions = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)  # (B, T, n_embd)
        return self.lm_head(self.ln_f(self.body(x)))


ATTENTION_SCALES = ("n_embd", "head_size")  # the video's, the repository's fix
INITS = ("pytorch", "normal")  # PyTorch's defaults (the video), normal(0, 0.02) (the repository's fix)


def init_weights(module: nn.Module) -> None:
    """init=normal: the lecture repository's initialisation, added after the video."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}, got {value}")


def check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        check_positive_int(f"model.{name}", value)


def check_used(version: type, n_embd: int, n_head: int, head_size: int | None, dropout: float) -> None:
    """Settings this version would ignore (or crash on) are refused in one line."""
    name = version.__module__.rpartition(".")[2]  # v3_ff, v4, ...: the file, as model= names it
    if head_size is not None and not version.FREE_HEAD_SIZE and head_size * n_head != n_embd:
        raise UserError(
            f"model.head_size={head_size} does not fit {name}: its heads join into the n_embd-wide stream, "
            f"so head_size is n_embd / n_head = {n_embd // n_head}; leave head_size out"
        )
    if dropout and not version.HAS_DROPOUT:
        raise UserError(f"model.dropout={dropout}, but {name} has no dropout (v7 adds it); leave model.dropout out")
