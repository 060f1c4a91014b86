"""Feature planes computed from pixels, shared by the liveness models and still-image forensics.

``ela`` (error level analysis) on the JPEG round-trip backends of ``ela_codecs/``,
``wavelet`` (the wavelet noise residual) with its fast banded transform ``wavelet_banded``,
and ``inputs``: a model's input tensor stacked from these planes in its metadata's order.
"""
