"""llama.cpp engine through llama-cpp-python's low-level (ctypes) API: the runtime GGUF files are
made for. One llama_batch per chunk with output rows only at the scored positions, as
llama-perplexity does (`batch.logits[i] = pos >= first`), and the logits read as a NumPy view of
llama.cpp's own buffer (no copy, no per-token Python)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from pocketquant.errors import PocketquantError
from pocketquant.evaluate.errors import ModelLoadError
from pocketquant.evaluate.language_model import LanguageModel

_LOG_CALLBACK = None  # keep the ctypes callback alive for the process
_FULL_PRECISION = {"F32", "F16", "BF16"}


def maps_file(path: Path) -> bool:
    """Whether llama.cpp should memory-map this GGUF (else it reads it into its own buffers).

    llama.cpp's CPU backend repacks quantized weights (Q4_0, Q4_K, IQ4_NL, Q2_K, ... on x86) into
    buffers of its own for faster kernels; a mapped file keeps the original pages resident beside
    that copy (a 2.0 GB Q4_K_M of Llama 3.2 3B held 3.6 GB, read without a map 2.4 GB, with the
    same logits bit for bit). Full-precision files are never repacked and stay mapped: their pages
    are page cache the kernel can drop (a 16 GB F16 base read into anonymous memory could not be)."""
    from pocketquant.gguf_file import GGUFFile

    try:
        with GGUFFile(path) as f:
            return all(t.type.name in _FULL_PRECISION for t in f.tensors)
    except PocketquantError:
        return True  # not a readable GGUF: let llama.cpp say what is wrong with it


def _quiet_logs(llama_cpp) -> None:
    """llama.cpp logs every load to stderr; keep errors only (set POCKETQUANT_LLAMA_LOG=1 for all)."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None or os.environ.get("POCKETQUANT_LLAMA_LOG"):
        return

    @llama_cpp.llama_log_callback
    def _log(level, text, user_data):  # noqa: ARG001 - ctypes signature
        if level == 4:  # GGML_LOG_LEVEL_ERROR (ggml: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)
            os.write(2, text)

    _LOG_CALLBACK = _log
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


class LlamaCppModel(LanguageModel):
    engine = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 512,
        threads: int = 1,
        n_batch: int | None = None,
        mapped: bool | None = None,
        vocab_only: bool = False,
        eval_callback=None,
    ):
        """`mapped`: memory-map the file (None: only full-precision files, see maps_file).
        `vocab_only`: load the tokenizer alone (tokenize/detokenize; no weights, no context).
        `eval_callback`: a ggml_backend_sched_eval_callback llama.cpp calls for each graph node
        (layer_groups.py reads a layer's output through it and stops the graph there)."""
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelLoadError(
                f"cannot evaluate {path}: llama-cpp-python is not installed (pip install llama-cpp-python)"
            ) from exc
        self._ll = ll = llama_cpp
        self.path = Path(path)
        self.threads = threads
        self.n_ctx = n_ctx
        self._model = self._ctx = self._batch = self._embd_batch = None
        if not self.path.is_file():
            raise ModelLoadError(f"GGUF file not found: {self.path}")
        _quiet_logs(ll)
        ll.llama_backend_init()
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.mapped = maps_file(self.path) if mapped is None else mapped
        mparams.load_mode = ll.LLAMA_LOAD_MODE_MMAP if self.mapped else ll.LLAMA_LOAD_MODE_NONE
        mparams.vocab_only = vocab_only
        self._model = ll.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise ModelLoadError(f"llama.cpp cannot load {self.path} (not a valid GGUF model?)")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self._vocab))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self._vocab))
        bos = int(ll.llama_vocab_bos(self._vocab))
        self.bos_id = None if bos < 0 else bos
        # Every end-of-generation token (EOS, EOT, <|im_end|>, ...), as llama.cpp's samplers stop on.
        self.eos_ids = frozenset(t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self._vocab, t))
        self._n_past = 0
        self._n_batch = n_batch or n_ctx
        self._eval_callback = eval_callback  # referenced here: ctypes callbacks must outlive the context
        self.n_embd = int(ll.llama_model_n_embd(self._model))
        if not vocab_only:
            self._new_context(n_ctx)

    def _new_context(self, n_ctx: int) -> None:
        ll = self._ll
        if self._ctx:
            ll.llama_free(self._ctx)
            ll.llama_batch_free(self._batch)
            self._free_embd_batch()
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = max(self._n_batch, n_ctx)
        cparams.n_ubatch = max(self._n_batch, n_ctx)
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.n_seq_max = 1
        if self._eval_callback is not None:
            cparams.cb_eval = self._eval_callback
        self._ctx = ll.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            raise ModelLoadError(f"llama.cpp cannot create a context of {n_ctx} for {self.path}")
        self.n_ctx = n_ctx
        self._batch = ll.llama_batch_init(n_ctx, 0, 1)
        b = self._batch
        for i in range(n_ctx):  # once per context: every token belongs to sequence 0
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
        self._tok = np.ctypeslib.as_array(b.token, shape=(n_ctx,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n_ctx,))
        self._out = np.ctypeslib.as_array(
            ctypes.cast(b.logits, ctypes.POINTER(ctypes.c_int8)), shape=(n_ctx,)
        )

    # -- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        ll = self._ll
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self._vocab, data, len(data), buf, cap, True, special)
        if n < 0:  # buffer too small: llama.cpp returns the size it needs, negated
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self._vocab, data, len(data), buf, cap, True, special)
        return np.ctypeslib.as_array(buf, shape=(cap,))[:n].tolist()

    def detokenize(self, ids: list[int]) -> str:
        ll = self._ll
        out = bytearray()
        buf = ctypes.create_string_buffer(256)
        for t in ids:
            n = ll.llama_token_to_piece(self._vocab, int(t), buf, len(buf), 0, False)
            out += buf.raw[: max(n, 0)]
        return out.decode("utf-8", errors="replace")

    # -- forward --------------------------------------------------------------------------------
    def _decode(self, tokens: np.ndarray, start_pos: int, first_out: int) -> None:
        n = len(tokens)
        self._tok[:n] = tokens
        self._pos[:n] = np.arange(start_pos, start_pos + n, dtype=np.int32)
        self._out[:n] = 0
        self._out[first_out:n] = 1
        self._batch.n_tokens = n
        rc = self._ll.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise ModelLoadError(f"llama_decode failed ({rc}) on {self.path}")

    def embeddings_logits(self, embd: np.ndarray, first: int) -> np.ndarray:
        """logits() for a sequence given as input embeddings [n, n_embd] (float32) instead of tokens:
        llama.cpp's llama_batch.embd path, which enters the graph where the token lookup leaves it."""
        n = len(embd)
        if n > self.n_ctx:
            self._new_context(n)
        if self._embd_batch is None:
            self._embd_batch = self._ll.llama_batch_init(self.n_ctx, self.n_embd, 1)
        b = self._embd_batch
        for i in range(n):
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.pos[i] = i
            b.logits[i] = 1 if i >= first else 0
        ctypes.memmove(b.embd, np.ascontiguousarray(embd, dtype=np.float32).ctypes.data, n * self.n_embd * 4)
        b.n_tokens = n
        self._clear()
        rc = self._ll.llama_decode(self._ctx, b)
        if rc != 0:
            raise ModelLoadError(f"llama_decode failed ({rc}) on {self.path} (embeddings input)")
        ptr = self._ll.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(n - first, self.n_vocab))

    def _free_embd_batch(self) -> None:
        if self._embd_batch is not None:
            self._ll.llama_batch_free(self._embd_batch)
            self._embd_batch = None

    def _clear(self) -> None:
        ll = self._ll
        ll.llama_memory_clear(ll.llama_get_memory(self._ctx), True)

    def logits(self, tokens: np.ndarray, first: int) -> np.ndarray:
        n = len(tokens)
        if n > self.n_ctx:
            self._new_context(n)
        self._clear()
        self._decode(np.asarray(tokens, dtype=np.int32), 0, first)
        ptr = self._ll.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(n - first, self.n_vocab))

    def forward_only(self, tokens: np.ndarray, first: int) -> None:
        """The forward pass alone (benchmarks: llama.cpp's own time for the chunk)."""
        self._clear()
        self._decode(np.asarray(tokens, dtype=np.int32), 0, first)
        self._ll.llama_synchronize(self._ctx)

    def generate(self, prompt_ids: list[int], max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        if len(prompt_ids) + max_new_tokens > self.n_ctx:
            self._new_context(len(prompt_ids) + max_new_tokens)
        return super().generate(prompt_ids, max_new_tokens, stop_at_eos=stop_at_eos)

    def start(self, prompt_ids: list[int]) -> int:
        if len(prompt_ids) > self.n_ctx:
            self._new_context(len(prompt_ids))
        self._clear()
        self._decode(np.asarray(prompt_ids, dtype=np.int32), 0, len(prompt_ids) - 1)
        self._n_past = len(prompt_ids)
        return self._argmax_last()

    def step(self, token: int) -> int:
        if self._n_past >= self.n_ctx:
            raise ModelLoadError(f"context of {self.n_ctx} tokens is full ({self.path})")
        self._decode(np.asarray([token], dtype=np.int32), self._n_past, 0)
        self._n_past += 1
        return self._argmax_last()

    def _argmax_last(self) -> int:
        row = np.ctypeslib.as_array(self._ll.llama_get_logits_ith(self._ctx, -1), shape=(self.n_vocab,))
        return int(row.argmax())

    def close(self) -> None:
        ll = getattr(self, "_ll", None)
        if ll is None:
            return
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        self._free_embd_batch()
        if self._ctx:
            ll.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()
