"""transformers engine (CPU, torch): HF checkpoints and NF4 dirs measured as variants, and the
tokenizer of an HF checkpoint (`HFTokenizer`, which the base reference uses without loading weights).

A GGUF can be opened here too (`gguf_file=`: transformers dequantizes it), which is how tests
cross-check llama.cpp's numbers against transformers on the same weights. The base reference itself
does not run here: it streams the base layer by layer (pocketquant.layerwise).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from pocketquant.evaluate.errors import ModelLoadError
from pocketquant.evaluate.language_model import LanguageModel


class HFTokenizer:
    """An HF checkpoint's tokenizer as the evaluation uses it (llama.cpp's conventions): BOS first when
    the tokenizer adds one, literal text (special tokens' text split like any other text)."""

    def __init__(self, path: str | Path, *, gguf_file: str | None = None):
        import transformers

        self.path = Path(path)
        kwargs: dict[str, object] = {"gguf_file": gguf_file} if gguf_file else {}
        transformers.logging.set_verbosity_error()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.path, **kwargs)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad dirs
            where = self.path / gguf_file if gguf_file else self.path
            raise ModelLoadError(
                f"transformers cannot load the tokenizer of {where}: {type(exc).__name__}: {exc}"
            ) from exc
        tok = self.tokenizer
        tok.model_max_length = 1 << 30  # we chunk ourselves; silence length warnings
        self.bos_id = tok.bos_token_id
        with_special = tok("a", add_special_tokens=True)["input_ids"]
        plain = tok("a", add_special_tokens=False)["input_ids"]
        self.add_bos = bool(self.bos_id is not None and with_special[:1] == [self.bos_id] != plain[:1])

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        tok = self.tokenizer
        if special:
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            # Literal text, as llama.cpp's perplexity (parse_special=false): special tokens' text
            # is split like any other text.
            ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return [self.bos_id, *ids] if self.add_bos else list(ids)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class HeadLogits:
    """A chunk's logits over the full vocabulary, computed from its final hidden states for the rows
    that are asked for: scoring asks for 32 at a time, and the whole [255, 128256] float32 matrix is
    131 MB. Slicing rows gives a HeadLogits; np.asarray computes. A logit depends on its own hidden
    row and row of W only, and the head runs in the model's dtype: the same bits as the whole matrix
    (tests/evaluate/test_eval_hf_logits.py)."""

    def __init__(self, hidden, compute, n_vocab: int):  # noqa: ANN001 - a torch tensor, a callable
        self._hidden, self._compute = hidden, compute
        self.shape = (int(hidden.shape[0]), n_vocab)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):  # noqa: ANN001, ANN204 - numpy-style indexing
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            return HeadLogits(self._hidden[start:stop], self._compute, self.shape[1])
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # noqa: ANN001 - numpy protocol
        import torch

        with torch.inference_mode():
            out = self._compute(self._hidden)
        return out if dtype is None else out.astype(dtype, copy=False)


class TransformersModel(LanguageModel):
    engine = "transformers"

    def __init__(self, path: str | Path, *, threads: int = 1, gguf_file: str | None = None):
        import torch
        import transformers

        self.path = Path(path)
        self.threads = threads
        torch.set_num_threads(threads)
        where = self.path / gguf_file if gguf_file else self.path
        kwargs: dict[str, object] = {"gguf_file": gguf_file} if gguf_file else {}
        quantized = (self.path / "config.json").is_file() and "quantization_config" in (
            self.path / "config.json"
        ).read_text(encoding="utf-8")
        # A quantized (NF4) checkpoint computes in the dtype its config names; the rest in float32.
        dtype = "auto" if quantized else torch.float32
        self._tokenizer = HFTokenizer(self.path, gguf_file=gguf_file)
        try:
            if quantized and not gguf_file:  # NF4: read, not mapped (see load_nf4_model)
                from pocketquant.nf4 import choose_cpu_kernels, load_nf4_model, warm_up_cpu_kernels

                with contextlib.redirect_stderr(io.StringIO()):
                    self.model = load_nf4_model(self.path, choose_kernels=False)
                choose_cpu_kernels(self.model, where=str(self.path))  # its message is not silenced
                warm_up_cpu_kernels(self.model)
            else:
                with contextlib.redirect_stderr(io.StringIO()):
                    self.model = transformers.AutoModelForCausalLM.from_pretrained(
                        self.path, dtype=dtype, device_map="cpu", **kwargs
                    )
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... for bad dirs
            raise ModelLoadError(f"transformers cannot load {where}: {type(exc).__name__}: {exc}") from exc
        self.model.eval()
        self._output_head = None  # OutputHead of the model's config, on first use
        self.tokenizer = self._tokenizer.tokenizer
        self.n_vocab = int(self.model.get_output_embeddings().weight.shape[0])
        self.bos_id = self._tokenizer.bos_id
        self.add_bos = self._tokenizer.add_bos
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos_list = eos if isinstance(eos, list) else [eos]
        tok = self.tokenizer
        self.eos_ids = frozenset(int(e) for e in [*eos_list, tok.eos_token_id] if e is not None)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self._tokenizer.tokenize(text, special=special)

    def detokenize(self, ids: list[int]) -> str:
        return self._tokenizer.detokenize(ids)

    def logits(self, tokens: np.ndarray, first: int) -> np.ndarray:
        return np.asarray(self._lazy_logits(tokens, first))

    def logits_many(self, seqs: Iterable[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
        """Each sequence's logits as HeadLogits: the rows scoring asks for, computed when asked."""
        for tokens, first in seqs:
            yield self._lazy_logits(tokens, first)  # type: ignore[misc] - array-like, see HeadLogits

    def _lazy_logits(self, tokens: np.ndarray, first: int) -> np.ndarray | HeadLogits:
        import torch

        ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))[None]
        with torch.inference_mode():
            head = self.model.get_output_embeddings()
            if type(head) is not torch.nn.Linear:  # a quantized head: the model computes its logits
                out = self.model(input_ids=ids, use_cache=False, logits_to_keep=len(tokens) - first)
                return out.logits[0].float().numpy()
            hidden = self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state[0, first:]
        return HeadLogits(hidden, lambda h: self._head_logits(h, head), int(head.weight.shape[0]))

    def _head_logits(self, hidden, head) -> np.ndarray:  # noqa: ANN001 - torch types, imported lazily
        """The model's own logits of `hidden` (its output head and transform, in its dtype), one
        vocabulary slice at a time straight into float32: a bf16 [n, 128256] and its float32 copy
        are never in memory together. A logit depends on its own row of W only: same bits."""
        import torch

        if self._output_head is None:
            from pocketquant.evaluate.output_head import output_head

            self._output_head = output_head(self.model.config.to_dict())
        weight, bias = head.weight, head.bias
        out = np.empty((hidden.shape[0], weight.shape[0]), np.float32)
        view = torch.from_numpy(out)
        rows = max(1, (16 * 2**20) // (4 * weight.shape[1]))
        for start in range(0, weight.shape[0], rows):
            stop = start + rows
            b = None if bias is None else bias[start:stop]
            view[:, start:stop] = self._output_head.apply(hidden, weight[start:stop], b)
        return out

    def start(self, prompt_ids: list[int]) -> int:
        import torch

        ids = torch.tensor([prompt_ids], dtype=torch.long)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        self._past = out.past_key_values
        return int(out.logits[0, -1].argmax())

    def step(self, token: int) -> int:
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([[token]], dtype=torch.long),
                past_key_values=self._past,
                use_cache=True,
            )
        self._past = out.past_key_values
        return int(out.logits[0, -1].argmax())
