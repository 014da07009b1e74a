"""Jobs: what a CLI verb runs, assembled from the generic engine, the tasks, the data and the models.

One module per job, each importing what it assembles at the top:

* :mod:`~echocare.jobs.pretrain` — ``run_pretraining``: ontology + SimMIM model + shard stream on the Trainer;
* :mod:`~echocare.jobs.finetune` — ``run_finetune``: a registered task's data, backbone + head on the Trainer;
* :mod:`~echocare.jobs.evaluate` — ``evaluate_checkpoint``: recompute a fine-tuned model's metrics;
* :mod:`~echocare.jobs.protocol` — ``run_protocol``: label fractions x seeds of fine-tuning, summarised;
* :mod:`~echocare.jobs.export` — ``export_encoder``: a run's encoder as stock-timm safetensors;
* :mod:`~echocare.jobs.quickstart` — ``run_quickstart``: phantom shards -> short pretraining -> export.

This package imports nothing itself, so ``import echocare.jobs.export`` stays as light as that job.
"""
