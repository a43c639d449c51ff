"""prune: magnitude pruning with a polynomial-decay schedule (or 2:4 structured sparsity),
fine-tuned on the training split, wrappers stripped. Reports the sparsity each layer reached.

Only the layers a per-layer policy selects are pruned (by default those holding >= 5% of the
weights): pruning a tiny first conv collapses accuracy for almost no saving.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from compress.backends.keras import save_artifact
from compress.core.errors import StageError
from compress.core.state import RunState
from compress.keras.model_io import same_origin
from compress.keras.training import fine_tune, wrap_layers
from compress.stages.base import Stage
from compress.stages.finetune import FineTuneParams, begin, steps_per_epoch


class PruneParams(FineTuneParams):
    sparsity: float | str = Field(
        description="target fraction of zero weights in [0, 1), or '2:4' structured sparsity"
    )

    @field_validator("sparsity")
    @classmethod
    def _fraction_or_2_4(cls, value: float | str) -> float | str:
        if isinstance(value, str) and value != "2:4":
            raise ValueError("must be in [0, 1) or '2:4'")
        if not isinstance(value, str) and not 0.0 <= value < 1.0:
            raise ValueError("must be in [0, 1)")
        return value


def kernel_sparsity(model: Any, layer_names: list[str]) -> dict[str, float]:
    """Fraction of exact zeros in each named layer's weight matrices (rank >= 2)."""
    out = {}
    for name in layer_names:
        ws = [w.numpy() for w in model.get_layer(name).weights if len(w.shape) >= 2]
        total = sum(w.size for w in ws)
        out[name] = float(sum((w == 0).sum() for w in ws) / total) if total else 0.0
    return out


def schedule(sparsity: float, total_steps: int) -> Any:
    """PolynomialDecay from 0 to `sparsity` whose updates land within the fine-tuning steps.

    tfmot's default frequency (100 steps) is longer than a small data set's whole fine-tuning,
    which silently prunes nothing; the frequency here comes from the step count, and the
    schedule ends on an update step at about 70% of training, leaving steps to recover.
    """
    from compress.keras.layers import with_tfmot  # imports TensorFlow

    tfmot = with_tfmot()
    frequency = max(1, total_steps // 10)
    end = max(frequency, (int(total_steps * 0.7) // frequency) * frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end,
        frequency=frequency,
    )  # fmt: skip


class Prune(Stage):
    name = "prune"
    Params = PruneParams
    produces_model = True
    model_artifact = "model_pruned.keras"
    optional = True

    def changes_layers(self) -> bool:
        return True

    def run(self, state: RunState) -> RunState:
        p = self.params
        from compress.keras.layers import with_tfmot  # imports TensorFlow

        tfmot = with_tfmot()
        state, data, fresh, targets = begin(self, state)
        structured = p.sparsity == "2:4"
        total = steps_per_epoch(data, p.batch_size) * p.epochs

        def wrap(layer):
            if structured:  # where tfmot supports it; other layers are named in not_pruned
                return tfmot.sparsity.keras.prune_low_magnitude(
                    layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0),
                    sparsity_m_by_n=(2, 4),
                )  # fmt: skip
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer, pruning_schedule=schedule(float(p.sparsity), total)
            )

        pruned, skipped = wrap_layers(fresh, targets, wrap, tolerate=structured)
        fine_tune(pruned, data, p, fresh.output_names, [tfmot.sparsity.keras.UpdatePruningStep()])
        stripped = same_origin(tfmot.sparsity.keras.strip_pruning(pruned), fresh)
        done = [n for n in targets if n not in skipped]
        reached = kernel_sparsity(stripped, done)
        if not structured and done and max(reached.values()) == 0.0 and float(p.sparsity) > 0:
            raise StageError(f"pruning reached no sparsity in {done} (schedule never fired)")
        info = {
            "target": p.sparsity,
            "layers": reached,
            "not_pruned": skipped,
            "steps": total,
        }
        knobs = {"sparsity": p.sparsity, "layers": done, "epochs": p.epochs}
        saved = save_artifact(state.workdir, self.model_artifact, stripped, "pruned", knobs)
        return state.add((saved,)).with_model(stripped).with_info("prune", info)
