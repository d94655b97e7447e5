# Cosub on Fashion-MNIST: the embedded demo of cosub_mm, CPU-sized.
#
# A ViT of 6 blocks, width 128, patch 4 on 28x28 grayscale (in_channels=1),
# every block dropping its residual branch with the same rate (the authors'
# uniform stochastic depth), trained with cosub (Touvron et al., CVPR 2023).
# The training set is the first 2,000 images of Fashion-MNIST and the
# schedule 60 epochs: the over-fitting regime where a regulariser can show
# (see /work/shared/EXPERIMENTS.md); the test set is the full 10,000 images.
#
# Data: mmpretrain's FashionMNIST reads the extracted idx files from
# data/fashion_mnist (`make setup` extracts them from the Debian package
# dataset-fashion-mnist); download=False, nothing is ever fetched.
#
# The schedule is written in epochs; to change the length, override
# train_cfg.max_epochs together with the scheduler bounds, e.g.
#   --cfg-options train_cfg.max_epochs=120 param_scheduler.1.end=120
# (tools/demo.py and tools/analysis_tools/replicate_fashion_mnist.py do it).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['cosub_mm'], allow_failed_imports=False)

data_root = 'data/fashion_mnist'
num_classes = 10
num_train_images = 2000  # None: all 60,000
drop_path_rate = 0.1
max_epochs = 60
warmup_epochs = 6  # 10% of the schedule, as the one-cycle recipe

model = dict(
    type='cosub_mm.CosubClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=128,
            num_layers=6,
            num_heads=4,
            feedforward_channels=256),
        img_size=28,
        patch_size=4,
        in_channels=1,
        drop_path_rate=drop_path_rate,
        # The same rate in every block for the baseline twin too (mmpretrain
        # spreads drop_path_rate linearly); to change the rate, override both
        # model.backbone.drop_path_rate and ...layer_cfgs.drop_path_rate.
        layer_cfgs=dict(drop_path_rate=drop_path_rate),
        out_type='cls_token',
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=.02),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
        ]),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=num_classes,
        in_channels=128,
        # Used by the baseline twin only (cosub scores with its cosub_loss).
        # Softmax cross-entropy for both: with BCE (the paper's ImageNet
        # choice) this small ViT sat at the class prior for ~100 iterations
        # on Fashion-MNIST, too slow for a CPU demo.
        loss=dict(type='CrossEntropyLoss')),
    cosub_loss=dict(type='cosub_mm.CosubLoss', lambda_=0.5, loss_type='ce'),
    drop_path_rule='uniform',
    # Branches run only on the rows that keep them, once for the two
    # copies of an image while those are identical: the same function and
    # random draws as the masked form, a 0.78x step here (benchmark_train_
    # step.py --config <this file> --batch-size 128: masked 1.98x baseline,
    # efficient 1.54x).
    efficient_drop_path=True)

data_preprocessor = dict(
    num_classes=num_classes,
    # Fashion-MNIST train-set statistics (0.2860, 0.3530) x 255.
    mean=[72.94],
    std=[90.02],
    to_rgb=False)

train_pipeline = [
    dict(
        type='RandomCrop',
        crop_size=28,
        padding=2,
        padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=128,
    num_workers=0,
    dataset=dict(
        type='FashionMNIST',
        data_root=data_root,
        split='train',
        download=False,
        indices=num_train_images,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=500,
    num_workers=0,
    dataset=dict(
        type='FashionMNIST',
        data_root=data_root,
        split='test',
        # mmpretrain's MNIST picks the test files from test_mode, not split.
        test_mode=True,
        download=False,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
# One-cycle: linear warmup to lr, then cosine to 0, stepped every iteration.
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=8),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
# {work_dir}/backbone.pth (backbone.* keys) for the UperNet finetuning.
custom_hooks = [dict(type='cosub_mm.BackboneExportHook')]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
