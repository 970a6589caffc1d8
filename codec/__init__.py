"""codec: learned image and feature compression with a constriction entropy-coding core."""
from codec.errors import CodecError

__version__ = "0.1.0"
__all__ = ["CodecError", "__version__"]
