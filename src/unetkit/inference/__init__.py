"""Applying saved models to new images: `predictor.Predictor` (PyTorch) and `onnx_predictor.OnnxPredictor`
(onnxruntime, no torch) run on one engine (engine.py); backends.py picks one for a model file."""
