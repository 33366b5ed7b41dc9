"""One training step, counted op by op on a CPU: what a GPU would be asked to launch, and where it would wait.

``python benchmarks/step_audit.py pretrain|finetune [--batch N] [--img-size N] [--data DIR]`` runs a short training
through the trainer's public API (``trainer.pretrain`` / ``trainer.finetune``, memory input, eager) under a
``TorchDispatchMode`` and prints, as one JSON line, for one step that logs nothing (the third):

- ``ops``: aten ops dispatched, split into ``augment`` (the memory input's augmentation: frames in
  ``device_augment.py``, ``rand_augment.py``, ``augment_draws.py``, ``color_jitter.py``, ``resample.py`` or
  ``device_eval.py``), ``mixing_loss``
  (``loss.py``) and ``model_optim`` (the rest: forward, backward, optimizer);
- ``blocking``: ops that make the host wait for a GPU: reading a value (``_local_scalar_dense``: ``.item()``,
  ``.tolist()``, ``float()``), ops whose output size depends on the data (``nonzero``, ``unique``, ...) and
  tensors made from Python data (``lift_fresh``: a host-to-device copy on a GPU), each with where it came from;
- ``augment_written_gib``: bytes written by the augmentation's ops (new tensors and in-place writes; views
  write nothing).

For fine-tuning it also counts the final evaluation: its batches, ops per batch, and blocking ops in all and per
batch after the first (which makes the constants that later batches reuse). What a CPU cannot show: copies from
unpinned host memory (there is no other device; the memory input holds its images on the device), and
``.tolist()``, which reads a CPU tensor without dispatching an op (the evaluation reads its sums so, once).

``augment-pretrain|augment-finetune`` count the augmentation alone, on random images (``--channels``,
``--held`` px), for batches whose training step would not fit in a CPU's memory (fine-tuning at batch 768).

``--by-line N`` also prints, before the JSON line, the N source lines of the project that dispatch the most
augmentation ops (each op counted at its innermost project frame) with their ops and written MiB: where to look
to make the augmentation cheaper.

The script uses only the trainer's public API, so that ``PYTHONPATH=<an older tree>`` audits that tree too
(``make bench`` does so for the tree before the single-path augmentation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

AUGMENT_FILES = ("device_augment.py", "rand_augment.py", "augment_draws.py", "color_jitter.py", "resample.py",
                 "device_eval.py")
SYNC_OPS = {"_local_scalar_dense", "nonzero", "lift_fresh", "equal", "is_nonzero", "masked_select"}
SYNC_TAGS = (torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output)
SCATTERS = {"scatter_", "scatter_add_", "index_put_", "_index_put_impl_"}
AUDITED_STEP = 3  # the first two steps warm up (lazy state, the first pass's order); none of the three logs


def blocks_host(func, args: tuple = ()) -> bool:
    """Whether ``func`` makes the host wait for the device (or copies host data to it) when the device is a GPU."""
    name = func.__name__.split(".")[0]
    if name in ("index", "index_put", "index_put_", "_index_put_impl_"):  # sizes depend on data with masks only
        return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in _indices(args))
    return name in SYNC_OPS or any(tag in func.tags for tag in SYNC_TAGS)


def _indices(args: tuple) -> list:
    """The index tensors of an ``index``/``index_put`` call (its second argument, a list with Nones)."""
    return list(args[1]) if len(args) > 1 and isinstance(args[1], (list, tuple)) else []


def _written(func, args: tuple, out) -> int:
    """Bytes ``func`` wrote: its new outputs and the arguments it wrote in place (a view's output writes nothing)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = 0
    if func.__name__.startswith("_unsafe_view"):  # a view that its schema does not mark as one
        return 0
    if func.__name__.split(".")[0] in SCATTERS:  # in place, where the source goes: its size is written
        src = args[3] if func.__name__.startswith("scatter") else args[2]
        return src.numel() * src.element_size() if isinstance(src, torch.Tensor) else 0
    for ret, tensor in zip(func._schema.returns, outs, strict=False):
        if isinstance(tensor, torch.Tensor) and (ret.alias_info is None or ret.alias_info.is_write):
            total += tensor.numel() * tensor.element_size()
    return total


def _where() -> tuple[str, str, bool]:
    """(part, innermost project frame ``file:line``, inside an evaluation) of the op being dispatched."""
    frame, part, place, evaluating = sys._getframe(2), "model_optim", "", False
    while frame is not None:
        path = frame.f_code.co_filename
        name = os.path.basename(path)
        project = f"{os.sep}trainer{os.sep}" in path
        if project and not place:
            place = f"{name}:{frame.f_lineno}"
        if project and part == "model_optim":
            if name in AUGMENT_FILES:
                part = "augment"
            elif name == "loss.py":
                part = "mixing_loss"
        if project and name == "engine.py" and frame.f_code.co_name == "evaluate":
            evaluating = True
        frame = frame.f_back
    return part, place, evaluating


class Audit(TorchDispatchMode):
    """Counts every dispatched op by step (steps end at each optimizer step) and part."""

    def __init__(self):
        super().__init__()
        self.step = 1
        self.ops: Counter = Counter()  # (step, part) -> ops
        self.written: Counter = Counter()  # step -> augmentation bytes
        self.lines: Counter = Counter()  # (step, file:line) -> augmentation ops
        self.line_bytes: Counter = Counter()  # (step, file:line) -> augmentation bytes
        self.blocking: dict[int, list[str]] = {}
        self.eval_ops, self.eval_batches, self.eval_blocking = 0, 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        part, place, evaluating = _where()
        sync = blocks_host(func, args)
        if evaluating:  # evaluate() ranks each batch's logits with one topk: it counts the batches
            self.eval_ops += 1
            self.eval_batches += func.__name__.startswith("topk")
            if sync:
                self.eval_blocking.append((self.eval_batches, f"{func.__name__} at {place}"))
            return out
        self.ops[self.step, part] += 1
        if part == "augment":
            written = _written(func, args, out)
            self.written[self.step] += written
            self.lines[self.step, place] += 1
            self.line_bytes[self.step, place] += written
        if sync:
            self.blocking.setdefault(self.step, []).append(f"{func.__name__} at {place}")
        return out

    def stepped(self, *_) -> None:
        self.step += 1

    def by_line(self, top: int, step: int = AUDITED_STEP) -> list[str]:
        """The ``top`` lines that dispatch the most augmentation ops in ``step``, as table rows."""
        rows = sorted(((n, place) for (s, place), n in self.lines.items() if s == step), reverse=True)
        out = [f"{'ops':>5} {'MiB':>8}  where"]
        for n, place in rows[:top]:
            out.append(f"{n:5d} {self.line_bytes[step, place] / 2**20:8.1f}  {place}  {_source(place)}")
        shown = sum(n for n, _ in rows[:top])
        out.append(f"{shown:5d} of {sum(n for n, _ in rows)} augmentation ops, on {min(top, len(rows))} of "
                   f"{len(rows)} lines")
        return out

    def report(self, step: int = AUDITED_STEP) -> dict:
        parts = {p: self.ops[step, p] for p in ("augment", "mixing_loss", "model_optim")}
        return {"step": step, "ops": sum(parts.values()), **parts, "blocking": len(self.blocking.get(step, [])),
                "blocking_at": sorted(Counter(self.blocking.get(step, [])).items()),
                "augment_written_gib": round(self.written[step] / 2**30, 3)}


def _source(place: str) -> str:
    """The text of the project's source line ``file:line`` (``_where``'s place), stripped."""
    import linecache

    name, line = place.rsplit(":", 1)
    for path in (Path(__file__).resolve().parents[1] / "trainer").rglob(name):
        return linecache.getline(str(path), int(line)).strip()
    return ""


def audited(run) -> Audit:
    """``run()`` under the audit, its steps told apart by a hook on every optimizer's step."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    audit = Audit()
    hook = register_optimizer_step_post_hook(audit.stepped)
    try:
        with audit:
            run()
    finally:
        hook.remove()
    return audit


def pretrain_step(data: str, out: Path, batch: int, img_size: int, by_line: int = 0) -> dict:
    import trainer

    settings = dict(preset="paper", input="memory", batch_size=batch, img_size=img_size, samples=4 * batch,
                    log_every=1000, compile=False, force=True, progress=False)
    audit = audited(lambda: trainer.pretrain(data, out, **settings))
    _print_lines(audit, by_line)
    return audit.report()


def finetune_step(dataset: str, out: Path, batch: int, img_size: int, by_line: int = 0) -> dict:
    import trainer

    settings = dict(preset="paper", input="memory", batch_size=batch, img_size=img_size, model="vit_tiny_patch16_224",
                    epochs=2 if batch >= 512 else 1, log_every=1000, eval_every=1000, compile=False, force=True,
                    progress=False)
    audit = audited(lambda: trainer.finetune("scratch", dataset, out, **settings))
    _print_lines(audit, by_line)
    result = audit.report()
    if audit.step <= AUDITED_STEP:
        raise SystemExit(f"fine-tuning ran {audit.step - 1} step(s); step {AUDITED_STEP} is audited: lower --batch")
    batches = audit.eval_batches
    later = [where for batch, where in audit.eval_blocking if batch > 1]  # the first batch makes cached constants
    result.update(eval_batches=batches, eval_ops_per_batch=round(audit.eval_ops / max(1, batches)),
                  eval_blocking=len(audit.eval_blocking),
                  eval_blocking_per_later_batch=len(later) / max(1, batches - 1),
                  eval_blocking_at=sorted(Counter(where for _, where in audit.eval_blocking).items()))
    return result


def augment_batch(kind: str, batch: int, img_size: int, channels: int, held: int, by_line: int = 0) -> dict:
    """The augmentation alone (``draw_params`` then ``apply_params``) of ``batch`` uint8 images ``held`` px square
    with the ``paper`` preset of ``kind``: its second call is counted (the first makes cached constants)."""
    from trainer.data.device_augment import Augmentation, apply_params
    from trainer.presets import resolve

    try:
        from trainer.data.augment_draws import draw_params
    except ImportError:  # an older tree, where the draws were device_augment's
        from trainer.data.device_augment import draw_params

    augmentation = Augmentation.from_config(resolve(kind, "paper", img_size=img_size))
    images = torch.randint(0, 256, (batch, channels, held, held), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    run = lambda: apply_params(images, augmentation, draw_params(augmentation, batch, held, held, generator,  # noqa: E731
                                                                 images.device))
    run()
    audit = audited(run)
    _print_lines(audit, by_line, step=1)
    return {"ops": audit.ops[1, "augment"], "blocking": len(audit.blocking.get(1, [])),
            "blocking_at": sorted(Counter(audit.blocking.get(1, [])).items()),
            "augment_written_gib": round(audit.written[1] / 2**30, 3)}


def _print_lines(audit: Audit, top: int, step: int = AUDITED_STEP) -> None:
    if top > 0:
        print("\n".join(audit.by_line(top, step)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("pretrain", "finetune", "augment-pretrain", "augment-finetune"),
                        help="a training step, or the augmentation alone (of that preset)")
    parser.add_argument("--data", help="pretrain: a rendered dataset; finetune: a downstream SPEC (default digits)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=1, help="augment-*: channels of the held images")
    parser.add_argument("--held", type=int, default=512, help="augment-*: size of the held images")
    parser.add_argument("--by-line", type=int, default=0, metavar="N",
                        help="also print the N source lines that dispatch the most augmentation ops")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.kind.startswith("augment-"):
        print(json.dumps(augment_batch(args.kind.removeprefix("augment-"), args.batch, args.img_size, args.channels,
                                       args.held, args.by_line)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.kind == "pretrain":
            if not args.data:
                parser.error("pretrain needs --data (a rendered dataset)")
            result = pretrain_step(args.data, Path(tmp) / "run", args.batch, args.img_size, args.by_line)
        else:
            result = finetune_step(args.data or "digits", Path(tmp) / "run", args.batch, args.img_size,
                                   args.by_line)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
