# The tiny cosub UperNet with per-sample seeds around its InfiniteSampler.
_base_ = './cosub_tiny_upernet.py'
train_dataloader = dict(
    sampler=dict(
        _delete_=True,
        type='cosub_mm.SampleSeedSampler',
        sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(
        _delete_=True,
        type='cosub_mm.SampleSeedDataset',
        dataset={{_base_.train_dataloader.dataset}}))
