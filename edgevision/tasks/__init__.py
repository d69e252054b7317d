"""The task layer: what differs between classification, detection (and later segmentation).

One package per task (classify, detect, segment), looked up by the name in ``ModelSpec.task``:
the stages (`train`, `build`, `run`, `profile`) stay generic (principle 7: tables, not if/elif
chains). See `edgevision.tasks.base`.
"""

from edgevision.tasks.base import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
