"""PiT: the pooling-based vision transformer (Heo et al., *Rethinking
Spatial Dimensions of Vision Transformers*, ICCV 2021).

Follows the authors' code (naver-ai/pit) and timm's ``pit.py``: a
convolutional patch embedding with a learned spatial position embedding,
three stages of ViT blocks, and between stages a depth-wise convolution that
halves the token grid and doubles the width, while the class token goes
through a linear layer to the new width.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor, nn

from cosub_mm.models.drop_path import (block_plans, drop_path_add,
                                       register_efficient_block)
from cosub_mm.registry import MODELS

__all__ = ['PiT', 'PiTBlock', 'EfficientPiTBlock', 'PiTPooling']


class PiTBlock(BaseModule):
    """A pre-norm ViT block (LayerNorm eps 1e-6, qkv bias) with
    per-sample stochastic depth on both residual branches.

    Args:
        embed_dims (int): Token width.
        num_heads (int): Attention heads.
        mlp_ratio (float): FFN hidden width / ``embed_dims``.
        drop_path_rate (float): Stochastic depth rate of the block.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, bias=True, batch_first=True)
        self.drop_path1 = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        hidden = int(embed_dims * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dims, hidden), nn.GELU(),
            nn.Linear(hidden, embed_dims))
        self.drop_path2 = DropPath(drop_path_rate)

    def _attn(self, x: Tensor) -> Tensor:
        x = self.norm1(x)
        return self.attn(x, x, x, need_weights=False)[0]

    def _mlp(self, x: Tensor) -> Tensor:
        return self.mlp(self.norm2(x))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self._attn(x))
        return x + self.drop_path2(self._mlp(x))


@register_efficient_block(PiTBlock)
class EfficientPiTBlock(PiTBlock):
    """:class:`PiTBlock` with each branch computed only on the samples that
    keep it (see :func:`~cosub_mm.models.drop_path.drop_path_add`); same
    parameters, same function, same random draws.
    """

    def branch_drop_paths(self) -> List[nn.Module]:
        """The drop-path modules of the branches, in forward order."""
        return [self.drop_path1, self.drop_path2]

    def forward(self, x: Tensor) -> Tensor:
        attn, mlp = block_plans(self, 2)
        x = drop_path_add(x, self._attn, self.drop_path1.drop_prob,
                          self.training, plan=attn)
        return drop_path_add(x, self._mlp, self.drop_path2.drop_prob,
                             self.training, plan=mlp)


class PiTPooling(BaseModule):
    """PiT's pooling layer: a depth-wise strided conv on the token grid
    (``in_channels -> out_channels``, ``out_channels`` a multiple of
    ``in_channels``) and a linear map of the class token.

    Args:
        in_channels (int): Width before pooling.
        out_channels (int): Width after pooling.
        stride (int): Spatial reduction. Defaults to 2.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=stride + 1,
            stride=stride,
            padding=stride // 2,
            groups=in_channels)
        self.fc = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor, cls_token: Tensor) -> Tuple[Tensor, Tensor]:
        return self.conv(x), self.fc(cls_token)


@MODELS.register_module()
class PiT(BaseBackbone):
    """Pooling-based Vision Transformer (PiT).

    Args:
        arch (str | dict): ``'tiny'``, ``'xsmall'``, ``'small'``, ``'base'``
            (the paper's PiT-Ti/XS/S/B) or a dict with keys
            ``base_dims``, ``depths``, ``num_heads`` (per stage; a stage is
            ``base_dims[i] * num_heads[i]`` wide), ``patch_size``,
            ``stride`` and optionally ``mlp_ratio``.
        img_size (int): Input size, for the position embedding.
            Defaults to 224.
        in_channels (int): Image channels. Defaults to 3.
        drop_rate (float): Dropout after the position embedding.
        drop_path_rate (float): Stochastic depth rate, linear from 0 at the
            first block to this at the last (as the authors and timm).
        efficient_drop_path (bool): Build the blocks as
            :class:`EfficientPiTBlock`, which computes each branch only on
            the samples that keep it (what
            :func:`~cosub_mm.models.drop_path.enable_efficient_drop_path`
            does to a built PiT).
        out_type (str): ``'cls_token'`` (the normalised class token,
            ``(B, C)``; for ``LinearClsHead``) or ``'featmap'`` (the last
            stage's token grid, ``(B, C, H, W)``).
        init_cfg (dict | list[dict], optional): Initialisation config; the
            default is the authors' (truncated normal 0.02 for Linear, unit
            LayerNorm, truncated normal position embedding and class token).

    Example:
        >>> model = PiT(arch='small', drop_path_rate=0.1)
        >>> model(torch.rand(1, 3, 224, 224))[0].shape
        torch.Size([1, 576])
    """
    arch_zoo = {
        **dict.fromkeys(['ti', 'tiny'], dict(
            base_dims=[32, 32, 32], depths=[2, 6, 4], num_heads=[2, 4, 8],
            patch_size=16, stride=8)),
        **dict.fromkeys(['xs', 'xsmall'], dict(
            base_dims=[48, 48, 48], depths=[2, 6, 4], num_heads=[2, 4, 8],
            patch_size=16, stride=8)),
        **dict.fromkeys(['s', 'small'], dict(
            base_dims=[48, 48, 48], depths=[2, 6, 4], num_heads=[3, 6, 12],
            patch_size=16, stride=8)),
        **dict.fromkeys(['b', 'base'], dict(
            base_dims=[64, 64, 64], depths=[3, 6, 4], num_heads=[4, 8, 16],
            patch_size=14, stride=7)),
    }
    OUT_TYPES = ('cls_token', 'featmap')

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 img_size: int = 224,
                 in_channels: int = 3,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 efficient_drop_path: bool = False,
                 out_type: str = 'cls_token',
                 init_cfg: Optional[Union[dict, Sequence[dict]]] = None
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise ValueError(f'PiT: arch {arch!r} is not one of '
                                 f'{sorted(self.arch_zoo)}')
            arch = self.arch_zoo[arch]
        keys = {'base_dims', 'depths', 'num_heads', 'patch_size', 'stride'}
        if not isinstance(arch, dict) or not keys <= set(arch):
            raise ValueError(f'PiT: a custom arch must be a dict with keys '
                             f'{sorted(keys)}, got {arch!r}')
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'PiT: out_type must be one of '
                             f'{self.OUT_TYPES}, got {out_type!r}')
        self.out_type = out_type
        base_dims, depths = arch['base_dims'], arch['depths']
        num_heads = arch['num_heads']
        if not len(base_dims) == len(depths) == len(num_heads):
            raise ValueError('PiT: base_dims, depths and num_heads must have '
                             f'one entry per stage, got {arch!r}')
        dims = [b * h for b, h in zip(base_dims, num_heads)]
        self.embed_dims = dims
        self.num_layers = sum(depths)

        grid = math.floor((img_size - arch['patch_size']) / arch['stride'] +
                          1)
        self.patch_embed = nn.Conv2d(
            in_channels, dims[0], kernel_size=arch['patch_size'],
            stride=arch['stride'])
        self.pos_embed = nn.Parameter(torch.zeros(1, dims[0], grid, grid))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[0]))
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = np.linspace(0, drop_path_rate, self.num_layers).tolist()
        self.stages = ModuleList()
        self.pools = ModuleList()
        block = EfficientPiTBlock if efficient_drop_path else PiTBlock
        for i, depth in enumerate(depths):
            if i > 0:
                self.pools.append(PiTPooling(dims[i - 1], dims[i]))
            self.stages.append(
                nn.Sequential(*[
                    block(
                        dims[i],
                        num_heads[i],
                        mlp_ratio=arch.get('mlp_ratio', 4.0),
                        drop_path_rate=dpr.pop(0))
                    for _ in range(depth)
                ]))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def init_weights(self) -> None:
        super().init_weights()
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            return
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        if self.init_cfg is None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.MultiheadAttention):
                    trunc_normal_(m.in_proj_weight, std=0.02)
                    nn.init.zeros_(m.in_proj_bias)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tuple[Tensor]:
        x = self.patch_embed(x)
        if x.shape[-2:] != self.pos_embed.shape[-2:]:
            raise ValueError(
                f'PiT: input gives a {tuple(x.shape[-2:])} token grid but '
                f'the position embedding is {tuple(self.pos_embed.shape[-2:])}'
                '; set img_size to the input size')
        x = self.pos_drop(x + self.pos_embed)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x, cls_token = self.pools[i - 1](x, cls_token)
            B, C, H, W = x.shape
            tokens = torch.cat([cls_token, x.flatten(2).transpose(1, 2)], 1)
            tokens = stage(tokens)
            cls_token = tokens[:, :1]
            x = tokens[:, 1:].transpose(1, 2).reshape(B, C, H, W)
        if self.out_type == 'featmap':
            return (x, )
        return (self.norm(cls_token[:, 0]), )
