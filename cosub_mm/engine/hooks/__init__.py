from .backbone_export_hook import BackboneExportHook
from .cosub_lambda_hook import CosubLambdaHook
from .drop_path_rate_hook import DropPathRateHook
from .exact_resume_hook import ExactResumeHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .schedule_hook import LinearScheduleHook
from .time_limit_hook import TimeLimitHook

__all__ = [
    'BackboneExportHook', 'CosubLambdaHook', 'DropPathRateHook',
    'ExactResumeHook', 'LinearScheduleHook', 'NonFiniteLossError',
    'NonFiniteLossHook', 'TimeLimitHook'
]
