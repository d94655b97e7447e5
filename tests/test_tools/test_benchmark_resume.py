"""tools/analysis_tools/benchmark_resume.py: the run it resumes."""
import os.path as osp

from mmengine.config import Config

from conftest import REPO, load_tool

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark_resume.py')


def _tool():
    return load_tool(TOOL)


def test_both_modes_are_the_demo_run_with_exact_resume(tmp_path):
    tool = _tool()
    cfgs = {}
    for skip in (True, False):
        path = tmp_path / f'{skip}.py'
        path.write_text(tool.config_text(batch=16, skip_at_sampler=skip))
        cfgs[skip] = Config.fromfile(str(path))
    for skip, cfg in cfgs.items():
        hook = cfg.default_hooks.exact_resume
        assert hook.type == 'cosub_mm.ExactResumeHook'
        assert hook.skip_at_sampler is skip
        assert [h['type'] for h in cfg.custom_hooks] == [
            'cosub_mm.DropPathRateHook']  # no second resume hook, no export
        assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
        assert cfg.train_dataloader.batch_size == 16
        assert cfg.val_dataloader is None
    a, b = (cfgs[s].to_dict() for s in (True, False))
    a['default_hooks'].pop('exact_resume')
    b['default_hooks'].pop('exact_resume')
    assert a == b  # the modes differ in the hook's switch only


def test_workers_load_through_per_sample_seeds(tmp_path):
    path = tmp_path / 'workers.py'
    path.write_text(_tool().config_text(batch=16, workers=2))
    loader = Config.fromfile(str(path)).train_dataloader
    assert loader.num_workers == 2
    assert loader.sampler.type == 'cosub_mm.SampleSeedSampler'
    assert loader.sampler.sampler.type == 'InfiniteSampler'
    assert loader.dataset.type == 'cosub_mm.SampleSeedDataset'
    assert loader.dataset.dataset == dict(type='FashionMNIST')
    assert loader.dataset.split == 'train'  # the demo's keys, beside it
