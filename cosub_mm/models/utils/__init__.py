from .drop_path import (block_drop_paths, get_drop_path_rates,
                        set_drop_path_rates)

__all__ = ['block_drop_paths', 'get_drop_path_rates', 'set_drop_path_rates']
