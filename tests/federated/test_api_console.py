"""The Python API in a plain script: one thread like the CLI, and it says what it is doing off a terminal."""

import subprocess
import sys

import pytest

SCRIPT = """
import logging, torch
{silence}
from fedmrn_pl import ClassificationTask, FederatedDataModule, FederatedTrainer, FedMRN, MaskingConfig
from fedmrn_pl.callbacks import FederatedCallback
from fedmrn_pl.models import MLP

class Threads(FederatedCallback):
    def on_round_end(self, trainer, server_round, metrics):
        self.during = torch.get_num_threads()

torch.set_num_threads(2)
threads = Threads()
data = FederatedDataModule("digits", num_clients=4, seed=0)
trainer = FederatedTrainer(ClassificationTask(MLP(64, 10, hidden=(16,)), 10), data, FedMRN(), MaskingConfig(),
                           rounds=2, clients_per_round=2, callbacks=[threads])
trainer.fit()
print("threads during", threads.during, "after", torch.get_num_threads())
"""


def _run(silence: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(silence=silence)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_script_off_a_terminal_shows_the_partition_and_one_line_per_round():
    done = _run()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("4 clients, ")  # the partition, before the first round
    assert sum(line.startswith("round ") for line in lines) == 2
    assert lines[-1] == "threads during 1 after 2"  # one thread while training, the caller's count restored


@pytest.mark.slow
def test_the_library_lines_are_silenced_with_the_fedmrn_pl_logger():
    done = _run('logging.getLogger("fedmrn_pl").setLevel(logging.WARNING)')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["threads during 1 after 2"]
