# The tiny cosub classifier with per-sample seeds, epoch-based like
# cosub_tiny_cls_epochs.py: 2 epochs of 3 iterations, a checkpoint at each
# epoch end.
_base_ = './cosub_tiny_cls_seeded.py'
train_cfg = dict(
    _delete_=True, type='EpochBasedTrainLoop', max_epochs=2, val_interval=2)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=True))
