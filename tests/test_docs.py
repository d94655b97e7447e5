"""README.md: results copied from generated files, links that resolve."""
import os.path as osp
import re
import subprocess
import sys

from conftest import REPO


def test_readme_results_are_in_sync_with_generated_files():
    proc = subprocess.run(
        [sys.executable, 'tools/misc/update_readme.py', '--check'],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_readme_quick_start_has_the_two_commands():
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    quick = text.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    assert re.findall(r'^make (\w+)', quick, re.M) == ['demo', 'test']


def test_readme_local_links_exist():
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    links = re.findall(r'\]\((?!https?:|#)([^)#]+)\)', text)
    assert links
    missing = [link for link in links
               if not osp.exists(osp.join(REPO, link))]
    assert not missing


def test_generated_blocks_link_relative_to_the_readme_that_holds_them():
    sys.path.insert(0, osp.join(REPO, 'tools', 'misc'))
    import update_readme
    block = ('intro\n<!-- generated: docs/results/fashion_mnist.md -->\n'
             'STALE-BODY\n<!-- /generated -->\n')
    root = update_readme.render(block, 'README.md')
    deep = update_readme.render(block, 'configs/upernet/README.md')
    assert '](docs/results/fashion_mnist.png)' in root
    assert '](../../docs/results/fashion_mnist.png)' in deep
    assert 'STALE-BODY' not in deep
    assert 'configs/upernet/README.md' in update_readme.targets()


def test_config_readme_local_links_exist():
    import glob
    for readme in glob.glob(osp.join(REPO, 'configs', '*', 'README.md')):
        text = open(readme).read()
        links = re.findall(r'\]\((?!https?:|#)([^)#\s]+)\)', text)
        missing = [link for link in links
                   if not osp.exists(osp.join(osp.dirname(readme), link))]
        assert not missing, (readme, missing)
