"""RegNetY: RegNetX with squeeze-and-excitation (Radosavovic et al.,
*Designing Network Design Spaces*, CVPR 2020).

mmpretrain's :class:`~mmpretrain.models.backbones.RegNet` builds the width
and depth of each stage from the quantised linear rule (``w0, wa, wm``) and
uses ResNeXt bottlenecks: that is RegNetX. RegNetY adds an SE module after
the group convolution of every block, its reduced width being a quarter of
the *block input* width (pycls ``SE(w_b, round(w_in * se_r))``).
"""
from typing import List, Optional

import numpy as np
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmpretrain.models.backbones.regnet import RegNet
from mmpretrain.models.backbones.resnet import ResLayer
from mmpretrain.models.backbones.resnext import Bottleneck
from torch import Tensor, nn

from cosub_mm.registry import MODELS

__all__ = ['RegNetY', 'RegNetYBottleneck', 'SqueezeExcitation']


class SqueezeExcitation(nn.Module):
    """SE (Hu et al., 2018) as in pycls: 1x1 convs with bias, ReLU,
    sigmoid gate.

    Args:
        channels (int): Width of the gated tensor.
        squeeze_channels (int): Width of the bottleneck.
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.act(self.fc1(self.pool(x))))
        return x * gate.sigmoid()


class RegNetYBottleneck(Bottleneck):
    """ResNeXt bottleneck with SE after the group conv and per-sample
    stochastic depth (a ``DropPath`` module in every block, even at rate 0,
    so the cosub drop-path rules can set it).

    Args:
        se_ratio (float): SE width / block input width. Defaults to 0.25.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        **kwargs: ResNeXt ``Bottleneck`` arguments.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 se_ratio: float = 0.25, drop_path_rate: float = 0.0,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        self.se = SqueezeExcitation(self.mid_channels,
                                    int(round(in_channels * se_ratio)))
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:

        def _inner_forward(x):
            out = self.relu(self.norm1(self.conv1(x)))
            out = self.relu(self.norm2(self.conv2(out)))
            out = self.se(out)
            out = self.norm3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.drop_path(out) + identity

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        return self.relu(out)


@MODELS.register_module()
class RegNetY(RegNet):
    """RegNetY backbone: mmpretrain's RegNet with SE blocks and stochastic
    depth.

    Args:
        arch (str | dict): A preset (``'regnety_400mf'`` ...
            ``'regnety_32gf'``, the pycls/timm values) or a dict with
            ``w0, wa, wm, depth, group_w, bot_mul`` as for
            :class:`~mmpretrain.models.backbones.RegNet`.
        se_ratio (float): SE width / block input width. Defaults to 0.25.
        drop_path_rate (float): Stochastic depth rate, linear from 0 at the
            first block to this at the last. Defaults to 0.
        **kwargs: Other :class:`~mmpretrain.models.backbones.RegNet`
            arguments (``out_indices``, ``norm_cfg``, ``init_cfg``, ...).

    Example:
        >>> model = RegNetY('regnety_4.0gf', drop_path_rate=0.1)
        >>> model(torch.rand(1, 3, 224, 224))[-1].shape
        torch.Size([1, 1088, 7, 7])
    """
    arch_settings = {
        'regnety_400mf':
        dict(w0=48, wa=27.89, wm=2.09, group_w=8, depth=16, bot_mul=1.0),
        'regnety_800mf':
        dict(w0=56, wa=38.84, wm=2.4, group_w=16, depth=14, bot_mul=1.0),
        'regnety_1.6gf':
        dict(w0=48, wa=20.71, wm=2.65, group_w=24, depth=27, bot_mul=1.0),
        'regnety_3.2gf':
        dict(w0=80, wa=42.63, wm=2.66, group_w=24, depth=21, bot_mul=1.0),
        'regnety_4.0gf':
        dict(w0=96, wa=31.41, wm=2.24, group_w=64, depth=22, bot_mul=1.0),
        'regnety_8.0gf':
        dict(w0=192, wa=76.82, wm=2.19, group_w=56, depth=17, bot_mul=1.0),
        'regnety_16gf':
        dict(w0=200, wa=106.23, wm=2.48, group_w=112, depth=18,
             bot_mul=1.0),
        'regnety_32gf':
        dict(w0=232, wa=115.89, wm=2.53, group_w=232, depth=20,
             bot_mul=1.0),
    }

    def __init__(self,
                 arch,
                 se_ratio: float = 0.25,
                 drop_path_rate: float = 0.0,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if isinstance(arch, str) and arch not in self.arch_settings:
            raise ValueError(f'RegNetY: arch {arch!r} is not one of '
                             f'{sorted(self.arch_settings)}')
        # RegNet.__init__ builds the stages through make_res_layer(), one
        # call per stage; these feed it the SE ratio and per-block rates.
        self._se_ratio = se_ratio
        self._drop_path_rate = drop_path_rate
        self._dpr: Optional[List[float]] = None
        super().__init__(arch, init_cfg=init_cfg, **kwargs)
        del self._dpr

    def make_res_layer(self, **kwargs) -> ResLayer:
        if self._dpr is None:  # first stage: self.depth is set by now
            self._dpr = np.linspace(0, self._drop_path_rate,
                                    self.depth).tolist()
        num_blocks = kwargs['num_blocks']
        rates, self._dpr = self._dpr[:num_blocks], self._dpr[num_blocks:]
        kwargs.update(block=RegNetYBottleneck, se_ratio=self._se_ratio,
                      drop_path_rate=rates)
        return ResLayer(**kwargs)
