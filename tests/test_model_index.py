"""The model-zoo metadata lists every config and is up to date."""
import glob
import os.path as osp
import subprocess
import sys

import yaml

from conftest import REPO


def test_metafiles_are_generated_from_current_configs():
    proc = subprocess.run(
        [sys.executable, 'tools/misc/gen_model_index.py', '--check'],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_config_is_listed_once_with_existing_paths():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    listed = []
    for rel in imports:
        with open(osp.join(REPO, rel)) as f:
            meta = yaml.safe_load(f)
        names = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['In Collection'] in names
            assert osp.isfile(osp.join(REPO, model['Config']))
            for result in model['Results'] or []:
                # Papers' numbers are marked as such, with their source.
                assert result['Reference'] is True and result['Source']
            listed.append(model['Config'])
    configs = sorted(
        osp.relpath(p, REPO)
        for folder in ('cosub', 'upernet', 'demo')
        for p in glob.glob(osp.join(REPO, 'configs', folder, '*.py')))
    assert sorted(listed) == configs


def test_modelindex_package_reads_the_index():
    from modelindex.load_model_index import load
    index = load(osp.join(REPO, 'model-index.yml'))
    assert len(index.models) > 0
