"""Pool a ViT's token sequence into one feature per image."""
from typing import Tuple

from torch import Tensor, nn

from cosub_mm.registry import MODELS

__all__ = ['TokenPooling']

POOLS = ('token', 'avg')


@MODELS.register_module()
class TokenPooling(nn.Module):
    """Class token or mean of the patch tokens of ``(N, L, C)`` features.

    mmpretrain's ``TIMMBackbone`` resets a timm model's pooling to none, so
    a timm ViT / DeiT III returns all its tokens, ``(N, L, C)``; mmpretrain's
    heads expect ``(N, C)`` and its ``GlobalAveragePooling`` expects
    channels first. This neck pools as timm's ``global_pool`` does.

    Args:
        pool (str): ``'token'``: the first (class) token, timm's and DeiT
            III's default; ``'avg'``: the mean of the tokens after the
            ``num_prefix_tokens`` prefix (class and register) tokens.
            Defaults to 'token'.
        num_prefix_tokens (int): Tokens before the patch tokens, timm's
            ``model.num_prefix_tokens``. Defaults to 1.

    Example:
        >>> neck = dict(type='cosub_mm.TokenPooling', pool='token')
    """

    def __init__(self,
                 pool: str = 'token',
                 num_prefix_tokens: int = 1) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f'TokenPooling: pool must be one of {POOLS}, '
                             f'got {pool!r}')
        if pool == 'token' and num_prefix_tokens < 1:
            raise ValueError("TokenPooling: pool='token' needs a class token "
                             '(num_prefix_tokens >= 1)')
        self.pool = pool
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, inputs: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        """Pool each ``(N, L, C)`` tensor of the tuple to ``(N, C)``."""
        for x in inputs:
            if x.ndim != 3:
                raise ValueError(
                    'TokenPooling expects token sequences (N, L, C), got '
                    f'shape {tuple(x.shape)}; for (N, C, H, W) feature maps '
                    "use dict(type='GlobalAveragePooling')")
        if self.pool == 'token':
            return tuple(x[:, 0] for x in inputs)
        return tuple(x[:, self.num_prefix_tokens:].mean(dim=1)
                     for x in inputs)

    def extra_repr(self) -> str:
        return (f'pool={self.pool!r}, '
                f'num_prefix_tokens={self.num_prefix_tokens}')
