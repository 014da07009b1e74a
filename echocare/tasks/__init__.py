"""Training objectives as engine tasks: ``forward(batch) -> {"loss", "logs"}``; never call backward.

* :mod:`~echocare.tasks.pretrain` — SimMIM + hierarchical-loss pretraining task;
* :mod:`~echocare.tasks.registry` — fine-tuning tasks by name (:class:`~echocare.tasks.spec.TaskSpec` entries);
* :mod:`~echocare.tasks.finetune` — backbone + head task, evaluation, one module per built-in task.

Modules are imported directly (``from echocare.tasks.pretrain import PretrainTask``) so that importing this
package stays light.
"""
