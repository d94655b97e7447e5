# Another config for the resume faults: the tiny cosub classifier at width
# 48 (the checkpoints of cosub_tiny_cls.py have width 32).
_base_ = './cosub_tiny_cls.py'
model = dict(
    backbone=dict(arch=dict(embed_dims=48)), head=dict(in_channels=48))
