"""Issue 9's done-when, end to end: a user's own checkpoint of another family goes through
`dvc exp run -S model=local -S model.path=DIR` (every stage, package included) and the package
passes `pocketquant verify`, for every native family (about 30 s each on 2 cores); tests/families
covers every family stage by stage (conversion, runtime, quantize, floor)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from pocketquant.testing.tiny_models import SPREAD_CONFIG, build_tiny_model

from .dvcrepo import REPO, STAGES, VENV_BIN, clone, dvc, run

pytestmark = pytest.mark.slow
pytest.importorskip("dvc")
pytest.importorskip("llama_cpp", reason="llama-cpp-python measures and verifies the GGUF")

# family -> (GGUF architecture, what it adds over the default Llama path)
FAMILIES = {
    "llama": ("llama", "Llama 3.2: byte-level BPE (llama-bpe), llama3 RoPE factors, tied output"),
    "llama-spm": ("llama", "SentencePiece Llama (TinyLlama, Llama 2), Zephyr-style chat"),
    "mistral": ("llama", "SentencePiece, sliding window, [INST] chat"),
    "qwen3": ("qwen3", "q/k norms, ChatML"),
    "gemma": ("gemma", "SentencePiece, norm shift, embedding scale, Gemma turns"),
    "gemma3": ("gemma3", "q/k norms, sliding-window pattern, final soft-cap in the reference"),
    "olmo2": ("olmo2", "post-norms, q/k norms"),
    "granite": ("granite", "embedding/residual/attention multipliers, logit scale in the reference"),
    "qwen2": ("qwen2", "byte-level BPE with the qwen2 pre-tokenizer, ChatML, q/k/v biases, tied output"),
    "gemma2": ("gemma2", "SentencePiece, norm shift, final soft-cap in the reference, Gemma turns"),
    "phi3": ("phi3", "fused qkv/gate_up, LongRoPE factors, padded vocabulary, Phi-3 chat"),
    "phi2": ("phi2", "parallel block, lm_head bias in the reference, no chat template (completion)"),
}
# A random Gemma answers the verification prompt (ending in "<start_of_turn>model\n") by repeating
# its last token, "\n", with most seeds, and verify rightly refuses whitespace-only text: this seed's
# greedy answer is text (in F16 and Q4_K_M alike).
SEEDS = {"gemma2": 4}
# The tiny Granite (embedding x12, tied, residual x0.22) echoes the prompt's last token, "\n", with
# every seed (llama.cpp and transformers alike); with full residuals its answer is text, and the
# embedding, attention and logit multipliers are still exercised.
OVERRIDES = {"granite": {"residual_multiplier": 1.0}}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def family_repo(tmp_path_factory: pytest.TempPathFactory):
    """A clone of this checkout (its own cache and remote) that every family's experiment runs in."""
    root = tmp_path_factory.mktemp("family-pipeline")
    yield clone(REPO, root / "repo", root / "cache", root / "remote")
    print(f"\nfamily pipeline timings (s): {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_family_checkpoint_runs_every_stage_and_its_package_verifies(
    family: str, family_repo: Path, tmp_path: Path
) -> None:
    from pocketquant.gguf_file import GGUFFile

    # Context 2048 as the real models have (the package's num_ctx is 2048 by default).
    model = build_tiny_model(
        tmp_path / f"tiny-{family}",
        family,
        seed=SEEDS.get(family, 0),
        max_position_embeddings=2048,
        **SPREAD_CONFIG.get(family, {}),
        **OVERRIDES.get(family, {}),
    )
    t0 = time.perf_counter()
    r = dvc(
        family_repo, "exp", "run", "-S", "model=local", "-S", f"model.path={model}", "-S", "eval=smoke",
        timeout=900,
    )  # fmt: skip
    TIMINGS[family] = time.perf_counter() - t0
    assert r.ran == set(STAGES), r.out[-3000:]
    with GGUFFile(family_repo / "artifacts" / "base" / "model.gguf") as f:
        assert f.get("general.architecture") == FAMILIES[family][0]
    metrics = json.loads((family_repo / "metrics" / "variant.json").read_text(encoding="utf-8"))
    assert metrics["variant"] == "q4_k_m" and math.isfinite(metrics["quality"]["kld_mean"]), metrics
    (package,) = (family_repo / "artifacts" / "package").glob("*.zip")
    v = run(family_repo, str(VENV_BIN / "pocketquant"), "verify", str(package), "--quiet", check=False)
    TIMINGS[f"{family}+verify"] = time.perf_counter() - t0
    assert v.returncode == 0 and f"OK {package}" in v.out, v.out[-3000:]
