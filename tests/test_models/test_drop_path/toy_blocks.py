"""A residual block cosub_mm does not know, and its efficient twin: for the
tests of the table of convertible blocks and of the submodel plan."""
import torch
from mmcv.cnn.bricks import DropPath

from cosub_mm.models.drop_path import block_plans, drop_path_add


class ToyBlock(torch.nn.Module):
    """``x + DropPath(tanh(fc(x)))``."""

    def __init__(self, dims: int = 4, rate: float = 0.5) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(dims, dims)
        self.drop_path = DropPath(rate)

    def _branch(self, x):
        return torch.tanh(self.fc(x))

    def forward(self, x):
        return x + self.drop_path(self._branch(x))


class EfficientToyBlock(ToyBlock):

    def branch_drop_paths(self):
        return [self.drop_path]

    def forward(self, x):
        (plan, ) = block_plans(self, 1)
        return drop_path_add(x, self._branch, self.drop_path.drop_prob,
                             self.training, plan=plan)
