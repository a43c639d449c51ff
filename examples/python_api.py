"""Using compress from Python: the standard pipeline, a hand-built one, and one stage alone.

Run: python examples/python_api.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from compress import Pipeline, PipelineConfig, StageCache, run, stages
from compress.stages import RunState


def main(out: Path) -> None:
    # 1. The standard pipeline for a reference model, as `compress run multitask --epochs 5`.
    config = PipelineConfig.for_model("multitask", {"train.epochs": 5, "out": str(out)})
    result = run(config, cache=StageCache(out / "cache"))
    for a in result.report["verification"]["artifacts"]:
        heads = ", ".join(f"{h} {m['accuracy']:.1f}%" for h, m in a["heads"].items())
        print(f"{a['name']:<20} {a['size_bytes']:>8} B  {heads}")
    print("passed:", result.passed, "->", result.run_dir)

    # 2. A pipeline built from stage objects: TFLite only, dynamic-range quantization.
    pipe = Pipeline([
        stages.Build(model="cnn"), stages.Train(epochs=1), stages.ExportTFLite(),
        stages.Quantize(mode="dynamic"), stages.Verify(max_drift=2.0),
    ])  # fmt: skip
    print("tflite-only passed:", pipe.run(out, "cnn").passed)

    # 3. One stage alone on a state you hold: export an ONNX file of a built model.
    with tempfile.TemporaryDirectory() as tmp:
        state = stages.Build(model="rnn").run(RunState(workdir=Path(tmp)))
        state = stages.ExportONNX(opset=17).run(state)
        onnx = state.artifact("onnxruntime", "fp32")
        print("exported", onnx.name, onnx.path.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("artifacts"))
