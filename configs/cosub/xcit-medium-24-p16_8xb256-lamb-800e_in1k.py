# Baseline twin of
# cosub_xcit-medium-24-p16_8xb256-lamb-800e_in1k.py: XCiT-M24/16
# (El-Nouby et al., NeurIPS 2021; 84.4 M parameters) with the DeiT III
# ImageNet-1k recipe of configs/cosub/README.md and drop path 0.15 in every
# block.
_base_ = './xcit-small-12-p16_8xb256-lamb-800e_in1k.py'

model = dict(
    backbone=dict(
        embed_dims=512,
        depth=24,
        layer_scale_init_value=1e-5,
        drop_path_rate=0.15),
    head=dict(in_channels=512))
