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
        hooks = {h['type']: h for h in cfg.custom_hooks}
        assert hooks['cosub_mm.ExactResumeHook']['skip_at_sampler'] is skip
        assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
        assert cfg.train_dataloader.batch_size == 16
        assert cfg.val_dataloader is None
    a, b = (cfgs[s].to_dict() for s in (True, False))
    a.pop('custom_hooks')
    b.pop('custom_hooks')
    assert a == b  # the modes differ in the hook's switch only
