# Baseline twin of cosub_deit3-large-p16_32xb64-lamb-800e_in1k-192px.py: the
# DeiT III recipe for ViT-L/16 (192 px, LAMB lr 3e-3, drop path 0.45 in
# every block, batch 32 x 64 = 2048 as the authors ran it).
_base_ = './deit3-base-p16_8xb256-lamb-800e_in1k-192px.py'

model = dict(
    backbone=dict(arch='l', drop_path_rate=0.45),
    head=dict(in_channels=1024))

train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)
