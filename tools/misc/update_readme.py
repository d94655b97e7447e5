"""Copy generated result files into the READMEs between their markers.

A block in ``README.md`` or a ``configs/*/README.md`` of the form::

    <!-- generated: docs/results/fashion_mnist.md -->
    ...
    <!-- /generated -->

is replaced by the body of that file (its first heading dropped, links and
image paths made relative to the README that holds the block). Results in
the READMEs are thus produced by the tools that measured them, never
typed. ``--check`` fails when a README is out of date (the test suite runs
it).

Usage:
    python tools/misc/update_readme.py [--check]
"""
import argparse
import glob
import os.path as osp
import re
import sys
from typing import List

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BLOCK = re.compile(r'(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)'
                   r'(<!-- /generated -->)', re.S)


def body_of(rel: str, target: str = 'README.md') -> str:
    """The generated file's text, ready to sit inside ``target``.

    Args:
        rel (str): The generated file, relative to the repo root.
        target (str): The README that holds the block, relative to the
            repo root.
    """
    path = osp.join(REPO, rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{target} refers to {rel}, which is '
                                'missing')
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if lines and lines[0].startswith('# '):
        lines = lines[1:]
    text = '\n'.join(lines).strip() + '\n'
    source, home = osp.dirname(rel), osp.dirname(target)
    # Relative links/images point next to the generated file.
    return re.sub(
        r'\]\((?!https?:|/|#)([^)]+)\)',
        lambda m: '](' + osp.relpath(osp.join(source, m.group(1)),
                                     home or '.') + ')', text)


def render(readme: str, target: str = 'README.md') -> str:
    """README text with every generated block refreshed."""
    return BLOCK.sub(
        lambda m: m.group(1) + body_of(m.group('path'), target) +
        m.group(4), readme)


def targets() -> List[str]:
    """The READMEs that may hold generated blocks, relative to the root."""
    found = ['README.md'] + sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', 'README.md')))
    return [t for t in found if osp.isfile(osp.join(REPO, t))]


def main() -> int:
    """Refresh the READMEs, or with --check compare them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true')
    args = parser.parse_args()
    stale = []
    for target in targets():
        path = osp.join(REPO, target)
        with open(path) as f:
            current = f.read()
        new = render(current, target)
        if new == current:
            continue
        stale.append(target)
        if not args.check:
            with open(path, 'w') as f:
                f.write(new)
    if args.check and stale:
        print(f'{", ".join(stale)} out of date: run '
              'tools/misc/update_readme.py', file=sys.stderr)
        return 1
    print(f'updated: {", ".join(stale)}' if stale else 'READMEs up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
