"""ONNX Runtime sessions of a bundle's graphs, refused unless each is the graph its manifest
describes and takes the tensors the service feeds (`prerank_contract.graphs`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnxruntime as ort

from prerank_contract.bundle import BundleError
from prerank_contract.graphs import DTYPES, GRAPHS
from prerank_contract.manifest import GraphSpec, Manifest, TensorSpec
from service.settings import ServiceSettings

# numpy's element type names where ONNX Runtime's differ ("tensor(float)" is float32)
_ORT_ELEMENT_NAMES = {"float32": "float", "float64": "double"}


def session_options(settings: ServiceSettings) -> ort.SessionOptions:
    """Explicit ONNX Runtime threading: no spinning threads competing with the server."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.ort_intra_op_threads
    options.inter_op_num_threads = settings.ort_inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = settings.ort_cpu_arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_sessions(
    manifest: Manifest, files: Mapping[str, bytes], source: str, settings: ServiceSettings
) -> dict[str, ort.InferenceSession]:
    """Graph name -> session of every graph of the contract, from the bundle's verified `files`;
    BundleError, naming the graph and the tensor, for one that ONNX Runtime cannot load, that
    disagrees with its manifest, or whose tensors are not the contract's."""
    options = session_options(settings)
    sessions = {}
    for graph in GRAPHS:
        spec = manifest.graphs[graph]
        try:
            session = ort.InferenceSession(
                files[spec.file], options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own error types
            raise BundleError(f"{source}: ONNX Runtime cannot load a graph: {exc}") from exc
        problems = [
            *_disagreements("input", spec.inputs, session.get_inputs()),
            *_disagreements("output", spec.outputs, session.get_outputs()),
            *_breaches_of_contract(graph, spec),
        ]
        if problems:
            raise BundleError(f"{source}: graph {graph!r} ({spec.file}): " + "; ".join(problems))
        sessions[graph] = session
    return sessions


def _disagreements(
    kind: str, specs: Sequence[TensorSpec], nodes: Sequence[ort.NodeArg]
) -> list[str]:
    """How the manifest's tensors of one kind (inputs or outputs) differ from the session's:
    names, element types, ranks, and the fixed sizes the manifest records (a dynamic axis of the
    manifest may be fixed or dynamic in the graph)."""
    in_graph = {node.name: node for node in nodes}
    problems = [
        f"the ONNX graph has {kind} {name!r}, the manifest does not"
        for name in sorted(in_graph.keys() - {spec.name for spec in specs})
    ]
    for spec in specs:
        node = in_graph.get(spec.name)
        if node is None:
            problems.append(
                f"the manifest names {kind} {spec.name!r}, the ONNX graph has none "
                f"(its {kind}s: {sorted(in_graph)})"
            )
            continue
        expected = f"tensor({_ORT_ELEMENT_NAMES.get(spec.dtype, spec.dtype)})"
        if node.type != expected:
            problems.append(
                f"{kind} {spec.name!r} is {spec.dtype} in the manifest, {node.type} in the graph"
            )
        fixed_apart = any(
            isinstance(size, int) and isinstance(actual, int) and size != actual
            for size, actual in zip(spec.shape, node.shape or [], strict=False)
        )
        rank_apart = node.shape is not None and len(node.shape) != len(spec.shape)
        if rank_apart or fixed_apart:
            problems.append(
                f"{kind} {spec.name!r} has shape {spec.shape} in the manifest, "
                f"{node.shape} in the graph"
            )
    return problems


def _breaches_of_contract(graph: str, spec: GraphSpec) -> list[str]:
    """How the manifest's tensors differ from the ones the service feeds and reads."""
    contract = GRAPHS[graph]
    problems = []
    for kind, names, specs in (
        ("input", contract.inputs, spec.inputs),
        ("output", contract.outputs, spec.outputs),
    ):
        recorded = {tensor.name: tensor.dtype for tensor in specs}
        if sorted(recorded) != sorted(names):
            problems.append(f"{kind}s {sorted(recorded)}, the service uses {sorted(names)}")
        problems += [
            f"{kind} {name!r} is {recorded[name]}, the service uses {DTYPES[name]}"
            for name in names
            if name in recorded and recorded[name] != DTYPES[name]
        ]
    return problems
