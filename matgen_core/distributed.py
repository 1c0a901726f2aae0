"""Data-parallel training through ``torchrun`` (one process per GPU, or several CPU processes).

    torchrun --standalone --nproc_per_node 4 -m matgen_core.cli train slicegan IMG --out RUN

``setup()`` reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and joins the process group: NCCL when CUDA is available (device
``cuda:LOCAL_RANK``), gloo on CPU. Without torchrun (``WORLD_SIZE`` unset or 1) everything here
is a no-op and a run behaves exactly as a single process.

How the ranks cooperate (see train.py): every rank builds the same networks from the same seed
(rank 0's weights are also broadcast to be sure), draws its own noise and crops (its RNG is
seeded by rank), and before every optimiser step the gradients are averaged over the ranks by
:func:`average_gradients`; so all ranks take identical steps, on ``world_size`` times the batch.
Rank 0 alone holds the run's lock (runlock.py; the CLI tells every rank to stop, through
:func:`any_rank`, when rank 0 cannot lock or create the run) and writes checkpoints, losses,
progress and previews; since the networks are never
wrapped, checkpoints carry no ``module.`` prefixes and load in a single process.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def env_rank() -> int:
    """This process's rank from torchrun's environment (0 without torchrun); no group needed."""
    return int(os.environ.get("RANK", "0")) if env_world_size() > 1 else 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return rank() == 0


def setup(device: str = "auto") -> str:
    """Join torchrun's process group if launched by it; returns the device this rank should use.

    ``device`` "auto"/"cuda" become ``cuda:LOCAL_RANK`` when CUDA is present (backend NCCL);
    otherwise the rank runs on the CPU with gloo. Returns ``device`` unchanged when not distributed.
    """
    if env_world_size() <= 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device or "auto").lower().split(":")[0] in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return device


def cleanup(wait: bool = True) -> None:
    """Leave the process group. ``wait``: every rank waits for the others first, so no rank tears
    its communicator down while another still uses it (a gloo race that can abort a rank); pass
    False on an error path, where the other ranks may never arrive."""
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def barrier() -> None:
    if is_active():
        dist.barrier()


def _device_of(tensors) -> torch.device:
    for t in tensors:
        return t.device
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any (stop / time-budget agreement)."""
    if not is_active():
        return bool(flag)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not is_active():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def average_gradients(params) -> None:
    """All-reduce (mean) the ``.grad`` of ``params`` over the ranks, in one flat buffer.

    Why not DistributedDataParallel: the WGAN-GP critic step calls the critic three times per
    direction (real, fake, interpolates), takes ``torch.autograd.grad(..., create_graph=True)``
    for the gradient penalty and calls ``backward()`` once per direction before one optimiser
    step. DDP supports neither ``autograd.grad`` (its reducer only fires for gradients that are
    accumulated into ``.grad``) nor, without ``no_sync`` gymnastics, several forward/backward
    rounds per step; wrapping would also put ``module.`` into every checkpoint key. Averaging
    the accumulated gradients right before ``optimizer.step()`` is exact, model-agnostic and
    leaves the Trainers untouched.

    A parameter without a gradient on every rank keeps ``grad=None``, so the optimiser skips it
    as it would in one process (e.g. the critics a per-direction critic step does not train:
    Adam given a zero gradient would still move them with its momentum). Which parameters have
    one is agreed first (a small all-reduce of flags): one with a gradient on some rank only is
    taken as zero on the others, so every rank still takes the same step.
    """
    if not is_active():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    flags = torch.tensor([float(p.grad is not None) for p in params], device=_device_of(params))
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    params = [p for p, used in zip(params, flags.tolist()) if used > 0]
    if not params:
        return
    for p in params:  # unused on this rank but used on another: takes part as zero
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def optimizers_of(trainer) -> list[torch.optim.Optimizer]:
    """The trainer's optimisers, from ``trainer.optimizers()`` (protocol.Trainer), in its order."""
    return list(_named(trainer, "optimizers", torch.optim.Optimizer).values())


def modules_of(trainer) -> list[torch.nn.Module]:
    """The trainer's networks, from ``trainer.modules()`` (protocol.Trainer), in its order."""
    return list(_named(trainer, "modules", torch.nn.Module).values())


def _named(trainer, method: str, kind: type) -> dict:
    get = getattr(trainer, method, None)
    if not callable(get):
        raise TypeError(f"{type(trainer).__name__} has no {method}() method; a Trainer must list its "
                        f"{'networks' if method == 'modules' else 'optimisers'} by name for "
                        "data-parallel training (see matgen_core/protocol.py).")
    named = dict(get())
    wrong = [name for name, v in named.items() if not isinstance(v, kind)]
    if wrong:
        raise TypeError(f"{type(trainer).__name__}.{method}() returned non-{kind.__name__} entries: "
                        f"{', '.join(wrong)}.")
    return named


def make_data_parallel(trainer) -> None:
    """Hook ``trainer`` for data-parallel training (no-op when not distributed).

    Broadcasts rank 0's weights, then registers a pre-step hook on each optimiser that averages
    its parameters' gradients over the ranks (:func:`average_gradients`) before it steps.
    """
    if not is_active():
        return
    for module in modules_of(trainer):
        broadcast_module(module)
    for opt in optimizers_of(trainer):
        params = [p for group in opt.param_groups for p in group["params"]]
        opt.register_step_pre_hook(lambda _opt, _args, _kwargs, params=params: average_gradients(params))


def seed_for_rank(seed: int, step: int = 0) -> None:
    """Give each rank its own noise and crops: reseed torch's RNG for ranks > 0.

    Rank 0 keeps the single-process random stream (so its checkpointed RNG state resumes as
    before); rank r > 0 is seeded from (seed, r, step), so it differs from every other rank and
    from the same rank before a resume.
    """
    r = rank()
    if r > 0:
        torch.manual_seed((int(seed) * 1_000_003 + r * 7_919 + int(step) * 104_729) % (2**63 - 1))
