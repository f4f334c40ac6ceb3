"""Inference precision of the bi-encoder and the cross-encoder: fp32, bf16 or int8.

- ``fp32``: sentence-transformers as it loads.
- ``bf16``: the weights cast to bfloat16. On a CPU with native bf16 arithmetic (avx512_bf16 or
  AMX) this encodes about 1.8x faster than fp32 with a cosine above 0.9999 to it; casting the
  weights beat ``torch.autocast`` (1.4x) here because autocast re-casts every weight on every
  call. Without native bf16 the CPU emulates it slowly, so ``auto`` never tries it there.
- ``int8``: the transformer exported to ONNX (``torch.onnx``) and quantized with onnxruntime's
  dynamic int8, per output channel (per-tensor int8 moved MiniLM's embeddings to a cosine of
  0.92 with fp32; per-channel keeps it above 0.99). onnxruntime runs it with VNNI kernels.
  torch's own dynamic int8 is not offered: 1.13x and a cosine of 0.92 on this CPU.

Every path keeps sentence-transformers' own tokenization, pooling, normalisation and
``predict``: only the transformer inside ``model[0]`` is swapped (int8) or cast (bf16), so
whatever a path changes is the arithmetic, never the pre- or post-processing.

Which path serves is decided by a parity check on the dev split (:mod:`.precision_choice`).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "int8")
REQUESTS = ("auto", *PRECISIONS)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def unavailable_reason(precision: str, device: str = "cpu") -> str | None:
    """Why ``precision`` cannot run well here (None when it can)."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (one of {', '.join(REQUESTS)})"
    if precision == "bf16" and device == "cpu":
        flags = cpu_flags()
        if not flags & {"avx512_bf16", "amx_bf16"}:
            return "this CPU has no native bf16 (avx512_bf16 or amx_bf16): torch would emulate it slowly"
    if precision == "int8":
        if device != "cpu":
            return "the int8 path runs on the CPU (onnxruntime) only"
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as error:
            return f"onnxruntime/onnx not installed ({error.name})"
    return None


class OnnxTransformer:
    """Stands in for a Hugging Face transformer inside a sentence-transformers module: same
    call signature, output read by key (``last_hidden_state`` or ``logits``), computed by an
    onnxruntime session."""

    def __new__(cls, *args, **kwargs):  # a torch Module, built lazily so importing this module stays light
        import torch

        class _Module(torch.nn.Module):
            def __init__(self, session, output_name: str, config, input_names: list[str]):
                super().__init__()
                self.session, self.output_name, self.config = session, output_name, config
                self.input_names = input_names
                # sentence-transformers reads the device and dtype from the parameters.
                self.register_parameter("_anchor", torch.nn.Parameter(torch.zeros(1), requires_grad=False))

            def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
                from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput

                feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
                if feeds["token_type_ids"] is None and "token_type_ids" in self.input_names:
                    feeds["token_type_ids"] = torch.zeros_like(input_ids)
                arrays = {k: v.detach().cpu().numpy().astype("int64") for k, v in feeds.items() if k in self.input_names}
                out = torch.from_numpy(self.session.run(None, arrays)[0])
                if self.output_name == "logits":
                    return SequenceClassifierOutput(logits=out)
                return BaseModelOutput(last_hidden_state=out)

        return _Module(*args, **kwargs)


def _export_int8(hf_model, output_name: str, folder: Path, threads: int | None) -> object:
    """Export the transformer to ONNX, quantize it dynamically to int8 (per channel) and open
    an onnxruntime session on it."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class Exportable(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             return_dict=True)
            return out[output_name]

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    fp32_path, int8_path = folder / "model.onnx", folder / "model_int8.onnx"
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["output"] = {0: "batch"} if output_name == "logits" else {0: "batch", 1: "sequence"}
    was_training = hf_model.training
    hf_model.eval()
    root = logging.getLogger()
    quiet = logging.Filter("domret.no-root-records")  # drops records logged on the root logger itself
    # The tracer warns about Python branches it freezes (BERT's mask and causal checks, constant
    # for an encoder) and the quantizer suggests a pre-processing pass: neither is actionable,
    # and the parity check measures the result.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one needs onnxscript, which this project does not pull in.
        torch.onnx.export(Exportable(hf_model), example, str(fp32_path), input_names=names, output_names=["output"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
        root.addFilter(quiet)
        try:
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.removeFilter(quiet)
    hf_model.train(was_training)
    options = ort.SessionOptions()
    # As many threads as torch uses, and no spin-waiting: on a shared 2-core machine spinning
    # threads measured slower than fp32 torch, since they burn the cores others need.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    return session, [i.name for i in session.get_inputs()]


def apply_precision(model, precision: str, kind: str = "encoder", threads: int | None = None):
    """Return ``model`` (a SentenceTransformer or CrossEncoder, changed in place) running at
    ``precision``. ``kind`` is ``encoder`` (the transformer outputs token embeddings) or
    ``cross_encoder`` (it outputs logits)."""
    if precision == "fp32":
        return model
    reason = unavailable_reason(precision, str(getattr(model, "device", "cpu")).split(":")[0])
    if reason:
        raise ValueError(f"precision {precision}: {reason}")
    if precision == "bf16":
        import torch

        return model.to(torch.bfloat16)
    output_name = "logits" if kind == "cross_encoder" else "last_hidden_state"
    hf_model = model[0].model
    with tempfile.TemporaryDirectory(prefix="domret-onnx-") as folder:
        session, inputs = _export_int8(hf_model, output_name, Path(folder), threads)
    model[0].model = OnnxTransformer(session, output_name, hf_model.config, inputs)
    model.eval()
    return model


def resolve_train_precision(requested: str, device: str = "cpu") -> str:
    """Mixed precision of training: ``bf16`` where the device computes it natively, else fp32
    (``auto``); asking for ``bf16`` on a device without it is an error, not a slow emulation."""
    if requested == "fp32":
        return "fp32"
    if requested not in ("auto", "bf16"):
        raise ValueError(f"unknown training precision {requested!r} (auto, fp32 or bf16)")
    if device.startswith("cuda"):
        import torch

        native = torch.cuda.is_bf16_supported()
    else:
        native = unavailable_reason("bf16", "cpu") is None
    if requested == "bf16" and not native:
        raise ValueError(f"train_precision bf16 asked for, but {device} has no native bf16 (use fp32 or auto)")
    return "bf16" if native else "fp32"
