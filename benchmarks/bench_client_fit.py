"""Fixed cost of a client's local fit: ``FederatedClient.fit`` (a Lightning Trainer per client) vs a plain loop.

Both sides do the same work on the same batches: load the global state, wrap the
masked weights with noise, train with PSM (SGD, the module's own ``training_step``),
sample the final masks and read the update. The plain loop is what a hand-written
client would be, with no Lightning Trainer; the ratio is Lightning's per-client
overhead. Variants alternate within each repeat; the figure is the median of the
paired ratios. Target: <= 1.10x.

    python benchmarks/bench_client_fit.py [--repeats 15] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from fedmrn_pl import ClassificationTask, FederatedDataModule, MaskingConfig, build_model
from fedmrn_pl.client import FederatedClient
from fedmrn_pl.masking import (
    apply_masked_noise,
    begin_mask_step,
    end_mask_step,
    psm_probability,
    remove_masked_noise,
    sample_final_masks,
    set_mask_generator,
    set_mask_probability,
)
from fedmrn_pl.messages import FitRequest
from fedmrn_pl.seeding import make_generator
from fedmrn_pl.state import load_module_state, module_state


def plain_client(module, data, masking, global_state, request, epochs, batch_size, device) -> dict:
    """The same local round as FederatedClient.fit, as a hand-written torch loop (``masking=None``: dense, FedAvg's)."""
    load_module_state(module, global_state)
    module.to(device).train()
    if masking is not None:
        apply_masked_noise(module, request.seed, masking.kind, masking.noise, masking.selector)
        set_mask_generator(module, make_generator(1, device))
    optimizer = module.configure_optimizers()
    loader = data.client_dataloader(request.client_id, request.server_round, batch_size)
    total, step = epochs * len(loader), 0
    for _ in range(epochs):
        for images, labels in loader:
            if masking is not None:
                set_mask_probability(module, psm_probability(masking.schedule, step, total))
                begin_mask_step(module)
            optimizer.zero_grad()
            loss = module.training_step((images.to(device), labels.to(device)), step)
            loss.backward()
            optimizer.step()
            if masking is not None:
                end_mask_step(module)
            step += 1
    masks = {}
    if masking is not None:
        masks = sample_final_masks(module, make_generator(2))
        remove_masked_noise(module)
    module.cpu()
    return {"masks": masks, "state": module_state(module)}


def main() -> None:
    """Time both clients, alternating, and print the paired ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = FederatedDataModule("mnist5k", num_clients=20, seed=0)
    data.setup()
    module = ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=28, seed=0), 10)
    module.log = lambda *a, **k: None  # the plain loop has no Lightning logging; the Trainer path logs as usual
    masking = MaskingConfig()
    global_state = module_state(module)
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    client = FederatedClient(
        ClassificationTask(build_model("cnn4", in_channels=1, num_classes=10, image_size=28, seed=0), 10),
        data,
        masking,
        local_epochs=args.epochs,
        batch_size=args.batch_size,
        trainer_kwargs={"accelerator": accelerator, "devices": 1},
    )
    request = FitRequest(1, 0, data.client_num_examples(0), seed=123)
    device = torch.device(args.device)

    def lightning_fit() -> None:
        result = client.fit(global_state, request)
        assert result.dropped is None, result.dropped

    def plain_fit() -> None:
        plain_client(module, data, masking, global_state, request, args.epochs, args.batch_size, device)

    lightning_fit(), plain_fit()  # warm-up
    ratios, lightning_times, plain_times = [], [], []
    for repeat in range(args.repeats):
        order = (lightning_fit, plain_fit) if repeat % 2 == 0 else (plain_fit, lightning_fit)
        seconds = {}
        for fit in order:
            start = time.perf_counter()
            fit()
            seconds[fit] = time.perf_counter() - start
        lightning_times.append(seconds[lightning_fit])
        plain_times.append(seconds[plain_fit])
        ratios.append(seconds[lightning_fit] / seconds[plain_fit])
    steps = args.epochs * len(data.client_dataloader(0, 1, args.batch_size))
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}, {platform.platform()}, torch {torch.__version__}")
    print(f"client: CNN4 on mnist5k, {request.num_examples} samples, {steps} steps, {args.threads} thread(s), {device}")
    print(f"FederatedClient.fit (Lightning): median {statistics.median(lightning_times) * 1e3:.1f} ms")
    print(f"plain torch loop:                median {statistics.median(plain_times) * 1e3:.1f} ms")
    print(f"ratio (median of paired): {statistics.median(ratios):.3f}x (target <= 1.10x)")


if __name__ == "__main__":
    main()
