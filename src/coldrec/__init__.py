"""coldrec: e-commerce search and recommendation that works from a shopper's first visit.

Importing this package is cheap: heavy dependencies (torch, sentence-transformers,
onnxruntime) load only when an encoder is first used.
"""

__version__ = "0.1.0"
