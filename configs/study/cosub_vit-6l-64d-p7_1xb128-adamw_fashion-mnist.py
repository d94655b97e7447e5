# The cosub arm of the Fashion-MNIST study
# (tools/analysis_tools/replicate_fashion_mnist.py).
#
# The demo's recipe on a ViT small enough for dozens of converged runs on a
# 2-core CPU: 6 blocks of width 64, 2 heads, MLP 128, patch 7, batch 128.
# The study overrides the training subset, the validation split, lr, weight
# decay, drop rate, cosub's knobs, the seed and the length (--length, which
# scales the schedule).
_base_ = ['../demo/cosub_vit-6l-96d-p7_1xb256-adamw-700i_fashion-mnist.py']

width = 64
model = dict(
    backbone=dict(
        arch=dict(
            embed_dims=width,
            num_layers=6,
            num_heads=2,
            feedforward_channels=2 * width)),
    head=dict(in_channels=width))
train_dataloader = dict(batch_size=128)
# The study's models are not finetuned: no backbone export.
custom_hooks = [dict(type='cosub_mm.DropPathRateHook', rule='uniform')]
