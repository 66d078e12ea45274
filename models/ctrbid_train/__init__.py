"""ctrbid_train: training pipeline for the ctrbid CTR model.

Reads the arrays written by ``ctrbid features`` (see ``data.py``), trains a
Wide & Deep model (``model.py``, ``train.py``), fits a Platt calibration on the
validation split (``calibrate.py``), exports a calibrated ONNX graph with the
ctrbid metadata (``export.py``), evaluates it (``metrics.py``) and checks that
PyTorch, ONNX Runtime and the Rust scorer agree (``parity.py``).

Run as ``PYTHONPATH=models python -m ctrbid_train <command>``.
"""

__version__ = "1"
