# DeiT III ImageNet-1k schedule: LAMB (timm's, with its built-in global
# grad-norm clip 1.0), lr 4e-3 for batch 2048 (no lr scaling: --unscale-lr),
# weight decay 0.05 on matrices only (timm skips 1-D params, pos_embed and
# cls_token), 5 warmup epochs from ~1e-6, cosine to 1e-5, 800 epochs.
# Mixed precision (GPU): tools/train.py --amp (fp16 autocast with dynamic
# loss scaling, as the authors trained: deit engine.py autocast, main.py
# NativeScaler) or --amp --amp-dtype bf16 (Ampere or newer).
optim_wrapper = dict(
    # eps: deit main.py --opt-eps default (timm's create_optimizer passes it
    # on); mmpretrain's Lamb defaults to 1e-6
    optimizer=dict(type='Lamb', lr=4e-3, weight_decay=0.05, eps=1e-8),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=795, eta_min=1e-5, by_epoch=True,
         begin=5, end=800, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=800, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=2048)
