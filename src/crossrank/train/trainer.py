"""The training loop itself: sentence-transformers' CrossEncoderTrainer, configured.

Loss: binary cross-entropy on (query, passage, graded label) pairs by default, ListNet or
LambdaLoss on per-query lists as options. One checkpoint per epoch (the trainer's own, with
optimizer, scheduler and RNG state, so a resumed run continues where the checkpoint left off);
with dev queries, dev nDCG@10 after each epoch, the best epoch kept and early stopping on it
(transformers' ``EarlyStoppingCallback``). The device is the trainer's choice: CUDA when
torch has it, else the CPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from crossrank.train.dev import BEST_METRIC
from crossrank.train.examples import Example, to_dataset

log = logging.getLogger(__name__)


def _loss(name: str, model: Any) -> Any:
    from sentence_transformers.cross_encoder import losses

    if name == "listnet":
        return losses.ListNetLoss(model)
    if name == "lambda":
        return losses.LambdaLoss(model)
    return losses.BinaryCrossEntropyLoss(model)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _step_counter() -> Any:
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        """Counts the optimizer steps this process runs (a resumed run must not redo finished ones)."""

        def __init__(self) -> None:
            self.steps = 0
            self.first_step: int | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.first_step is None:
                self.first_step = int(state.global_step)
            self.steps += 1

    return StepCounter()


def run_trainer(model: Any, examples: list[Example], dev: Any, config: Any, checkpoints: Path,
                resume_from: Path | None) -> dict[str, Any]:
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import EarlyStoppingCallback

    with_dev = dev is not None
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio,
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="epoch" if with_dev else "no",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=with_dev,
        metric_for_best_model=BEST_METRIC if with_dev else None,
        greater_is_better=True,
        logging_strategy="epoch",
        disable_tqdm=not config.progress,
        report_to="none",
        use_cpu=config.device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=_cuda_available() and config.device != "cpu",
    )
    counter = _step_counter()
    callbacks = [counter]
    if with_dev:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=to_dataset(examples), loss=_loss(config.loss, model),
        evaluator=dev, callbacks=callbacks,
    )
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    seconds = time.perf_counter() - started
    state = trainer.state
    per_epoch = [
        {"epoch": round(float(entry["epoch"]), 3), "step": int(entry["step"]), "dev_ndcg@10": round(float(entry[BEST_METRIC]), 6)}
        for entry in state.log_history if BEST_METRIC in entry
    ]
    losses = [round(float(e["loss"]), 6) for e in state.log_history if "loss" in e]
    pairs_per_epoch = sum(len(e["docs"]) if "docs" in e else 1 for e in examples)
    resumed_step = int(resume_from.name.split("-")[-1]) if resume_from is not None else 0
    steps_per_epoch = -(-len(examples) // config.batch_size)
    # throughput of the whole loop as run here: forward, backward, optimizer, dev evaluation, checkpoints
    pairs_this_session = counter.steps / steps_per_epoch * pairs_per_epoch
    return {
        "model": trainer.model,
        "device": str(model.device),
        "resumed_from_step": resumed_step,
        "steps_run_this_session": counter.steps,
        "global_step": int(state.global_step),
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(float(state.epoch or 0.0), 3),
        "stopped_early": int(state.global_step) < steps_per_epoch * config.epochs,
        "best_checkpoint": state.best_model_checkpoint,
        "dev_per_epoch": per_epoch,
        "dev_ndcg@10_after": max((e["dev_ndcg@10"] for e in per_epoch), default=None),
        "train_loss_per_epoch": losses,
        "train_seconds_this_session": round(seconds, 2),
        "pairs_trained_this_session": round(pairs_this_session),
        "pairs_per_second": round(pairs_this_session / seconds, 2) if seconds > 0 else None,
        "trainer_metrics": {k: v for k, v in output.metrics.items() if isinstance(v, (int, float))},
    }
