#!/usr/bin/env bash
# GPU readiness, as one prepared script for a machine with an NVIDIA GPU (run from the repo root):
#   1. the CUDA tests (they skip on CPU-only machines);
#   2. the masked step on CUDA: CNN8 at batch 64, masked / plain time and peak memory
#      (targets: <= 1.05x time, <= 1.5x the plain step's peak);
#   3. a 2-round torchrun job with 2 ranks sharing the GPU (gloo carries the bytes);
#   4. the noise a GPU client regenerates equals the CPU server's, bit for bit.
# Output goes to stdout and, when OUT is set, to $OUT/gpu_check.log. Exit code: non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-/tmp}/gpu_check.log"
exec > >(tee "$log") 2>&1
export WANDB_MODE=offline PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

echo "== 1. CUDA tests"
python -m pytest -q -rs tests/masking/test_noise.py tests/wire/test_bits.py tests/wire/test_format.py -k cuda

echo "== 2. masked step on CUDA (CNN8, batch 64)"
python benchmarks/bench_masked_step.py --device cuda --model cnn8 --batch-size 64 --repeats 30

echo "== 3. torchrun, 2 ranks on one GPU, 2 rounds"
run_dir=$(mktemp -d)
python -m torch.distributed.run --standalone --nproc_per_node 2 -m fedmrn_pl fit \
  data.num_clients=10 train.clients_per_round=4 train.rounds=2 train.local_epochs=1 \
  train.accelerator=gpu progress=false output_dir="$run_dir/ranks"
python -m fedmrn_pl fit data.num_clients=10 train.clients_per_round=4 train.rounds=2 train.local_epochs=1 \
  train.accelerator=gpu progress=false output_dir="$run_dir/one"
python - "$run_dir" <<'PY'
import json, sys
ranks, one = (json.load(open(f"{sys.argv[1]}/{name}/metrics.json")) for name in ("ranks", "one"))
print("world sizes", ranks["world_size"], one["world_size"], "accuracy", ranks["final_test_accuracy"], one["final_test_accuracy"])
print("sha 2 ranks", ranks["global_model_sha256"][:16], "1 process", one["global_model_sha256"][:16],
      "equal" if ranks["global_model_sha256"] == one["global_model_sha256"] else "DIFFERENT (GPU kernels)")
PY

echo "== 4. noise regenerated on the GPU equals the CPU server's"
python - <<'PY'
import torch
from fedmrn_pl.masking import generate_noise
from fedmrn_pl.update import NoiseSpec
for family in ("uniform", "gauss", "bernoulli"):
    spec = NoiseSpec(family, 0.01)
    cpu = generate_noise(7, "features.0.weight", (256, 128, 3, 3), spec)
    gpu = generate_noise(7, "features.0.weight", (256, 128, 3, 3), spec, device="cuda")
    assert torch.equal(cpu, gpu.cpu()), family
    print(family, "bit-identical", tuple(cpu.shape))
PY
echo "gpu_check: all steps passed"
