from .drop_path import (block_drop_paths, get_drop_path_rates,
                        prepare_submodels, set_drop_path_rates)
from .efficient_drop_path import (CopyTracker, drop_path_add,
                                  drop_path_disabled, sample_keep_mask,
                                  shared_copies)

__all__ = [
    'block_drop_paths', 'get_drop_path_rates', 'set_drop_path_rates',
    'prepare_submodels', 'drop_path_add', 'drop_path_disabled',
    'sample_keep_mask', 'shared_copies', 'CopyTracker'
]
