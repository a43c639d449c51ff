"""What every backend offers: one per format, registered by runtime name (see __init__.py).

A backend owns everything specific to its format: its recipe table (one row per way of making an
artifact: export, each quantization recipe), building a recipe into a file, the runner that
executes the file, and counting the weights the file stores. Stages only loop over backends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from compress.core.arrays import Inputs
from compress.core.fileio import write_atomic
from compress.core.state import Artifact, Recipe
from compress.keras.keras3 import origin
from compress.measure.weights import gzip_size


@dataclass(frozen=True)
class RecipeSpec:
    """One row of a backend's recipe table. `mode` is the quantize mode (or `fp32` for the
    export) the row serves; the first row of a mode is its default. `search` names the modes in
    which the row is a candidate measured against the others (`int8`: rows storing weights in
    int8; `auto`: every quantized row); `needs` a
    property of the model the row only applies to (e.g. "recurrent": a recurrent layer to keep
    float), checked by the backend's `applicable`. `knobs` are everything the backend's builder
    reads: a new recipe is a new row."""

    id: str
    mode: str
    description: str
    knobs: dict[str, Any] = field(default_factory=dict)
    search: tuple[str, ...] = ()
    needs: str | None = None
    # True: the row never serves its mode unmeasured (as `--quantize MODE`'s default); it is
    # only a candidate in the modes of `search`, where it must win to be kept
    candidate_only: bool = False

    def recipe(
        self, extra: dict[str, Any] | None = None, candidates=(), **how: dict[str, Any]
    ) -> Recipe:
        """The record of this row as built: `extra` knobs decided for the model, the measured
        `candidates`, and `selection` / `fallback` (see Recipe)."""
        return Recipe(self.id, self.description, {**self.knobs, **(extra or {})}, candidates,
                      **how)  # fmt: skip


@dataclass(frozen=True)
class Sources:
    """What a recipe may be built from: the float Keras model, calibration samples (training
    split only), this backend's fp32 artifact, the quantization-aware-trained model (and the
    layer types it left float), and the ONNX opset the fp32 export used."""

    model: Any
    x_calib: Inputs | None = None
    fp32: Artifact | None = None
    qat_model: Any = None
    qat_left_float: tuple[str, ...] = ()  # layer types tfmot could not annotate for QAT
    opset: int | None = None
    # head -> classify | regress (what agreement with fp32 means for it); empty: classifiers
    tasks: dict[str, str] = field(default_factory=dict, compare=False)
    # Work the recipes built from these sources share (a calibration, a pre-processed graph),
    # kept by the backend that made it; lives as long as these sources (one quantize run).
    memo: dict[str, Any] = field(default_factory=dict, compare=False)
    # The worker process recipes are built in (backends/worker.py, through
    # backends/isolated.py); None builds in this process.
    worker: Any = field(default=None, compare=False)
    # Names these sources' shared work in the worker (its memo lives there).
    token: str = field(default_factory=lambda: secrets.token_hex(6), compare=False)


class Runner(Protocol):
    """Batched prediction keyed by output name, and a zero-argument call for timing."""

    runtime: str
    output_names: list[str]
    input_shapes: dict[str, tuple[int, ...]]
    input_dtypes: dict[str, np.dtype]  # what each input holds (token ids are integers)

    def predict(self, x: Inputs) -> dict[str, np.ndarray]:
        """Outputs for all of `x`, keyed by the model's output (head) names."""
        ...

    def timed_call(self, x: Inputs, batch: int) -> Callable[[], object] | None:
        """One inference on a batch of `batch` samples of `x`; None if the artifact cannot take
        that batch size (for example a model converted with a fixed batch of 1)."""
        ...


class Backend:
    """Base class. Subclasses set the class attributes and implement `build`, `open_runner`
    and `count_weights`."""

    runtime: ClassVar[str]  # registry name, e.g. "litert"
    format: ClassVar[str]  # file format, e.g. "tflite"
    suffix: ClassVar[str]  # file name suffix, e.g. ".tflite"
    recipes: ClassVar[tuple[RecipeSpec, ...]]
    reference: ClassVar[bool] = False  # the float model others are compared with, not exported
    # Quantize modes this format cannot serve, with why: the run lists the artifact as skipped
    # with the reason instead of making a file that only pretends.
    no_recipe: ClassVar[dict[str, str]] = {}
    loader_name: ClassVar[str] = "the runtime"  # what loads and runs the files (crash messages)

    # -- the recipe table --------------------------------------------------------------------
    def recipe(self, recipe_id: str) -> RecipeSpec:
        for spec in self.recipes:
            if spec.id == recipe_id:
                return spec
        known = ", ".join(s.id for s in self.recipes)
        raise ValueError(f"{self.runtime} has no recipe {recipe_id!r}. Expected one of: {known}")

    def default(self, mode: str, src: Sources | None = None) -> RecipeSpec | None:
        """The recipe a mode uses when nothing is measured: the mode's first row (`auto`: the
        int8 default) that applies to the model of `src` when given."""
        mode = "int8" if mode == "auto" else mode
        rows = (s for s in self.recipes if s.mode == mode and not s.candidate_only)
        return next((s for s in rows if src is None or self.applicable(s, src)), None)

    def candidates(self, mode: str, src: Sources | None = None) -> list[RecipeSpec]:
        """The rows a measured selection compares for `mode` (its default first), keeping only
        those that apply to the model of `src` when given."""
        rows = [s for s in self.recipes if mode in s.search]
        default = self.default(mode)
        rows.sort(key=lambda s: s is not default)
        return [s for s in rows if src is None or self.applicable(s, src)]

    def applicable(self, spec: RecipeSpec, src: Sources) -> bool:
        """Whether a row's `needs` holds for the model (rows without `needs` always apply;
        "keras3": a model that came from Keras 3, whose own quantizers the row uses; "torch":
        PyTorch is installed)."""
        if spec.needs == "keras3":
            return origin(src.model) is not None
        if spec.needs == "torch":  # onnxruntime's GPTQ computes with PyTorch (extra: gptq)
            import importlib.util

            return importlib.util.find_spec("torch") is not None
        return spec.needs is None

    # -- per format --------------------------------------------------------------------------
    def build(self, spec: RecipeSpec, src: Sources, path: Path) -> dict[str, Any] | None:
        """Write the artifact of recipe `spec` to `path`. Returns knobs decided for this model
        (e.g. a fixed batch), recorded with the recipe."""
        raise NotImplementedError

    def shared_step(self, spec: RecipeSpec, src: Sources) -> str | None:
        """The step (as named to isolate.step) whose work recipes built from the same sources
        share, if `spec` needs it: a crash there fails every recipe that needs it."""
        return None

    def open_runner(self, path: Path, threads: int = 1, **options: bool) -> Runner:
        raise NotImplementedError

    def count_weights(self, path: Path, model: Any = None) -> dict[str, Any] | None:
        """Weight statistics read from the file itself (see weights.summarize)."""
        raise NotImplementedError

    def runner_options(self, model: Any) -> dict[str, bool]:
        """Options every runner of this model's artifacts needs (e.g. resetting LSTM state)."""
        return {}

    def left_float(self, path: Path, spec: RecipeSpec, src: Sources) -> list[str]:
        """Op or layer types whose weights the recipe left in float32."""
        return []

    def layer_errors(
        self, path: Path, fp32_path: Path, x: Inputs, **options: bool
    ) -> list[dict[str, Any]] | None:
        """Per-layer quantization error of `path` against this runtime's fp32 file on samples
        `x` (see sensitivity.py), worst first: dicts with `layer`, `op`, `sqnr_db`. None when
        the runtime cannot show intermediate tensors."""
        return None

    def op_profile(
        self, path: Path, x: Inputs, threads: int = 1, **options: bool
    ) -> dict[str, Any] | None:
        """Which op types of the file ran in which kernels, and (where the runtime can say) how
        long each took per batch-1 call: `op_types`, rows with `op`, `nodes` and per kernel
        counts (and `ms`, `share` percent). None when the runtime shows nothing of it."""
        return None

    def keep_float(self, spec: RecipeSpec, layers: list[dict[str, Any]]) -> RecipeSpec | None:
        """`spec` with these layers (rows of layer_errors) left float, or None when the recipe
        cannot leave single layers float."""
        return None

    # -- shared ------------------------------------------------------------------------------
    def file_name(self, mode: str) -> str:
        """The artifact's file name for a quantize mode (or `fp32`)."""
        return f"model_{mode}{self.suffix}"

    def facts(self, path: Path, model: Any = None) -> dict[str, Any]:
        """Properties of the file's bytes, deterministic in its content (a cached artifact
        keeps them): gzip size and weight statistics. `model`: the Keras model the file holds,
        when in hand (saves loading it again)."""
        # zlib releases the GIL: the file is compressed while its weights are counted.
        with ThreadPoolExecutor(max_workers=1) as pool:
            gzipped = pool.submit(gzip_size, path)
            weights = self.count_weights(path, model)
            return {"size_gzip_bytes": gzipped.result(), "weights": weights}

    def make(
        self,
        workdir: Path,
        spec: RecipeSpec,
        src: Sources,
        *,
        name: str | None = None,
        precision: str | None = None,
        candidates: tuple[dict[str, Any], ...] = (),
        selection: dict[str, Any] | None = None,
        fallback: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        write: Callable[[Path], None] | None = None,
        build: Callable[[Path], dict[str, Any]] | None = None,
    ) -> Artifact:
        """Build `spec` into WORKDIR/NAME atomically (or `write` it, e.g. a searched candidate's
        bytes) and describe it as an Artifact with its facts counted from the file. `build`
        writes the file and returns the knobs it decided (default: `self.build` in this process;
        backends.isolated.builder builds it in the run's worker)."""
        name = name or self.file_name(spec.mode)
        decided: dict[str, Any] = dict(extra or {})

        def write_file(tmp: Path) -> None:
            if write is not None:
                write(tmp)
            elif build is not None:
                decided.update(build(tmp))
            else:
                decided.update(self.build(spec, src, tmp) or {})

        path = write_atomic(Path(workdir) / name, write_file)
        return Artifact(
            name=name,
            path=path,
            format=self.format,
            runtime=self.runtime,
            precision=precision or spec.mode,
            recipe=spec.recipe(
                decided, candidates, selection=selection or {}, fallback=fallback or {}
            ),
            options=self.runner_options(src.model),
            left_float=tuple(self.left_float(path, spec, src)),
            facts=self.facts(path, src.model),
        )
