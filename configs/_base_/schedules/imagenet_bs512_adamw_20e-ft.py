# DeiT III 224 px finetuning of the ViT-B/L trained at 192 px on ImageNet-1k
# (facebookresearch/deit README_revenge.md, "finetuning for ViT-B, L and H
# at resolution 224x224"): --opt adamw (betas, and eps 1e-8 from main.py's
# --opt-eps default), --lr 1e-5 for batch 512 (--batch 64 on 8 GPUs,
# --unscale-lr), --weight-decay 0.1 on matrices only (timm's
# create_optimizer skips 1-D params, pos_embed and cls_token),
# --warmup-epochs 5 from --warmup-lr 1e-6, then --sched cosine down to
# main.py's default --min-lr 1e-5, which equals the lr: after warmup the lr
# stays at 1e-5. --epochs 20, no gradient clipping (--clip-grad default).
# Mixed precision (GPU): tools/train.py --amp (fp16, as the authors) or
# --amp --amp-dtype bf16.
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=1e-5, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=0.1),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-5, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    # eta_min is absolute (timm's --min-lr): flat at 1e-5 here, a cosine if
    # --auto-scale-lr raises the lr
    dict(type='CosineAnnealingLR', T_max=15, eta_min=1e-5, by_epoch=True,
         begin=5, end=20, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=512)
