"""Tiny (32 px, 2-block) configs of the six architectures cosub is trained
with in the paper, shared by the backbone tests."""
from typing import Dict, Tuple

NUM_CLASSES = 3
IMG = 32


def _linear_head(in_channels: int) -> dict:
    return dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=in_channels)


#: name -> (backbone, neck, head) configs; every backbone has drop path 0.1.
TINY_ARCHS: Dict[str, Tuple[dict, dict, dict]] = {
    'deit3': (dict(type='mmpretrain.DeiT3',
                   arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                             feedforward_channels=64),
                   img_size=IMG, patch_size=8, drop_path_rate=0.1),
              None,
              dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES,
                   in_channels=32)),
    'swin': (dict(type='mmpretrain.SwinTransformer',
                  arch=dict(embed_dims=16, depths=[1, 1], num_heads=[1, 2]),
                  img_size=IMG, patch_size=4, window_size=4,
                  out_indices=(1, ), drop_path_rate=0.1),
             dict(type='GlobalAveragePooling'), _linear_head(32)),
    'convnext': (dict(type='mmpretrain.ConvNeXt',
                      arch=dict(depths=[1, 2], channels=[16, 32]),
                      out_indices=(1, ), drop_path_rate=0.1,
                      # 1e-6 (the default) hides the branches at init
                      layer_scale_init_value=1.0),
                 None, _linear_head(32)),
    'regnety': (dict(type='cosub_mm.RegNetY',
                     arch=dict(w0=8, wa=8.0, wm=2.0, group_w=8, depth=2,
                               bot_mul=1.0),
                     strides=(2, 2), dilations=(1, 1), out_indices=(1, ),
                     drop_path_rate=0.1),
                dict(type='GlobalAveragePooling'), _linear_head(16)),
    'xcit': (dict(type='mmpretrain.XCiT', img_size=IMG, patch_size=8,
                  embed_dims=32, depth=2, cls_attn_layers=1, num_heads=2,
                  drop_path_rate=0.1),
             None, _linear_head(32)),
    'pit': (dict(type='cosub_mm.PiT',
                 arch=dict(base_dims=[8, 8], depths=[1, 1],
                           num_heads=[2, 4], patch_size=8, stride=4),
                 img_size=IMG, drop_path_rate=0.1),
            None, _linear_head(32)),
}
