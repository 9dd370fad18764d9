"""A hand-made graph dataset, its collate function and a graph classifier: batches that are not tensors.

Shaped like torch_geometric (``x``, ``edge_index``, ``y`` per graph; a batch is one disjoint
graph with a ``batch`` vector), without needing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

FEATURES = 3


@dataclass
class Graph:
    x: torch.Tensor  # (nodes, FEATURES)
    edge_index: torch.Tensor  # (2, edges), directed both ways
    y: torch.Tensor  # (1,) int64: 1 for a cycle, 0 for a path


@dataclass
class GraphBatch:
    x: torch.Tensor  # (total nodes, FEATURES)
    edge_index: torch.Tensor  # (2, total edges), node numbers offset per graph
    batch: torch.Tensor  # (total nodes,) the graph of each node
    y: torch.Tensor  # (graphs,)

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(*(t.to(device) for t in (self.x, self.edge_index, self.batch, self.y)))

    def __len__(self) -> int:
        return len(self.y)


def collate_graphs(graphs: list[Graph]) -> GraphBatch:
    """One disjoint graph of ``graphs``, as torch_geometric's ``Batch.from_data_list`` builds it."""
    offsets = torch.tensor([0, *[len(g.x) for g in graphs]]).cumsum(0)
    return GraphBatch(
        x=torch.cat([g.x for g in graphs]),
        edge_index=torch.cat([g.edge_index + offset for g, offset in zip(graphs, offsets)], dim=1),
        batch=torch.cat([torch.full((len(g.x),), i) for i, g in enumerate(graphs)]),
        y=torch.cat([g.y for g in graphs]),
    )


class MotifGraphs(Dataset):
    """Rings and chains of 4-7 nodes with noisy features; the label says which (the motif)."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.graphs = []
        for index in range(size):
            nodes, cycle = int(torch.randint(4, 8, (1,), generator=generator)), index % 2
            source = torch.arange(nodes if cycle else nodes - 1)
            target = (source + 1) % nodes
            edges = torch.stack([torch.cat([source, target]), torch.cat([target, source])])
            x = torch.randn(nodes, FEATURES, generator=generator)
            self.graphs.append(Graph(x, edges, torch.tensor([cycle])))

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> Graph:
        return self.graphs[index]


class GraphClassifier(L.LightningModule):
    """Two rounds of mean message passing, a mean pool per graph and a linear head; tests with ``test_step``."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Linear(FEATURES + 1, hidden)  # + the node degree
        self.message = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 2)

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        source, target = batch.edge_index
        degree = torch.zeros(len(batch.x)).index_add_(0, target, torch.ones(target.numel()))
        h = torch.relu(self.embed(torch.cat([batch.x, degree[:, None]], dim=1)))
        for _ in range(2):
            incoming = torch.zeros_like(h).index_add_(0, target, h[source]) / degree.clamp(min=1)[:, None]
            h = torch.relu(h + self.message(incoming))
        graphs = int(batch.batch.max()) + 1
        pooled = torch.zeros(graphs, h.shape[1]).index_add_(0, batch.batch, h)
        counts = torch.zeros(graphs).index_add_(0, batch.batch, torch.ones(len(h)))
        return self.head(pooled / counts[:, None])

    def training_step(self, batch: GraphBatch, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch), batch.y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def _evaluate(self, batch: GraphBatch, prefix: str) -> None:
        logits = self(batch)
        self.log(f"{prefix}/loss", F.cross_entropy(logits, batch.y), batch_size=len(batch))
        self.log(f"{prefix}/acc", (logits.argmax(1) == batch.y).float().mean(), batch_size=len(batch))

    def test_step(self, batch: GraphBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


class MotifDM(L.LightningDataModule):
    """A plain LightningDataModule of motif graphs, with its own collate_fn; ``clients`` > 0 gives one loader each."""

    def __init__(self, clients: int = 0, size: int = 96) -> None:
        super().__init__()
        self.clients = clients
        self.size = size
        self.stages: list[str] = []

    def setup(self, stage: str) -> None:
        self.stages.append(stage)
        self.train, self.test = MotifGraphs(self.size, seed=0), MotifGraphs(32, seed=1)

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=8, shuffle=shuffle, collate_fn=collate_graphs)

    def train_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.clients:
            return self._loader(self.train, shuffle=True)
        shards = torch.arange(len(self.train)).chunk(self.clients)
        return [self._loader(torch.utils.data.Subset(self.train, s.tolist()), shuffle=True) for s in shards]

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test)
