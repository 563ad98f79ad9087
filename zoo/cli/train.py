"""``zoo train``: the family on the reference task, one checkpoint per variant."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .bars import Bar, on_terminal
from .common import emit_json, progress, selected_variants, table


def _clock(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainProgress:
    """Training progress on stderr: on a terminal a tqdm bar per epoch (steps, loss, time left);
    in a log a line at each quarter of an epoch. Either way one line per finished epoch."""

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.tty = on_terminal(self.stream)
        self.bar: Bar | None = None
        self.epoch_s: list[float] = []

    def line(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.note(msg)
        else:
            print(msg, file=self.stream, flush=True)

    def __call__(self, e: dict) -> None:
        if e["event"] == "data":
            d = e["dataset"]
            self.line(f"{e['model']}: MNIST-1D, {d['samples']} samples at {d['input_dim']} features (seed {d['seed']})")
        elif e["event"] == "resume":
            self.line(f"{e['model']}: resuming after epoch {e['epoch']}")
        elif e["event"] == "step":
            if self.tty:
                if self.bar is None:
                    self.bar = Bar(e["steps"], f"{e['model']} epoch {e['epoch']}/{e['epochs']}", unit="step",
                                   stream=self.stream, leave=False)
                    self.bar.bar.set_postfix(loss=f"{e['loss']:.3f}", refresh=False)
                self.bar.moveto(e["step"])
                self.bar.bar.set_postfix(loss=f"{e['loss']:.3f}", refresh=False)
                return
            frac = e["step"] / e["steps"]
            if int(4 * frac) > int(4 * (e["step"] - 1) / e["steps"]) and e["step"] < e["steps"]:  # each quarter
                per_epoch = e["elapsed_s"] / frac
                left = per_epoch * (1 - frac) + per_epoch * (e["epochs"] - e["epoch"])
                self.line(f"{e['model']} epoch {e['epoch']}/{e['epochs']} {frac:.0%} loss {e['loss']:.3f}  "
                          f"~{_clock(left)} left")
        elif e["event"] == "epoch":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            self.epoch_s.append(e["wall_s"])
            left = sum(self.epoch_s) / len(self.epoch_s) * (e["epochs"] - e["epoch"])
            self.line(f"{e['model']} epoch {e['epoch']}/{e['epochs']}: loss {e['loss']:.3f}  test top-1 "
                      f"{e['test_top1']:.2%}  {e['wall_s']:.0f}s  ~{_clock(left)} left")


@click.command("train")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Train every variant of the table (dense_b0 ... dense_b7).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per variant  [default: 6]")
@click.option("--samples", type=click.IntRange(min=100), default=None,
              help="MNIST-1D samples, train + test (80/20)  [default: 40000]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("checkpoints"),
              show_default=True, help="Where NAME.safetensors and NAME.train.json go.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Initialisation, shuffling, dropout and stochastic-depth seed.")
@click.option("--data-seed", type=click.IntRange(min=0), default=None, help="MNIST-1D generator seed  [default: 42]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="PyTorch threads (results are bit-identical for the same seed, thread count and machine) "
                   "[default: PyTorch's]")
@click.option("--resume", is_flag=True, help="Continue from NAME.ckpt.safetensors (written after every epoch).")
@click.option("--ray-address", default=None,
              help="Train the variants as Ray tasks, side by side, on the cluster at host:port, ray://host:port or "
                   "auto (--threads CPUs each, default 1); the files in --out are the same. Needs the study extra.")
@click.option("--json", "as_json", is_flag=True, help="Print the training records as JSON.")
def train_cmd(names, all_, epochs, samples, out, seed, data_seed, threads, resume, ray_address, as_json):
    """Train variants on MNIST-1D at their own input_dim (AdamW, warm-up + cosine, label smoothing,
    the table's dropout and stochastic depth), writing OUT/NAME.safetensors and OUT/NAME.train.json.

    A checkpoint is written after every epoch; an interrupted run continues with --resume to the
    same final weights. Build from the results with `zoo build --all --weights OUT`.

    \b
    Examples:
      zoo train --all
      zoo train dense_b0 --epochs 3 --samples 8000 --out /tmp/ckpt
      zoo train dense_b0 dense_b1 --resume
      zoo train --all --ray-address HEAD:6379      # on a Ray cluster: one task per variant and epoch
      zoo build --all --weights checkpoints --precision fp32,int8,fp16
    """
    import torch

    from ..model import data as ds
    from ..model.train import DEFAULT_EPOCHS, Recipe, train

    if not names and not all_:
        raise click.UsageError("name at least one variant, or give --all")
    variants = selected_variants(names, all_, None)
    recipe = Recipe(epochs=epochs or DEFAULT_EPOCHS, seed=seed)
    if threads:
        torch.set_num_threads(threads)
    records = []
    if ray_address is not None:
        from ..study.cluster import train_on_ray

        records = train_on_ray([v.name for v in variants], out, recipe, samples=samples or ds.DEFAULT_SAMPLES,
                               data_seed=ds.DEFAULT_SEED if data_seed is None else data_seed, resume=resume,
                               address=ray_address, threads=threads or 1, progress=progress)
        variants = []
    for v in variants:
        bar = TrainProgress()
        rec = train(v.name, out, recipe, samples=samples or ds.DEFAULT_SAMPLES,
                    data_seed=ds.DEFAULT_SEED if data_seed is None else data_seed, resume=resume, progress=bar)
        records.append(rec)
    if as_json:
        emit_json({"out": str(out), "models": records})
    else:
        click.echo(table([{"name": r["model"], "input_dim": r["input_dim"], "epochs": r["epochs"],
                           "top1": f"{r['final_top1']:.2%}", "minutes": r["wall_s"] / 60,
                           "weights": f"{out / r['weights']['path']}"} for r in records],
                         [("name", "name"), ("input_dim", "input_dim"), ("epochs", "epochs"), ("top1", "test top-1"),
                          ("minutes", "minutes"), ("weights", "weights")]))
