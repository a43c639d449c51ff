"""train: fit the float model on the training split (never the held-out split) and save it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from compress.backends.keras import save_artifact
from compress.core.state import RunState
from compress.keras import _tf
from compress.keras.data import Dataset
from compress.keras.training import loss_for
from compress.stages.base import Stage, StageParams

KERAS_FILE = "model.keras"


class TrainParams(StageParams):
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    seed: int = Field(0, ge=0)


def compile_for_heads(model, data: Dataset, learning_rate: float) -> None:
    """One loss and one metric per output head, by its task (see loss_for)."""
    keras = _tf.keras()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={h: loss_for(data.task(h)) for h in data.heads},
        metrics={h: ["mae" if data.task(h) == "regress" else "accuracy"] for h in data.heads},
    )


class Train(Stage):
    name = "train"
    Params = TrainParams
    produces_model = True
    model_artifact = KERAS_FILE

    def changes_layers(self) -> bool:
        return self.params.epochs > 0

    def run(self, state: RunState) -> RunState:
        p = self.params
        model, data = self.model(state), self.data(state)
        _tf.keras().utils.set_random_seed(p.seed)
        compile_for_heads(model, data, p.learning_rate)
        history = {}
        if p.epochs > 0:
            hist = model.fit(
                data.x_train,
                data.y_train,
                epochs=p.epochs,
                batch_size=p.batch_size,
                shuffle=True,
                verbose=0,
                callbacks=epoch_progress(state, "train: epochs", p.epochs),
            )
            history = {k: float(v[-1]) for k, v in hist.history.items()}
        info = {"epochs": p.epochs, "final": history}
        from compress.keras import signature  # imports TensorFlow, as this stage does

        if signature.directory(model) is not None:  # the user's SavedModel is the float model
            return state.with_model(model).with_info("train", info)
        knobs = {"epochs": p.epochs, "learning_rate": p.learning_rate}
        artifact = save_artifact(state.workdir, KERAS_FILE, model, "trained", knobs)
        return state.add((artifact,)).with_model(model).with_info("train", info)


def epoch_progress(state: RunState, task: str, epochs: int) -> list[Any]:
    """A Keras callback reporting each finished epoch to the run's progress (none without)."""
    if state.progress is None:
        return []
    progress = state.progress

    class Epochs(_tf.keras().callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            progress.step(task, epoch + 1, epochs)

    return [Epochs()]
