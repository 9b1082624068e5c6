"""The four seq2seq models: an encoder (GloVe + Bi-LSTM, or a pre-trained BERT, frozen or fine-tuned)
and an LSTM decoder (plain, or with Luong attention and input feeding), from two registries. Every
decoder scores the problem's numbers with a pointer over their encoder states (pointer.py).

Every decoder works one step at a time on a state dict whose tensors all have the batch first. What a step
changes (h, c, the fed attention) has a row per hypothesis; what it never changes (encoder memory, keys, masks,
the retrieved programs) keeps one row per example, and a step with more rows than examples reads rows
b*K .. b*K+K-1 as example b's (beam.py): beam search reorders only the per-hypothesis rows."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from common.formats import is_whole
from common.models import ModelConfig
from text2math.pointer import FIRST_NUMBER, MAX_NUMBERS, NumberPointer, row_context, row_scores, splice
from text2math.retrieval import RetrievalPool, RetrievedCopy

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)
State = dict[str, torch.Tensor]
MAX_RETRIEVE = 20     # --retrieve: programs a problem attends to (1e9 retrieved the whole pool for every problem)


@dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    model: str                      # key of MODELS
    tgt_vocab: list[str]            # program tokens, SPECIALS first
    src_vocab: list[str] = field(default_factory=list)   # words (GloVe encoders); empty for BERT
    bert: str = ""                  # model name or folder (BERT encoders)
    emb_dim: int = 50               # these defaults are train.py's: its flags read them
    hidden: int = 128
    dropout: float = 0.1
    bert_layers: int | None = None  # keep only the first N layers of the BERT encoder
    number_index: bool = True       # the pointer's keys also hold a learned embedding of each number's index
    retrieve: int = 0               # programs of the K nearest training problems to attend to / copy from (train.py: 2)
    retrieval_pool: dict = field(default_factory=dict)   # RetrievalPool.to_dict(): the training problems searched

    def __post_init__(self):
        numbers = [f"n{i}" for i in range(MAX_NUMBERS)]
        if list(self.tgt_vocab[:len(SPECIALS)]) != list(SPECIALS) or \
                list(self.tgt_vocab[FIRST_NUMBER:FIRST_NUMBER + MAX_NUMBERS]) != numbers:
            raise ValueError("tgt_vocab must start with the special tokens, then n0 .. n39 (vocab.target_vocab)")
        # a config read from a checkpoint is checked as train.py's flags are
        layers = self.bert_layers
        if self.model not in MODELS or min(self.emb_dim, self.hidden) < 1 or not 0 <= self.dropout <= 1 \
                or (layers is not None and (not is_whole(layers) or layers < 1)):
            raise ValueError(f"model {str(self.model)[:40]!r}, emb_dim {self.emb_dim}, hidden {self.hidden}, dropout "
                             f"{self.dropout} or bert_layers {str(layers)[:40]} is not a value train.py takes")
        if not 0 <= self.retrieve <= MAX_RETRIEVE:
            raise ValueError(f"retrieve must be 0 to {MAX_RETRIEVE}, got {self.retrieve}")
        if self.retrieve:
            try:
                RetrievalPool.from_dict(self.retrieval_pool)
            except ValueError:
                raise ValueError("retrieval_pool must hold the training problems' texts and programs "
                                 "(RetrievalPool)") from None

    def describe(self) -> str:
        encoder = f"BERT ({self.bert.rsplit('/', 2)[-2] if self.bert.count('/') > 1 else self.bert})" \
            if MODELS[self.model].encoder == "bert" else f"GloVe {self.emb_dim}d + Bi-LSTM"
        return f"{self.model}: {encoder} -> {MODELS[self.model].decoder} decoder, hidden {self.hidden}"


# --- encoders: (src (B, S), mask (B, S)) -> memory (B, S, D), summary (B, D) --------------------
class GloveBiLSTMEncoder(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.embedding = nn.Embedding(len(config.src_vocab), config.emb_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.emb_dim, config.hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.out_dim = 2 * config.hidden

    def forward(self, src: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.embedding(src)), lengths,
                                                   batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return memory, torch.cat([h[0], h[1]], dim=-1)  # (B, S, 2H), (B, 2H)


class BertEncoder(nn.Module):
    """A transformers encoder. `src` is token ids, or (when `cached`) its precomputed last hidden
    states (B, S, D): a frozen encoder is run once over the data set, not every epoch."""

    def __init__(self, config: Seq2SeqConfig, trunk: nn.Module, freeze: bool):
        super().__init__()
        self.trunk, self.freeze, self.cached = trunk, freeze, False
        self.out_dim = trunk.config.hidden_size
        if freeze:
            trunk.requires_grad_(False)

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(not self.freeze and torch.is_grad_enabled()):
            return self.trunk(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, S, D)

    def forward(self, src: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory = src.float() if self.cached else self.features(src, mask)
        weights = mask.unsqueeze(-1).float()
        return memory, (memory * weights).sum(1) / weights.sum(1).clamp(min=1)  # mean over real tokens

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.trunk.eval()  # no dropout in a frozen encoder
        return self


# --- decoders ----------------------------------------------------------------------------------
class LSTMDecoder(nn.Module):
    """An LSTM whose first state comes from the encoder's summary; no access to the memory after."""

    def __init__(self, config: Seq2SeqConfig, memory_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(len(config.tgt_vocab), config.emb_dim, padding_idx=0)
        self.cell = nn.LSTMCell(self.input_dim(config), config.hidden)
        self.bridge = nn.Linear(memory_dim, 2 * config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, len(config.tgt_vocab) - MAX_NUMBERS)   # every token but n_i
        self.pointer = NumberPointer(memory_dim, config.hidden, config.number_index)
        self.retrieval = RetrievedCopy(len(config.tgt_vocab), config.emb_dim, config.hidden) \
            if config.retrieve else None

    def input_dim(self, config: Seq2SeqConfig) -> int:
        return config.emb_dim

    def start(self, memory: torch.Tensor, summary: torch.Tensor, mask: torch.Tensor,
              numbers: torch.Tensor) -> State:
        """`numbers` (B, MAX_NUMBERS): the source position of each number, -1 where absent."""
        h, c = torch.tanh(self.bridge(summary)).chunk(2, dim=-1)  # (B, H) each
        return {"h": h.contiguous(), "c": c.contiguous(), "memory": memory, "mask": mask,
                **self.pointer.start(memory, numbers)}

    def logits(self, features: torch.Tensor, state: State) -> torch.Tensor:
        """(B, V) scores; with retrieval, log-probabilities of the generate / copy mixture."""
        features = self.dropout(features)
        if self.retrieval is None:
            return splice(self.out(features), self.pointer(features, state))
        features, weights, gate = self.retrieval(features, state)
        scores = splice(self.out(features), self.pointer(features, state))
        return self.retrieval.mix(scores, weights, gate, state["ret_ids"])

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens (N,) -> logits (N, V) and the next state (N = B * K rows: the module docstring)."""
        h, c = self.cell(self.dropout(self.embedding(tokens)), (state["h"], state["c"]))
        return self.logits(h, state), {**state, "h": h, "c": c}


class AttentionDecoder(LSTMDecoder):
    """Luong (general) attention over the encoder memory, with input feeding."""

    def __init__(self, config: Seq2SeqConfig, memory_dim: int):
        super().__init__(config, memory_dim)
        self.project_memory = nn.Linear(memory_dim, config.hidden, bias=False)
        self.combine = nn.Linear(config.hidden + memory_dim, config.hidden)

    def input_dim(self, config: Seq2SeqConfig) -> int:
        return config.emb_dim + config.hidden

    def start(self, memory, summary, mask, numbers) -> State:
        state = super().start(memory, summary, mask, numbers)
        state["keys"] = self.project_memory(memory)                 # (B, S, H)
        state["feed"] = torch.zeros_like(state["h"])                # (B, H)
        return state

    def step(self, tokens, state):
        inputs = torch.cat([self.dropout(self.embedding(tokens)), state["feed"]], dim=-1)
        h, c = self.cell(inputs, (state["h"], state["c"]))
        scores = row_scores(state["keys"], h, state["mask"])                     # (N, S)
        context = row_context(scores.softmax(-1), state["memory"])             # (N, D)
        attended = torch.tanh(self.combine(torch.cat([h, context], dim=-1)))   # (N, H)
        return self.logits(attended, state), {**state, "h": h, "c": c, "feed": attended}


@dataclass(frozen=True)
class ModelSpec:
    encoder: str    # key of ENCODERS
    decoder: str    # key of DECODERS
    freeze_encoder: bool = False
    title: str = ""


ENCODERS = {"glove_bilstm": GloveBiLSTMEncoder, "bert": BertEncoder}
DECODERS = {"lstm": LSTMDecoder, "attention": AttentionDecoder}
MODELS: dict[str, ModelSpec] = {
    "glove_lstm": ModelSpec("glove_bilstm", "lstm", title="1. GloVe + Bi-LSTM encoder, LSTM decoder"),
    "glove_attention": ModelSpec("glove_bilstm", "attention", title="2. the same with attention"),
    "bert_frozen": ModelSpec("bert", "attention", freeze_encoder=True,
                             title="3. BERT encoder (frozen) + attention LSTM decoder"),
    "bert_finetuned": ModelSpec("bert", "attention", title="4. BERT encoder (fine-tuned) + attention LSTM decoder"),
}


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig, bert_trunk: nn.Module | None = None):
        super().__init__()
        self.config = config
        spec = MODELS[config.model]
        if spec.encoder == "bert":
            if bert_trunk is None:
                raise ValueError("a BERT model needs its pre-trained trunk")
            self.encoder = BertEncoder(config, bert_trunk, spec.freeze_encoder)
        else:
            self.encoder = ENCODERS[spec.encoder](config)
        self.decoder = DECODERS[spec.decoder](config, self.encoder.out_dim)

    def start(self, src: torch.Tensor, mask: torch.Tensor, numbers: torch.Tensor,
              retrieved: torch.Tensor | None = None) -> State:
        """`retrieved` (B, R): the retrieved programs' token ids (retrieval.py), when config.retrieve."""
        memory, summary = self.encoder(src, mask)
        state = self.decoder.start(memory, summary, mask.bool(), numbers)
        if self.decoder.retrieval is not None:
            if retrieved is None:
                raise ValueError("this model was trained with --retrieve: pass the retrieved programs")
            state.update(self.decoder.retrieval.start(retrieved))
        return state

    def forward(self, src: torch.Tensor, mask: torch.Tensor, numbers: torch.Tensor, tgt: torch.Tensor,
                teacher_forcing: float = 1.0, retrieved: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for tgt (B, T) = <sos> y1 ... <eos> <pad>...; the input at step t is the
        gold token with probability `teacher_forcing`, else the model's own previous argmax."""
        return self.forced(self.start(src, mask, numbers, retrieved), tgt, teacher_forcing)

    def forced(self, state: State, tgt: torch.Tensor, teacher_forcing: float = 1.0) -> torch.Tensor:
        """forward's decoding from a started state (one encoding can serve several targets)."""
        inputs = tgt[:, 0]
        logits = []
        for t in range(1, tgt.shape[1]):
            step_logits, state = self.decoder.step(inputs, state)
            logits.append(step_logits)
            inputs = tgt[:, t]
            if teacher_forcing < 1.0:
                use_gold = torch.rand(tgt.shape[0], device=tgt.device) < teacher_forcing
                inputs = torch.where(use_gold, inputs, step_logits.argmax(-1))
        return torch.stack(logits, dim=1)

    def frozen_prefix(self) -> str | None:
        """The state-dict prefix of a frozen pre-trained trunk (not saved: its package rebuilds it)."""
        return "encoder.trunk." if isinstance(self.encoder, BertEncoder) and self.encoder.freeze else None

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = self.frozen_prefix()
        if prefix is None or args or kwargs:
            return state
        return type(state)((k, v) for k, v in state.items() if not k.startswith(prefix))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A checkpoint without the frozen trunk (or with it, from older runs) loads strictly."""
        prefix = self.frozen_prefix()
        if prefix is not None:
            trunk = {k: v for k, v in super().state_dict().items() if k.startswith(prefix)}
            state_dict = {**trunk, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def sequence_loss(logits: torch.Tensor, tgt: torch.Tensor, smoothing: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over real target tokens, their count, and how many were right. Label
    smoothing spreads `smoothing` over the tokens that can be scored (not the -inf number slots)."""
    gold = tgt[:, 1:]                                   # (B, T-1)
    real = gold != 0
    logp = logits.float().log_softmax(-1)
    nll = -logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1)
    if smoothing > 0:
        finite = torch.isfinite(logp)
        uniform = -logp.masked_fill(~finite, 0).sum(-1) / finite.sum(-1).clamp(min=1)
        nll = (1 - smoothing) * nll + smoothing * uniform
    loss = nll.masked_fill(~real, 0).sum()
    correct = ((logits.argmax(-1) == gold) & real).sum()
    return loss, real.sum(), correct
