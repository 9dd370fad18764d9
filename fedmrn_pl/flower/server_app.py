"""The ServerApp: ``fedmrn-pl fit`` on the ServerApp, with each client's local fit on a SuperNode.

The run is ``run_experiment`` on the config the Flower run config names, so sampling,
seeds, payload validation, aggregation, evaluation, checkpoints, ``metrics.json``, the
plots and W&B are those of ``fedmrn-pl fit``; ``FlowerClients`` sends the requests and
brings the payload bytes back.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedmrn_pl.config import ConfigError
from fedmrn_pl.flower.remote import FlowerClients
from fedmrn_pl.flower.run_config import experiment_config, run_setting

__all__ = ["app"]

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured experiment with the SuperNodes of ``grid`` as its clients."""
    from fedmrn_pl.experiment import run_experiment

    config = experiment_config(context.run_config)
    if config.method.downlink != "dense":
        raise ConfigError(f"method.downlink={config.method.downlink}: the Flower app sends the dense model; use dense")
    clients = FlowerClients(
        grid,
        reply_timeout=float(run_setting(context.run_config, "reply-timeout")),
        node_timeout=float(run_setting(context.run_config, "node-timeout")),
    )
    run_experiment(config, [clients])
