"""``saal serve``: the run as a Label Studio ML backend, live while annotators work.

* :mod:`.backend` -- what the backend knows and does, without HTTP: predictions (the current model's mask and
  the image's usefulness for the next batch), recording each submitted annotation through the same checks as
  ``saal annotate import``, training in the background and choosing the next batch;
* :mod:`.app` -- Label Studio's ML-backend protocol over HTTP (``/health``, ``/setup``, ``/predict``,
  ``/webhook``, ``/versions``) on Starlette, served by uvicorn.
"""

from .backend import Backend, BadRequest, check_label_config, task_image_id

__all__ = ["Backend", "BadRequest", "check_label_config", "task_image_id"]
