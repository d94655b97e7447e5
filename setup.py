"""Install cosub_mm: ``pip install -e .`` (``make setup`` does it in .venv)."""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name: str) -> list:
    """Read pinned requirements from ``requirements/<name>``."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith('-')]


def read_version() -> str:
    """Read ``__version__`` from ``cosub_mm/version.py`` without importing."""
    scope: dict = {}
    with open(osp.join(HERE, 'cosub_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='cosub_mm',
    version=read_version(),
    description='Submodel co-training (cosub) for OpenMMLab vision backbones',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['cosub_mm', 'cosub_mm.*']),
    python_requires='>=3.10',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        # cosub for timm backbones (mmpretrain's TIMMBackbone) and the
        # timm export; the pin is the tested one, kept in tests.txt
        'timm': [r for r in read_requirements('tests.txt')
                 if r.startswith('timm==')],
    },
    license='Apache-2.0',
    zip_safe=False,
)
