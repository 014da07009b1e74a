"""Training objectives as engine tasks: ``forward(batch) -> {"loss", "logs"}``; never call backward.

Task modules are imported directly (``from echocare.tasks.pretrain import PretrainTask``) so that
importing this package stays light.
"""
