"""Keras: the one TensorFlow import (_tf.py), reading untrusted model and data files safely,
compress's custom layers, fine-tuning, quantization-aware training and the reference models."""
