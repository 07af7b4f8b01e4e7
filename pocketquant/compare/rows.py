"""One row per measured model, the way users choose a variant: what it is, how big, how good, how fast.

A `Run` is what one pipeline run left behind (one experiment, one commit, the workspace, or a
metrics file given by hand): the variant's metrics, the base's metrics, their per-token scores when
kept, and the params it ran with. `rows_from_runs` turns runs into `Row`s, merging identical
measurements that several runs share (the workspace after `dvc exp run` is also that experiment;
every run of one baseline measured the same base model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pocketquant.evaluate.stats import Estimate, TokenScores, mean_err, perplexity, same_top_fraction

GB = 1e9


@dataclass
class Run:
    source: str  # "workspace", an experiment name, a commit, or a file path
    variant: dict  # the variant's metrics JSON
    base: dict | None = None  # the base model's metrics JSON of the same run
    params: dict | None = None  # params.yaml of the run
    tokens: TokenScores | None = None  # the variant's per-token scores
    base_tokens: TokenScores | None = None


@dataclass
class Row:
    label: str  # the variant label the pipeline gives (q4_k_m-imatrix, base-f16, ...)
    metrics: dict
    is_base: bool
    model: str | None
    scheme: str
    made: str  # how it was made: "" (plain), "imatrix", "from nf4", "imatrix, from nf4", "base"
    tokens: TokenScores | None
    sources: list[str] = field(default_factory=list)

    # -- size -------------------------------------------------------------------------------------
    @property
    def size(self) -> dict:
        return self.metrics["size"]

    @property
    def size_bytes(self) -> int:
        return int(self.size["bytes"])

    @property
    def size_gb(self) -> float:
        return self.size_bytes / GB

    @property
    def size_gib(self) -> float:
        return float(self.size["gib"])

    # -- quality (None when not measured) ---------------------------------------------------------
    @property
    def quality(self) -> dict | None:
        return self.metrics.get("quality")

    def _estimate(
        self, key: str, from_tokens: Callable[[TokenScores], Estimate] | None, scale: float = 1.0
    ) -> Estimate | None:
        """The metric and its error; the error from the per-token scores for metrics written before
        errors were recorded, NaN when neither has it."""
        q = self.quality
        if q is None or key not in q:
            return None
        if f"{key}_err" in q:
            return Estimate(float(q[key]), float(q[f"{key}_err"]))
        if self.tokens is not None and from_tokens is not None:
            return Estimate(float(q[key]), scale * from_tokens(self.tokens).err)
        return Estimate(float(q[key]), float("nan"))

    @property
    def ppl(self) -> Estimate | None:
        return self._estimate("ppl", lambda t: perplexity(t.nll))

    @property
    def delta_ppl_pct(self) -> Estimate | None:
        return self._estimate("delta_ppl_pct", None)

    @property
    def kld(self) -> Estimate | None:
        return self._estimate("kld_mean", lambda t: mean_err(t.kld))

    @property
    def top1_pct(self) -> Estimate | None:
        return self._estimate("top1_agreement_pct", lambda t: same_top_fraction(t.same_top1), 100.0)

    @property
    def kld_p99(self) -> float | None:
        return None if self.quality is None else self.quality.get("kld_p99")

    @property
    def setting(self) -> tuple:
        """What the quality numbers were measured on: rows agree on this to be comparable."""
        q = self.quality or {}
        return (q.get("corpus"), q.get("n_ctx"), q.get("chunks"), q.get("tokens_scored"))

    @property
    def speed(self) -> dict:
        return self.metrics.get("speed") or {}

    @property
    def mc(self) -> dict | None:
        return self.metrics.get("mc")


BASE_PREFIX = "base-"
SUFFIXES = {"-imatrix": "imatrix", "-from-nf4": "from nf4"}


def describe_label(label: str) -> tuple[str, str]:
    """(scheme, how made) from a variant label when no params are at hand (stages/common.py makes
    labels as scheme + "-imatrix" + "-from-<source>")."""
    if label.startswith(BASE_PREFIX):
        return label[len(BASE_PREFIX) :], "base"
    made = []
    scheme = label
    for suffix, what in reversed(SUFFIXES.items()):
        if scheme.endswith(suffix):
            scheme = scheme[: -len(suffix)]
            made.insert(0, what)
    return scheme, ", ".join(made)


def _describe(run: Run, metrics: dict, is_base: bool) -> tuple[str | None, str, str]:
    """(model, scheme, how made) from the run's params, else from the label."""
    label = metrics["variant"]
    params = run.params or {}
    model = (params.get("model") or {}).get("name")
    quant = params.get("quant") or {}
    if is_base or not quant:
        scheme, made = describe_label(label)
        return model, scheme, made
    made = [what for ok, what in ((quant.get("imatrix"), "imatrix"),) if ok]
    source = quant.get("source", "base")
    if source and source != "base":
        made.append(f"from {source}")
    return model, str(quant.get("name", label)), ", ".join(made)


def rows_from_runs(runs: list[Run], *, include_base: bool = True) -> list[Row]:
    """One row per distinct measurement: the same metrics from several runs become one row that
    lists every source. Variants first, largest first; the base rows last."""
    rows: list[Row] = []
    for run in runs:
        entries = [(run.variant, run.tokens, False)]
        if include_base and run.base is not None:
            entries.append((run.base, run.base_tokens, True))
        for metrics, tokens, is_base in entries:
            same = next((r for r in rows if r.metrics == metrics and r.is_base == is_base), None)
            if same is not None:
                if run.source not in same.sources:
                    same.sources.append(run.source)
                if same.tokens is None:
                    same.tokens = tokens
                continue
            model, scheme, made = _describe(run, metrics, is_base)
            rows.append(Row(metrics["variant"], metrics, is_base, model, scheme, made, tokens, [run.source]))
    return sorted(rows, key=lambda r: (r.is_base, -r.size_bytes, r.label))
