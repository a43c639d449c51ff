"""train: fit the float model on the training split (never the held-out split) and save it."""

from __future__ import annotations

from pydantic import Field

from compress import _tf
from compress.fileio import write_atomic
from compress.loading import save_model
from compress.stages.base import Artifact, RunState, Stage, StageParams

KERAS_FILE = "model.keras"


class TrainParams(StageParams):
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    seed: int = Field(0, ge=0)


def compile_for_heads(model, heads: list[str], learning_rate: float) -> None:
    """One sparse categorical cross-entropy loss and one accuracy metric per output head."""
    keras = _tf.keras()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={h: "sparse_categorical_crossentropy" for h in heads},
        metrics={h: ["accuracy"] for h in heads},
    )


class Train(Stage):
    name = "train"
    Params = TrainParams
    produces_model = True

    def run(self, state: RunState) -> RunState:
        p = self.params
        model = state.require_model(self.name)
        data = state.require_data(self.name)
        keras = _tf.keras()
        keras.utils.set_random_seed(p.seed)
        compile_for_heads(model, data.heads, p.learning_rate)
        history = {}
        if p.epochs > 0:
            hist = model.fit(
                data.x_train,
                data.y_train,
                epochs=p.epochs,
                batch_size=p.batch_size,
                shuffle=True,
                verbose=0,
            )
            history = {k: float(v[-1]) for k, v in hist.history.items()}
        path = write_atomic(state.workdir / KERAS_FILE, lambda tmp: save_model(model, tmp))
        artifact = Artifact(
            name=KERAS_FILE,
            path=path,
            format="keras",
            runtime="keras",
            precision="fp32",
            recipe="trained float model",
        ).measured(model)
        info = {"epochs": p.epochs, "final": history}
        return state.add((artifact,)).replace(info={**state.info, "train": info})
