"""Copy generated result files into README.md between their markers.

A block in README.md of the form::

    <!-- generated: docs/results/fashion_mnist.md -->
    ...
    <!-- /generated -->

is replaced by the body of that file (its first heading dropped, image paths
made relative to the repo root). Results in the README are thus produced by
the tools that measured them, never typed. ``--check`` fails when README.md
is out of date (the test suite runs it).

Usage:
    python tools/misc/update_readme.py [--check]
"""
import argparse
import os.path as osp
import re
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BLOCK = re.compile(r'(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)'
                   r'(<!-- /generated -->)', re.S)


def body_of(rel: str) -> str:
    """The generated file's text, ready to sit inside README.md."""
    path = osp.join(REPO, rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'README.md refers to {rel}, which is missing')
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if lines and lines[0].startswith('# '):
        lines = lines[1:]
    text = '\n'.join(lines).strip() + '\n'
    folder = osp.dirname(rel)
    # Relative links/images in the file point next to it, not to the root.
    return re.sub(r'\]\((?!https?:|/|#)([^)]+)\)',
                  lambda m: f']({osp.normpath(osp.join(folder, m.group(1)))})',
                  text)


def render(readme: str) -> str:
    """README text with every generated block refreshed."""
    return BLOCK.sub(
        lambda m: m.group(1) + body_of(m.group('path')) + m.group(4), readme)


def main() -> int:
    """Refresh README.md, or with --check compare it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true')
    args = parser.parse_args()
    path = osp.join(REPO, 'README.md')
    with open(path) as f:
        current = f.read()
    new = render(current)
    if new == current:
        print('README.md up to date')
        return 0
    if args.check:
        print('README.md is out of date: run tools/misc/update_readme.py',
              file=sys.stderr)
        return 1
    with open(path, 'w') as f:
        f.write(new)
    print('README.md updated')
    return 0


if __name__ == '__main__':
    sys.exit(main())
