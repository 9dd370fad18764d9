"""Restoring a checkpoint into a run: what depends on the run, checked before anything changes.

``checkpoint_state.check_state`` has checked every section's types, keys and ranges;
here the checkpoint is checked against the ``FederatedTrainer`` that restores it: the
model's tensors, the client ids, each stored client state decoded by the callback that
keeps such state, and each downlink round message decoded against the payload manifest,
the last one's model digest against the restored model. Components' own checks (the
strategy's and the downlink's ``load_state_dict``) run inside :func:`section`, so what
they raise names the section too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fedmrn_pl.callbacks.checkpoint_state import CheckpointError, check_against_model
from fedmrn_pl.report import global_model_sha256

if TYPE_CHECKING:
    from fedmrn_pl.federated.trainer import FederatedTrainer

__all__ = ["check_against_run", "section"]


@contextmanager
def section(where: str) -> Iterator[None]:
    """Turn what a check or a ``load_state_dict`` raises into a one-line ``CheckpointError`` naming ``where``."""
    try:
        yield
    except CheckpointError:
        raise
    except KeyError as error:
        raise CheckpointError(f"{where} lacks {error}") from None
    except (ValueError, TypeError) as error:  # PayloadError is a ValueError
        raise CheckpointError(f"{where}: {' '.join(str(error).split())}") from None


def check_against_run(trainer: FederatedTrainer, state: Mapping[str, Any]) -> dict[int, bytes]:
    """Check ``state`` (already through ``check_state``) against ``trainer``'s run; returns the client states.

    Raises:
        CheckpointError: naming the section and what does not fit.
    """
    check_against_model(state["global_state"], trainer.global_state)
    client_states = _client_states(trainer, state.get("client_states", {}))
    _check_downlink(trainer, state.get("downlink", {}), state["completed_rounds"], state["global_state"])
    return client_states


def _client_states(trainer: FederatedTrainer, stored: Mapping[str, Any]) -> dict[int, bytes]:
    """Each stored client state as bytes, decoded by the callbacks that keep such state."""
    keepers = [callback for callback in trainer.callbacks if callback.keeps_client_state]
    states = {}
    for key, value in stored.items():
        client_id, where = int(key), f"'client_states'[{key!r}]"
        if client_id >= trainer.data.num_clients:
            raise CheckpointError(f"{where}: the run has clients 0 to {trainer.data.num_clients - 1}")
        if not keepers:
            raise CheckpointError(f"{where}: no callback of this run keeps client state (error feedback)")
        if isinstance(value, str):
            raise CheckpointError(
                f"{where} names its state file by digest: load the checkpoint with load_checkpoint(path), "
                f"which reads the files in client_states/ beside it"
            )
        states[client_id] = value.numpy().tobytes()
        with section(where):
            for keeper in keepers:
                keeper.check_client_state(trainer, client_id, states[client_id])
    return states


def _check_downlink(trainer: FederatedTrainer, downlink: Mapping[str, Any], completed: int, model: Any) -> None:
    """Clients hold rounds already done; the messages are the last rounds' up to ``completed``, each decoded."""
    for client_id, held in downlink.get("synced", {}).items():
        if client_id >= trainer.data.num_clients or held >= completed:
            raise CheckpointError(
                f"'downlink'['synced'][{client_id}]={held}: the run has clients 0 to {trainer.data.num_clients - 1} "
                f"and {completed} completed rounds"
            )
    stored = downlink.get("messages", {})
    rounds = sorted(stored)
    if rounds and rounds != list(range(completed - len(rounds) + 1, completed + 1)):
        raise CheckpointError(f"'downlink'['messages'] holds rounds {rounds}: the last rounds up to {completed} expected")
    for number in rounds:
        where = f"'downlink'['messages'][{number}]"
        with section(where):
            decoded = trainer.replica.check(stored[number].numpy().tobytes())
        if decoded.server_round != number:
            raise CheckpointError(f"{where} is the message of round {decoded.server_round}")
        if number == completed and decoded.model_sha256.hex() != global_model_sha256(model):
            raise CheckpointError(f"{where} was sent with another model than the checkpoint's 'global_state'")
