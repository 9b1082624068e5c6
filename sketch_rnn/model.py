"""The seed's class-conditioned stroke generator and its masked loss.

What the encoder reads: a class-conditioned generator has no input sketch at generation time, so the
encoder reads a *class prompt*: the class embedding added to `prompt_len` learned position vectors,
(B, K, E). A 2-layer bidirectional LSTM turns it into a memory (B, K, 2He) and its final states start
the decoder. The 2-layer LSTM decoder reads the previous stroke-5 row, the pen's state after it
(where the pen is relative to the start, and how far it has turned: `pen_position`, `pen_turning`) and
the class embedding (teacher forcing in training, its own samples when generating); at every step additive (Bahdanau)
attention of its output over the memory gives a context, and [output; context] feeds the head.
Generation therefore needs a class label and nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from common.cli import MAX_LAYERS
from common.models import ModelConfig
from sketch_rnn.heads import HEADS
from sketch_rnn.strokes import END_TOKEN, PEN_END, START_TOKEN

SAMPLE_TEMPERATURE = 0.3   # the temperature of the README's samples (train.py's and sample.py's default)


@dataclass(frozen=True)
class SketchConfig(ModelConfig):
    classes: list[str] = field(default_factory=list)
    head: str = "seed"
    embed_dim: int = 64
    prompt_len: int = 8
    encoder_hidden: int = 128
    decoder_hidden: int = 256
    layers: int = 2
    attention_dim: int = 128
    mixtures: int = 20           # GMM components (head gmm)
    dropout: float = 0.0
    max_len: int = 300           # longest sketch the model writes (stroke-5 rows after the start token)
    scale: float = 1.0           # the offsets' std in pixels: model units x scale = pixels
    pen_position: bool = False   # the decoder also reads where the pen is (False: checkpoints written before it)
    pen_turning: bool = False    # ... and how far the pen has turned since the start (full turns, signed)

    def __post_init__(self):
        """A config read from a checkpoint is checked as the flags are: sizes >= 1, 1-1000 layers (a billion built
        LSTM layers for ever), a known head, a dropout in [0, 1], a positive finite scale."""
        small = [name for name in ("embed_dim", "prompt_len", "encoder_hidden", "decoder_hidden", "attention_dim",
                                   "mixtures", "max_len") if getattr(self, name) < 1]
        if small:
            raise ValueError(f"{', '.join(small)} must be at least 1")
        if not 1 <= self.layers <= MAX_LAYERS:
            raise ValueError(f"layers must be 1 to {MAX_LAYERS:,}, got {self.layers}")
        if self.head not in HEADS or not 0 <= self.dropout <= 1 or not 0 < self.scale < math.inf:
            raise ValueError(f"head {self.head!r} (one of {', '.join(HEADS)}), dropout {self.dropout} (0 to 1) and "
                             f"scale {self.scale} (positive) do not all hold")

    def position_scale(self) -> float:
        """Model units -> the pen position the decoder reads: pixels / 255, the span drawings are scaled to."""
        return self.scale / 255.0

    def describe(self) -> str:
        head = f"gmm (M={self.mixtures})" if self.head == "gmm" else self.head
        reads = "".join(f" (+ pen {what})" for what, on in (("position", self.pen_position),
                                                              ("turning", self.pen_turning)) if on)
        return (f"class prompt {self.prompt_len}x{self.embed_dim} -> {self.layers}x BiLSTM {self.encoder_hidden} -> "
                f"attention {self.attention_dim} -> {self.layers}x LSTM {self.decoder_hidden}{reads} -> head {head}")


class AdditiveAttention(nn.Module):
    """score(q, k) = v . tanh(Wq q + Wk k); softmax over the memory; returns the weighted memory."""

    def __init__(self, query_dim: int, key_dim: int, dim: int):
        super().__init__()
        self.query, self.key, self.v = nn.Linear(query_dim, dim), nn.Linear(key_dim, dim), nn.Linear(dim, 1)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # queries (B, T, Q), memory (B, K, D) -> context (B, T, D), weights (B, T, K)
        scores = self.v(torch.tanh(self.query(queries).unsqueeze(2) + self.key(memory).unsqueeze(1))).squeeze(-1)
        weights = F.softmax(scores, dim=-1)
        return weights @ memory, weights


class SketchGenerator(nn.Module):
    def __init__(self, config: SketchConfig):
        super().__init__()
        c = self.config = config
        self.embedding = nn.Embedding(len(c.classes), c.embed_dim)
        self.positions = nn.Parameter(torch.randn(c.prompt_len, c.embed_dim) * 0.1)
        self.encoder = nn.LSTM(c.embed_dim, c.encoder_hidden, c.layers, batch_first=True, bidirectional=True,
                               dropout=c.dropout if c.layers > 1 else 0.0)
        self.init_h = nn.Linear(2 * c.encoder_hidden, c.decoder_hidden)
        self.init_c = nn.Linear(2 * c.encoder_hidden, c.decoder_hidden)
        reads = 5 + 2 * c.pen_position + c.pen_turning + c.embed_dim     # a row, the pen's state, the class
        self.decoder = nn.LSTM(reads, c.decoder_hidden, c.layers, batch_first=True,
                               dropout=c.dropout if c.layers > 1 else 0.0)
        self.attention = AdditiveAttention(c.decoder_hidden, 2 * c.encoder_hidden, c.attention_dim)
        self.combine = nn.Linear(c.decoder_hidden + 2 * c.encoder_hidden, c.decoder_hidden)
        self.head = HEADS[c.head](c.decoder_hidden, c.mixtures)

    def encode(self, labels: torch.Tensor):
        """labels (B,) -> memory (B, K, 2He), decoder state ((L, B, Hd), (L, B, Hd)), class vectors (B, E)."""
        classes = self.embedding(labels)                                      # (B, E)
        prompt = classes.unsqueeze(1) + self.positions                        # (B, K, E)
        memory, (h, c) = self.encoder(prompt)
        layers, batch = self.config.layers, len(labels)
        h = h.view(layers, 2, batch, -1).transpose(1, 2).reshape(layers, batch, -1)  # (L, B, 2He)
        c = c.view(layers, 2, batch, -1).transpose(1, 2).reshape(layers, batch, -1)
        state = (torch.tanh(self.init_h(h)).contiguous(), self.init_c(c).contiguous())
        return memory, state, classes

    def decode(self, inputs: torch.Tensor, classes: torch.Tensor, memory: torch.Tensor, state,
               positions: torch.Tensor | None = None, turns: torch.Tensor | None = None):
        """inputs (B, T, 5) previous rows (with pen_position: where each leaves the pen relative to the start,
        (B, T, 2) in model units; with pen_turning: the pen's signed turning so far, (B, T) in full turns)
        -> head parameters for (B, T), the new state."""
        steps = inputs.shape[1]
        parts = [inputs, classes.unsqueeze(1).expand(-1, steps, -1)]
        if self.config.pen_turning:
            parts.insert(1, turns.unsqueeze(-1))
        if self.config.pen_position:
            parts.insert(1, positions * self.config.position_scale())
        output, state = self.decoder(torch.cat(parts, -1), state)
        context, _ = self.attention(output, memory)                          # (B, T, 2He)
        features = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))  # (B, T, Hd)
        return self.head(features), state

    def forward(self, stroke5: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher forcing: stroke5 (B, T + 1, 5) with its start token -> parameters for rows 1..T."""
        memory, state, classes = self.encode(labels)
        inputs = stroke5[:, :-1]
        params, _ = self.decode(inputs, classes, memory, state, inputs[..., :2].cumsum(1), turning(inputs))
        return params

    @torch.no_grad()
    def generate_steps(self, labels: torch.Tensor, temperature: float = 0.5,
                       generator: torch.Generator | None = None, max_len: int | None = None
                       ) -> Iterator[torch.Tensor]:
        """Yield one stroke-5 row per step for every label, (B, 5) in model units; a sketch that has
        ended keeps yielding end tokens; stops when all have ended or after max_len steps."""
        memory, state, classes = self.encode(labels)
        row = torch.as_tensor(START_TOKEN, device=labels.device).expand(len(labels), 5).unsqueeze(1)
        end = torch.as_tensor(END_TOKEN, device=labels.device)
        finished = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
        position = torch.zeros(len(labels), 1, 2, device=labels.device)      # the pen, relative to the start
        heading, turns = torch.zeros(len(labels), 2, device=labels.device), torch.zeros(len(labels), 1,
                                                                                         device=labels.device)
        for _ in range(max_len or self.config.max_len):
            params, state = self.decode(row, classes, memory, state, position, turns)
            params = {k: v[:, 0] for k, v in params.items()}                 # (B, ...)
            offsets = self.head.sample(params, temperature, generator)        # (B, 2)
            pen_probs = F.softmax(params["pen"] / temperature, dim=-1)
            pen = torch.multinomial(pen_probs, 1, generator=generator)[:, 0]  # (B,)
            new = torch.cat([offsets, F.one_hot(pen, 3).float()], dim=-1)
            new = torch.where(finished.unsqueeze(1), end, new)
            yield new
            finished |= pen == PEN_END
            if bool(finished.all()):
                return
            drawn = (row[:, 0, 2] > 0.5) & moves(new[:, :2])                # the pen was down: a drawn move
            turns = turns + (turn_between(heading, new[:, :2]) * drawn).unsqueeze(1)
            heading = torch.where(drawn.unsqueeze(1), new[:, :2], heading)
            row = new.unsqueeze(1)
            position = position + row[..., :2]

    def generate(self, labels: torch.Tensor, temperature: float = 0.5, generator: torch.Generator | None = None,
                 max_len: int | None = None) -> torch.Tensor:
        """(B, steps, 5) stroke-5 rows (no start token)."""
        return torch.stack(list(self.generate_steps(labels, temperature, generator, max_len)), dim=1)


def moves(offsets: torch.Tensor) -> torch.Tensor:
    """(..., 2) offsets -> (...) bool: the pen moved (the start and end tokens do not)."""
    return offsets.abs().amax(-1) > 1e-6


def turn_between(heading: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(..., 2) last heading and next offsets -> (...) the signed turn from one to the other in full turns
    (0 where either is a zero move)."""
    cross = heading[..., 0] * offsets[..., 1] - heading[..., 1] * offsets[..., 0]
    dot = (heading * offsets).sum(-1)
    return torch.atan2(cross, dot) * moves(offsets) * moves(heading) / (2 * math.pi)


def turning(rows: torch.Tensor) -> torch.Tensor:
    """(B, T, 5) stroke-5 rows -> (B, T) how far the pen has turned after each row, in signed full turns: the
    sum of the turns between consecutive drawn moves. A move with the pen up (to the next stroke) is not
    drawn: it neither turns nor changes the heading."""
    offsets = rows[..., :2]
    pen_was_down = torch.cat([torch.zeros_like(rows[:, :1, 2]), rows[:, :-1, 2]], dim=1) > 0.5
    drawn = pen_was_down & moves(offsets)                                   # (B, T)
    steps = torch.arange(rows.shape[1], device=rows.device)
    last = torch.where(drawn, steps, -1).cummax(dim=1).values               # the latest drawn move so far
    heading = torch.gather(offsets, 1, last.clamp(min=0).unsqueeze(-1).expand(-1, -1, 2))
    heading = heading * (last >= 0).unsqueeze(-1)                           # none yet: no heading
    previous = torch.cat([torch.zeros_like(heading[:, :1]), heading[:, :-1]], dim=1)
    return (turn_between(previous, offsets) * drawn).cumsum(1)


def masks(lengths: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets count on the L real rows; pen states also on the first end token (so the model learns to
    stop); the rest is padding. Returns two (B, T) float masks."""
    position = torch.arange(steps, device=lengths.device).unsqueeze(0)       # (1, T)
    return (position < lengths.unsqueeze(1)).float(), (position <= lengths.unsqueeze(1)).float()


def sketch_loss(model: SketchGenerator, params: dict, stroke5: torch.Tensor, lengths: torch.Tensor
                ) -> dict[str, torch.Tensor]:
    """Masked means over the batch's valid steps: offset loss, pen cross-entropy, their sum, pen accuracy
    (plus the counts behind them)."""
    target = stroke5[:, 1:]                                                   # (B, T, 5)
    offset_mask, pen_mask = masks(lengths, target.shape[1])
    offset = model.head.offset_loss(params, target[..., :2])                  # (B, T)
    pen_class = target[..., 2:].argmax(-1)                                    # (B, T)
    pen = F.cross_entropy(params["pen"].transpose(1, 2), pen_class, reduction="none")  # (B, T)
    offset_loss = (offset * offset_mask).sum() / offset_mask.sum().clamp(min=1)
    pen_loss = (pen * pen_mask).sum() / pen_mask.sum().clamp(min=1)
    correct = ((params["pen"].argmax(-1) == pen_class).float() * pen_mask).sum()
    return {"loss": offset_loss + pen_loss, "offset_loss": offset_loss, "pen_loss": pen_loss,
            "pen_acc": correct / pen_mask.sum().clamp(min=1), "pen_steps": pen_mask.sum()}
