# The same run without ExactResumeHook: mmengine's own resume.
_base_ = './cosub_tiny_cls.py'
custom_hooks = [dict(type='cosub_mm.FaultInjectionHook')]
