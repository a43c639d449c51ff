"""Rewrites of an ONNX file's weights that onnxruntime's quantizers do not do the same way:
4-bit MatMul weights (MatMulNBits), weights already on an int8 grid stored as int8, float16
storage; and which ops of a file still hold float weights."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from compress.backends import worker as isolate
from compress.core.fileio import atomic_target, data_file

QUANTIZER = "onnxruntime quantizer"


PROTOBUF_LIMIT = 2**31 - 1  # bytes one serialized protobuf message (an ONNX file) can hold
_ALIGN = 4096  # external tensors start on page boundaries (onnxruntime can map them)


def save(proto: Any, path: Path, storage: Any = None) -> None:
    """Write an ONNX file. `storage`: the external weights of a conversion
    (`onnx_convert.VariableData`: each external tensor's location -> its bytes), which go to the
    file's external data (`fileio.data_file`, named after the
    file write_atomic renames `path` to), one after the other, page-aligned. A ModelProto that
    would pass protobuf's 2 GiB limit is refused in one line."""
    import onnx

    target = data_file(atomic_target(path))
    try:
        if storage:
            _write_external(proto, storage, target)
        elif target.exists():
            target.unlink()  # a previous file's data, not this one's
        if proto.ByteSize() > PROTOBUF_LIMIT:
            raise ValueError(
                f"the ONNX file would be {proto.ByteSize() / 2**30:.1f} GiB; one protobuf holds at "
                "most 2 GiB and only an export of the whole model writes external data"
            )
        onnx.save_model(proto, str(path))
        onnx.checker.check_model(str(path))
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _write_external(proto: Any, storage: Any, target: Path) -> None:
    """Every tensor the ModelProto keeps in `storage` written to `target`, the tensors pointed
    at it by offset and length."""
    import onnx

    with open(target, "wb") as f:
        for tensor in _tensors(proto.graph):
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            where = {e.key: e.value for e in tensor.external_data}
            blob = storage[where["location"]]
            offset = -f.tell() % _ALIGN + f.tell()
            f.seek(offset)
            f.write(blob)
            del tensor.external_data[:]
            for key, value in (("location", target.name), ("offset", str(offset)),
                               ("length", str(len(blob)))):  # fmt: skip
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value


def graphs(graph: Any) -> Iterator[Any]:
    """The graph, then every subgraph of its nodes' attributes (loops, branches), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from graphs(attr.g)
            for sub in attr.graphs:
                yield from graphs(sub)


def readers(graph: Any) -> Counter[str]:
    """Tensor name -> how many node inputs read it, subgraphs included."""
    return Counter(name for g in graphs(graph) for node in g.node for name in node.input)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    for g in graphs(graph):
        yield from g.initializer
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def weighted_producers(graph: Any, tensors: list[str]) -> list[str]:
    """Names of the nodes that hold the weights behind each tensor: the tensor's producer in
    `graph`, or the nearest nodes upstream of it, that read a weight (an initializer of rank >= 2).
    The quantizer excludes nodes by their names in the graph it is given (the pre-processed one,
    where e.g. MatMul + Add became one Gemm); tensor names survive that, node names do not."""
    weights = {i.name for i in graph.initializer if len(i.dims) >= 2}
    producer = {out: n for n in graph.node for out in n.output if out}
    found: list[str] = []
    for tensor in tensors:
        frontier = [producer[tensor]] if tensor in producer else []
        seen: set[str] = set()
        while frontier:
            hits = [n.name for n in frontier if any(i in weights for i in n.input)]
            if hits:
                found += [h for h in hits if h not in found]
                break
            seen.update(n.name for n in frontier)
            frontier = [producer[i] for n in frontier for i in n.input
                        if i in producer and producer[i].name not in seen]  # fmt: skip
    return found


def int4_weights(
    fp32_path: Path,
    out_path: Path,
    block_size: int,
    symmetric: bool,
    exclude: list | None,
    accuracy_level: int | None = None,
    op_types: list[str] | None = None,
    algorithm: str | None = None,
    calibration: Callable[[Any], Any] | None = None,
) -> None:
    """4-bit MatMul (onnxruntime's MatMulNBits contrib op): the weights packed two per byte
    with a float scale per block of `block_size` values along the input axis; accuracy_level 4
    quantizes activations to int8 and computes in integers, None or 0 computes in float.
    `op_types`: MatMul (the default) and Gather (an embedding table: GatherBlockQuantized).
    `algorithm`: None rounds each weight to the nearest step of its block's scale; "k_quant"
    searches each block's scale (and zero point) for the least squared error; "gptq" corrects
    each column's rounding error on the columns not yet quantized, weighted by the inputs that
    `calibration(graph)` (an onnxruntime CalibrationDataReader for the fp32 graph) feeds it."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    isolate.step(
        QUANTIZER, f"int4 (MatMulNBits{', ' + algorithm if algorithm else ''}) quantization"
    )
    types = tuple(op_types or ["MatMul"])
    model = onnx.load(str(fp32_path))
    config = None
    # onnxruntime 1.32 packs these algorithms' zero points across a weight's columns: a weight
    # with an odd number of blocks per column fails to reshape
    rounded = odd_block_matmuls(model.graph, block_size) if algorithm else []
    if algorithm == "k_quant":
        config = nbits.KQuantWeightOnlyQuantConfig(op_types_to_quantize=types)
    elif algorithm == "gptq":
        if calibration is None:
            raise ValueError("GPTQ needs calibration samples")
        # GPTQ holds a rows x rows float64 Hessian per weight (30752 rows: 7.6 GB)
        rounded += large_matmuls(model.graph, GPTQ_MAX_ROWS)
        config = nbits.GPTQWeightOnlyQuantConfig(
            calibration_data_reader=calibration(model.graph), block_size=128,
            op_types_to_quantize=types,
        )  # fmt: skip
    elif algorithm is not None:
        raise ValueError(f"MatMulNBits algorithm {algorithm!r} is not known")
    exclude = list(exclude or [])
    rounded = [n for n in rounded if n not in exclude]
    if rounded:  # round to nearest first: the algorithm then finds them MatMulNBits, not MatMul
        others = [n.name for n in model.graph.node if n.name not in rounded]
        model = _matmul_nbits(model, block_size, symmetric, others, accuracy_level, types)
    model = _matmul_nbits(model, block_size, symmetric, exclude, accuracy_level, types, config)
    if not any(n.op_type == "MatMulNBits" for n in model.graph.node):
        raise ValueError("MatMulNBits quantized no MatMul of this model (no constant weights)")
    if not any(o.domain == "com.microsoft" for o in model.opset_import):  # GPTQ leaves it out
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    save(model, out_path)


GPTQ_MAX_ROWS = 8192  # larger weights round to nearest (their Hessian alone: 512 MB and up)


def _matmul_nbits(
    model: Any,
    block_size: int,
    symmetric: bool,
    exclude: list[str],
    accuracy_level: int | None,
    types: tuple[str, ...],
    config: Any = None,
) -> Any:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        model, bits=4, block_size=block_size, is_symmetric=symmetric, nodes_to_exclude=exclude,
        accuracy_level=accuracy_level, op_types_to_quantize=types, algo_config=config,
    )  # fmt: skip
    quantizer.process()
    return quantizer.model.model


def matmul_weight_rows(graph: Any) -> dict[str, int]:
    """MatMul node name -> the rows (K) of its constant K x N weight."""
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    return {
        n.name: shapes[n.input[1]][0]
        for n in graph.node
        if n.op_type == "MatMul" and len(shapes.get(n.input[1], [])) == 2
    }


def large_matmuls(graph: Any, max_rows: int) -> list[str]:
    """MatMul nodes whose constant weight (K x N) has more than `max_rows` rows (K)."""
    return [name for name, k in matmul_weight_rows(graph).items() if k > max_rows]


def odd_block_matmuls(graph: Any, block_size: int) -> list[str]:
    """MatMul nodes whose constant weight (K x N) has an odd number of `block_size` blocks along
    K (K rounded up to whole blocks)."""
    return [name for name, k in matmul_weight_rows(graph).items() if -(-k // block_size) % 2]


def _grid(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(int8 values, scale) if w lies on a symmetric int8 grid (|q| <= 127), else None.

    The grid step divides every gap between distinct values: the smallest gap, or a fraction
    of it when the values are sparse on the grid (few values per channel)."""
    distinct = np.unique(w)
    if len(distinct) < 2:
        return None
    smallest = float(np.min(np.diff(distinct)))
    for k in range(1, 17):
        step = smallest / k
        q = np.round(w / step)
        if np.abs(q).max() > 127:
            return None
        if np.allclose(q * step, w, rtol=0, atol=step * 1e-3):
            return q.astype(np.int8), np.array(step, dtype=np.float32)
    return None


def weights_to_int8(proto: Any) -> Any:
    """Store QAT weights as 8-bit integers with a DequantizeLinear, as static quantization does.

    tf2onnx folds tfmot's weight fake-quant into float32 initializers whose values already lie on
    an int8 grid (per tensor, or per output channel); those are rewritten exactly as int8 plus
    scale. Weights not on a grid stay float32 (and are reported as such).
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    replaced: dict[str, Any] = {}
    dq_nodes = []
    for name, init in inits.items():
        users = readers.get(name, [])
        if (
            len(init.dims) < 2
            or not users
            or any(u.op_type not in ("Conv", "MatMul", "Gemm") for u in users)
        ):
            continue
        w = numpy_helper.to_array(init).astype(np.float64)
        axis = 1 if users[0].op_type == "MatMul" else 0
        grid = _grid(w)
        if grid is None:  # per output channel
            per = [_grid(np.take(w, c, axis=axis)) for c in range(w.shape[axis])]
            if any(g is None for g in per):
                continue
            q = np.stack([g[0] for g in per], axis=axis)
            scale = np.array([g[1] for g in per], dtype=np.float32)
        else:
            q, scale = grid
        # stored as uint8 around a zero point of 128 (exact: |q| <= 127), so onnxruntime runs it
        # with its u8 x u8 kernels: int8 weights take the u8 x s8 ones, which saturate on x86
        # CPUs without VNNI (see REDUCE_RANGE; QAT's grid cannot be narrowed to 7 bits).
        # Measured on an AMD EPYC, the QAT CNN: agreement with the same file computed in float
        # 96.5% -> 100%, max |diff| 0.156 -> 0.014, the same speed.
        replaced[name] = numpy_helper.from_array((q.astype(np.int16) + 128).astype(np.uint8),
                                                 f"{name}__q8")  # fmt: skip
        zero = np.full(scale.shape, 128, np.uint8)
        replaced[name + "__extra"] = [
            numpy_helper.from_array(scale, f"{name}__scale"),
            numpy_helper.from_array(zero, f"{name}__zero"),
        ]
        attrs = {"axis": axis} if scale.ndim == 1 else {}
        dq_nodes.append(helper.make_node(
            "DequantizeLinear", [f"{name}__q8", f"{name}__scale", f"{name}__zero"], [name],
            name=f"{name}__dequantize", **attrs,
        ))  # fmt: skip
    kept = [i for i in graph.initializer if i.name not in replaced]
    new = []
    for value in replaced.values():
        new += value if isinstance(value, list) else [value]
    del graph.initializer[:]
    graph.initializer.extend(kept + new)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(dq_nodes + nodes)
    return proto


def float_weight_ops(path: Path) -> list[str]:
    """Op types that still read float32 weight matrices (initializers of rank >= 2) directly:
    the parts of a quantized graph that the quantizer left in float (e.g. LSTM under static
    quantization)."""
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(path)).graph
    float_weights = {
        i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2
    }
    ops = {n.op_type for n in graph.node if any(x in float_weights for x in n.input)}
    return sorted(ops - {"DequantizeLinear", "Cast"})


def float16_weights(proto: Any) -> Any:
    """Store every float32 weight as float16 and Cast it back to float32 in the graph.

    Halves the file; onnxruntime folds the casts at load, so compute stays float32 (as TFLite's
    float16 mode does on CPU).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16))
        half.name = f"{init.name}__fp16"
        kept.append(half)
        casts.append(
            helper.make_node(
                "Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"
            )
        )
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(casts + nodes)
    return out


# -- dynamic int8, one weight at a time --------------------------------------------------------
STREAMED_OPS = ("MatMul",)  # what dynamic_int8_streamed rewrites
_ROWS_PER_CHUNK = 1024  # rows of a weight scaled at a time (bounds the float temporaries)


def initializer_array(tensor: Any, base: Path) -> np.ndarray:
    """An initializer's values: mapped read-only from its external data file (`base`: the
    directory of the ONNX file), so that a weight is paged in as it is read, never copied
    whole; or from the proto."""
    from onnx import TensorProto, helper, numpy_helper

    if tensor.data_location != TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor)
    where = {e.key: e.value for e in tensor.external_data}
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    return np.memmap(base / where["location"], dtype=dtype, mode="r",
                     offset=int(where.get("offset", 0)), shape=tuple(tensor.dims))  # fmt: skip


def streams_dynamic(graph: Any, op_types: list[str] | None) -> bool:
    """Whether dynamic quantization of `graph` restricted to `op_types` (None: every op type
    onnxruntime's quantizer takes) reaches weights of STREAMED_OPS only, which
    dynamic_int8_streamed writes as onnxruntime's quantizer does."""
    weights = {i.name for i in graph.initializer if len(i.dims) >= 2}
    weighted = {n.op_type for n in graph.node if any(x in weights for x in n.input)}
    return (weighted if op_types is None else weighted & set(op_types)) <= set(STREAMED_OPS)


def dynamic_int8_streamed(
    fp32_path: Path, out_path: Path, reduce_range: bool, exclude: list[str] | None
) -> None:
    """Dynamic int8 MatMul weights, quantized one weight at a time into the nodes onnxruntime's
    `quantize_dynamic` writes (DynamicQuantizeLinear of the activation, MatMulInteger, Cast and
    two scale Muls, which onnxruntime fuses into DynamicQuantizeMatMul when it loads the file)
    with its weights: symmetric, one scale per tensor, int8 on 7 bits with `reduce_range`.

    For an fp32 file with external data: onnxruntime's quantizer loads the whole model and a
    shape-inferred copy of it (the worker was killed at 18 GB quantizing 2.4 GB of weights);
    here each weight is read from the data file while it is quantized, and only the int8
    weights are held (the output is one file)."""
    import onnx
    from onnx import TensorProto, helper
    from onnx.external_data_helper import load_external_data_for_model

    isolate.step(QUANTIZER, "dynamic quantization, weight by weight")
    base = Path(fp32_path).resolve().parent
    model = onnx.load(str(fp32_path), load_external_data=False)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    read = readers(graph)
    skip, qmax = set(exclude or []), (64 if reduce_range else 127)
    nodes: list[Any] = []
    quantized: dict[str, list[Any]] = {}  # weight -> its int8 tensor, scale and zero point
    inputs: dict[str, tuple[str, str, str]] = {}  # activation -> its DynamicQuantizeLinear's
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or node.name in skip or len(w.dims) != 2 or w.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        if w.name not in quantized:
            quantized[w.name] = _int8_tensor(w, initializer_array(w, base), qmax)
        q, scale, zero = (t.name for t in quantized[w.name])
        p = f"{node.name or node.output[0]}_dynamic"
        if node.input[0] not in inputs:  # an activation read by several MatMuls: quantized once
            inputs[node.input[0]] = (f"{p}_input_q", f"{p}_input_scale", f"{p}_input_zero_point")
            nodes.append(
                helper.make_node("DynamicQuantizeLinear", [node.input[0]],
                                 list(inputs[node.input[0]]), name=f"{p}_quantize_input")
            )  # fmt: skip
        a, a_scale, a_zero = inputs[node.input[0]]
        rescaled = [f"{p}_float", f"{p}_scale"]
        nodes += [
            helper.make_node("MatMulInteger", [a, q, a_zero, zero], [f"{p}_int32"],
                             name=f"{p}_matmul"),
            helper.make_node("Cast", [f"{p}_int32"], [rescaled[0]], to=TensorProto.FLOAT,
                             name=f"{p}_cast"),
            helper.make_node("Mul", [a_scale, scale], [rescaled[1]], name=f"{p}_scales"),
            helper.make_node("Mul", rescaled, [node.output[0]], name=f"{p}_rescale"),
        ]  # fmt: skip
        read[w.name] -= 1
    kept = [i for i in graph.initializer if read[i.name] > 0]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + [t for ts in quantized.values() for t in ts])
    load_external_data_for_model(model, str(base))  # the float tensors left go into the file
    save(model, out_path)


def _int8_tensor(w: Any, values: np.ndarray, qmax: int) -> list[Any]:
    """[int8 weight, scale, zero point] of a float weight, symmetric on [-qmax, qmax] (rounded
    half to even, as onnxruntime's quantizer does), scaled a block of rows at a time."""
    from onnx import numpy_helper

    rows = range(0, values.shape[0], _ROWS_PER_CHUNK)
    absmax = max((float(np.abs(values[r : r + _ROWS_PER_CHUNK]).max()) for r in rows), default=0.0)
    scale = np.float32(absmax / qmax if absmax > 0 else 1.0)
    q = np.empty(values.shape, np.int8)
    for r in rows:
        block = np.asarray(values[r : r + _ROWS_PER_CHUNK], np.float32) / scale
        q[r : r + _ROWS_PER_CHUNK] = np.clip(np.round(block), -qmax, qmax)
    return [
        numpy_helper.from_array(q, f"{w.name}_quantized"),
        numpy_helper.from_array(np.array(scale, np.float32), f"{w.name}_scale"),
        numpy_helper.from_array(np.array(0, np.int8), f"{w.name}_zero_point"),
    ]
