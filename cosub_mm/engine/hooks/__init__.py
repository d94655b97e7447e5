from .backbone_export_hook import BackboneExportHook
from .cosub_lambda_hook import CosubLambdaHook
from .drop_path_rate_hook import DropPathRateHook
from .schedule_hook import LinearScheduleHook

__all__ = [
    'BackboneExportHook', 'CosubLambdaHook', 'DropPathRateHook',
    'LinearScheduleHook'
]
