"""lm2am: knowledge distillation from language models into hybrid acoustic models."""
__version__ = "0.1.0"
