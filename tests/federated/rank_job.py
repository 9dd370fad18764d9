"""A small federated job for the distributed tests, run under torchrun or as one process.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/federated/rank_job.py OUT [options]
    python tests/federated/rank_job.py OUT [options]

Options inject faults: ``--raise-client C`` makes client C's training raise;
``--hang-rank R --hang-round N`` makes rank R stop answering in round N (it sleeps);
``--clients-per-round K`` and ``--rounds N`` size the job; ``--resume`` continues the
checkpoint in OUT. Rank 0 writes OUT/result.json (history, sha, world size).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig, build_model
from fedmrn_pl.callbacks import FederatedCallback, FederatedCheckpoint, load_checkpoint
from fedmrn_pl.report import global_model_sha256


class FaultyTask(ClassificationTask):
    fault: str | None = None

    def training_step(self, batch, batch_idx):
        if self.fault == "raise":
            raise RuntimeError("simulated client crash")
        if self.fault == "hang":
            time.sleep(3600)
        return super().training_step(batch, batch_idx)


class Faults(FederatedCallback):
    """Client hooks run on the rank that trains the client, so the fault fires where it should."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def on_client_fit_start(self, trainer, request):
        rank = int(os.environ.get("RANK", "0"))
        fault = None
        if request.client_id == self.args.raise_client:
            fault = "raise"
        if rank == self.args.hang_rank and request.server_round == self.args.hang_round:
            fault = "hang"
        trainer.module.fault = fault


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients-per-round", type=int, default=3)
    parser.add_argument("--raise-client", type=int, default=-1)
    parser.add_argument("--hang-rank", type=int, default=-1)
    parser.add_argument("--hang-round", type=int, default=-1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    data = FederatedDataModule("digits", num_clients=6, seed=0)
    data.setup()
    model = build_model("cnn4", in_channels=1, num_classes=10, image_size=8, seed=0)
    trainer = FederatedTrainer(
        FaultyTask(model, num_classes=10),
        data,
        FedMRN(),
        MaskingConfig(),
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        local_epochs=1,
        batch_size=32,
        threads=1,
        timeout_seconds=args.timeout,
        callbacks=[Faults(args), FederatedCheckpoint(args.out)],
    )
    if args.resume:
        trainer.load_state_dict(load_checkpoint(args.out))
    trainer.fit()
    if trainer.is_global_zero:
        strip = [{k: v for k, v in r.items() if k != "round/seconds"} for r in trainer.history]
        result = {"history": strip, "sha": global_model_sha256(trainer.global_state), "world_size": trainer.ranks.world_size}
        (args.out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
