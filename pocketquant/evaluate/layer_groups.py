"""llama.cpp evaluation of a GGUF bigger than the memory evaluation may use: one group of layers at a
time, with the logits of a whole-model run, bit for bit.

An 8B Q4_K_M file is 4.6 GB; llama.cpp holds all of it to run it (read into its own buffers, or
mapped and faulted in at load). To score it in less, the file is split into group files: layers
a..b-1 renumbered from 0 with `block_count = b - a`, all metadata, and the tensors outside the
layers (token embeddings and output matrix as zero stand-ins where the group does not read them,
see group_layout). Every sequence goes through group 0 from its tokens; llama.cpp's graph-eval
callback copies out the group's last layer output (graph node `l_out-{b-a-1}`) and stops the graph
there; the next group takes those hidden states as input embeddings (`llama_batch.embd`). The last
group runs to the logits. Same kernels, same ubatch, same positions: the logits equal a whole-model
run's exactly (tests/evaluate/test_eval_layer_groups.py; tests/families/test_family_layer_groups.py
for every architecture allowed below). One group file exists and is loaded at a time (in TMPDIR); hidden
states between groups wait in a temporary file there too.

Greedy generation needs every layer for every token, so the evaluation does it where the whole model
is loaded anyway: the deployment benchmark's child process (pocketquant.evaluate.runtime).
"""

from __future__ import annotations

import ctypes
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pocketquant.evaluate.errors import ModelLoadError
from pocketquant.evaluate.language_model import LanguageModel
from pocketquant.evaluate.llamacpp import LlamaCppModel
from pocketquant.gguf_file import KV, GGMLType, GGUFFile, TensorInfo, create_gguf, type_size

# Architectures whose layers depend on nothing but their weights and position (no per-layer
# pattern a renumbering would shift, no input scaling a later group would apply twice), checked by
# the test above. Gemma scales the input embeddings by sqrt(n_embd) in the graph (no key turns it
# off) and Gemma 2/3 alternate sliding-window layers: they are evaluated whole.
GROUPABLE_ARCHS = frozenset({"llama", "qwen2", "qwen3", "phi2", "phi3", "olmo2", "granite"})
# Keys that act on the input embeddings: removed from the groups after the first, whose input is
# already a hidden state (llama.cpp applies granite.embedding_scale to `embd` input too).
INPUT_EMBEDDING_KEYS = {"granite": ("granite.embedding_scale",)}
# Architectures whose sliding window, when the file sets one, applies to every k-th layer by index
# (OLMo 2's pattern of 4); llama.cpp's Phi-3 ignores the key, the others have none.
SLIDING_WINDOW_PATTERN_ARCHS = frozenset({"olmo2"})
# Stand-ins for the big tensors a group does not read, smallest first (IQ1_S: 1.56 bits a weight).
STAND_IN_TYPES = (GGMLType.IQ1_S, GGMLType.Q4_0, GGMLType.F16)
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


def groupable(f: GGUFFile) -> str | None:
    """None when `f` can be evaluated in layer groups, else why not."""
    arch = f.get("general.architecture")
    if arch not in GROUPABLE_ARCHS:
        return f"architecture {arch!r} is evaluated whole (groupable: {', '.join(sorted(GROUPABLE_ARCHS))})"
    n_layer = f.get(f"{arch}.block_count")
    if not isinstance(n_layer, int) or n_layer < 2:
        return f"{arch}.block_count is {n_layer!r}: nothing to group (llama.cpp judges the file whole)"
    if arch in SLIDING_WINDOW_PATTERN_ARCHS and f.get(f"{arch}.attention.sliding_window"):
        return f"{arch} with sliding-window layers is evaluated whole"
    return None


def _layer_of(t: TensorInfo) -> int | None:
    m = _BLOCK.fullmatch(t.name)
    return int(m.group(1)) if m else None


def _n_layer(f: GGUFFile) -> int:
    return int(f.get(f"{f.get('general.architecture')}.block_count"))


def _stand_in(t: TensorInfo) -> TensorInfo:
    """A zero-filled tensor of t's name and shape in the smallest type whose block fits its rows."""
    for kind in STAND_IN_TYPES:
        if t.shape[0] % type_size(kind)[0] == 0:
            return TensorInfo(t.name, t.shape, kind)
    return t


def group_layout(f: GGUFFile, a: int, b: int) -> list[tuple[TensorInfo, TensorInfo]]:
    """(tensor of `f`, tensor of the group file) for the group of layers a..b-1: its layers renumbered
    from 0, and every tensor outside the layers (most architectures refuse a file without them). The
    token embeddings are read only by the first group (and by the last when they are the output
    matrix too), the output matrix only by the last: elsewhere they are stand-ins (llama.cpp checks
    their shapes and never reads them), which keeps an 8B F16 group from carrying 2.1 GB of both."""
    n_layer = _n_layer(f)
    tied = not any(t.name == "output.weight" for t in f.tensors)
    used = {
        "token_embd.weight": a == 0 or (b == n_layer and tied),
        "output.weight": b == n_layer,
    }
    layout = []
    for t in f.tensors:
        i = _layer_of(t)
        if i is None:
            layout.append((t, t if used.get(t.name, True) else _stand_in(t)))
        elif a <= i < b:
            name = f"blk.{i - a}.{_BLOCK.fullmatch(t.name).group(2)}"  # type: ignore[union-attr]
            layout.append((t, TensorInfo(name, t.shape, t.type)))
    return layout


def plan_groups(f: GGUFFile, max_bytes: int) -> list[tuple[int, int]] | None:
    """Layer ranges [a, b) whose group files each hold at most `max_bytes` of tensor data (at least
    one layer each), or None when the whole file fits or the architecture is not groupable."""
    if f.file_size <= max_bytes or groupable(f) is not None:
        return None
    n_layer = _n_layer(f)

    def size(a: int, b: int) -> int:
        return sum(out.nbytes for _, out in group_layout(f, a, b))

    groups: list[tuple[int, int]] = []
    a = 0
    while a < n_layer:
        b = a + 1
        while b < n_layer and size(a, b + 1) <= max_bytes:
            b += 1
        groups.append((a, b))
        a = b
    return groups


def write_group(f: GGUFFile, a: int, b: int, out: Path) -> Path:
    """The GGUF file of the group of layers a..b-1 (group_layout), written atomically at `out`."""
    arch = f.get("general.architecture")
    kvs = dict(f.kv)
    kvs[f"{arch}.block_count"] = KV(kvs[f"{arch}.block_count"].type, b - a)
    if a > 0:
        for key in INPUT_EMBEDDING_KEYS.get(arch, ()):
            kvs.pop(key, None)
    layout = group_layout(f, a, b)
    step = 64 << 20  # 64 MB at a time: never a whole tensor in memory
    with create_gguf(out, kvs, [dst for _, dst in layout]) as w:
        for src, dst in layout:
            for start in range(0, dst.nbytes, step):
                stop = min(dst.nbytes, start + step)
                same = dst.type == src.type
                w.write(f.read_tensor(src, start, stop) if same else bytes(stop - start))
    return out


class _LayerOutput:
    """The ggml graph-eval callback that copies out one node (a layer's output) and stops the graph."""

    def __init__(self, ll, node: str):
        from llama_cpp._ggml import libggml

        get_name, get_data, nbytes = libggml.ggml_get_name, libggml.ggml_get_data, libggml.ggml_nbytes
        get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        get_data.restype, get_data.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        nbytes.restype, nbytes.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
        target = node.encode()
        self.value: np.ndarray | None = None

        @ll.ggml_backend_sched_eval_callback
        def callback(t, ask, _user_data):
            if get_name(t) != target:
                return False
            if ask:
                return True  # compute up to this node, then call again with ask=False
            n = nbytes(t) // 4
            data = ctypes.cast(get_data(t), ctypes.POINTER(ctypes.c_float))
            self.value = np.ctypeslib.as_array(data, shape=(n,)).copy()
            return False  # the rest of the graph belongs to the next group

        self.callback = callback

    def take(self, n_tokens: int, n_embd: int) -> np.ndarray:
        if self.value is None or self.value.size != n_tokens * n_embd:
            got = None if self.value is None else self.value.size
            raise ModelLoadError(f"llama.cpp gave no layer output of {n_tokens} x {n_embd} (got {got})")
        value, self.value = self.value.reshape(n_tokens, n_embd), None
        return value


class _Spool:
    """Hidden states of every sequence between two groups, in a temporary file (not in memory)."""

    def __init__(self) -> None:
        self._f = tempfile.TemporaryFile(prefix="pq-hidden-")
        self._where: list[tuple[int, tuple[int, int]]] = []

    def append(self, a: np.ndarray) -> None:
        self._where.append((self._f.seek(0, 2), a.shape))
        self._f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())

    def __getitem__(self, i: int) -> np.ndarray:
        offset, shape = self._where[i]
        self._f.seek(offset)
        return np.fromfile(self._f, dtype=np.float32, count=shape[0] * shape[1]).reshape(shape)

    def close(self) -> None:
        self._f.close()


class LayerGroupedLlamaCpp(LanguageModel):
    """A GGUF run by llama.cpp one group of layers at a time (`groups` from plan_groups).

    logits_many passes every sequence through group 0, then group 1, ...; logits() is that for one
    sequence (every group loaded once per call: use logits_many). No generation: see the module doc.
    """

    engine = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        groups: list[tuple[int, int]],
        *,
        n_ctx: int = 512,
        threads: int = 1,
        progress: bool = True,
    ):
        self.path = Path(path)
        self.groups = groups
        self.n_layer = groups[-1][1]
        self.progress = progress
        self.n_ctx = n_ctx
        self.threads = threads
        self._vocab = LlamaCppModel(self.path, n_ctx=n_ctx, threads=threads, vocab_only=True)
        self.n_vocab, self.add_bos = self._vocab.n_vocab, self._vocab.add_bos
        self.bos_id, self.eos_ids = self._vocab.bos_id, self._vocab.eos_ids

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self._vocab.tokenize(text, special=special)

    def detokenize(self, ids: list[int]) -> str:
        return self._vocab.detokenize(ids)

    def logits(self, tokens: np.ndarray, first: int) -> np.ndarray:
        return next(iter(self.logits_many([(tokens, first)])))

    def logits_many(self, seqs: Iterable[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
        seqs = [(np.asarray(t, dtype=np.int32), first) for t, first in seqs]
        spool: _Spool | None = None
        with GGUFFile(self.path) as f, tempfile.TemporaryDirectory(prefix="pq-layer-group-") as tmp:
            for g, (a, b) in enumerate(self.groups):
                last = g == len(self.groups) - 1
                group_file = write_group(f, a, b, Path(tmp) / f"group-{g}.gguf")
                capture = None if last else _LayerOutput(self._vocab._ll, f"l_out-{b - a - 1}")
                model = LlamaCppModel(
                    group_file,
                    n_ctx=self.n_ctx,
                    threads=self.threads,
                    eval_callback=None if capture is None else capture.callback,
                )
                out = None if last else _Spool()
                try:
                    # The last group's progress is the caller's (one step per logits yielded).
                    desc = f"layers {a}-{b - 1} of {self.n_layer} (llama.cpp)"
                    steps = seqs if last else tqdm(seqs, desc=desc, disable=not self.progress, leave=False)
                    for i, (tokens, first) in enumerate(steps):
                        # Every position is an output before the last group: its last layer keeps
                        # only the output rows (llama.cpp's inp_out_ids), the next group needs all.
                        want = first if last else 0
                        if spool is None:
                            logits = model.logits(tokens, want)
                        else:
                            logits = model.embeddings_logits(spool[i], want)
                        if last:
                            yield logits
                        else:
                            assert capture is not None and out is not None
                            out.append(capture.take(len(tokens), model.n_embd))
                finally:
                    model.close()
                    group_file.unlink()
                    if spool is not None:
                        spool.close()
                spool = out

    def start(self, prompt_ids: list[int]) -> int:
        raise ModelLoadError(f"{self.path}: a layer-grouped model does not generate (see layer_groups.py)")

    def step(self, token: int) -> int:
        raise ModelLoadError(f"{self.path}: a layer-grouped model does not generate (see layer_groups.py)")

    def close(self) -> None:
        vocab = getattr(self, "_vocab", None)
        if vocab is not None:
            vocab.close()
