"""Training half of the feedback loop: SFT, reward model, DPO/RLOO and a gate, on exported preferences.

Never imports Django: Celery workers and GPU hosts run it alone. See ``trainer/README.md``.
"""

from .errors import TrainerError

__all__ = ["TrainerError"]
__version__ = "0.1.0"
