"""LayerDrop in a KerasHub decoder: the training step against the plain backbone, and generation when pruned.

`sdt.apply_stochastic_depth` gives every transformer layer of a KerasHub
`LlamaBackbone` one LayerDrop gate (both residual branches dropped
together, as fairseq drops a layer). This table times, in one process per
backend, in interleaved rounds:

- a training step of a `LlamaCausalLM` (AdamW, next-token cross-entropy,
  random tokens) for each contender:

  - `plain`: the backbone as KerasHub builds it (the baseline);
  - `merge`: every layer gated with `skip_compute=False`: computed for
    every example, then gated (what a multiply-gate implementation costs);
  - `batch`: `mode="batch"`, one gate per layer per step; a dropped layer
    is not computed, forward or backward (fairseq's LayerDrop);
  - `sample`: `mode="sample"`, one gate per sequence; each layer runs on
    the kept sequences only where shapes may change between steps
    (TensorFlow's graph mode, PyTorch), else it is computed and gated;
  - `subset`: `mode="subset"`, a fixed count of `round(p * batch)` kept
    sequences per layer (DINOv2's rule), which compiles under XLA and JAX;
  - `no_layers`: the same model with no transformer layer (embedding,
    final norm, output head, loss and their optimizer update): what LayerDrop
    cannot shrink, timed to state the limit;

  all with survival probability `1 - drop rate` on every layer, inverted
  (inference is the plain backbone's);
- cached generation (`CausalLM.generate`, greedy, every new token through
  the layers' key/value cache) of the plain model (`plain`) against the
  same model pruned to half its layers (`half`:
  `sdt.prune_blocks(keep=0.5, rule="every_k")`, a backbone of the same
  class with half the `transformer_layers`), and of a one-layer model
  (`one_layer`; KerasHub's cache needs a layer) to state the limit.

The limit of a contender is its ratio were only its expected share of the
layers computed and nothing else changed: `(F + share * (T_plain - F)) /
T_plain`, with `F` what does not shrink: `T_no_layers` for a training step
(the AdamW update of the layers' weights, which every contender pays
whatever it drops, is counted in `T_plain - F`, so the limit is a little
below what can be reached), and `(L * T_one_layer - T_plain) / (L - 1)`
for generation (a straight line through the one-layer and the `L`-layer
model). Run from the repository root:

    python -m benchmarks.layerdrop_step_time            # the full table, TensorFlow, JAX and PyTorch
    python -m benchmarks.layerdrop_step_time --quick    # a tiny decoder, every backend: a smoke run
    python -m benchmarks.layerdrop_step_time --backend tensorflow --compilations graph   # one of them

Keras fixes its backend at import, so each backend runs in a fresh
interpreter of its own and its rows come back into one table (as in
`benchmarks/step_time.py`). Compilations: `graph` is `jit_compile=False`
(TensorFlow's graph mode; PyTorch's eager mode), `xla` is `jit_compile=True`
(TensorFlow's XLA; the jitted JAX step). Defaults: both on TensorFlow,
`xla` on JAX, `graph` on PyTorch. Needs keras-hub (`pip install -e ".[hub]"`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import stochastic_depth_tf as sdt  # noqa: E402
from benchmarks import harness  # noqa: E402

CONTENDERS = ("plain", "merge", "batch", "sample", "subset", "no_layers")
GENERATION_CONTENDERS = ("plain", "half", "one_layer")
BACKENDS = tuple(harness.COMPILATION_NAMES)
DEFAULT_COMPILATIONS = {"tensorflow": ["graph", "xla"], "jax": ["xla"], "torch": ["graph"]}
VOCABULARY = 256


def backbone(layers: int, hidden: int) -> keras.Model:
    """The plain decoder: a Llama-shaped KerasHub backbone (RMSNorm, rotary positions, SwiGLU).

    Untied output embedding: KerasHub 0.32's `LlamaBackbone.get_config` leaves `tie_word_embeddings` out,
    so a tied backbone does not rebuild as itself (nor through surgery).
    """
    import keras_hub

    keras.utils.set_random_seed(0)  # every contender starts from the same weights
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=layers,
        num_query_heads=4,
        num_key_value_heads=4,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
    )


def with_layer_drop(plain: keras.Model, contender: str, drop_rate: float) -> keras.Model:
    """The backbone of a LayerDrop contender: one gate per layer, survival `1 - drop_rate` on every layer."""
    return sdt.apply_stochastic_depth(
        plain,
        final_survival_probability=1.0 - drop_rate,
        distribution="uniform",
        mode="batch" if contender in ("merge", "batch") else contender,
        inverted=True,
        seed=0,
        skip_compute=contender != "merge",
    )


def build(contender: str, layers: int, hidden: int, drop_rate: float) -> keras.Model:
    """The causal LM of one training contender (uncompiled)."""
    import keras_hub

    if contender == "no_layers":
        model_backbone = backbone(0, hidden)
    elif contender == "plain":
        model_backbone = backbone(layers, hidden)
    else:
        model_backbone = with_layer_drop(backbone(layers, hidden), contender, drop_rate)
    return keras_hub.models.LlamaCausalLM(backbone=model_backbone, preprocessor=None)


def repair_llama_layer_config() -> None:
    """Works around KerasHub 0.32: `LlamaTransformerDecoder.get_config` reads `rope_scaling_factor`, never set.

    The layer keeps the value as `rope_position_scaling_factor`, so its
    `get_config` raises and `prune_blocks` (which compares the configs of
    the layers it keeps with the originals') fails on Llama backbones; a
    read-only alias on the class gives `get_config` what it means to read.
    """
    from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder

    if not hasattr(LlamaTransformerDecoder, "rope_scaling_factor"):
        LlamaTransformerDecoder.rope_scaling_factor = property(lambda layer: layer.rope_position_scaling_factor)


def build_for_generation(contender: str, layers: int, hidden: int) -> keras.Model:
    """The causal LM of one generation contender: plain, pruned to half its layers, or of one layer."""
    import keras_hub

    if contender == "half":
        repair_llama_layer_config()
        gated = sdt.apply_stochastic_depth(backbone(layers, hidden), final_survival_probability=1.0)
        model_backbone = sdt.prune_blocks(gated, keep=0.5, rule="every_k")
    else:
        model_backbone = backbone(1 if contender == "one_layer" else layers, hidden)
    return keras_hub.models.LlamaCausalLM(backbone=model_backbone, preprocessor=None)


def expected_share(contender: str, drop_rate: float, batch: int) -> float:
    """The expected share of the layers' work a training step of `contender` computes."""
    if contender == "no_layers":
        return 0.0
    if contender in ("batch", "sample"):
        return 1.0 - drop_rate
    if contender == "subset":
        return max(round((1.0 - drop_rate) * batch), 1) / batch  # ops.MODES: k = round(p * B), at least 1
    return 1.0


def token_batch(batch: int, sequence: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """A seeded batch of random tokens: the model's inputs (no padding) and next-token targets."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCABULARY, size=(batch, sequence + 1)).astype("int32")
    inputs = tokens[:, :-1]
    return {"token_ids": inputs, "padding_mask": np.ones_like(inputs)}, tokens[:, 1:]


def adamw() -> keras.optimizers.Optimizer:
    return keras.optimizers.AdamW(1e-3, weight_decay=0.01)


def time_training(args: argparse.Namespace, jit_compile: bool, failures: List[str]) -> List[dict]:
    """Interleaved training-step timings of every contender at one compilation.

    A contender whose warm-up step raises (it does not compile here) gets
    no row; one line naming it and the error goes to `failures`.
    """
    x, y = token_batch(args.batch, args.sequence)
    compilation = harness.compilation_name(jit_compile)
    steppers: Dict[str, Callable[[], object]] = {}
    for name in CONTENDERS:
        try:
            steppers.update(
                harness.train_steppers(
                    {name: lambda name=name: build(name, args.layers, args.hidden, args.drop_rate)},
                    x,
                    y,
                    jit_compile,
                    args.warmup,
                    optimizer=adamw,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                )
            )
        except Exception as error:  # noqa: BLE001 (any failure to train is the finding, reported in the table)
            # TensorFlow's messages name graph nodes at length: keep the sentence, not the node names.
            summary = re.sub(r"`[^`]{30,}`", "`...`", " ".join(str(error).split()))[:240]
            failures.append(
                f"`{name}` fails to train under {harness.BACKEND} {compilation}: {type(error).__name__}: {summary}"
            )
            print(f"  {name}: FAILED ({type(error).__name__})", flush=True)
    times = harness.interleaved_times(steppers, args.rounds, args.steps)
    rows = harness.timed_rows(times, "plain", backend=harness.BACKEND, compilation=compilation, what="train step")
    for row in rows:
        row["share"] = expected_share(row["contender"], args.drop_rate, args.batch)
        row["tokens_per_second"] = args.batch * args.sequence / row["median"]
    by_name = {row["contender"]: row["median"] for row in rows}
    return with_limits(rows, by_name["no_layers"])


def generation_prompt(batch: int, prompt: int, total: int) -> Dict[str, np.ndarray]:
    """Inputs of a cached generation without a preprocessor: `prompt` random tokens, then room up to `total`."""
    rng = np.random.default_rng(1)
    token_ids = np.zeros((batch, total), "int32")
    token_ids[:, :prompt] = rng.integers(0, VOCABULARY, size=(batch, prompt))
    padding_mask = np.zeros((batch, total), "int32")
    padding_mask[:, :prompt] = 1
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def time_generation(args: argparse.Namespace, jit_compile: bool) -> List[dict]:
    """Interleaved cached-generation latency: the plain model, pruned to half its layers, of one layer."""
    inputs = generation_prompt(args.generation_batch, args.prompt, args.sequence)
    steppers: Dict[str, Callable[[], object]] = {}
    kept: Dict[str, int] = {}  # transformer layers of each model
    for name in GENERATION_CONTENDERS:
        model = build_for_generation(name, args.layers, args.hidden)
        kept[name] = len(model.backbone.transformer_layers)
        model.compile(sampler="greedy", jit_compile=jit_compile)
        started = time.perf_counter()
        for _ in range(args.warmup):
            model.generate(inputs, stop_token_ids=None)
        print(f"  {name}: built and warmed up for generation in {time.perf_counter() - started:.1f} s", flush=True)
        steppers[name] = lambda model=model: model.generate(inputs, stop_token_ids=None)
    times = harness.interleaved_times(steppers, args.rounds, max(args.steps // 2, 1))
    rows = harness.timed_rows(
        times, "plain", backend=harness.BACKEND, compilation=harness.compilation_name(jit_compile), what="generate"
    )
    new_tokens = args.generation_batch * (args.sequence - args.prompt)
    for row in rows:
        row["share"] = kept[row["contender"]] / args.layers
        row["tokens_per_second"] = new_tokens / row["median"]
    by_name = {row["contender"]: row["median"] for row in rows}
    fixed = (args.layers * by_name["one_layer"] - by_name["plain"]) / (args.layers - 1)
    return with_limits(rows, fixed)


def with_limits(rows: List[dict], fixed: float) -> List[dict]:
    """Sets each row's limit, `(fixed + share * (T_plain - fixed)) / T_plain` of the medians."""
    plain = next(row["median"] for row in rows if row["contender"] == "plain")
    for row in rows:
        row["limit"] = (fixed + row["share"] * (plain - fixed)) / plain
    return rows


COLUMNS = [
    ("backend", "backend", ""),
    ("compilation", "compilation", ""),
    ("measure", "what", ""),
    ("contender", "contender", ""),
    ("share of layers", "share", ".2f"),
    ("limit", "limit", ".2f"),
    *harness.timing_columns(("median", "ratio_min", "ratio_median", "ratio_paired")),
    ("tokens/s", "tokens_per_second", ",.0f"),
]


def markdown(
    rows: List[dict],
    command: str,
    settings: str,
    environments: Optional[List[dict]] = None,
    failures: Sequence[str] = (),
) -> str:
    """The table; `failures` are the settings lines of contenders that did not train (no row)."""
    return harness.markdown(
        "LayerDrop in a KerasHub decoder: training step and pruned generation against the plain backbone",
        command,
        [
            settings,
            harness.ratio_note("plain", "backend, compilation and measure", COLUMNS),
            "share of layers: the expected share of the transformer layers' work a step computes (train step: "
            "batch and sample 1 - drop rate, subset round(p * batch) / batch; generate: the layers kept); "
            "limit: (F + share * (T_plain - F)) / T_plain of the medians, the ratio were only that share of the "
            "layers computed; F is what does not shrink (embedding, head, loss and their update): T_no_layers "
            "for a train step, the one-layer and the plain model's times extrapolated to no layer for generate",
            "tokens/s: train step, batch * sequence / median; generate, new tokens / median",
            *failures,
        ],
        COLUMNS,
        rows,
        environments,
        plain="plain",
        group=("what",),
        configuration=("backend", "compilation"),
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layerdrop_step_time", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 layers of width 64, sequence 32, batch 8, 3 rounds: a smoke run"
    )
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--compilations", nargs="+", choices=["graph", "xla"], default=None)
    parser.add_argument("--drop-rate", type=float, default=0.2)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--sequence", type=int, default=128, help="training sequence; generation's total length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens of a generation")
    parser.add_argument("--generation-batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per contender per round (generate: half)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-generation", action="store_true", help="skip the generation rows")
    parser.add_argument("--output", default=None, help="write the Markdown table here too")
    parser.add_argument("--rows-json", default=None, help=argparse.SUPPRESS)  # rows for the parent process
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.sequence, args.batch, args.prompt = 2, 64, 32, 8, 8
        args.rounds, args.steps, args.warmup = 3, 2, 1

    command = harness.command_line(
        "python -m benchmarks.layerdrop_step_time", harness.without_options(argv, ["--rows-json"])
    )
    rows: List[dict] = []
    environments: List[dict] = []
    failures: List[str] = []
    if args.rows_json is None:
        passed_on = harness.without_options(argv, ["--backend", "--output", "--rows-json"])
        for backend in dict.fromkeys(args.backend):
            print(f"===== KERAS_BACKEND={backend} =====", flush=True)
            found = harness.rows_from_backend("benchmarks.layerdrop_step_time", backend, passed_on)
            backend_rows, backend_environment, backend_failures = found["rows"], found["environment"], found["failures"]
            rows += backend_rows
            environments.append(backend_environment)
            failures += backend_failures
    else:
        for compilation in args.compilations or DEFAULT_COMPILATIONS[harness.BACKEND]:
            name = harness.COMPILATION_NAMES[harness.BACKEND][compilation]
            print(f"training step, {name}:", flush=True)
            rows += time_training(args, compilation == "xla", failures)
            if not args.no_generation:
                print(f"generation, {name}:", flush=True)
                rows += time_generation(args, compilation == "xla")
        with open(args.rows_json, "w", encoding="utf-8") as handle:
            json.dump({"rows": rows, "environment": harness.environment(), "failures": failures}, handle)
        return 0
    settings = (
        f"KerasHub LlamaBackbone under LlamaCausalLM: {args.layers} layers, hidden {args.hidden}, 4 heads, "
        f"SwiGLU {2 * args.hidden}, vocabulary {VOCABULARY}; training: batch {args.batch} of "
        f"{args.sequence} random tokens, AdamW, drop rate {args.drop_rate} on every layer (inverted); "
        f"generation: batch {args.generation_batch}, {args.prompt} prompt tokens to {args.sequence}, greedy, "
        f"cached; {args.rounds} rounds of {args.steps} steps ({max(args.steps // 2, 1)} generations), "
        f"{args.warmup} warm-up calls"
    )
    harness.publish(markdown(rows, command, settings, environments, failures), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
