# The tiny cosub classifier with per-sample seeds: each sample is augmented
# from a seed of its place in the sampler's stream, so a resume with worker
# processes skips the trained samples at the sampler.
_base_ = './cosub_tiny_cls.py'
train_dataloader = dict(
    sampler=dict(
        _delete_=True,
        type='cosub_mm.SampleSeedSampler',
        sampler=dict(type='DefaultSampler', shuffle=True)),
    dataset=dict(
        _delete_=True,
        type='cosub_mm.SampleSeedDataset',
        dataset={{_base_.train_dataloader.dataset}}))
