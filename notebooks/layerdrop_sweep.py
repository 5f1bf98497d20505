"""LayerDrop on text: a small byte-level causal LM, plain against LayerDrop, then pruned to fewer layers.

Trains a small decoder (a KerasHub `LlamaBackbone` under `LlamaCausalLM`,
bytes as tokens through `keras_hub.tokenizers.ByteTokenizer`) on text every
Python installation carries: the English help texts of Python's own
documentation, `pydoc_data/topics.py` (what `help("assert")` prints; the
topics joined in the order of their names). Nothing is downloaded. The
bytes are split in three, in order: training (the first 88%), a selection
split (the next 2%, which `prune_blocks(rule="greedy")` chooses on) and
validation (the last 10%, which every reported figure is measured on).

Arms (each at every seed; same seed, same initial weights and batches):

- `plain`: the backbone as KerasHub builds it;
- `layerdrop`: `sdt.apply_stochastic_depth(backbone, final_survival_probability=0.8,
  distribution="uniform", mode="batch")`: every layer dropped with
  probability 0.2, one gate per batch (LayerDrop, Fan et al. 2019, as
  fairseq draws it);
- `pld`: Progressive Layer Dropping (Zhang & He, 2020; DeepSpeed's
  `ProgressiveLayerDrop`): survival `1 - (l / L) * (1 - theta(t))` for layer
  `l` of `L`, `theta(t) = (1 - theta_bar) * exp(-gamma * t) + theta_bar`,
  `theta_bar = 0.5`, set each step by `sdt.callbacks.SurvivalProbabilityScheduler`.

After training, each model is evaluated whole and pruned with
`sdt.prune_blocks` to 3/4 and 1/2 of its layers by each rule
(`every_k`, `lowest_survival`, `greedy`); a plain model is given survival
probability 1 everywhere first (which computes what it computed). Each run
writes one JSON file under `results/layerdrop_text/` when its training ends
(its backbone's weights go to `WEIGHTS_DIR`, not committed) and completes
it when its pruning ends, so a sweep cut short keeps its finished runs, and
what a file already holds is not done again (the sweep resumes; `--phases
train` or `--phases prune` does one of the two). Split the grid between
processes with `--worker i --workers n`:

    python notebooks/layerdrop_sweep.py --worker 0 --workers 2 &
    python notebooks/layerdrop_sweep.py --worker 1 --workers 2 &

`layerdrop_text.ipynb` reads the files; it trains nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "layerdrop_text")
# The trained backbones' weights, between training and pruning (not committed: 7 MB a run).
WEIGHTS_DIR = os.path.join(tempfile.gettempdir(), "layerdrop_text_weights")
PHASES = ("train", "prune")
ARMS = ("plain", "layerdrop", "pld")
RULES = ("every_k", "lowest_survival", "greedy")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every run of one results directory shares (written into each run's file)."""

    layers: int = 8
    hidden: int = 128
    heads: int = 4
    intermediate: int = 256
    sequence: int = 128
    batch: int = 16
    steps: int = 2000  # validation loss flattens by then (1,000 steps still fell at the end)
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    evaluations: int = 8  # validation points on the training curve, the last at the end
    survival_probability: float = 0.8  # LayerDrop's: drop rate 0.2
    pld_theta_bar: float = 0.5
    pld_gamma: float = 0.01
    keep_fractions: Tuple[float, ...] = (0.75, 0.5)
    selection_fraction: float = 0.02
    validation_fraction: float = 0.10

    def as_json(self) -> dict:
        return {**dataclasses.asdict(self), "keep_fractions": list(self.keep_fractions)}


def load_text() -> Tuple[bytes, str, int]:
    """The corpus: every topic of `pydoc_data.topics`, by name, joined by blank lines; its source and size."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    text = "\n\n".join(topics[name] for name in sorted(topics)).encode("utf-8")
    return text, pydoc_data.topics.__file__, os.path.getsize(pydoc_data.topics.__file__)


def token_ids(text: bytes) -> np.ndarray:
    """The text's bytes as token ids 0-255, through KerasHub's `ByteTokenizer` (case kept)."""
    import keras_hub

    tokenizer = keras_hub.tokenizers.ByteTokenizer(lowercase=False)
    ids = np.asarray(tokenizer(text.decode("utf-8")), dtype="int32")
    assert np.array_equal(ids, np.frombuffer(text, dtype=np.uint8)), "ByteTokenizer is not the identity on bytes"
    return ids


def split(ids: np.ndarray, settings: Settings) -> Dict[str, np.ndarray]:
    """Training, selection (greedy pruning chooses on it) and validation, in the text's order."""
    validation_start = int(len(ids) * (1 - settings.validation_fraction))
    selection_start = int(len(ids) * (1 - settings.validation_fraction - settings.selection_fraction))
    return {
        "train": ids[:selection_start],
        "selection": ids[selection_start:validation_start],
        "validation": ids[validation_start:],
    }


def windows(ids: np.ndarray, sequence: int) -> np.ndarray:
    """Non-overlapping windows of `sequence + 1` bytes (inputs and their next-byte targets)."""
    count = (len(ids) - 1) // sequence
    return np.stack([ids[i * sequence : i * sequence + sequence + 1] for i in range(count)])


def random_windows(ids: np.ndarray, count: int, sequence: int, rng: np.random.Generator) -> np.ndarray:
    """`count` windows of `sequence + 1` bytes at random offsets of the training split."""
    starts = rng.integers(0, len(ids) - sequence - 1, size=count)
    return np.stack([ids[start : start + sequence + 1] for start in starts])


def inputs_and_targets(batch: np.ndarray) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """A CausalLM's inputs (no padding) and targets from windows of `sequence + 1` bytes."""
    tokens = batch[:, :-1]
    return {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}, batch[:, 1:]


def pld_survival(settings: Settings):
    """PLD's schedule as `SurvivalProbabilityScheduler(schedule=...)` takes it: `f(step, target)`.

    Each layer's target is its survival probability at `theta = theta_bar`
    (linear decay to `theta_bar`): `1 - (l / L) * (1 - theta_bar)`, so at
    step `t` it is `1 - (1 - target) * (1 - theta(t)) / (1 - theta_bar)`.
    """
    theta_bar, gamma = settings.pld_theta_bar, settings.pld_gamma

    def survival(step: int, target: float) -> float:
        theta = (1 - theta_bar) * math.exp(-gamma * step) + theta_bar
        return 1 - (1 - target) * (1 - theta) / (1 - theta_bar)

    return survival


def backbone(settings: Settings, seed: int):
    """The plain decoder: Llama-shaped (RMSNorm, rotary positions, SwiGLU), 256 byte tokens.

    The output embedding is not tied to the input one: KerasHub 0.32's `LlamaBackbone.get_config` leaves
    `tie_word_embeddings` out, so a tied backbone does not rebuild as itself (nor through surgery).
    """
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=256,
        num_layers=settings.layers,
        num_query_heads=settings.heads,
        num_key_value_heads=settings.heads,
        hidden_dim=settings.hidden,
        intermediate_dim=settings.intermediate,
    )


def with_gates(trained, arm: str, settings: Settings, seed: int):
    """The backbone of `arm` with its LayerDrop gates (a plain one gets survival probability 1: no change)."""
    import stochastic_depth_tf as sdt

    if arm == "plain":
        return sdt.apply_stochastic_depth(trained, final_survival_probability=1.0, distribution="uniform", seed=seed)
    if arm == "layerdrop":
        return sdt.apply_stochastic_depth(
            trained,
            final_survival_probability=settings.survival_probability,
            distribution="uniform",
            mode="batch",
            seed=seed,
        )
    return sdt.apply_stochastic_depth(
        trained, final_survival_probability=settings.pld_theta_bar, distribution="linear", mode="batch", seed=seed
    )


def causal_lm(backbone_model, settings: Settings, steps: Optional[int] = None):
    """`LlamaCausalLM` on the backbone, compiled: AdamW, warm-up then cosine decay to 0, clipped gradients."""
    import keras
    import keras_hub

    model = keras_hub.models.LlamaCausalLM(backbone=backbone_model, preprocessor=None)
    steps = settings.steps if steps is None else steps
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(steps - settings.warmup_steps, 1),
        warmup_target=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
        jit_compile=False,
    )
    return model


def mean_loss(model, data: np.ndarray, batch: int = 64) -> float:
    """Mean next-byte cross-entropy (nats) of a CausalLM over windows, every byte weighted alike, at inference."""
    total, count = 0.0, 0
    for start in range(0, len(data), batch):
        x, y = inputs_and_targets(data[start : start + batch])
        logits = np.asarray(model.predict_on_batch(x), dtype="float64")
        logits -= logits.max(axis=-1, keepdims=True)
        log_probabilities = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        total -= np.take_along_axis(log_probabilities, y[..., None], axis=-1).sum()
        count += y.size
    return total / count


def trained_backbone(arm: str, seed: int, settings: Settings, weights: str):
    """The backbone of a finished training run, rebuilt as `train` built it and given the saved weights."""
    plain = backbone(settings, seed)
    model_backbone = plain if arm == "plain" else with_gates(plain, arm, settings, seed)
    model_backbone.load_weights(weights)
    return model_backbone


def train(arm: str, seed: int, settings: Settings, data: Dict[str, np.ndarray], weights: str, log=print) -> dict:
    """Trains one model, saves its backbone's weights to `weights`; the run's record so far (no pruning yet)."""
    import keras

    import stochastic_depth_tf as sdt

    started, started_at = time.perf_counter(), time.time()
    plain = backbone(settings, seed)
    model_backbone = plain if arm == "plain" else with_gates(plain, arm, settings, seed)
    model = causal_lm(model_backbone, settings)
    callbacks = [sdt.recipes.Timer(per="step")]
    if arm == "pld":
        callbacks.append(sdt.callbacks.SurvivalProbabilityScheduler(unit="step", schedule=pld_survival(settings)))
    rng = np.random.default_rng(seed)
    validation = windows(data["validation"], settings.sequence)
    chunk = math.ceil(settings.steps / settings.evaluations)
    curve: List[dict] = []
    done = 0
    training_seconds = evaluation_seconds = 0.0
    while done < settings.steps:
        steps = min(chunk, settings.steps - done)
        x, y = inputs_and_targets(random_windows(data["train"], steps * settings.batch, settings.sequence, rng))
        fit_started = time.perf_counter()
        history = model.fit(
            x, y, batch_size=settings.batch, epochs=1, shuffle=False, callbacks=callbacks, verbose=0
        ).history
        training_seconds += time.perf_counter() - fit_started
        done += steps
        evaluation_started = time.perf_counter()
        validation_loss = mean_loss(model, validation)
        evaluation_seconds += time.perf_counter() - evaluation_started
        curve.append({"step": done, "training_loss": float(history["loss"][-1]), "validation_loss": validation_loss})
        log(
            f"  {arm} seed {seed}: step {done}, training loss {curve[-1]['training_loss']:.3f}, "
            f"validation {validation_loss:.3f} ({time.perf_counter() - started:.0f} s)"
        )
    os.makedirs(os.path.dirname(weights) or ".", exist_ok=True)
    model_backbone.save_weights(weights)
    survival = [
        float(keras.ops.convert_to_numpy(layer.survival_probability_variable))
        for layer in sdt.layers.stochastic_depth_layers(model_backbone)
    ]
    step_seconds = callbacks[0].seconds  # every step of every `fit` of the run
    return {
        "arm": arm,
        "seed": seed,
        "settings": settings.as_json(),
        "validation_loss": curve[-1]["validation_loss"],
        "curve": curve,
        "survival_probabilities_at_the_end": survival,
        "seconds": {
            "training": training_seconds,
            "evaluation_during_training": evaluation_seconds,
            "median_step": float(np.median(step_seconds[1:])) if len(step_seconds) > 1 else float("nan"),
            "run": time.perf_counter() - started,
        },
        "started_at": started_at,
        "finished_at": time.time(),
        "machine": f"{platform.machine()}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f} at the end",
    }


def repair_llama_layer_config() -> None:
    """Works around KerasHub 0.32: `LlamaTransformerDecoder.get_config` reads `rope_scaling_factor`, never set.

    The layer keeps that value as `rope_position_scaling_factor`, so its
    `get_config` raises `AttributeError`, and `prune_blocks`, which compares
    the configs of the layers it keeps with the originals', fails on every
    Llama backbone. A read-only alias on the class gives `get_config` the
    value it means to read; nothing else changes.
    """
    from keras_hub.src.models.llama.llama_decoder import LlamaTransformerDecoder

    if not hasattr(LlamaTransformerDecoder, "rope_scaling_factor"):
        LlamaTransformerDecoder.rope_scaling_factor = property(lambda layer: layer.rope_position_scaling_factor)


def prune(record: dict, settings: Settings, data: Dict[str, np.ndarray], weights: str) -> dict:
    """The run's record with its pruned models' validation losses: each keep fraction, each rule.

    A plain model is given survival probability 1 everywhere first (it
    computes what it computed), so `prune_blocks` finds its layers. The
    causal LM is pruned (`prune_blocks` returns one with a shallower
    backbone); `greedy` chooses by its compiled loss on the selection split.
    """
    import stochastic_depth_tf as sdt

    repair_llama_layer_config()
    started = time.perf_counter()
    arm, seed = record["arm"], record["seed"]
    model_backbone = trained_backbone(arm, seed, settings, weights)
    gated = with_gates(model_backbone, "plain", settings, seed) if arm == "plain" else model_backbone
    model = causal_lm(gated, settings)  # greedy compares the compiled loss of the task model
    validation = windows(data["validation"], settings.sequence)
    selection = inputs_and_targets(windows(data["selection"], settings.sequence))
    pruned: Dict[str, Dict[str, dict]] = {rule: {} for rule in RULES}
    # Greedy removals are nested: one order serves every depth (its evaluations run once).
    greedy_order = (
        sdt.pruning.removal_order(model, rule="greedy", validation_data=selection) if "greedy" in RULES else []
    )
    for fraction in settings.keep_fractions:
        for rule in RULES:
            if rule == "greedy":
                # as many as `keep=fraction` removes: prune_blocks' own count, not a copy of its rounding
                removed = settings.layers - sdt.pruning._validate_keep(fraction, settings.layers)
                smaller = sdt.prune_blocks(model, blocks=greedy_order[:removed])
            else:
                smaller = sdt.prune_blocks(model, keep=fraction, rule=rule)
            pruned[rule][str(fraction)] = {
                "layers": len(smaller.backbone.transformer_layers),
                "validation_loss": mean_loss(smaller, validation),
            }
    seconds = {**record["seconds"], "pruning_and_evaluation": time.perf_counter() - started}
    seconds["run"] += seconds["pruning_and_evaluation"]
    return {
        **record,
        "pruned": pruned,
        "greedy_order": [int(block) for block in greedy_order],
        "seconds": seconds,
        "trained_at": record["finished_at"],
        "pruned_from": time.time() - seconds["pruning_and_evaluation"],
        "finished_at": time.time(),
    }


def grid(arms: Sequence[str], seeds: Sequence[int]) -> List[Tuple[str, int]]:
    """Seed-major; the arms' order turns with each seed, so workers taking every n-th run get every arm."""
    points = []
    for index, seed in enumerate(seeds):
        order = list(arms) if index % 2 == 0 else list(reversed(arms))
        points += [(arm, seed) for arm in order]
    return points


def path_of(directory: str, arm: str, seed: int) -> str:
    return os.path.join(directory, f"{arm}_seed{seed}.json")


def read_runs(directory: str, finished: bool = True) -> List[dict]:
    """The runs in `directory` (the notebook's input): those pruned too, or with `finished=False` every one."""
    if not os.path.isdir(directory):
        return []
    runs = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                run = json.load(handle)
            if "pruned" in run or not finished:
                runs.append(run)
    return runs


def write_run(directory: str, record: dict) -> None:
    """Writes one run aside and renames it: an interrupted write never leaves half a file."""
    os.makedirs(directory, exist_ok=True)
    path = path_of(directory, record["arm"], record["seed"])
    with open(path + ".partial", "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    os.replace(path + ".partial", path)


def sweep(
    arms: Sequence[str],
    seeds: Sequence[int],
    settings: Settings,
    directory: str = RESULTS_DIR,
    weights_dir: str = WEIGHTS_DIR,
    worker: int = 0,
    workers: int = 1,
    phases: Sequence[str] = PHASES,
    max_bytes: Optional[int] = None,
    log=print,
) -> None:
    """Runs this worker's share of the grid (every `workers`-th run from `worker`), what is not done yet.

    A run is trained (its record written, its backbone's weights saved in
    `weights_dir`), then pruned (its record completed); `phases` chooses
    which of the two this call does. `max_bytes` cuts each split to its
    first bytes (the tests' tiny grid).
    """
    text, source, size = load_text()
    data = {name: ids[:max_bytes] for name, ids in split(token_ids(text), settings).items()}
    log(
        f"{source}: {size:,} bytes of Python source, {len(text):,} bytes of text; "
        + ", ".join(f"{name} {len(ids):,}" for name, ids in data.items())
    )
    for index, (arm, seed) in enumerate(grid(arms, seeds)):
        if index % workers != worker:
            continue
        path, weights = path_of(directory, arm, seed), os.path.join(weights_dir, f"{arm}_seed{seed}.weights.h5")
        record = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            if record["settings"] != settings.as_json():
                raise ValueError(
                    f"Invalid value received for argument `directory`. Expected runs of the settings "
                    f"{settings.as_json()}. Received: directory={directory!r}, whose {path} has {record['settings']}"
                )
        if record is None and "train" in phases:
            record = train(arm, seed, settings, data, weights, log=log)
            record["text"] = {
                "source": source,
                "source_bytes": size,
                "text_bytes": len(text),
                **{f"{name}_bytes": len(ids) for name, ids in data.items()},
            }
            write_run(directory, record)
            log(
                f"{arm} seed {seed}: trained, validation loss {record['validation_loss']:.3f}, "
                f"{record['seconds']['run']:.0f} s"
            )
        if record is None or "pruned" in record or "prune" not in phases:
            continue
        if not os.path.exists(weights):
            log(f"{arm} seed {seed}: not pruned, its weights are not in {weights_dir}")
            continue
        record = prune(record, settings, data, weights)
        write_run(directory, record)
        pruned = ", ".join(
            f"{rule} {entry['layers']}: {entry['validation_loss']:.3f}"
            for rule, by_fraction in record["pruned"].items()
            for entry in by_fraction.values()
        )
        log(f"{arm} seed {seed}: pruned {pruned}; {record['seconds']['pruning_and_evaluation']:.0f} s")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--layers", type=int, default=Settings.layers)
    parser.add_argument("--hidden", type=int, default=Settings.hidden)
    parser.add_argument("--results", default=RESULTS_DIR, help="the directory of the runs' JSON files")
    parser.add_argument("--weights", default=WEIGHTS_DIR, help="where trained weights wait to be pruned")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1, help="TensorFlow intra- and inter-op threads (default 1: a shared machine)"
    )
    args = parser.parse_args(argv)
    import tensorflow as tf

    # Before any op runs: the thread pools are fixed at the first one.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    settings = Settings(steps=args.steps, layers=args.layers, hidden=args.hidden)
    started = time.perf_counter()
    sweep(
        args.arms,
        args.seeds,
        settings,
        args.results,
        args.weights,
        args.worker,
        args.workers,
        args.phases,
        log=lambda line: print(line, flush=True),
    )
    print(
        f"sweep worker {args.worker}: {time.perf_counter() - started:.0f} s, CPU {time.process_time():.0f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
