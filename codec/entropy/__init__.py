"""Entropy-coding core on constriction: every coder is a `TableSet` of integer PMFs plus a table index per symbol.

- factorized: one table per channel (Ballé 2017 factorized prior)
- gaussian: one table per entry of a fixed scale table; means are subtracted before coding (Ballé 2018, Minnen 2018)
- categorical: one table per quantized PMF (vector-quantizer indices)
Symbols outside a table's range are coded as an escape symbol and their exact value goes to a second stream.

Latent codecs built on them, one module each with one contract (codec.entropy.latent_codec): FactorizedLatentCodec
(factorized.py), GaussianConditionalLatentCodec (gaussian.py), HyperpriorLatentCodec (hyper.py), the channel-group +
checkerboard ChannelCheckerboardLatentCodec (context.py) and mgm's MultiCodebookLatentCodec (cascade.py).
"""
from codec.entropy.coder import decode_symbols, encode_symbols, ideal_bits
from codec.entropy.tables import PRECISION, TableSet, quantize_pmf

__all__ = ["PRECISION", "TableSet", "decode_symbols", "encode_symbols", "ideal_bits", "quantize_pmf"]
