"""lm2am: knowledge distillation from language models into hybrid acoustic models."""
from lm2am.cpu import use_mkl_avx2_on_amd

__version__ = "0.1.0"

use_mkl_avx2_on_amd()  # before torch's first MKL call: see lm2am/cpu.py
