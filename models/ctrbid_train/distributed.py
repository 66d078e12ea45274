"""Training on several processes or machines: PyTorch's DistributedDataParallel under ``torchrun``.

``torchrun`` starts one process per CPU share or GPU and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each.
With ``WORLD_SIZE`` above one the processes join one process group
(``torch.distributed.init_process_group``: backend ``gloo`` on the CPU,
``nccl`` on GPUs, each process on ``cuda:LOCAL_RANK``). Without those
variables (a plain ``python -m ctrbid_train train``) there is one process, no
process group, and training runs exactly as it always has. There is no
parameter server: DDP all-reduces the gradients after every backward pass.

The scheme, so that n processes train the model one process trains:

* every rank has the same seed, so it builds the same model and draws the
  same shuffled order of global batches (``data.iter_batches`` with the same
  generator);
* rank r trains on rows ``[r*b//n, (r+1)*b//n)`` of each global batch of b
  rows and weighs its loss by n x its rows / b (``part``). Every term of the
  objective is a mean over the batch, so the mean over ranks of these
  gradients, which DDP computes, is one process's gradient on the whole batch
  up to the order of float sums;
* a global batch of fewer than n rows (the end of a chunk, rarely) goes whole
  to every rank with weight 1: the mean of n equal gradients is that gradient;
* after building the model each rank reseeds torch with seed + rank, so that
  dropout (off in every shipped config) draws other masks on each rank;
* only rank 0 validates after an epoch and decides on early stopping; the
  decision goes to the others by ``broadcast_ints``. After training only
  rank 0 calibrates, evaluates, exports and writes; the others return.

Sparse embedding gradients (``train.emb_optimizer = "sparse_adam"``, the
default): DDP averages them with gloo's sparse all-reduce. NCCL has none
(``ProcessGroupNCCL::allreduce_sparse`` throws), so on several GPUs the
trainer stops at once with a message asking for ``emb_optimizer = "adam"``
(dense embedding gradients) instead of failing at the first backward pass.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    """Where this process stands: ``rank`` of ``world`` processes.

    ``backend`` is None exactly when ``world`` is 1 (no process group);
    ``device`` is where this process trains (``cuda:LOCAL_RANK`` on GPUs).
    """

    rank: int
    world: int
    backend: str | None
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: validates, decides, evaluates and writes the outputs."""
        return self.rank == 0


def from_env(device: torch.device, sparse_gradients: bool) -> Dist:
    """This process's place from torchrun's variables; joins nothing yet.

    ``device`` is the device one process would use; with several processes on
    CUDA it becomes ``cuda:LOCAL_RANK``. Raises ValueError for sparse gradients
    on NCCL, before any process group or training exists.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(rank=0, world=1, backend=None, device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type != "cuda":
        return Dist(rank=rank, world=world, backend="gloo", device=device)
    if sparse_gradients:
        raise ValueError(
            "train.emb_optimizer = 'sparse_adam' gives the embedding tables sparse gradients, and NCCL "
            "cannot all-reduce sparse tensors: on several GPUs set train.emb_optimizer = 'adam' "
            "(dense embedding gradients), or train on CPUs (train.device = 'cpu', backend gloo)"
        )
    return Dist(rank=rank, world=world, backend="nccl", device=torch.device("cuda", local_rank))


@contextmanager
def joined(d: Dist):
    """Inside the block this process is in the process group (if ``d.world`` > 1).

    On a normal exit every rank waits at a barrier, so no rank leaves while
    another still has a collective in flight; on an error the rank leaves at
    once, and the others' next collective fails instead of hanging. The group
    is destroyed either way.
    """
    if d.world == 1:
        yield
        return
    if d.device.type == "cuda":
        torch.cuda.set_device(d.device)
    dist.init_process_group(d.backend, rank=d.rank, world_size=d.world, device_id=d.device if d.device.type == "cuda" else None)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


class TrainingForward(nn.Module):
    """A model whose ``forward`` is the wrapped model's ``forward_with_rows``.

    DDP hooks a module's ``forward``; training needs the logits and the
    embedding rows looked up (for the L2 penalty), so DDP wraps this.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, cat: torch.Tensor, num: torch.Tensor):
        return self.model.forward_with_rows(cat, num)


def wrap(model: nn.Module, d: Dist) -> nn.Module:
    """The module to train: ``TrainingForward(model)``, inside DDP when ``d.world`` > 1.

    Its parameters are ``model``'s own, so the caller validates and saves
    ``model`` directly. Needs the process group (``joined``).
    """
    net = TrainingForward(model)
    if d.world == 1:
        return net
    return nn.parallel.DistributedDataParallel(net, device_ids=[d.device.index] if d.device.type == "cuda" else None)


def part(rows: int, d: Dist) -> tuple[int, int, float]:
    """This rank's rows ``[lo, hi)`` of a global batch of ``rows`` rows, and the weight of its loss.

    The weight ``w`` multiplies the rank's batch-mean loss so that the mean
    over ranks of their gradients (what DDP computes) is the gradient of the
    whole batch's mean loss. With ``rows >= world`` the parts tile the batch
    in rank order, differ in size by at most one, and ``w = world * (hi - lo)
    / rows``; a smaller batch goes whole to every rank with ``w = 1`` (no rank
    is left without rows). Either way the rank stands for ``w * rows / world``
    of the batch's rows. One process: the whole batch, ``w = 1``.
    """
    if rows < d.world:
        return 0, rows, 1.0
    lo, hi = d.rank * rows // d.world, (d.rank + 1) * rows // d.world
    return lo, hi, d.world * (hi - lo) / rows


def broadcast_ints(d: Dist, values: list[int]) -> list[int]:
    """Rank 0's ``values`` on every rank (a decision); ``values`` itself for one process."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=d.device)
    dist.broadcast(t, src=0)
    return [int(v) for v in t.tolist()]


def all_sum(d: Dist, values: list[float]) -> list[float]:
    """Element-wise sum over ranks in float64; ``values`` itself for one process."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()
