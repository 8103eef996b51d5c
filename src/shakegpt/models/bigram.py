"""Bigram: each character predicts the next from itself alone, a (vocab x vocab) logit table."""

from torch import nn

from shakegpt.models.base import LanguageModel


class Bigram(LanguageModel):
    def __init__(self, vocab: str, block_size: int, **base_settings):  # tokenizer, optimizer, scheduler
        super().__init__(vocab, block_size, **base_settings)
        self.token_embedding = nn.Embedding(len(vocab), len(vocab))

    def forward(self, idx, start: int = 0):  # (B, T) -> (B, T, vocab); no positions, start unused
        return self.token_embedding(idx)
