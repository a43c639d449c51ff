"""The export stages' shared body: one backend's fp32 file, built in the run's worker."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from compress.backends import BACKENDS, Sources
from compress.backends.isolated import builder
from compress.core.errors import one_line
from compress.core.state import RunState, Skipped
from compress.stages.base import Stage, worker_for


class ExportStage(Stage):
    """The fp32 file of one backend (`runtime`), built in the run's worker process: an export
    the converter refuses, or crashes on, is skipped with its reason and the run goes on."""

    runtime: ClassVar[str]

    def sources(self) -> dict[str, Any]:
        """Extra Sources fields for the export (e.g. the ONNX opset)."""
        return {}

    def knobs(self) -> dict[str, Any]:
        """Extra knobs of the backend's fp32 recipe (e.g. ONNX external data)."""
        return {}

    def run(self, state: RunState) -> RunState:
        backend = BACKENDS[self.runtime]
        model = self.model(state)
        src = Sources(model, worker=worker_for(state), **self.sources())
        try:
            spec = backend.recipe("fp32")
            spec = replace(spec, knobs={**spec.knobs, **self.knobs()})
            artifact = backend.make(state.workdir, spec, src, build=builder(backend, spec, src))
        except OSError:
            raise  # a full disk or unwritable directory fails the run (see pipeline)
        except Exception as exc:  # the converter cannot (or crashed trying to) export it
            reason = f"{self.runtime} fp32 export failed: {one_line(exc)}"
            return state.add(skipped=(Skipped(backend.file_name("fp32"), self.runtime, reason),))
        return state.add((artifact,))
