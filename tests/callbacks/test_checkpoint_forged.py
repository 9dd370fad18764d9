"""Forged checkpoints (content changed, digest recomputed) are refused in one line before the run directory changes.

Each case takes a real run's checkpoint, changes one section as someone who can write the
file could, saves it again (so the SHA-256 digest verifies) and resumes: the resume must end
in one ``CheckpointError`` line naming the file and the section, with every file of the run
directory (config.yaml included) byte for byte as it was.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from fedmrn_pl.callbacks import FederatedCallback, WandbLogger, load_checkpoint, save_checkpoint
from fedmrn_pl.callbacks.checkpoint import CheckpointError
from fedmrn_pl.cli import main
from fedmrn_pl.config import load_config
from fedmrn_pl.experiment import build_trainer, run_experiment
from fedmrn_pl.methods.compression import decode_residual, encode_residual
from fedmrn_pl.wire.round_message import decode_round_message, encode_round_message
from tests.test_experiment import SMALL

RUNS = {  # the source runs, two rounds each
    "fedmrn": [],
    "masks": ["method.downlink=masks"],  # round messages in the downlink section
    "ef": ["method.name=ef_signsgd"],  # error-feedback residuals in client_states
    "fedpm": ["method.name=fedpm"],  # a Beta posterior in the strategy section
    "adaptive": ["method.noise_scale=adaptive"],  # next_noise_scales in the history
}
WEIGHT = "model.net.0.weight"  # the MLP's first masked tensor, (200, 64)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """``source(kind)``: the directory of a finished two-round run of that kind, made on first use."""
    root, made = tmp_path_factory.mktemp("sources"), {}

    def get(kind: str):
        if kind not in made:
            made[kind] = root / kind
            run_experiment(load_config(None, [*SMALL, "train.rounds=2", *RUNS[kind], f"output_dir={made[kind]}"]))
        return made[kind]

    return get


def _files(root):
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _forged(source_dir, tmp_path, forge):
    """A copy of the run whose checkpoint ``forge`` changed, saved again with a recomputed digest."""
    out = tmp_path / "run"
    shutil.copytree(source_dir, out)
    state = load_checkpoint(out)
    forge(state)
    save_checkpoint(state, out / "checkpoint.pt")
    return out


def _resume(out):
    return load_config(out / "config.yaml", ["train.rounds=3", f"resume={out}", f"output_dir={out}"])


def _bytes(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _flip(tensor: torch.Tensor, at: int) -> torch.Tensor:
    flipped = tensor.clone()
    flipped[at] ^= 1
    return flipped


def _residual(change):
    """Re-encode client 1's residual after ``change``: a well-formed payload with its own checksum."""

    def forge(state):
        residual = decode_residual(state["client_states"]["1"].numpy().tobytes())
        change(residual)
        state["client_states"]["1"] = _bytes(encode_residual(residual))

    return forge


def _message(number, *, sha=None, payloads=None):
    """Re-encode round ``number``'s message with another model digest or payloads (its checksum recomputed)."""

    def forge(state):
        message = decode_round_message(state["downlink"]["messages"][number].numpy().tobytes())
        kept = list(message.payloads) if payloads is None else payloads
        state["downlink"]["messages"][number] = _bytes(encode_round_message(number, sha or message.model_sha256, kept))

    return forge


def _set(section, key, value):
    return lambda state: state[section].__setitem__(key, value)


CASES = [
    # client_states: the server's copy of each client's error-feedback residual
    ("ef", _set("client_states", "x", torch.zeros(4, dtype=torch.uint8)), "'client_states' key='x' must be a client id"),
    ("ef", lambda s: s.__setitem__("client_states", "abc"), "'client_states' must be a dict, got str"),
    ("ef", lambda s: s["client_states"].__setitem__("9", s["client_states"].pop("1")), "'client_states'['9']: the run has clients 0 to 3"),
    ("ef", lambda s: s["client_states"].__setitem__("1", _flip(s["client_states"]["1"], 40)), "'client_states'['1']: checksum mismatch"),
    ("ef", lambda s: s["client_states"].__setitem__("1", s["client_states"]["1"][:100]), "'client_states'['1']: checksum mismatch"),
    ("ef", _residual(lambda r: r.__setitem__(WEIGHT, torch.zeros(3))), f"'client_states'['1']: tensor '{WEIGHT}' has shape (3,)"),
    ("ef", _residual(lambda r: r[WEIGHT].fill_(float("nan"))), f"'client_states'['1']: the residual of '{WEIGHT}' holds non-finite"),
    ("ef", _residual(lambda r: r.pop(WEIGHT)), f"'client_states'['1']: missing tensors ['{WEIGHT}']"),
    ("fedmrn", _set("client_states", "1", _bytes(encode_residual({WEIGHT: torch.zeros(200, 64)}))),
     "'client_states'['1']: no callback of this run keeps client state"),
    # downlink: who holds which round's model, and the recent round messages
    ("masks", lambda s: s.__setitem__("downlink", "abc"), "'downlink' must be a dict, got str"),
    ("masks", _set("downlink", "synced", {"a": "b"}), "'downlink'['synced'] key='a' must be an int >= 0"),
    ("masks", _set("downlink", "synced", [1]), "'downlink'['synced'] must be a dict, got list"),
    ("masks", _set("downlink", "messages", {1: [1, 2]}), "'downlink'['messages'][1] must be a 1-d torch.uint8 tensor"),
    ("masks", lambda s: s["downlink"]["synced"].__setitem__(9, 0), "'downlink'['synced'][9]=0: the run has clients 0 to 3"),
    ("masks", lambda s: s["downlink"]["synced"].__setitem__(1, 2), "'downlink'['synced'][1]=2: the run has clients 0 to 3 and 2 completed"),
    ("masks", lambda s: s["downlink"]["messages"].__setitem__(2, _flip(s["downlink"]["messages"][2], 60)),
     "'downlink'['messages'][2]: round message checksum mismatch"),
    ("masks", lambda s: s["downlink"]["messages"].__setitem__(2, s["downlink"]["messages"][1]),
     "'downlink'['messages'][2] is the message of round 1"),
    ("masks", lambda s: s["downlink"]["messages"].pop(2), "'downlink'['messages'] holds rounds [1]: the last rounds up to 2"),
    ("masks", _message(2, sha=b"\0" * 32), "'downlink'['messages'][2] was sent with another model"),
    ("masks", _message(2, payloads=[b"xyz"]), "'downlink'['messages'][2]: payload truncated at byte 0"),
    ("fedmrn", _set("downlink", "synced", {1: 0}), "'downlink': downlink='dense' keeps no clients' rounds or round messages"),
    # history: one record per completed round
    ("fedmrn", lambda s: s.__setitem__("history", [{}, {}]), "'history'[0] lacks 'round'"),
    ("fedmrn", lambda s: s["history"][1].__setitem__("uplink/cumulative_bytes", "abc"),
     "'history'[1]['uplink/cumulative_bytes']='abc' must be an int >= 0"),
    ("fedmrn", lambda s: s["history"][1].__setitem__("round", 7), "'history'[1]['round']=7 must be 2"),
    ("fedmrn", lambda s: s["history"][1].__setitem__("test/acc", torch.ones(2)), "'history'[1]['test/acc']=tensor"),
    ("adaptive", lambda s: s["history"][1].__setitem__("next_noise_scales", "abc"),
     "'history'[1]['next_noise_scales'] must be a dict, got str"),
    ("adaptive", lambda s: s["history"][1]["next_noise_scales"].__setitem__(WEIGHT, -1.0),
     f"'history'[1]['next_noise_scales']['{WEIGHT}']=-1.0 must be a finite number in"),
    # strategy: the server's own state (FedPM's posterior counts)
    ("fedpm", lambda s: s["strategy"].__setitem__("alpha", "abc"), "'strategy': FedPM 'alpha' must be a dict of tensors"),
    ("fedpm", lambda s: s["strategy"]["alpha"].__setitem__(WEIGHT, torch.ones(2)), "have shape (2,), the model's is (200, 64)"),
    ("fedpm", lambda s: s["strategy"]["alpha"][WEIGHT].fill_(float("nan")), f"'strategy': FedPM 'alpha' counts of '{WEIGHT}' must be finite"),
    ("fedpm", lambda s: s["strategy"]["beta"].pop(WEIGHT), "'strategy': FedPM 'beta' counts are for"),
    ("fedmrn", lambda s: s["strategy"].__setitem__("alpha", {}), "'strategy': FedMRN keeps no server state"),
    # the rest
    ("fedmrn", lambda s: s["callbacks"].__setitem__("SeedSync", "abc"), "'callbacks'['SeedSync'] must be a dict, got str"),
    ("fedmrn", lambda s: s.__setitem__("elapsed_seconds", True), "'elapsed_seconds'=True must be a finite number"),
    ("fedmrn", lambda s: s.__setitem__("run_config", "abc"), "'run_config' must be a dict, got str"),
]


@pytest.mark.parametrize("kind, forge, words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_a_forged_section_is_refused_in_one_line_before_anything_is_written(source, tmp_path, kind, forge, words):
    out = _forged(source(kind), tmp_path, forge)
    before = _files(out)
    with pytest.raises(CheckpointError) as error:
        run_experiment(_resume(out))
    message = str(error.value)
    assert words in message and str(out / "checkpoint.pt") in message and "\n" not in message, message
    assert _files(out) == before  # config.yaml, metrics.json and the checkpoint as they were


def test_the_cli_refuses_a_forged_residual_with_one_error_line_and_exit_2(source, tmp_path, capsys):
    out = _forged(source("ef"), tmp_path, lambda s: s.__setitem__("client_states", {"x": s["client_states"]["1"]}))
    before = _files(out)
    assert main(["fit", "--resume", str(out), "train.rounds=3"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: checkpoint {out / 'checkpoint.pt'}: 'client_states' key='x'")
    assert _files(out) == before


@pytest.mark.parametrize("kind", ["ef", "masks", "fedpm", "adaptive"])
def test_an_untouched_checkpoint_of_each_kind_resumes(source, tmp_path, kind):
    out = _forged(source(kind), tmp_path, lambda state: None)
    assert run_experiment(_resume(out))["rounds"] == 3


class Picky(FederatedCallback):
    """A stateful callback of the user's that refuses a state it did not write."""

    def state_dict(self):
        return {"count": 1}

    def load_state_dict(self, state):
        if state != {"count": 1}:
            raise ValueError(f"count must be 1, got {state.get('count')!r}")


def test_a_callback_that_refuses_its_state_is_named_in_one_line_and_the_trainer_keeps_its_round(source, tmp_path):
    out = _forged(source("fedmrn"), tmp_path, lambda s: s["callbacks"].__setitem__("Picky", {"count": 5}))
    trainer = build_trainer(_resume(out), callbacks=[Picky()])
    with pytest.raises(CheckpointError, match=r"^'callbacks'\['Picky'\]: count must be 1, got 5$"):
        trainer.load_state_dict(load_checkpoint(out))
    assert trainer.completed_rounds == 0 and trainer.history == []


@pytest.mark.parametrize("run_id", [123, "", "a/b", "x" * 129, "a\x00b"])
def test_the_wandb_logger_refuses_a_run_id_wandb_would_not_issue(tmp_path, run_id):
    logger = WandbLogger(mode="disabled", dir=tmp_path)
    with pytest.raises(ValueError, match="is not a W&B run id"):
        logger.load_state_dict({"run_id": run_id})
    logger.load_state_dict({"run_id": "3kx9q2ab"})
    assert logger.run_id == "3kx9q2ab"
