# UperNet on the fashion-scenes set (tools/dataset_converters/
# make_fashion_scenes.py), finetuned from the demo's Fashion-MNIST ViT
# (configs/demo/*fashion-mnist.py: 6 blocks, width 96, 3 heads, patch 7).
# The scenes are RGB and so is this model: the grayscale backbone's patch
# embedding is given the luma weights of the RGB channels on load
# (cosub_mm.stack.input_channels), so it starts as the gray model on the
# scenes' luma. Sized for 2 CPU cores.
#
# Set the pretrained classifier (or exported backbone) and the data:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
#       train_dataloader.dataset.data_root=DIR
#       val_dataloader.dataset.data_root=DIR
#       test_dataloader.dataset.data_root=DIR
# Random init: model.backbone.init_cfg=None. Cosub during finetuning:
#   model.type=cosub_mm.CosubEncoderDecoder
_base_ = [
    '../_base_/models/upernet.py', 'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/upernet_adamw-poly-160k.py'
]
default_scope = 'mmseg'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)
data_root = 'data/fashion_scenes'
crop_size = (64, 64)
num_classes = 15  # 5 textures + 10 Fashion-MNIST classes
embed_dims = 96
norm_cfg = dict(type='BN', requires_grad=True)  # one process: no SyncBN
max_iters = 600

# Fashion-MNIST train-set statistics in each channel, as the pretraining
# config, so that the luma-adapted patch embedding sees the normalised luma;
# the top-level copy is the one a TTA model (tools/test.py --tta) is given.
data_preprocessor = dict(
    mean=[72.94] * 3, std=[90.02] * 3, bgr_to_rgb=True, size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmpretrain.VisionTransformer',
        arch=dict(
            embed_dims=embed_dims,
            num_layers=6,
            num_heads=3,
            feedforward_channels=192),
        img_size=crop_size,  # pos_embed is resized from 4x4 to 10x10
        patch_size=7,
        in_channels=3,
        out_indices=(1, 2, 4, 5),
        out_type='featmap',
        final_norm=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')),
    # Tokens at stride 7 (64 px padded to 70): strides 3.5/7/14/28.
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[embed_dims] * 4,
        out_channels=embed_dims,
        scales=[2, 1, 0.5, 0.25]),
    decode_head=dict(
        in_channels=[embed_dims] * 4,
        channels=64,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=embed_dims,
        channels=64,
        num_classes=num_classes,
        norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True)
             for r in (0.75, 1.0, 1.25)],
            [dict(type='RandomFlip', prob=p, direction='horizontal')
             for p in (0., 1.)],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]


def _loader(split: str, pipeline: list, batch_size: int, sampler: str):
    return dict(
        batch_size=batch_size,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type=sampler, shuffle=split == 'training'),
        dataset=dict(
            type='cosub_mm.FashionScenesDataset',
            data_root=data_root,
            data_prefix=dict(img_path=f'images/{split}',
                             seg_map_path=f'annotations/{split}'),
            pipeline=pipeline))


train_dataloader = _loader('training', train_pipeline, 8, 'InfiniteSampler')
val_dataloader = _loader('validation', test_pipeline, 1, 'DefaultSampler')
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=1e-3), paramwise_cfg=dict(layer_decay_rate=0.8))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
         end=60),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=60, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=100)
default_hooks = dict(
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
